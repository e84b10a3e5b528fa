"""Scoring a GENRE model on a split: full-catalog retrieval variants and the
retrieve-then-rank pipeline (the same kernels the server runs)."""

from __future__ import annotations

import numpy as np
import torch

from genre_serve.evaluation.metrics import exclude_histories, ranks_of_targets
from genre_serve.kernels import cross_features
from genre_serve.models.genre import GenreModel, candidate_cf, cf_scores, cross_features_torch, right_align
from genre_serve.models.recent_popularity import RecentPopularity
from genre_serve.retrieval import NewItems, UserVectors, fused_topk_with_new_items, items_without_cf

VARIANTS = ("cf", "content", "fused")


def recent_popularity_counter(model: GenreModel, split) -> RecentPopularity | None:
    """The model's recent-popularity feature over the split's training log (None: the model has none)."""
    days = model.cfg.recent_popularity_days
    return RecentPopularity.of_split(split, days) if days > 0 else None


def stage_recent_popularity(recent_counter: RecentPopularity | None, split, stage: str) -> np.ndarray | None:
    """Recent popularity [B, N] at the time of each target of a stage."""
    return None if recent_counter is None else recent_counter.at(split.stage_times(stage))


@torch.inference_mode()
def item_tables(model: GenreModel) -> tuple[np.ndarray, np.ndarray]:
    item_cf, item_ct = model.items.tables()
    return item_cf.numpy().astype(np.float32), item_ct.numpy().astype(np.float32)


@torch.inference_mode()
def user_vectors(model: GenreModel, histories: list, scenarios: np.ndarray, batch: int = 512) -> UserVectors:
    """The user vectors of each history (alpha [B]), float32 numpy arrays."""
    outs_cf, outs_ct, outs_a = [], [], []
    padded = model.items.padded_tables()
    for s in range(0, len(histories), batch):
        hist = right_align(histories[s : s + batch], model.cfg.max_history)
        scen = torch.as_tensor(np.asarray(scenarios[s : s + batch]), dtype=torch.long)
        u_cf, u_ct = model.encode_users(hist, scen, padded)
        outs_cf.append(u_cf.numpy())
        outs_ct.append(u_ct.numpy())
        outs_a.append(model.alpha(scen).numpy())
    if not outs_cf:
        return UserVectors(np.zeros((0, model.cfg.cf_dim), np.float32), np.zeros((0, model.cfg.dim), np.float32),
                           np.zeros(0, np.float32))
    return UserVectors(np.concatenate(outs_cf).astype(np.float32), np.concatenate(outs_ct).astype(np.float32),
                       np.concatenate(outs_a).astype(np.float32))


def variant_scores(variant: str, u_cf, u_ct, alpha, item_cf, item_ct, recent_popularity=None,
                   new_items_by_content: bool = True, new_item_bias: float = 0.0) -> np.ndarray:
    """Scores [B, N] of one variant; `recent_popularity` [B, N]: recent popularity at each
    request's time (models with it; None: the tables' snapshot, as served).
    Fused, as served: items without CF signal by content alone plus
    `new_item_bias` (retrieval.py); `new_items_by_content=False`: like the
    others (their CF score is 0)."""
    if variant == "cf":
        return cf_scores(u_cf, item_cf, recent_popularity)
    if variant == "content":
        return u_ct @ item_ct.T
    if variant == "fused":
        content = u_ct @ item_ct.T
        fused = alpha[:, None] * cf_scores(u_cf, item_cf, recent_popularity) + (1 - alpha[:, None]) * content
        if new_items_by_content:
            new = items_without_cf(item_cf)
            fused[:, new] = content[:, new] + np.float32(new_item_bias)
        return fused
    raise ValueError(f"variant: one of {VARIANTS}, got {variant!r}")


def retrieval_ranks(model, histories, scenarios, targets, variant="fused", tables=None, users=None,
                    recent_popularity=None,
                    new_items_by_content: bool = True):
    item_cf, item_ct = tables if tables is not None else item_tables(model)
    u_cf, u_ct, alpha = users if users is not None else user_vectors(model, histories, scenarios)
    scores = variant_scores(variant, u_cf, u_ct, alpha, item_cf, item_ct, recent_popularity, new_items_by_content,
                            float(model.new_item_bias))
    return ranks_of_targets(scores, histories, targets)


def top_candidates(u_cf, u_ct, alpha, item_cf, item_ct, histories, depth: int, recent_popularity=None,
                   new_items_by_content: bool = True, new_item_bias: float = 0.0):
    """Top-`depth` fused candidates per user, history excluded: (indices, scores), -1 padded.

    With the tables as they are: the kernels, as served (retrieval.py). With
    a per-request `recent_popularity`, no kernel takes per-row item tables: dense scores
    under the same rule.
    """
    if recent_popularity is None:
        new_items = NewItems(item_cf, item_ct, new_item_bias) if new_items_by_content else None
        return fused_topk_with_new_items(u_cf, u_ct, alpha, item_cf, item_ct, depth, histories, new_items)
    scores = variant_scores("fused", u_cf, u_ct, alpha, item_cf, item_ct, recent_popularity,
                            new_items_by_content, new_item_bias).astype(np.float32)
    exclude_histories(scores, histories)
    depth = min(depth, scores.shape[1])
    part = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
    part_scores = np.take_along_axis(scores, part, 1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    idx, top = np.take_along_axis(part, order, 1), np.take_along_axis(part_scores, order, 1)
    idx[~np.isfinite(top)] = -1
    return idx, top


@torch.inference_mode()
def rerank(model: GenreModel, u_cf, u_ct, alpha, item_cf, item_ct, histories, depth: int, recent_popularity=None,
           new_items_by_content: bool = True):
    """Top-`depth` fused candidates per user re-ordered by the ranker.

    Returns (candidates [B, depth] in ranker order, ranker logits), -1 padded.
    """
    idx, scores = top_candidates(u_cf, u_ct, alpha, item_cf, item_ct, histories, depth, recent_popularity,
                                 new_items_by_content, float(model.new_item_bias))
    safe_scores = np.where(idx >= 0, scores, 0).astype(np.float32)
    if recent_popularity is None:
        user = np.concatenate([u_cf, u_ct], 1)
        items = np.concatenate([item_cf, item_ct], 1)
        feats = torch.from_numpy(cross_features(user, items, idx, scores=safe_scores))
    else:
        # Candidate vectors carry each request's own recent popularity: same
        # layout as the kernel's, assembled in torch.
        cand = torch.from_numpy(np.maximum(idx, 0))
        c_cf = candidate_cf(torch.from_numpy(item_cf), cand, torch.from_numpy(recent_popularity))
        c_ct = torch.from_numpy(item_ct)[cand]
        user = torch.from_numpy(np.concatenate([u_cf, u_ct], 1))
        feats = cross_features_torch(user, torch.cat([c_cf, c_ct], -1), torch.from_numpy(safe_scores))
    logits = model.ranker(feats).numpy()
    logits[idx < 0] = -np.inf
    order = np.argsort(-logits, axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(logits, order, 1)


def ranked_pipeline_ranks(model, histories, scenarios, targets, depth=100, tables=None, users=None,
                          recent_popularity=None,
                          new_items_by_content: bool = True):
    """Ranks under retrieve-then-rank: inside the top `depth`, the ranker's
    order; outside it, the fused retrieval rank (which is >= depth)."""
    item_cf, item_ct = tables if tables is not None else item_tables(model)
    u_cf, u_ct, alpha = users if users is not None else user_vectors(model, histories, scenarios)
    ranks, eligible = retrieval_ranks(model, histories, scenarios, targets, "fused",
                                      (item_cf, item_ct), (u_cf, u_ct, alpha), recent_popularity, new_items_by_content)
    reordered, _ = rerank(model, u_cf, u_ct, alpha, item_cf, item_ct, histories, depth, recent_popularity,
                          new_items_by_content)
    hit = reordered == targets[:, None]
    inside = hit.any(1)
    ranks = ranks.copy()
    ranks[inside] = hit[inside].argmax(1)
    return ranks, eligible
