"""NumPy reference implementations of the kernels: the executable specification
the native code is tested against. Same arguments, same checks, same results
(up to float32 summation order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from genre_serve.kernels._validate import (
    FusedProblem,
    check_out,
    cross_problem,
    fused_problem,
)


def fused_topk_reference(
    user_cf: np.ndarray, item_cf: np.ndarray, k: int, *, user_ct: np.ndarray | None = None,
    item_ct: np.ndarray | None = None, alpha: float | np.ndarray = 1.0, exclude: Sequence[Any] | None = None,
    exclude_csr: tuple[Any, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference of :func:`genre_serve.kernels.fused_topk` (materialises B x N scores)."""
    problem = fused_problem(user_cf, item_cf, k, user_ct, item_ct, alpha, exclude, exclude_csr)
    return topk_of_problem(problem)


def topk_of_problem(p: FusedProblem) -> tuple[np.ndarray, np.ndarray]:
    scores = np.zeros((p.batch, p.num_items), dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        if p.read_cf:
            scores += p.w_cf[:, None] * (p.user_cf @ p.item_cf.T)
        if p.read_ct:
            scores += p.w_ct[:, None] * (p.user_ct @ p.item_ct.T)
    if p.exclude is not None:
        indptr, indices = p.exclude
        owner = np.repeat(np.arange(p.batch), np.diff(indptr))
        scores[owner, indices] = np.nan
    out_idx = np.full((p.batch, p.k), -1, dtype=np.int64)
    out_score = np.full((p.batch, p.k), -np.inf, dtype=np.float32)
    items = np.arange(p.num_items)
    for b in range(p.batch):
        row = scores[b]
        eligible = ~np.isnan(row)
        # lexsort: last key is primary -> score descending, then index ascending.
        order = np.lexsort((items[eligible], -row[eligible]))[: p.k]
        chosen = items[eligible][order]
        out_idx[b, : chosen.size] = chosen
        out_score[b, : chosen.size] = row[chosen]
    return out_idx, out_score


def cross_features_reference(user: np.ndarray, items: np.ndarray, candidates: np.ndarray, *,
                             scores: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Reference of :func:`genre_serve.kernels.cross_features`."""
    p = cross_problem(user, items, candidates, scores)
    out = check_out(out, p.out_shape)
    u = np.broadcast_to(p.user[:, None, :], p.candidates.shape + (p.user.shape[1],))
    v = p.items[np.maximum(p.candidates, 0)]
    parts = [u, v, u * v, np.abs(u - v)]
    if p.scores is not None:
        parts.append(p.scores[..., None])
    out[...] = np.concatenate(parts, axis=-1)
    out[p.candidates < 0] = 0.0
    return out
