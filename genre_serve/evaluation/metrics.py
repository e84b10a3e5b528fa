"""Ranking metrics from the 0-based rank of each held-out target.

A target's rank is the number of eligible items (catalog minus the user's
history) scored strictly higher than it: ties are resolved in the target's
favour, the usual convention, and identical for every method in a table.
"""

from __future__ import annotations

import numpy as np

CUTOFFS = (10, 20)


def recall_at(ranks: np.ndarray, k: int) -> float:
    """Single-target recall@k (equals hit rate@k with one target per user)."""
    return float(np.mean(ranks < k)) if ranks.size else 0.0


def recall_at_with_ties(scores: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Single-target recall@k over the columns of `scores` [B, M] (targets are
    column positions), ties broken uniformly at random, in expectation: with g
    candidates scoring higher and e others scoring the same, the target lands
    uniformly in positions g..g+e, so P(position < k) = clip((k - g) / (e + 1), 0, 1).
    All-equal scores (no information) give k / M, never a perfect score."""
    hits = hit_probabilities_with_ties(scores, targets, k)
    return float(hits.mean()) if hits.size else 0.0


def hit_probabilities_with_ties(scores: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Per row, the probability that the target lands in the top k (see recall_at_with_ties)."""
    if not len(targets):
        return np.zeros(0)
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    greater = (scores > target_scores).sum(1)
    equal = (scores == target_scores).sum(1) - 1
    return np.clip((k - greater) / (equal + 1), 0.0, 1.0)


def ndcg_gains(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-target NDCG@k (one relevant item: 1 / log2(rank + 2) inside the top k)."""
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def ndcg_at(ranks: np.ndarray, k: int) -> float:
    return float(ndcg_gains(ranks, k).mean()) if ranks.size else 0.0


def bootstrap_ci(values: np.ndarray, baseline: np.ndarray | None = None, reps: int = 2000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(values), or, given a paired
    `baseline` (the same rows under another method), of mean(values) /
    mean(baseline). Rows (users) are resampled with replacement: the interval
    says how much of a figure is the draw of test users."""
    values = np.asarray(values, np.float64)
    if not values.size:
        return float("nan"), float("nan")
    rows = np.random.default_rng(seed).integers(0, values.size, (reps, values.size))
    stat = values[rows].mean(1)
    if baseline is not None:
        base = np.asarray(baseline, np.float64)[rows].mean(1)
        stat = np.divide(stat, base, out=np.full_like(stat, np.nan), where=base > 0)
    lo, hi = np.nanquantile(stat, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def mrr(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / (ranks + 1.0))) if ranks.size else 0.0


def auc(ranks: np.ndarray, eligible: np.ndarray) -> float:
    """Fraction of eligible negatives ranked below the target."""
    if not ranks.size:
        return 0.0
    negatives = np.maximum(eligible - 1, 1)
    return float(np.mean(1.0 - ranks / negatives))


def summarize(ranks: np.ndarray, eligible: np.ndarray) -> dict[str, float]:
    out = {}
    for k in CUTOFFS:
        out[f"Recall@{k}"] = recall_at(ranks, k)
        out[f"NDCG@{k}"] = ndcg_at(ranks, k)
    out["HitRate@10"] = recall_at(ranks, 10)
    out["MRR"] = mrr(ranks)
    out["AUC"] = auc(ranks, eligible)
    out["users"] = int(ranks.size)
    return out


def history_cells(histories: list) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) index pairs of every history entry: rows [M], items [M], int64."""
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.concatenate(histories).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
    return rows, cols


def exclude_histories(scores: np.ndarray, histories: list) -> np.ndarray:
    """Sets each row's history items to -inf in `scores` [B, N] (in place); returns it."""
    scores[history_cells(histories)] = -np.inf
    return scores


def ranks_of_targets(scores: np.ndarray, histories: list[np.ndarray],
                     targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of `targets` in `scores` [B, N] with each row's history excluded.

    Returns (ranks, eligible item counts). NaN scores count as lowest.
    """
    scores = np.array(scores, dtype=np.float32, copy=True)
    scores[np.isnan(scores)] = -np.inf
    exclude_histories(scores, histories)
    target_scores = scores[np.arange(len(targets)), targets]
    ranks = (scores > target_scores[:, None]).sum(1)
    eligible = np.array([scores.shape[1] - np.unique(h).size for h in histories])
    return ranks, eligible
