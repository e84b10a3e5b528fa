"""How `update`'s settings were chosen: variants of one round of the replay
benchmark (benchmarks/feedback_loop.py, whose --out directory this reads),
scored on that round's gate slice (validation: the update never trains on
it) and, for the record, on the window the replay scores (test).

    # update settings, each from the run the replay's update chain served before ROUND
    python benchmarks/feedback_selection.py settings 2 '{}' '{"epochs": 3}' '{"interpolation": 1.0}'
    # the fine-tuned candidate (interpolation 1, no slice refit) mixed with its parent by BETA
    python benchmarks/feedback_selection.py interpolate 3 0.25 0.5 0.75 --modes all encoder keep-new fold-anchor
    # NDCG@10 of the scored window by group (target item seen before the logs, first seen in them, new)
    python benchmarks/feedback_selection.py groups 2 train_60 train_80 update_1 update_2
    # the same by retrieval channel (CF alone, content alone, fused; no ranker), with each model's fusion
    python benchmarks/feedback_selection.py channels 2 train_80 update_2 gate_only_2

Prints a table and writes JSON with --json. Seed 0, one round at a time:
the figures in benchmarks/RESULTS.md came from these commands. `settings`
updates with seed 0 unless a spec names one (`'{"seed": 1}'`): the same
setting's gate moves by more between update seeds than between close
settings (RESULTS.md, 2026-12-06), so compare settings on one seed.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from feedback_loop import FRACTIONS, score, window_requests, write_log

from genre_serve.config import TrainConfig
from genre_serve.data import load_builtin
from genre_serve.formats.run_dir import load_run
from genre_serve.formats.update_report import UpdateSettings
from genre_serve.models.recent_popularity import RecentPopularity
from genre_serve.train.update import (
    Requests,
    build_sequences,
    event_gains,
    fold_in_new_rows,
    gate_requests,
    past_popularity,
    read_log,
    run_events,
    update,
)


class Replay:
    """The replay's data, cuts and directories for one round."""

    def __init__(self, out: Path, round_: int):
        self.out, self.round = out, round_
        self.cfg = TrainConfig().with_env()
        self.ds = load_builtin("movielens-small", self.cfg.data)
        inter = self.ds.interactions
        self.order = np.lexsort((np.arange(len(inter)), inter["timestamp"].to_numpy()))
        self.cuts = [int(round(f * len(self.order))) for f in FRACTIONS]
        self.popularity = RecentPopularity(inter["item"].to_numpy(), inter["timestamp"].to_numpy(),
                                           self.ds.num_items, self.cfg.model.recent_popularity_days or 14.0)
        self.requests = window_requests(self.ds, self.order, self.cuts[round_], self.cuts[round_ + 1])
        self.log = out / f"log_{round_}" / "events.csv"
        if not self.log.exists():
            write_log(self.ds, self.order, self.cuts[round_ - 1], self.cuts[round_], self.log)
        # What the replay's update chain served before this round.
        self.parent = out / "train_60"
        for r in range(1, round_):
            if (out / f"update_{r}").exists() and load_run(out / f"update_{r}").meta["update"]["gate"]["promoted"]:
                self.parent = out / f"update_{r}"

    def test(self, model) -> float:
        return float(event_gains(model, self.requests, self.cfg.ranker_depth, self.popularity).mean())

    def gate_slice(self, parent_dir: Path) -> tuple[Requests, RecentPopularity | None]:
        parent = load_run(parent_dir)
        known = run_events(parent)
        events, _ = read_log(self.log, parent, known, set(), UpdateSettings())
        seqs = build_sequences(parent, known, events, [], UpdateSettings().holdout_fraction)
        return gate_requests(seqs), past_popularity(seqs, parent.config.model.recent_popularity_days)

    def variant(self, settings: UpdateSettings) -> Path:
        tag = hashlib.md5(json.dumps(settings.__dict__, sort_keys=True, default=str).encode()).hexdigest()[:8]
        dest = self.out / f"selection_{self.round}_{tag}"
        shutil.rmtree(dest, ignore_errors=True)
        return dest


def settings_rows(rp: Replay, specs: list[str]) -> list[dict]:
    rows = []
    for spec in specs:
        settings = UpdateSettings(**{"seed": 0, "refit_on_slice": False, **json.loads(spec)})
        dest = rp.variant(settings)
        t0 = time.perf_counter()
        result = update(rp.parent, rp.log, dest, settings=settings, progress=False)
        seconds = time.perf_counter() - t0
        row = {"settings": spec, "gate_parent": result.gate.parent_ndcg, "gate": result.gate.candidate_ndcg,
               "test": score(dest, rp.requests, rp.popularity), "seconds": seconds}
        print(f"{spec:<50} gate {row['gate']:.4f} (parent {row['gate_parent']:.4f})  test {row['test']:.4f}  "
              f"{seconds:.0f} s", flush=True)
        rows.append(row)
    return rows


def mixed(parent, candidate, folded, beta: float, mode: str):
    """parent + beta x (candidate - parent): every parameter ("all"), the
    encoder only, or all with the rows of items the parent had no CF row
    for kept fine-tuned ("keep-new") or mixed from their fold-in rows;
    "keep-content": as "keep-new", with the content tower kept fine-tuned too."""
    p, c, f = parent.state_dict(), candidate.state_dict(), folded.state_dict()
    names = {n for n, _ in candidate.named_parameters()}
    state = dict(c)
    for k in names:
        if (mode == "encoder" and k.startswith("items.")) or (mode == "keep-content" and k.startswith("items.proj.")):
            continue
        state[k] = p[k] + beta * (c[k] - p[k])
    fresh = (p["items.cf.weight"].abs().sum(1) == 0)[:, None]
    for k in ("items.cf.weight", "items.bias.weight"):
        if k in names and mode in ("keep-new", "keep-content"):
            state[k] = torch.where(fresh, c[k], state[k])
        if k in names and mode == "fold-anchor":
            state[k] = torch.where(fresh, f[k] + beta * (c[k] - f[k]), state[k])
    model = copy.deepcopy(candidate)
    model.load_state_dict(state)
    return model.eval()


def interpolate_rows(rp: Replay, betas: list[float], modes: list[str]) -> list[dict]:
    dest = rp.variant(UpdateSettings(interpolation=1.0, refit_on_slice=False))
    update(rp.parent, rp.log, dest, settings=UpdateSettings(seed=0, interpolation=1.0, refit_on_slice=False),
           progress=False)
    parent, candidate = load_run(rp.parent).model, load_run(dest)
    folded = copy.deepcopy(parent)
    fold_in_new_rows(folded, candidate.split)
    requests, popularity = rp.gate_slice(rp.parent)
    depth = rp.cfg.ranker_depth
    gate = lambda m: float(event_gains(m, requests, depth, popularity).mean())  # noqa: E731
    rows = [{"beta": 0.0, "mode": "parent", "gate": gate(parent), "test": rp.test(parent)},
            {"beta": 1.0, "mode": "fine-tuned", "gate": gate(candidate.model), "test": rp.test(candidate.model)}]
    for beta in betas:
        for mode in modes:
            m = mixed(parent, candidate.model, folded, beta, mode)
            rows.append({"beta": beta, "mode": mode, "gate": gate(m), "test": rp.test(m)})
    for r in rows:
        print(f"beta {r['beta']:<5} {r['mode']:<12} gate {r['gate']:.4f}  test {r['test']:.4f}", flush=True)
    return rows


def channel_rows(rp: Replay, runs: list[str]) -> list[dict]:
    """Retrieval NDCG@10 and Recall@100 of each channel on the scored window, by group of the target item."""
    from genre_serve.evaluation.genre_eval import retrieval_ranks
    from genre_serve.evaluation.metrics import ndcg_gains
    from genre_serve.train.calibration import fusion_parameters

    groups = target_groups(rp)
    req, rows = rp.requests, []
    for name in runs:
        model = load_run(rp.out / name).model
        n = model.items.num_items
        known, hist = req.within_catalog(n)
        recent = rp.popularity.at(req.times[known])[:, :n] if model.cfg.recent_popularity else None
        fusion = fusion_parameters(model)
        print(f"{name}: alpha {np.round(fusion['alpha'], 3)}, recent-popularity weight "
              f"{fusion['recent_popularity_weight']}")
        for variant in ("cf", "content", "fused"):
            ranks, _ = retrieval_ranks(model, hist, req.scenarios[known], req.targets[known], variant,
                                       recent_popularity=recent)
            for g, mask in groups.items():
                m = mask[known]
                row = {"run": name, "channel": variant, "group": g, "events": int(m.sum()),
                       "ndcg@10": float(ndcg_gains(ranks[m], 10).mean()), "recall@100": float((ranks[m] < 100).mean())}
                print(f"  {variant:<8} {g:<30} NDCG@10 {row['ndcg@10']:.4f}  Recall@100 {row['recall@100']:.3f}")
                rows.append(row)
    return rows


def target_groups(rp: Replay) -> dict[str, np.ndarray]:
    """The scored window's events by when their target item was first seen."""
    inter = rp.ds.interactions
    rank = np.empty(len(rp.order), np.int64)
    rank[rp.order] = np.arange(len(rp.order))
    first = pd.Series(rank).groupby(inter["item"].to_numpy()).min()
    item_first = np.full(rp.ds.num_items, np.iinfo(np.int64).max)
    item_first[first.index] = first.to_numpy()
    when = item_first[rp.requests.targets]
    return {"all": np.ones(len(when), bool), "item seen in the first 60%": when < rp.cuts[0],
            "item first seen in the logs": (when >= rp.cuts[0]) & (when < rp.cuts[rp.round]),
            "item new in the window": when >= rp.cuts[rp.round]}


def group_rows(rp: Replay, runs: list[str]) -> list[dict]:
    groups = target_groups(rp)
    gains = {}
    for name in runs:
        run = load_run(rp.out / name)
        gains[name] = event_gains(run.model, rp.requests, run.config.ranker_depth, rp.popularity)
    print(f"{'group':<30}{'events':>7}" + "".join(f"{n:>16}" for n in runs))
    rows = []
    for g, mask in groups.items():
        row = {"group": g, "events": int(mask.sum()), **{n: float(v[mask].mean()) for n, v in gains.items()}}
        print(f"{g:<30}{row['events']:>7}" + "".join(f"{row[n]:>16.4f}" for n in runs))
        rows.append(row)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["settings", "interpolate", "groups", "channels"])
    p.add_argument("round", type=int, choices=[1, 2, 3])
    p.add_argument("args", nargs="*", help="settings: JSON of UpdateSettings fields; interpolate: betas; "
                                            "groups, channels: run directories under --out")
    p.add_argument("--modes", nargs="+", default=["all"], choices=["all", "encoder", "keep-content", "keep-new",
                                                                   "fold-anchor"])
    p.add_argument("--out", type=Path, default=Path("runs/feedback"), help="feedback_loop.py's --out")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    rp = Replay(args.out.resolve(), args.round)
    print(f"round {args.round}: parent {rp.parent.name}, {len(rp.requests)} scored events", flush=True)
    if args.what == "settings":
        rows = settings_rows(rp, args.args or ["{}"])
    elif args.what == "interpolate":
        rows = interpolate_rows(rp, [float(b) for b in args.args or [0.5]], args.modes)
    elif args.what == "channels":
        rows = channel_rows(rp, args.args)
    else:
        rows = group_rows(rp, args.args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"what": args.what, "round": args.round, "parent": rp.parent.name,
                                         "rows": rows, "date": time.strftime("%Y-%m-%d")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
