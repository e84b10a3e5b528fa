"""Hot-path kernels: fused two-space top-K retrieval and cross features.

Public entry points pick a backend (``device="auto"|"cpu"|"cuda"``) with the
same signature and semantics on both; the NumPy reference in
:mod:`genre_serve.kernels.reference` is the executable specification.

Behaviour worth knowing:

* Inputs are float32 (``TypeError`` otherwise, nothing is silently cast);
  non-contiguous numpy arrays are copied; index arrays may be any integer dtype.
* NaN/inf in *user* rows raise ``ValueError``. Item tables are not scanned
  (that would double the memory traffic of a bandwidth-bound pass) unless
  ``check_finite=True``: an item whose score is NaN is never returned, like an
  excluded one; +-inf scores rank as values.
* A space whose fusion weight is 0 for every user of the call is not read.
* ``device="auto"`` runs where the data lives: CUDA when an input exposes
  ``__cuda_array_interface__``, the CPU otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from genre_serve import _C
from genre_serve.errors import CudaUnavailableError
from genre_serve.kernels import cpu as _cpu
from genre_serve.kernels._validate import (
    Array,
    check_out,
    cross_problem,
    fused_problem,
    is_device_array,
)
from genre_serve.kernels.reference import cross_features_reference, fused_topk_reference

BUILT_WITH_CUDA: bool = bool(_C.has_cuda())
#: True when the extension was built with CUDA and a GPU is visible.
HAS_CUDA: bool = BUILT_WITH_CUDA and _C.cuda_device_count() > 0

__all__ = [
    "BUILT_WITH_CUDA",
    "HAS_CUDA",
    "cross_features",
    "cross_features_reference",
    "fused_topk",
    "fused_topk_reference",
]


def _backend(device: str, arrays: Sequence[Any]) -> ModuleType:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: must be 'auto', 'cpu' or 'cuda', got {device!r}")
    on_gpu = any(is_device_array(a) for a in arrays if a is not None)
    if device == "auto":
        device = "cuda" if on_gpu else "cpu"
    if device == "cpu":
        if on_gpu:
            raise TypeError("device='cpu' was given device arrays; copy them to the host first")
        return _cpu
    if not HAS_CUDA:
        why = "no GPU is visible" if BUILT_WITH_CUDA else "the extension was built without CUDA"
        raise CudaUnavailableError(f"device='cuda' requested but {why}")
    from genre_serve.kernels import cuda as _cuda

    return _cuda


def _threads(num_threads: int | None) -> int:
    if num_threads is None:
        num_threads = int(os.environ.get("GENRE_SERVE_NUM_THREADS", "0") or 0)
    if num_threads < 0:
        raise ValueError(f"num_threads: must be >= 0, got {num_threads}")
    return num_threads


def fused_topk(
    user_cf: Array,
    item_cf: Array,
    k: int,
    *,
    user_ct: Array | None = None,
    item_ct: Array | None = None,
    alpha: float | np.ndarray = 1.0,
    exclude: Sequence[Any] | None = None,
    exclude_csr: tuple[Any, Any] | None = None,
    device: str = "auto",
    check_finite: bool = False,
    num_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items per user under the fused two-space score, in one pass.

    Parameters
    ----------
    user_cf, item_cf : float32 [B, Dc], [N, Dc]
        Collaborative-filtering vectors of the users and the catalog.
    k : int
        Items per user (> 0); a k beyond the catalog is read as N. When fewer
        than k items are eligible the tail of a row is index -1 with score -inf.
    user_ct, item_ct : float32 [B, Dt], [N, Dt], optional
        Content vectors; both or neither. Without them the score is the CF dot
        product and ``alpha`` is not used.
    alpha : float or float32 [B]
        Fusion weight in [0, 1]: ``alpha * <u_cf, v_cf> + (1 - alpha) * <u_ct, v_ct>``.
    exclude : sequence of B integer arrays, optional
        Items each user must not get back (duplicates allowed).
    exclude_csr : (indptr [B + 1], indices), optional
        The same as CSR; not together with ``exclude``.
    device : {"auto", "cpu", "cuda"}
    check_finite : bool
        Also scan the item tables for NaN/inf and raise (costs a full pass).
    num_threads : int, optional
        CPU threads (default: ``GENRE_SERVE_NUM_THREADS`` or OpenMP's default).

    Returns
    -------
    indices : int64 [B, min(k, N)]
    scores : float32 [B, min(k, N)]
        Each row sorted by score descending, ties by lower index.
    """
    problem = fused_problem(
        user_cf, item_cf, k, user_ct, item_ct, alpha, exclude, exclude_csr, check_finite
    )
    backend = _backend(device, (user_cf, item_cf, user_ct, item_ct))
    return backend.fused_topk(problem, _threads(num_threads))


def cross_features(
    user: Array,
    items: Array,
    candidates: Array,
    *,
    scores: Array | None = None,
    out: np.ndarray | None = None,
    device: str = "auto",
    num_threads: int | None = None,
) -> np.ndarray:
    """Ranker inputs ``[u, v, u*v, |u-v| (, score)]`` for every candidate, in one pass.

    Parameters
    ----------
    user : float32 [B, D]
    items : float32 [N, D]
    candidates : integer [B, K]
        Item indices in [-1, N); -1 gives an all-zero row.
    scores : float32 [B, K], optional
        Appended as one trailing column (the retrieval score).
    out : float32 [B, K, 4D (+1)], optional
        A C-contiguous buffer to write into and return.

    Returns
    -------
    features : float32 [B, K, 4D] or [B, K, 4D + 1]
    """
    problem = cross_problem(user, items, candidates, scores)
    out = check_out(out, problem.out_shape)
    backend = _backend(device, (user, items, scores))
    return backend.cross_features(problem, out, _threads(num_threads))
