"""Scoring a GENRE model on a split: full-catalog retrieval variants and the
retrieve-then-rank pipeline (the same kernels the server runs)."""

from __future__ import annotations

import numpy as np
import torch

from genre_serve.evaluation.metrics import ranks_of_targets
from genre_serve.kernels import cross_features, fused_topk
from genre_serve.models.genre import GenreModel, right_align

VARIANTS = ("cf", "content", "fused")


@torch.inference_mode()
def item_tables(model: GenreModel) -> tuple[np.ndarray, np.ndarray]:
    item_cf, item_ct = model.items.tables()
    return item_cf.numpy().astype(np.float32), item_ct.numpy().astype(np.float32)


@torch.inference_mode()
def user_vectors(model: GenreModel, histories: list, scenarios: np.ndarray, batch: int = 512):
    """(u_cf, u_ct, alpha) as float32 numpy arrays for each history."""
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
        return (np.zeros((0, model.cfg.cf_dim), np.float32), np.zeros((0, model.cfg.dim), np.float32),
                np.zeros(0, np.float32))
    return (np.concatenate(outs_cf).astype(np.float32), np.concatenate(outs_ct).astype(np.float32),
            np.concatenate(outs_a).astype(np.float32))


def variant_scores(variant: str, u_cf, u_ct, alpha, item_cf, item_ct) -> np.ndarray:
    if variant == "cf":
        return u_cf @ item_cf.T
    if variant == "content":
        return u_ct @ item_ct.T
    if variant == "fused":
        return alpha[:, None] * (u_cf @ item_cf.T) + (1 - alpha[:, None]) * (u_ct @ item_ct.T)
    raise ValueError(f"variant: one of {VARIANTS}, got {variant!r}")


def retrieval_ranks(model, histories, scenarios, targets, variant="fused", tables=None, users=None):
    item_cf, item_ct = tables if tables is not None else item_tables(model)
    u_cf, u_ct, alpha = users if users is not None else user_vectors(model, histories, scenarios)
    scores = variant_scores(variant, u_cf, u_ct, alpha, item_cf, item_ct)
    return ranks_of_targets(scores, histories, targets)


@torch.inference_mode()
def rerank(model: GenreModel, u_cf, u_ct, alpha, item_cf, item_ct, histories, depth: int):
    """Top-`depth` fused candidates per user re-ordered by the ranker.

    Returns (candidates [B, depth] in ranker order, ranker logits), -1 padded.
    """
    idx, scores = fused_topk(u_cf, item_cf, depth, user_ct=u_ct, item_ct=item_ct, alpha=alpha,
                             exclude=histories)
    user = np.concatenate([u_cf, u_ct], 1)
    items = np.concatenate([item_cf, item_ct], 1)
    safe_scores = np.where(idx >= 0, scores, 0).astype(np.float32)
    feats = cross_features(user, items, idx, scores=safe_scores)
    logits = model.ranker(torch.from_numpy(feats)).numpy()
    logits[idx < 0] = -np.inf
    order = np.argsort(-logits, axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(logits, order, 1)


def ranked_pipeline_ranks(model, histories, scenarios, targets, depth=100, tables=None, users=None):
    """Ranks under retrieve-then-rank: inside the top `depth`, the ranker's
    order; outside it, the fused retrieval rank (which is >= depth)."""
    item_cf, item_ct = tables if tables is not None else item_tables(model)
    u_cf, u_ct, alpha = users if users is not None else user_vectors(model, histories, scenarios)
    ranks, eligible = retrieval_ranks(model, histories, scenarios, targets, "fused",
                                      (item_cf, item_ct), (u_cf, u_ct, alpha))
    reordered, _ = rerank(model, u_cf, u_ct, alpha, item_cf, item_ct, histories, depth)
    hit = reordered == targets[:, None]
    inside = hit.any(1)
    ranks = ranks.copy()
    ranks[inside] = hit[inside].argmax(1)
    return ranks, eligible
