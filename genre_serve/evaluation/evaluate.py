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
    retrieval_ranks,
    user_vectors,
    variant_scores,
)
from genre_serve.evaluation.metrics import ranks_of_targets, recall_at, recall_at_with_ties, summarize
from genre_serve.train.run_dir import Run

COLUMNS = ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20", "HitRate@10", "MRR", "AUC")


def _baseline_ranks(model, users, hist, scen, targets, batch=512):
    ranks, eligible = [], []
    for s in range(0, len(hist), batch):
        scores = model.score(users[s : s + batch], hist[s : s + batch], scen[s : s + batch])
        r, e = ranks_of_targets(scores, hist[s : s + batch], targets[s : s + batch])
        ranks.append(r)
        eligible.append(e)
    return np.concatenate(ranks), np.concatenate(eligible)


def default_baselines(seed: int = 0) -> list:
    return [
        B.MostPopular(),
        B.ItemKNN(),
        B.ImplicitMF("als", seed=seed),
        B.ImplicitMF("bpr", seed=seed, iterations=100),
        B.SASRec(seed=seed),
    ]


def cold_start_inputs(run: Run):
    """One row per (user, held-out item): the user's training history as input."""
    split = run.split
    users, hist, scen, targets = [], [], [], []
    for u, cold in enumerate(split.cold_targets):
        for item in cold:
            users.append(u)
            hist.append(split.train_items[u])
            scen.append(0)
            targets.append(item)
    return np.array(users, np.int64), hist, np.array(scen, np.int64), np.array(targets, np.int64)


def evaluate_run(run: Run, stage: str = "test", with_baselines: bool = True, progress: bool = True) -> dict:
    model, split, cfg = run.model, run.split, run.config
    users, hist, _, targets, scen = split.stage(stage)
    tables = item_tables(model)
    uvec = user_vectors(model, hist, scen)
    rows: dict[str, dict] = {}
    timings: dict[str, float] = {}
    baselines = default_baselines(cfg.seed) if with_baselines else [B.MostPopular()]
    for bl in tqdm(baselines, desc="baselines", disable=not progress, leave=False):
        t0 = time.time()
        bl.fit(split)
        rows[bl.name] = summarize(*_baseline_ranks(bl, users, hist, scen, targets))
        timings[bl.name] = time.time() - t0
    for name, variant in (("CF-only (alpha=1)", "cf"), ("content-only (alpha=0)", "content"), ("fused", "fused")):
        rows[name] = summarize(*retrieval_ranks(model, hist, scen, targets, variant, tables, uvec))
    rows["fused + ranker"] = summarize(
        *ranked_pipeline_ranks(model, hist, scen, targets, cfg.ranker_depth, tables, uvec)
    )
    pop = rows["most-popular"]["NDCG@10"]
    for r in rows.values():
        r["NDCG@10 / most-popular"] = r["NDCG@10"] / pop if pop > 0 else float("nan")

    cold = {}
    c_users, c_hist, c_scen, c_targets = cold_start_inputs(run)
    if c_targets.size:
        c_uvec = user_vectors(model, c_hist, c_scen)
        # Second protocol: rank each target among the held-out items only (a
        # "new arrivals" slot); there, no information scores k / #held-out.
        cold_cols = split.cold_items
        position = {int(item): j for j, item in enumerate(cold_cols)}
        c_pos = np.array([position[int(t)] for t in c_targets], np.int64)
        for name, variant in (("CF-only (alpha=1)", "cf"), ("content-only (alpha=0)", "content"), ("fused", "fused")):
            ranks, _ = retrieval_ranks(model, c_hist, c_scen, c_targets, variant, tables, c_uvec)
            among = variant_scores(variant, *c_uvec, tables[0][cold_cols], tables[1][cold_cols])
            cold[name] = {"Recall@20": recall_at(ranks, 20), "pairs": int(ranks.size),
                          "Recall@20 among held-out": recall_at_with_ties(among, c_pos, 20)}
        ranks, _ = _baseline_ranks(B.MostPopular().fit(split), c_users, c_hist, c_scen, c_targets)
        cold["most-popular"] = {"Recall@20": recall_at(ranks, 20), "pairs": int(ranks.size),
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
    head = f"{'method':<24}" + "".join(f"{c:>11}" for c in COLUMNS) + f"{'vs pop':>8}"
    lines = [
        f"{report['dataset']}: {report['stage']} split, {report['users']} users, {report['items']} items "
        f"({report['protocol']})",
        head,
        "-" * len(head),
    ]
    for name, r in report["methods"].items():
        lines.append(f"{name:<24}" + "".join(f"{r[c]:>11.4f}" for c in COLUMNS)
                     + f"{r['NDCG@10 / most-popular']:>7.2f}x")
    if report["cold_start"]:
        pairs = next(iter(report["cold_start"].values()))["pairs"]
        lines.append("")
        lines.append(f"cold start: {report['cold_items']} items held out of training entirely, "
                     f"{pairs} (user, item) pairs; Recall@20 over the full catalog, and among the held-out "
                     f"items only (no information: {min(1.0, 20 / max(report['cold_items'], 1)):.4f})")
        for name, r in report["cold_start"].items():
            among = r.get("Recall@20 among held-out", float("nan"))
            lines.append(f"  {name:<24} Recall@20 {r['Recall@20']:.4f}   among held-out {among:.4f}")
    return "\n".join(lines)
