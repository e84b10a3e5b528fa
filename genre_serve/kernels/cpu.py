"""CPU backend: the OpenMP kernels of genre_serve._C."""

from __future__ import annotations

import numpy as np

from genre_serve import _C
from genre_serve.kernels._validate import CrossProblem, FusedProblem


def fused_topk(p: FusedProblem, num_threads: int) -> tuple[np.ndarray, np.ndarray]:
    indptr, indices = p.exclude if p.exclude is not None else (None, None)
    return _C.fused_topk_cpu(
        p.user_cf,
        p.item_cf if p.read_cf else None,
        p.user_ct,
        p.item_ct if p.read_ct else None,
        p.w_cf,
        p.w_ct,
        p.k,
        indptr,
        indices,
        num_threads,
    )


def cross_features(p: CrossProblem, out: np.ndarray, num_threads: int) -> np.ndarray:
    _C.cross_features_cpu(p.user, p.items, p.candidates, p.scores, out, num_threads)
    return out
