"""The feedback loop replayed on ml-latest-small by time (issue 16, item 5).

The cleaned interactions in time order: a model trains on the first 60%
(`train`'s settings, deployment fit included); then 3 rounds, each consuming
the next 10% as a feedback log and scored on the 10% after it, every event of
that window a next-item prediction from everything the user did before it
(as the gate scores), through the served pipeline, for:

  frozen       the first model, never updated
  retrain      a full retrain on everything so far (the same `train` and settings)
  update       `genre-serve update` of the previous round's served model, its defaults
               (the gate's verdict decides what is served next; once promoted, the
               candidate is fine-tuned again with the gate's slice, --refit-on-slice)
  gate only    the same with --no-refit-on-slice (the candidate the gate scored is served)

with the wall time of each (the update's including its gate). The first
promoted update's rollout runs under load: a real tritonserver serves its parent while
closed-loop clients ask it, the update is exported and loaded, and every
request is counted. Prints a table and writes JSON (and a PNG with --plot).

    python benchmarks/feedback_loop.py --out runs/feedback \\
        --json benchmarks/results/feedback_loop.json --plot benchmarks/results/feedback_loop.png

A run directory's retrains are kept and reused: `--settings '{"interpolation": 1.0}'` on the same --out
replays only the update chains, with other settings. `--no-retrain` skips the
retrains altogether (no "of retrain" ratios): update settings compared on
their chains' gate slices, the first model trained once per --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from genre_serve.config import TrainConfig
from genre_serve.data import load_builtin
from genre_serve.data.dataset import Dataset
from genre_serve.data.idmap import IdMap
from genre_serve.formats.run_dir import load_run
from genre_serve.formats.update_report import UpdateSettings
from genre_serve.models.recent_popularity import RecentPopularity
from genre_serve.train.trainer import train
from genre_serve.train.update import Requests, event_gains, update

FRACTIONS = (0.6, 0.7, 0.8, 0.9, 1.0)


def prefix_dataset(ds: Dataset, order: np.ndarray, end: int) -> Dataset:
    """The dataset of the first `end` interactions in time order (the whole catalog kept, so that
    every model indexes items alike)."""
    rows = ds.interactions.iloc[np.sort(order[:end])]
    users = np.unique(rows["user"].to_numpy())
    remap = np.full(ds.num_users, -1, np.int64)
    remap[users] = np.arange(users.size)
    inter = rows.assign(user=remap[rows["user"].to_numpy()]).sort_values(["user", "timestamp"], kind="stable")
    return dataclasses.replace(ds, interactions=inter.reset_index(drop=True),
                               users=IdMap(ds.users.external(users)), name=f"{ds.name}-first-{end}")


def write_log(ds: Dataset, order: np.ndarray, start: int, end: int, path: Path) -> None:
    """Interactions start..end (time order) as a feedback log file."""
    rows = ds.interactions.iloc[order[start:end]]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"user_id": ds.users.external(rows["user"]), "item_id": ds.items.external(rows["item"]),
                  "timestamp": rows["timestamp"].to_numpy(), "event": "watch",
                  "scenario": [ds.scenarios[s] for s in rows["scenario"]], "version": ""}).to_csv(path, index=False)


def window_requests(ds: Dataset, order: np.ndarray, start: int, end: int) -> Requests:
    """Every interaction of start..end (time order) as a request: the user's items before it."""
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    df = ds.interactions.assign(rank=rank)
    hist, scen, target, when = [], [], [], []
    for _, g in df.groupby("user", sort=False):
        g = g.sort_values("rank")
        items, r = g["item"].to_numpy(), g["rank"].to_numpy()
        for t in np.flatnonzero((r >= start) & (r < end)):
            hist.append(items[:t])
            scen.append(int(g["scenario"].iloc[t]))
            target.append(items[t])
            when.append(int(g["timestamp"].iloc[t]))
    return Requests(hist, np.array(scen, np.int64), np.array(target, np.int64), np.array(when, np.int64))


def score(run_dir: Path, requests: Requests, popularity: RecentPopularity) -> float:
    """Mean NDCG@10, recent popularity as of each request (as the gate reads it)."""
    run = load_run(run_dir)
    return float(event_gains(run.model, requests, run.config.ranker_depth, popularity).mean())


def timed_train(ds: Dataset, cfg: TrainConfig, out: Path) -> float:
    if (out / "meta.json").exists():
        return json.loads((out / "meta.json").read_text())["seconds"]["total"]
    t0 = time.perf_counter()
    train(ds, cfg, out, progress=False)
    return time.perf_counter() - t0


def rollout_under_load(first: Path, candidate: Path, requests, work: Path) -> dict:
    """Serves `first`, rolls `candidate` out under closed-loop load; every request counted."""
    from genre_serve.cli.common import roll_out
    from genre_serve.export.repository import export_run
    from genre_serve.loadtest.traffic import BackgroundTraffic
    from genre_serve.serving.launcher import TritonServer

    repo = work / "repository"
    shutil.rmtree(repo, ignore_errors=True)
    export_run(first, repo)
    run = load_run(first)
    histories = [run.items.external(h[-50:]) for h in requests.histories[:200] if len(h)]
    with TritonServer(repo) as server:
        with BackgroundTraffic(server.http_url, histories, k=10, concurrency=4, timeout_s=10) as traffic:
            traffic.wait_for_answers(100)
            version = export_run(candidate, repo).version
            roll_out(server.http_url, version, repo)
            traffic.wait_for_answers(100, since=time.monotonic())
        summary = traffic.summary()
    versions = sorted({o.version for o in traffic.outcomes if o.ok and o.version is not None})
    return {"requests": summary["requests"], "ok": summary["ok"], "failed": summary["requests"] - summary["ok"],
            "versions_seen": versions, "new_version": version}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/feedback"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    p.add_argument("--plot", type=Path)
    p.add_argument("--no-load", action="store_true", help="skip the rollout under load")
    p.add_argument("--rounds", type=int, default=3, choices=[1, 2, 3])
    p.add_argument("--no-retrain", action="store_true",
                   help="skip the full retrains (the update chains only, without their ratios)")
    p.add_argument("--settings", type=json.loads, default={},
                   help="UpdateSettings fields for both update chains, as JSON (e.g. '{\"interpolation\": 1.0}'; "
                        "default: update's defaults)")
    args = p.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(TrainConfig().with_env(), seed=args.seed)
    ds = load_builtin("movielens-small", cfg.data)
    order = np.lexsort((np.arange(len(ds.interactions)), ds.interactions["timestamp"].to_numpy()))
    cuts = [int(round(f * len(order))) for f in FRACTIONS]
    # Only interactions before each request count (RecentPopularity.at reads [t - window, t)).
    popularity = RecentPopularity(ds.interactions["item"].to_numpy(), ds.interactions["timestamp"].to_numpy(),
                                  ds.num_items, cfg.model.recent_popularity_days or 14.0)
    print(f"{len(order)} interactions; cuts at {cuts}", flush=True)
    first = out / "train_60"
    t_first = timed_train(prefix_dataset(ds, order, cuts[0]), cfg, first)
    rounds, parents = [], {"update": first, "gate only": first}
    load = None
    for r in range(1, args.rounds + 1):
        consumed, scored = (cuts[r - 1], cuts[r]), (cuts[r], cuts[r + 1])
        requests = window_requests(ds, order, *scored)
        log = out / f"log_{r}" / "events.csv"
        write_log(ds, order, *consumed, log)
        row = {"round": r, "consumed": list(consumed), "scored": list(scored), "scored_events": len(requests)}
        row["frozen"] = {"ndcg@10": score(first, requests, popularity)}
        if not args.no_retrain:
            retrain = out / f"train_{int(FRACTIONS[r] * 100)}"
            seconds = timed_train(prefix_dataset(ds, order, cuts[r]), cfg, retrain)
            row["retrain"] = {"ndcg@10": score(retrain, requests, popularity), "seconds": seconds}
        for variant, slice_refit in (("update", True), ("gate only", False)):
            cand = out / f"{variant.replace(' ', '_')}_{r}"
            shutil.rmtree(cand, ignore_errors=True)  # a rerun's candidate replaces the last one's
            serving = parents[variant]
            t0 = time.perf_counter()
            result = update(serving, log, cand, settings=UpdateSettings(**{**args.settings, "seed": args.seed,
                                                                           "refit_on_slice": slice_refit}),
                            progress=False)
            seconds = time.perf_counter() - t0
            served = cand if result.promoted else parents[variant]
            row[variant] = {"ndcg@10": score(served, requests, popularity), "seconds": seconds,
                            "verdict": result.gate.as_dict()["verdict"], "gate": result.gate.as_dict()}
            if result.promoted:
                parents[variant] = cand
            if variant == "update" and load is None and not args.no_load and result.promoted:
                load = dict(rollout_under_load(serving, cand, requests, out), round=r)
        for variant in ("update", "gate only"):
            retrained = row.get("retrain")
            row[variant]["of_retrain_ndcg"] = retrained and row[variant]["ndcg@10"] / retrained["ndcg@10"]
            row[variant]["of_retrain_time"] = retrained and row[variant]["seconds"] / retrained["seconds"]
        rounds.append(row)
        print(json.dumps(row, default=float), flush=True)
    print(f"\nfeedback loop on ml-latest-small by time (seed {args.seed}; first model {t_first:.0f} s)")
    print(f"{'round':>5} {'events':>7} {'frozen':>8} {'retrain':>8} {'update':>8} {'gate only':>9} "
          f"{'upd/retr':>8} {'t retr':>7} {'t upd':>6} {'t ratio':>7} {'gate':>7} verdict")

    def cell(value, fmt: str, width: int) -> str:
        return f"{value:>{width}{fmt}}" if value is not None else f"{'-':>{width}}"

    for row in rounds:
        u, retrained = row["update"], row.get("retrain") or {}
        print(f"{row['round']:>5} {row['scored_events']:>7} {row['frozen']['ndcg@10']:>8.4f} "
              f"{cell(retrained.get('ndcg@10'), '.4f', 8)} {u['ndcg@10']:>8.4f} {row['gate only']['ndcg@10']:>9.4f} "
              f"{cell(u['of_retrain_ndcg'], '.3f', 8)} {cell(retrained.get('seconds'), '.0f', 6)}s "
              f"{u['seconds']:>5.0f}s {cell(u['of_retrain_time'], '.3f', 7)} {u['gate']['candidate_ndcg']:>7.4f} "
              f"{u['verdict']}")
    if load:
        print(f"rollout under load (round {load['round']}): {load['requests']} requests, {load['failed']} failed, "
              f"versions answered {load['versions_seen']}")
    doc = {"dataset": "movielens-small", "seed": args.seed, "first_model_seconds": t_first, "rounds": rounds,
           "rollout_under_load": load,
           "settings": dataclasses.asdict(UpdateSettings(**{**args.settings, "seed": args.seed})),
           "date": time.strftime("%Y-%m-%d")}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, default=float))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for variant in [v for v in ("frozen", "retrain", "update", "gate only") if rounds[0].get(v)]:
            ax.plot([r["round"] for r in rounds], [r[variant]["ndcg@10"] for r in rounds], marker="o", label=variant)
        ax.set_xlabel("round (10% of the interactions consumed each)")
        ax.set_ylabel("NDCG@10 on the next 10%")
        ax.set_xticks([1, 2, 3])
        ax.legend()
        ax.set_title("feedback loop, ml-latest-small by time")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
