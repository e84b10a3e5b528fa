"""CUDA backend: the same kernels on device arrays.

Vectors and tables may be numpy arrays (copied to the GPU for the call) or
objects with ``__cuda_array_interface__`` (torch/cupy tensors,
:class:`genre_serve._C.DeviceArray`), used in place. The small per-call inputs
that are validated on the host (fusion weights, exclusions, candidates, host
scores) go to the extension as numpy arrays, which stages them in one pooled
device allocation. Results are returned as host numpy arrays: a top-K answer
is B x k, small next to the item tables that stay on the device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genre_serve import _C
from genre_serve.kernels._validate import CrossProblem, FusedProblem


def _device_ptr(x: Any, keep_alive: list) -> int:
    if x is None:
        return 0
    if isinstance(x, np.ndarray):
        dev = _C.DeviceArray(x)
        keep_alive.append(dev)
        return int(dev.ptr)
    return int(x.__cuda_array_interface__["data"][0])


def fused_topk(p: FusedProblem, num_threads: int) -> tuple[np.ndarray, np.ndarray]:
    del num_threads  # the GPU picks its own parallelism
    keep: list = []
    indptr, indices = p.exclude if p.exclude is not None else (None, None)
    fused = p.user_ct is not None
    return _C.fused_topk_cuda(
        user_cf=_device_ptr(p.user_cf, keep),
        item_cf=_device_ptr(p.item_cf if p.read_cf else None, keep),
        dim_cf=p.dim_cf,
        user_ct=_device_ptr(p.user_ct if fused else None, keep),
        item_ct=_device_ptr(p.item_ct if p.read_ct else None, keep),
        dim_ct=p.dim_ct,
        w_cf=p.w_cf,
        w_ct=p.w_ct,
        batch=p.batch,
        num_items=p.num_items,
        k=p.k,
        exclude_indptr=indptr,
        exclude_indices=indices,
    )


def cross_features(p: CrossProblem, out: np.ndarray, num_threads: int) -> np.ndarray:
    del num_threads
    keep: list = []
    batch = p.out_shape[0]
    scores = p.scores if p.scores is None or isinstance(p.scores, np.ndarray) else _device_ptr(p.scores, keep)
    _C.cross_features_cuda(
        user=_device_ptr(p.user, keep),
        items=_device_ptr(p.items, keep),
        candidates=p.candidates,
        scores=scores,
        batch=batch,
        num_items=p.num_items,
        dim=p.dim,
        out=out,
    )
    return out
