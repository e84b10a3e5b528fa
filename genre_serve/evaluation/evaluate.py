"""`genre-serve evaluate`: the GENRE variants and the baselines, one table,
one split (the run's own), full-catalog ranking with history excluded."""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from genre_serve.evaluation import baselines as B
from genre_serve.evaluation.genre_eval import (
    item_tables,
    ranked_pipeline_ranks,
    recent_popularity_counter,
    retrieval_ranks,
    stage_recent_popularity,
    user_vectors,
    variant_scores,
)
from genre_serve.evaluation.metrics import (
    bootstrap_ci,
    hit_probabilities_with_ties,
    ndcg_gains,
    ranks_of_targets,
    recall_at,
    summarize,
)
from genre_serve.evaluation.report import ColdStartRow, EvaluationReport, MethodRow
from genre_serve.formats.run_dir import Run

DISCOUNTED = "fused + ranker, new items discounted"


def _baseline_ranks(model, users, hist, scen, targets, times=None, batch=512):
    ranks, eligible = [], []
    for s in range(0, len(hist), batch):
        scores = model.score(users[s : s + batch], hist[s : s + batch], scen[s : s + batch],
                             None if times is None else times[s : s + batch])
        r, e = ranks_of_targets(scores, hist[s : s + batch], targets[s : s + batch])
        ranks.append(r)
        eligible.append(e)
    return np.concatenate(ranks), np.concatenate(eligible)


# The peers the served model is measured against (issue 14): the strongest
# sequential model and the strongest non-sequential one.
PEERS = ("SASRec+ (full softmax)", "EASE")
SERVED = "fused + ranker"


def default_baselines(seed: int = 0, recent_days: float | None = None, num_items: int = 0,
                      progress: bool = False) -> list:
    """The baselines of the table; `recent_days`: add recent-popular over that
    window (the one the GENRE model reads, where it reads one). EASE is left
    out past EASE.MAX_ITEMS items (it is dense in the catalog)."""
    return [
        B.MostPopular(),
        *([B.RecentPopular(recent_days)] if recent_days else []),
        B.ItemKNN(),
        B.ImplicitMF("als", seed=seed),
        B.ImplicitMF("bpr", seed=seed, iterations=100),
        *([B.EASE()] if num_items <= B.EASE.MAX_ITEMS else []),
        # The BCE variant keeps the original's settings (not selected here).
        B.SASRec("bce", dropout=0.2, lr=1e-3, seed=seed, progress=progress),
        B.SASRec("ce", seed=seed, progress=progress),
    ]


def cold_start_inputs(run: Run, stage: str = "test"):
    """One row per (user, held-out item of the stage): the user's training history as input,
    and the time of the interaction with the item (None: the split has no times)."""
    users, hist, targets, times = run.split.cold_stage(stage)
    return users, hist, np.zeros(users.size, np.int64), targets, times


def evaluate_run(run: Run, stage: str = "test", with_baselines: bool = True, progress: bool = True) -> EvaluationReport:
    if run.model_is_refit:
        raise ValueError(f"{run.path}: the served model is a deployment fit that trained on the split's held-out "
                         "interactions; evaluate the selection model (load_run(path, weights='selection'))")
    model, split, cfg = run.model, run.split, run.config
    requests = split.stage(stage)
    users, hist, targets, scen = requests.users, requests.histories, requests.targets, requests.scenarios
    tables = item_tables(model)
    uvec = user_vectors(model, hist, scen)
    # Each request at the time of its target: recent popularity is read then.
    recent_counter = recent_popularity_counter(model, split)
    recent_popularity = stage_recent_popularity(recent_counter, split, stage)
    times = split.stage_times(stage) if split.has_times else None
    ranks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    timings: dict[str, float] = {}
    recent_days = model.cfg.recent_popularity_days if recent_counter is not None else None
    baselines = (default_baselines(cfg.seed, recent_days, split.num_items, progress) if with_baselines
                 else [B.MostPopular()])
    for bl in tqdm(baselines, desc="baselines", disable=not progress, leave=False):
        t0 = time.time()
        bl.fit(split)
        ranks[bl.name] = _baseline_ranks(bl, users, hist, scen, targets, times)
        timings[bl.name] = time.time() - t0
    for name, variant in (("CF-only (alpha=1)", "cf"), ("content-only (alpha=0)", "content"), ("fused", "fused")):
        ranks[name] = retrieval_ranks(model, hist, scen, targets, variant, tables, uvec, recent_popularity)
    ranks["fused + ranker"] = ranked_pipeline_ranks(model, hist, scen, targets, cfg.ranker_depth, tables, uvec,
                                                    recent_popularity)
    # What scoring new items by content alone (as served) costs the warm
    # targets: the same without it, items without CF signal discounted by alpha.
    ranks[DISCOUNTED] = ranked_pipeline_ranks(model, hist, scen, targets, cfg.ranker_depth, tables, uvec,
                                              recent_popularity,
                                              new_items_by_content=False)
    # 95% intervals from resampling the test users (paired across methods):
    # with a few hundred users, NDCG@10 moves by several thousandths with the draw.
    gains = {name: ndcg_gains(r, 10) for name, (r, _) in ranks.items()}
    metrics = {name: summarize(*r) for name, r in ranks.items()}
    pop = metrics["most-popular"]["NDCG@10"]
    rows = {name: MethodRow(m, m["NDCG@10"] / pop if pop > 0 else float("nan"),
                            bootstrap_ci(gains[name], seed=cfg.seed),
                            bootstrap_ci(gains[name], gains["most-popular"], seed=cfg.seed))
            for name, m in metrics.items()}
    # The served model against each peer: NDCG@10 ratio, paired interval.
    versus = {peer: {"NDCG@10 ratio": metrics[SERVED]["NDCG@10"] / metrics[peer]["NDCG@10"]
                     if metrics[peer]["NDCG@10"] > 0 else float("nan"),
                     "ci95": bootstrap_ci(gains[SERVED], gains[peer], seed=cfg.seed)}
              for peer in PEERS if peer in metrics}

    cold: dict[str, ColdStartRow] = {}
    c_users, c_hist, c_scen, c_targets, c_times = cold_start_inputs(run, stage)
    if c_targets.size:
        c_uvec = user_vectors(model, c_hist, c_scen)
        c_recent_popularity = None if recent_counter is None else recent_counter.at(c_times)
        # Second protocol: rank each target among the held-out items only (a
        # "new arrivals" slot); there, no information scores k / #held-out.
        cold_cols = split.cold_stage_items(stage)
        position = {int(item): j for j, item in enumerate(cold_cols)}
        c_pos = np.array([position[int(t)] for t in c_targets], np.int64)
        for name, variant, by_content in (("CF-only (alpha=1)", "cf", True),
                                          ("content-only (alpha=0)", "content", True),
                                          ("fused", "fused", True),
                                          ("fused, new items discounted", "fused", False)):
            c_ranks, _ = retrieval_ranks(model, c_hist, c_scen, c_targets, variant, tables, c_uvec, c_recent_popularity,
                                         by_content)
            among = variant_scores(variant, *c_uvec, tables[0][cold_cols], tables[1][cold_cols],
                                   None if c_recent_popularity is None else c_recent_popularity[:, cold_cols],
                                   by_content,
                                   float(model.new_item_bias))
            hits = hit_probabilities_with_ties(among, c_pos, 20)
            cold[name] = ColdStartRow(recall_at(c_ranks, 20), int(c_ranks.size),
                                      bootstrap_ci(c_ranks < 20, seed=cfg.seed), float(hits.mean()),
                                      bootstrap_ci(hits, seed=cfg.seed))
        c_ranks, _ = _baseline_ranks(B.MostPopular().fit(split), c_users, c_hist, c_scen, c_targets, c_times)
        cold["most-popular"] = ColdStartRow(recall_at(c_ranks, 20), int(c_ranks.size),
                                            bootstrap_ci(c_ranks < 20, seed=cfg.seed),
                                            min(1.0, 20 / max(cold_cols.size, 1)))
    return EvaluationReport(
        run=str(run.path), dataset=run.meta.get("dataset"), stage=stage,
        protocol="leave-last-out by time per user; full-catalog ranking; the user's history excluded",
        users=int(len(users)), items=int(split.num_items), cold_items=int(split.cold_stage_items(stage).size),
        methods=rows, cold_start=cold, baseline_seconds=timings, served_vs_peers=versus,
        weights=run.weights, served_weights=run.meta.get("served_weights", "selection"),
    )
