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
    recent_popularity,
    retrieval_ranks,
    stage_trend,
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
from genre_serve.train.run_dir import Run

DISCOUNTED = "fused + ranker, new items discounted"
COLUMNS = ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20", "HitRate@10", "MRR", "AUC")


def _baseline_ranks(model, users, hist, scen, targets, times=None, batch=512):
    ranks, eligible = [], []
    for s in range(0, len(hist), batch):
        scores = model.score(users[s : s + batch], hist[s : s + batch], scen[s : s + batch],
                             None if times is None else times[s : s + batch])
        r, e = ranks_of_targets(scores, hist[s : s + batch], targets[s : s + batch])
        ranks.append(r)
        eligible.append(e)
    return np.concatenate(ranks), np.concatenate(eligible)


def default_baselines(seed: int = 0, recent_days: float | None = None) -> list:
    """The baselines of the table; `recent_days`: add recent-popular over that
    window (the one the GENRE model reads, where it reads one)."""
    return [
        B.MostPopular(),
        *([B.RecentPopular(recent_days)] if recent_days else []),
        B.ItemKNN(),
        B.ImplicitMF("als", seed=seed),
        B.ImplicitMF("bpr", seed=seed, iterations=100),
        B.SASRec(seed=seed),
    ]


def cold_start_inputs(run: Run):
    """One row per (user, held-out item): the user's training history as input,
    and the time of the interaction with the item (None: the split has no times)."""
    split = run.split
    users, hist, scen, targets, times = [], [], [], [], []
    for u, cold in enumerate(split.cold_targets):
        for j, item in enumerate(cold):
            users.append(u)
            hist.append(split.train_items[u])
            scen.append(0)
            targets.append(item)
            times.append(split.cold_times[u][j] if split.has_times else 0)
    return (np.array(users, np.int64), hist, np.array(scen, np.int64), np.array(targets, np.int64),
            np.array(times, np.int64) if split.has_times else None)


def evaluate_run(run: Run, stage: str = "test", with_baselines: bool = True, progress: bool = True) -> dict:
    model, split, cfg = run.model, run.split, run.config
    users, hist, _, targets, scen = split.stage(stage)
    tables = item_tables(model)
    uvec = user_vectors(model, hist, scen)
    # Each request at the time of its target: recent popularity is read then.
    trends = recent_popularity(model, split)
    trend = stage_trend(trends, split, stage)
    times = split.stage_times(stage) if split.has_times else None
    ranks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    timings: dict[str, float] = {}
    recent_days = model.cfg.recent_popularity_days if trends is not None else None
    baselines = default_baselines(cfg.seed, recent_days) if with_baselines else [B.MostPopular()]
    for bl in tqdm(baselines, desc="baselines", disable=not progress, leave=False):
        t0 = time.time()
        bl.fit(split)
        ranks[bl.name] = _baseline_ranks(bl, users, hist, scen, targets, times)
        timings[bl.name] = time.time() - t0
    for name, variant in (("CF-only (alpha=1)", "cf"), ("content-only (alpha=0)", "content"), ("fused", "fused")):
        ranks[name] = retrieval_ranks(model, hist, scen, targets, variant, tables, uvec, trend)
    ranks["fused + ranker"] = ranked_pipeline_ranks(model, hist, scen, targets, cfg.ranker_depth, tables, uvec, trend)
    # What scoring new items by content alone (as served) costs the warm
    # targets: the same without it, items without CF signal discounted by alpha.
    ranks[DISCOUNTED] = ranked_pipeline_ranks(model, hist, scen, targets, cfg.ranker_depth, tables, uvec, trend,
                                              new_items_by_content=False)
    rows = {name: summarize(*r) for name, r in ranks.items()}
    # 95% intervals from resampling the test users (paired across methods):
    # with a few hundred users, NDCG@10 moves by several thousandths with the draw.
    gains = {name: ndcg_gains(r, 10) for name, (r, _) in ranks.items()}
    pop = rows["most-popular"]["NDCG@10"]
    for name, r in rows.items():
        r["NDCG@10 / most-popular"] = r["NDCG@10"] / pop if pop > 0 else float("nan")
        r["NDCG@10 ci95"] = bootstrap_ci(gains[name], seed=cfg.seed)
        r["NDCG@10 / most-popular ci95"] = bootstrap_ci(gains[name], gains["most-popular"], seed=cfg.seed)

    cold = {}
    c_users, c_hist, c_scen, c_targets, c_times = cold_start_inputs(run)
    if c_targets.size:
        c_uvec = user_vectors(model, c_hist, c_scen)
        c_trend = None if trends is None else trends.at(c_times)
        # Second protocol: rank each target among the held-out items only (a
        # "new arrivals" slot); there, no information scores k / #held-out.
        cold_cols = split.cold_items
        position = {int(item): j for j, item in enumerate(cold_cols)}
        c_pos = np.array([position[int(t)] for t in c_targets], np.int64)
        for name, variant, by_content in (("CF-only (alpha=1)", "cf", True),
                                          ("content-only (alpha=0)", "content", True),
                                          ("fused", "fused", True),
                                          ("fused, new items discounted", "fused", False)):
            c_ranks, _ = retrieval_ranks(model, c_hist, c_scen, c_targets, variant, tables, c_uvec, c_trend,
                                         by_content)
            among = variant_scores(variant, *c_uvec, tables[0][cold_cols], tables[1][cold_cols],
                                   None if c_trend is None else c_trend[:, cold_cols], by_content,
                                   float(model.new_item_bias))
            hits = hit_probabilities_with_ties(among, c_pos, 20)
            cold[name] = {"Recall@20": recall_at(c_ranks, 20), "pairs": int(c_ranks.size),
                          "Recall@20 ci95": bootstrap_ci(c_ranks < 20, seed=cfg.seed),
                          "Recall@20 among held-out": float(hits.mean()),
                          "Recall@20 among held-out ci95": bootstrap_ci(hits, seed=cfg.seed)}
        c_ranks, _ = _baseline_ranks(B.MostPopular().fit(split), c_users, c_hist, c_scen, c_targets, c_times)
        cold["most-popular"] = {"Recall@20": recall_at(c_ranks, 20), "pairs": int(c_ranks.size),
                                "Recall@20 ci95": bootstrap_ci(c_ranks < 20, seed=cfg.seed),
                                "Recall@20 among held-out": min(1.0, 20 / max(cold_cols.size, 1))}
    return {
        "run": str(run.path),
        "dataset": run.meta.get("dataset"),
        "stage": stage,
        "protocol": "leave-last-out by time per user; full-catalog ranking; the user's history excluded",
        "users": int(len(users)),
        "items": int(split.num_items),
        "cold_items": int(split.cold_items.size),
        "methods": rows,
        "cold_start": cold,
        "baseline_seconds": timings,
    }


def format_table(report: dict) -> str:
    w = max(24, *(len(n) for n in report["methods"]))
    head = f"{'method':<{w}}" + "".join(f"{c:>11}" for c in COLUMNS) + f"{'vs pop':>8}  {'95% interval':<14}"
    lines = [
        f"{report['dataset']}: {report['stage']} split, {report['users']} users, {report['items']} items "
        f"({report['protocol']})",
        head,
        "-" * len(head),
    ]
    for name, r in report["methods"].items():
        lines.append(f"{name:<{w}}" + "".join(f"{r[c]:>11.4f}" for c in COLUMNS)
                     + f"{r['NDCG@10 / most-popular']:>7.2f}x  {_interval(r.get('NDCG@10 / most-popular ci95'), 2)}")
    lines.append("(vs pop: NDCG@10 over most-popular's; its 95% interval from resampling the test users, paired)")
    if report["cold_start"]:
        pairs = next(iter(report["cold_start"].values()))["pairs"]
        lines.append("")
        lines.append(f"cold start: {report['cold_items']} items held out of training entirely, "
                     f"{pairs} (user, item) pairs; Recall@20 over the full catalog, and among the held-out "
                     f"items only (no information: {min(1.0, 20 / max(report['cold_items'], 1)):.4f})")
        for name, r in report["cold_start"].items():
            lines.append(f"  {name:<28} Recall@20 {r['Recall@20']:.4f} {_interval(r.get('Recall@20 ci95'))}"
                         f"   among held-out {r['Recall@20 among held-out']:.4f} "
                         f"{_interval(r.get('Recall@20 among held-out ci95'))}")
        lines.append("  (95% intervals: bootstrap over the (user, item) pairs)")
    return "\n".join(lines)


def _interval(ci, digits: int = 4) -> str:
    if ci is None or any(np.isnan(v) for v in ci):
        return ""
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
