"""Experiment (issue 14, item 4): the fusion fitted with validation's held-out items in its likelihood.

The new-item bias places items without CF signal (scored by content) among the warm scores. Fitted on the
validation likelihood of warm targets only, nothing in the fit names a new item, so it can only push the
bias down; the cold-start figure of the `sasrec` recipe fell under the issue's floor that way
(benchmarks/RESULTS.md, 2026-12-05). Split.cold_stage gives validation half of the held-out items;
`calibrate_fusion(..., cold=True)` adds their interactions to the fit, weighted to their share of all
interactions.

Per seed: one model trained (selection stage, no deployment fit) with the stock fit, evaluated; the same
model's fusion refitted with the cold rows in, evaluated again. The ranker is the one trained after the
stock fit in both (training it again after the second fit is what `train` with cold_calibration would do;
its candidates change only where the bias moves new items into the top 100). Validation figures (warm
NDCG@10 of the fused retrieval, validation-cold Recall@20) choose; test figures (served pipeline, the test
half of the held-out items) are for the record.

    python benchmarks/cold_calibration.py --seeds 0 1 2 --config configs/sasrec.toml --json FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

import genre_serve.train.trainer as T
from genre_serve.config import TrainConfig
from genre_serve.data import load_builtin
from genre_serve.evaluation.evaluate import evaluate_run
from genre_serve.formats.run_dir import load_run
from genre_serve.train.calibration import FusionScores, calibrate_fusion, fusion_parameters


def figures(run, fit: dict) -> dict:
    rep = evaluate_run(run, with_baselines=False, progress=False)
    methods = rep.to_dict()["methods"]
    data = FusionScores(run.model, run.split, run.config.seed, cold=True)
    weight = (run.model.user.recent_popularity_weight.weight[0, 0].detach() if data.has_recent_popularity
              else torch.tensor(0.0))
    params = (run.model.alpha_logit.detach(), weight, run.model.new_item_bias.detach())
    return {"fusion": fusion_parameters(run.model), "fit": {k: v for k, v in fit.items() if k not in ("before",)},
            "valid_ndcg@10 (fused)": data.ndcg10(*params), "valid_cold_recall@20 (fused)": data.cold_recall20(*params),
            "test_ndcg@10": {k: methods[k]["NDCG@10"] for k in ("fused", "fused + ranker")},
            "test_cold_recall@20": {k: v.recall20 for k, v in rep.cold_start.items()},
            "test_cold_items": rep.cold_items}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--config", type=Path)
    ap.add_argument("--out", type=Path, default=Path("runs/cold_calibration"))
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    base = TrainConfig.from_toml(args.config) if args.config else TrainConfig()
    results = []
    for seed in args.seeds:
        cfg = dataclasses.replace(base.with_env(), seed=seed, refit=False)
        ds = load_builtin("movielens-small", cfg.data)
        d = args.out / f"{args.config.stem if args.config else 'default'}_s{seed}"
        t0 = time.perf_counter()
        if not (d / "meta.json").exists():
            T.train(ds, cfg, d, progress=False)
        run = load_run(d)
        row = {"seed": seed, "train_seconds": time.perf_counter() - t0,
               "stock": figures(run, json.loads((d / "meta.json").read_text()).get("fusion_calibration", {}))}
        fit = calibrate_fusion(run.model, run.split, seed, progress=False, cold=True)
        row["cold rows in the fit"] = figures(run, fit)
        results.append(row)
        print(json.dumps(row, default=float), flush=True)
    print(f"\n{'seed':>4} {'fit':<22} {'bias':>7} {'alpha':>6} {'valid NDCG':>10} {'valid cold R@20':>15} "
          f"{'test NDCG (served)':>18} {'test cold R@20':>14}")
    for row in results:
        for name in ("stock", "cold rows in the fit"):
            f = row[name]
            print(f"{row['seed']:>4} {name:<22} {f['fusion']['new_item_bias']:>7.3f} "
                  f"{sum(f['fusion']['alpha']) / len(f['fusion']['alpha']):>6.3f} {f['valid_ndcg@10 (fused)']:>10.4f} "
                  f"{f['valid_cold_recall@20 (fused)']:>15.4f} {f['test_ndcg@10']['fused + ranker']:>18.4f} "
                  f"{f['test_cold_recall@20']['fused']:>14.4f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"config": dataclasses.asdict(base), "results": results,
                                     "date": time.strftime("%Y-%m-%d")}, indent=1, default=float))


if __name__ == "__main__":
    main()
