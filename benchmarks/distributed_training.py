"""Single-process vs data-parallel training (issue 17, item 4).

For each seed, `genre-serve train` on one split with --nproc 1 and then
--nproc 2 (torchrun, DDP over gloo; alternating, so that the VM's drift hits
both alike), the selection stage only (--no-refit: the deployment fit would
double the time and cannot be scored on the split). Reports the wall time of
each command and the selection model's test NDCG@10 (fused + ranker, in
process), the mean and spread over seeds, and whether the 2-process mean lies
within one seed-spread (max - min of the single-process seeds) of the
single-process mean. Prints a table and writes JSON.

    python benchmarks/distributed_training.py --seeds 0 1 2 --out runs/ddp \\
        --json benchmarks/results/distributed_training.json

--merge EARLIER.json adds an earlier run's rows for seeds not run this time
(a seed takes about 16 minutes here, so seeds can be run in separate sittings);
each row keeps the date it was measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def train_once(dataset: str, seed: int, nproc: int, out: Path) -> float:
    command = [sys.executable, "-m", "genre_serve.cli", "train", "--dataset", dataset, "--seed", str(seed),
               "--nproc", str(nproc), "--no-refit", "--quiet", "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(command, check=True, cwd=out.parent)
    return time.perf_counter() - t0


def selection_scores(run_dir: Path) -> dict:
    from genre_serve.evaluation.evaluate import SERVED, evaluate_run
    from genre_serve.formats.run_dir import load_run

    report = evaluate_run(load_run(run_dir, weights="selection"), "test", with_baselines=False, progress=False)
    row = report.methods[SERVED]
    meta = json.loads((run_dir / "meta.json").read_text())
    valid = max(h["valid_ndcg@10"] for h in meta["ranker_history"] or meta["retrieval_history"])
    return {"test_ndcg@10": row.metrics["NDCG@10"], "test_ndcg@10_ci95": row.ndcg10_ci95, "valid_ndcg@10": valid,
            "training_seconds": meta["seconds"]["total"], "processes": meta.get("processes", 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="movielens-small")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=Path("runs/ddp"))
    p.add_argument("--json", type=Path)
    p.add_argument("--merge", type=Path, help="an earlier JSON of this script: its rows for other seeds join these")
    args = p.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        for nproc in args.nproc:
            run_dir = args.out / f"seed{seed}_nproc{nproc}"
            wall = train_once(args.dataset, seed, nproc, run_dir)
            rows.append({"seed": seed, "nproc": nproc, "date": time.strftime("%Y-%m-%d"), "command_seconds": wall,
                         **selection_scores(run_dir)})
            r = rows[-1]
            print(f"seed {seed} nproc {nproc}: {wall:.0f} s, valid {r['valid_ndcg@10']:.4f}, "
                  f"test {r['test_ndcg@10']:.4f}", flush=True)
    if args.merge:
        earlier = json.loads(args.merge.read_text())
        rows += [{"date": earlier["date"], **r} for r in earlier["runs"]
                 if r["seed"] not in args.seeds and r["nproc"] in args.nproc]
        rows.sort(key=lambda r: (r["seed"], r["nproc"]))
    summary = {}
    for nproc in args.nproc:
        mine = [r for r in rows if r["nproc"] == nproc]
        ndcg = np.array([r["test_ndcg@10"] for r in mine])
        summary[nproc] = {"seeds": len(mine), "test_ndcg@10_mean": float(ndcg.mean()),
                          "test_ndcg@10_spread": float(ndcg.max() - ndcg.min()),
                          "command_seconds_median": float(np.median([r["command_seconds"] for r in mine]))}
    base = summary[args.nproc[0]]
    print(f"\n{'processes':>9} {'seeds':>5} {'test NDCG@10 mean':>18} {'spread':>8} {'time (median)':>14} "
          f"{'time ratio':>10}")
    for nproc, s in summary.items():
        s["time_vs_first"] = s["command_seconds_median"] / base["command_seconds_median"]
        s["within_one_spread_of_first"] = bool(abs(s["test_ndcg@10_mean"] - base["test_ndcg@10_mean"])
                                               <= base["test_ndcg@10_spread"])
        print(f"{nproc:>9} {s['seeds']:>5} {s['test_ndcg@10_mean']:>18.4f} {s['test_ndcg@10_spread']:>8.4f} "
              f"{s['command_seconds_median']:>13.0f}s {s['time_vs_first']:>9.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "dataset": args.dataset,
                                         "runs": rows, "summary": summary}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
