"""Fused top-K over a catalog in which some items have no collaborative signal.

An item without training interactions (held out, or added by `add-items`)
has a zero CF row: no vector, no bias, no recent popularity. Scored like the
others, alpha * 0 + (1 - alpha) * content, it is discounted for a channel it
does not have, and practically never reaches a top K (benchmarks/RESULTS.md
has the figures). The fused score is a weighted average of two
estimates of the same affinity, so where one is missing the other stands
alone: such items are scored by their content score, plus a bias fitted on
validation (how often users pick an item the CF tables have not seen:
train/calibration.py).

That is two passes, exact: the items with CF signal (the others excluded)
under the fused score (fused_topk), and the new items alone under the
content score, merged by score. The second pass reads only the new items'
rows; up to SMALL_NEW_ITEMS of them it is one numpy product (a kernel call
costs about 0.15 ms of argument checks and setup, more than scoring a few
hundred rows), beyond that fused_topk.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from genre_serve.kernels import fused_topk

SMALL_NEW_ITEMS = 4096


def items_without_cf(item_cf: np.ndarray) -> np.ndarray:
    """Indices of the items whose CF row is zero apart from its last column.

    Training zeroes the vector and the bias of every item it saw no
    interaction of, and add-items gives new items zero rows. The last column
    is left out because with recent popularity on it is that column: after
    `refresh-popularity` a new item may have a few recent interactions but
    still no vector. (Without it, the last column is the bias or a vector
    component, zero exactly when the rest is.)
    """
    return np.flatnonzero(~np.asarray(item_cf)[:, :-1].any(axis=1))


class UserVectors(NamedTuple):
    """What the user tower gives retrieval, per request (served, in process,
    in evaluation alike)."""

    u_cf: np.ndarray  # float32 [B, cf_dim]
    u_ct: np.ndarray  # float32 [B, ct_dim]
    alpha: np.ndarray  # float32 [B] or [B, 1]: the scenario's fusion weight


class NewItems:
    """The new items of a catalog, their content rows (computed once per
    table) and the bias added to their content scores."""

    def __init__(self, item_cf: np.ndarray, item_ct: np.ndarray, bias: float = 0.0):
        self.bias = float(bias)
        self.index = items_without_cf(item_cf)
        self.item_ct = np.ascontiguousarray(item_ct[self.index], dtype=np.float32)

    def positions(self, items: np.ndarray) -> np.ndarray:
        """Positions among the new items of those of `items` that are new
        (binary search: no per-catalog array per process)."""
        items = np.asarray(items, np.int64)
        if not self.index.size or not items.size:
            return np.zeros(0, np.int64)
        pos = np.minimum(np.searchsorted(self.index, items), self.index.size - 1)
        return pos[self.index[pos] == items]

    def __len__(self) -> int:
        return int(self.index.size)


def fused_topk_with_new_items(u_cf, u_ct, alpha, item_cf, item_ct, k: int, exclude: list,
                              new_items: NewItems | None, num_threads: int | None = None):
    """fused_topk (same arguments and outputs: indices and scores [B, min(k, N)],
    -1 / -inf padded, ties by lower index, each row's `exclude` never in it)
    with the new items scored by content alone plus `new_items.bias` (None: plain fused_topk)."""
    kwargs = {} if num_threads is None else {"num_threads": num_threads}
    if new_items is None or not len(new_items):
        return fused_topk(u_cf, item_cf, k, user_ct=u_ct, item_ct=item_ct, alpha=alpha, exclude=exclude,
                          **kwargs)
    exclude = [np.asarray(e, np.int64) for e in exclude]
    warm_idx, warm_scores = fused_topk(u_cf, item_cf, k, user_ct=u_ct, item_ct=item_ct, alpha=alpha,
                                       exclude=[np.concatenate([e, new_items.index]) for e in exclude],
                                       **kwargs)
    new_exclude = [new_items.positions(e) for e in exclude]
    new_k = min(k, len(new_items))
    if len(new_items) <= SMALL_NEW_ITEMS:
        new_idx, new_scores = _small_topk(np.asarray(u_ct, np.float32), new_items.item_ct, new_k, new_exclude)
    else:
        new_idx, new_scores = fused_topk(np.ascontiguousarray(u_ct, dtype=np.float32), new_items.item_ct,
                                         new_k, exclude=new_exclude, **kwargs)
    new_scores = new_scores + np.float32(new_items.bias)
    new_idx = np.where(new_idx >= 0, new_items.index[np.maximum(new_idx, 0)], -1)
    idx = np.concatenate([warm_idx, new_idx], 1)
    scores = np.concatenate([warm_scores, new_scores], 1)
    scores = np.where(idx >= 0, scores, -np.inf).astype(np.float32)
    order = np.lexsort((np.where(idx >= 0, idx, np.iinfo(np.int64).max), -scores), axis=1)[:, :warm_idx.shape[1]]
    return np.take_along_axis(idx, order, 1), np.take_along_axis(scores, order, 1)


def _small_topk(users: np.ndarray, items: np.ndarray, k: int, exclude: list[np.ndarray]):
    """fused_topk's contract (scores by dot product, ties by lower index, -1 / -inf
    where fewer than k are eligible) for a small item table, in numpy."""
    scores = users @ items.T
    for b, e in enumerate(exclude):
        scores[b, e] = -np.inf
    positions = np.broadcast_to(np.arange(items.shape[0]), scores.shape)
    order = np.lexsort((positions, -scores), axis=1)[:, :k]
    top = np.take_along_axis(scores, order, 1).astype(np.float32)
    return np.where(np.isfinite(top), order, -1), np.where(np.isfinite(top), top, -np.inf).astype(np.float32)
