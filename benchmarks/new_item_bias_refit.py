"""Would fitting the new-item bias again at the chosen alpha help cold start?
(issue 14; tried on saved runs, not adopted: benchmarks/RESULTS.md).

The `sasrec` recipe picks alpha on validation NDCG@10 after the likelihood fit
(0.6-0.97 where the likelihood said about 0.5), and the bias fitted beside
the likelihood's alpha was kept: at a CF-heavier alpha, warm scores take the
CF channel's larger scale while a new item's (content + bias) keeps its own.
For each saved run (its selection-stage
model): the bias as trained and after the refit at the served alpha,
validation NDCG@10 (what a choice may read), and for the record the test
NDCG@10 of the fused retrieval and the cold-start Recall@20 (the held-out
items, full catalog). No retraining: the rest of the model is as saved.

    python benchmarks/new_item_bias_refit.py runs/quality_sasrec_s12/seed1 runs/quality_sasrec_s12/seed2 \\
        --json benchmarks/results/new_item_bias_refit.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from genre_serve.evaluation.evaluate import evaluate_run
from genre_serve.formats.run_dir import load_run
from genre_serve.train.calibration import FusionScores, _best_temperature_cross_entropy, _minimise


def refit_new_item_bias(model, data: FusionScores) -> dict:
    """The bias and the fit's temperature on the validation likelihood at the
    model's alpha; set in `model` where it lowers the cross-entropy."""
    logits, w = model.alpha_logit.detach().clone(), torch.tensor(0.0)
    before = model.new_item_bias.detach().clone()
    ce_before = _best_temperature_cross_entropy(data, (logits, w, before))
    bias = before.clone().requires_grad_(True)
    log_temperature = torch.zeros((), requires_grad=True)
    _minimise([bias, log_temperature], lambda: data.cross_entropy(logits, w, bias, log_temperature.exp()), max_iter=200)
    with torch.no_grad():
        ce_after = float(data.cross_entropy(logits, w, bias, log_temperature.exp()))
    accepted = bool(np.isfinite(ce_after) and ce_after < ce_before)
    if accepted:
        with torch.no_grad():
            model.new_item_bias.copy_(bias.detach())
    final = model.new_item_bias.detach().clone()
    return {"new_item_bias_before": float(before), "new_item_bias": float(final), "accepted": accepted,
            "valid_cross_entropy_before": ce_before, "valid_cross_entropy_after": ce_after if accepted else ce_before,
            "valid_ndcg@10": data.ndcg10(logits, w, final)}


def measure(path: Path) -> dict:
    run = load_run(path, weights="selection")
    if not run.model.cfg.tied or run.model.cfg.recent_popularity:
        raise SystemExit(f"{path}: not a sasrec-encoder run without recent popularity "
                         "(only its alpha is chosen apart from the likelihood)")
    before = evaluate_run(run, "test", with_baselines=False, progress=False)
    refit = refit_new_item_bias(run.model, FusionScores(run.model, run.split, run.config.seed))
    after = evaluate_run(run, "test", with_baselines=False, progress=False)
    fit = run.meta["fusion_calibration"]
    return {"run": str(path), "alpha": torch.sigmoid(run.model.alpha_logit.detach()).tolist(),
            "valid_ndcg@10_before": fit["valid_ndcg@10_after"], **refit,
            "test_fused_ndcg@10_before": before.methods["fused"].metrics["NDCG@10"],
            "test_fused_ndcg@10_after": after.methods["fused"].metrics["NDCG@10"],
            "cold_start_recall@20_before": before.cold_start["fused"].recall20,
            "cold_start_recall@20_after": after.cold_start["fused"].recall20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = [measure(p) for p in args.runs]
    print("| run | alpha | bias: trained -> refit | valid NDCG@10 | test fused NDCG@10 | cold start R@20 |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['run']} | {r['alpha'][0]:.2f} | {r['new_item_bias_before']:.3f} -> {r['new_item_bias']:.3f} "
              f"| {r['valid_ndcg@10_before']:.4f} -> {r['valid_ndcg@10']:.4f} "
              f"| {r['test_fused_ndcg@10_before']:.4f} -> {r['test_fused_ndcg@10_after']:.4f} "
              f"| {r['cold_start_recall@20_before']:.4f} -> {r['cold_start_recall@20_after']:.4f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
