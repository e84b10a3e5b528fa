"""How much room new items get, and what it costs (benchmarks/RESULTS.md, issue 3).

Items without CF signal are scored by their content score plus a bias. The
model serves the bias fitted on the validation likelihood
(train/calibration.py, marked "fitted"); a very low one is `export --new-items
discounted` (never shown). For each bias: the new items per top 20 of
validation users, the test NDCG@10 of the fused retrieval (the warm targets),
and the full-catalog Recall@20 of the held-out items (cold start). A
diagnostic curve around the fitted value: nothing here picks a bias.

    python benchmarks/new_item_tradeoff.py --run-dir runs/ml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from genre_serve.evaluation.evaluate import cold_start_inputs
from genre_serve.evaluation.genre_eval import (
    item_tables,
    recent_popularity_counter,
    stage_recent_popularity,
    user_vectors,
    variant_scores,
)
from genre_serve.evaluation.metrics import exclude_histories, ndcg_at, ranks_of_targets, recall_at
from genre_serve.formats.run_dir import load_run
from genre_serve.retrieval import items_without_cf

BIASES = (float("-inf"), -4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


def served_scores(run, tables, histories, scenarios, recent_popularity) -> np.ndarray:
    """Fused scores as served (new items by content alone), before any bias."""
    return variant_scores("fused", *user_vectors(run.model, histories, scenarios), *tables, recent_popularity,
                          new_items_by_content=True, new_item_bias=0.0)


def with_bias(scores: np.ndarray, new: np.ndarray, bias: float) -> np.ndarray:
    out = scores.copy()
    out[:, new] += bias
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=Path("runs/ml"))
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/new_item_tradeoff.json"))
    args = ap.parse_args()
    run = load_run(args.run_dir)
    split, tables = run.split, item_tables(run.model)
    recent_counter = recent_popularity_counter(run.model, split)
    new = items_without_cf(tables[0])
    # Scores once per population; each bias only shifts the new items' columns.
    valid = split.stage("valid")
    v_hist, v_scen = valid.histories, valid.scenarios
    valid_popularity = stage_recent_popularity(recent_counter, split, "valid")
    valid = exclude_histories(served_scores(run, tables, v_hist, v_scen, valid_popularity), v_hist)
    test = split.stage("test")
    t_hist, t_targets, t_scen = test.histories, test.targets, test.scenarios
    test = served_scores(run, tables, t_hist, t_scen, stage_recent_popularity(recent_counter, split, "test"))
    _, c_hist, c_scen, c_targets, c_times = cold_start_inputs(run)
    cold = served_scores(run, tables, c_hist, c_scen, None if recent_counter is None else recent_counter.at(c_times))
    rows = []
    print(f"{args.run_dir}: {new.size} items without CF signal of {split.num_items}; fused retrieval (no ranker)")
    fitted = float(run.model.new_item_bias)
    print(f"{'new-item bias':>16} {'new items per top 20 (valid)':>30} {'test NDCG@10':>13} {'cold Recall@20':>15}")
    for bias in sorted(set(BIASES) | {fitted}):
        top = np.argpartition(-with_bias(valid, new, bias), 19, axis=1)[:, :20]
        per_list = float(np.isin(top, new).sum(1).mean())
        ndcg = ndcg_at(ranks_of_targets(with_bias(test, new, bias), t_hist, t_targets)[0], 10)
        recall = recall_at(ranks_of_targets(with_bias(cold, new, bias), c_hist, c_targets)[0], 20)
        rows.append({"new_item_bias": bias, "fitted": bias == fitted, "new_items_per_top20_valid": per_list,
                     "test_ndcg@10": ndcg, "cold_recall@20": recall})
        label = f"{bias:.3f} (fitted)" if bias == fitted else f"{bias:g}"
        print(f"{label:>16} {per_list:>30.2f} {ndcg:>13.4f} {recall:>15.4f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"run": str(args.run_dir), "items_without_cf": int(new.size),
                                     "fitted_new_item_bias": fitted,
                                     "rows": [dict(r, new_item_bias=str(r["new_item_bias"])) for r in rows]}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
