"""Serving latency of genre_recommend at concurrency 1, next to the in-process
pipeline answering the same requests, so the serving overhead is a measured
number. One process: export -> tritonserver on loopback -> requests.

    python benchmarks/bench_serving.py --run-dir runs/quickstart [--requests 300]

The run must be trained on ml-latest-small (the quickstart's run is); with no
run at --run-dir, a 1-epoch model is trained there first (latency does not
depend on model quality).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def percentiles(samples_s: list[float]) -> dict:
    ms = np.array(samples_s) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "n": int(ms.size)}


def timed(fn, requests, warmup: int = 20) -> list[float]:
    for history, k in requests[:warmup]:
        fn(history, k)
    out = []
    for history, k in requests:
        t0 = time.perf_counter()
        fn(history, k)
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=Path("runs/quickstart"))
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/bench_serving.json"))
    args = ap.parse_args(argv)

    from genre_serve.client import GenreClient
    from genre_serve.export.repository import export_run
    from genre_serve.formats.run_dir import load_run
    from genre_serve.serving.launcher import TritonServer
    from genre_serve.serving.pipeline import InProcessRecommender

    if not (args.run_dir / "model.pt").exists():
        from genre_serve.config import TrainConfig
        from genre_serve.data import load_builtin
        from genre_serve.train.trainer import train

        print(f"no run at {args.run_dir}: training a 1-epoch model on ml-latest-small first")
        train(load_builtin(), TrainConfig(epochs=1, ranker_epochs=1), args.run_dir)
    run = load_run(args.run_dir)
    hist = run.split.stage("test").histories
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(hist), size=args.requests)
    requests = [(run.items.external(hist[i]), args.k) for i in picks]
    lengths = [len(h) for h, _ in requests]

    in_process = InProcessRecommender(run)
    results = {"in-process (PyTorch towers + kernels)": percentiles(
        timed(lambda h, k: in_process.recommend(h, k), requests))}
    mismatches = 0
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        export_run(args.run_dir, repo)
        with TritonServer(repo) as server:
            for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
                with GenreClient(url, protocol) as client:
                    samples = timed(lambda h, k: client.recommend(h, k), requests)
                    results[f"served genre_recommend ({protocol})"] = percentiles(samples)
                    for history, k in requests[:50]:
                        served = [r.item_id for r in client.recommend(history, k)]
                        mismatches += served != in_process.recommend(history, k)[0]
    base = results["in-process (PyTorch towers + kernels)"]["p50_ms"]
    print(f"genre_recommend latency at concurrency 1: {args.requests} requests, k={args.k}, "
          f"ml-latest-small catalog ({len(run.items)} items), history length median {int(np.median(lengths))}")
    print(f"{'path':<40} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'overhead p50':>13}")
    for name, r in results.items():
        print(f"{name:<40} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['p50_ms'] - base:>+12.2f}")
    print(f"served answers equal to in-process on {100 - 2 * mismatches}% of 50 checked requests per protocol")
    report = {
        "command": " ".join(["python", "benchmarks/bench_serving.py"] + (argv if argv is not None else sys.argv[1:])),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": platform.processor() or platform.machine(),
        "catalog_items": len(run.items),
        "k": args.k,
        "results": results,
        "mismatches_of_100": mismatches,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
