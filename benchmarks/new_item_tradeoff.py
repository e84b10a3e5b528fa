"""How much room new items get, and what it costs: the trade-off behind
`export --new-items` (benchmarks/RESULTS.md, issue 3).

Items without CF signal are scored by their content score minus an offset
(offset 0: `--new-items content`, the served default; a large offset: they
never reach a list, like `--new-items discounted`). For each offset: the new
items per top 20 of validation users (a budget could be set from this, no
target read), the test NDCG@10 of the fused retrieval (the warm targets), and
the full-catalog Recall@20 of the held-out items (cold start). A diagnostic
curve, not a selection: nothing here picks an offset.

    python benchmarks/new_item_tradeoff.py --run-dir runs/ml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from genre_serve.evaluation.evaluate import cold_start_inputs
from genre_serve.evaluation.genre_eval import item_tables, recent_popularity, stage_trend, user_vectors, variant_scores
from genre_serve.evaluation.metrics import exclude_histories, ndcg_at, ranks_of_targets, recall_at
from genre_serve.retrieval import items_without_cf
from genre_serve.train.run_dir import load_run

OFFSETS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, float("inf"))


def served_scores(run, tables, histories, scenarios, trend) -> np.ndarray:
    """Fused scores as served (new items by content alone), before any offset."""
    return variant_scores("fused", *user_vectors(run.model, histories, scenarios), *tables, trend,
                          new_items_by_content=True)


def with_offset(scores: np.ndarray, new: np.ndarray, offset: float) -> np.ndarray:
    out = scores.copy()
    out[:, new] -= offset
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=Path("runs/ml"))
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/new_item_tradeoff.json"))
    args = ap.parse_args()
    run = load_run(args.run_dir)
    split, tables = run.split, item_tables(run.model)
    trends = recent_popularity(run.model, split)
    new = items_without_cf(tables[0])
    # Scores once per population; each offset only shifts the new items' columns.
    _, v_hist, _, _, v_scen = split.stage("valid")
    valid = exclude_histories(served_scores(run, tables, v_hist, v_scen, stage_trend(trends, split, "valid")), v_hist)
    _, t_hist, _, t_targets, t_scen = split.stage("test")
    test = served_scores(run, tables, t_hist, t_scen, stage_trend(trends, split, "test"))
    _, c_hist, c_scen, c_targets, c_times = cold_start_inputs(run)
    cold = served_scores(run, tables, c_hist, c_scen, None if trends is None else trends.at(c_times))
    rows = []
    print(f"{args.run_dir}: {new.size} items without CF signal of {split.num_items}; fused retrieval (no ranker)")
    print(f"{'offset':>8} {'new items per top 20 (valid)':>30} {'test NDCG@10':>13} {'cold Recall@20':>15}")
    for offset in OFFSETS:
        top = np.argpartition(-with_offset(valid, new, offset), 19, axis=1)[:, :20]
        per_list = float(np.isin(top, new).sum(1).mean())
        ndcg = ndcg_at(ranks_of_targets(with_offset(test, new, offset), t_hist, t_targets)[0], 10)
        recall = recall_at(ranks_of_targets(with_offset(cold, new, offset), c_hist, c_targets)[0], 20)
        rows.append({"offset": offset, "new_items_per_top20_valid": per_list, "test_ndcg@10": ndcg,
                     "cold_recall@20": recall})
        print(f"{offset:>8} {per_list:>30.2f} {ndcg:>13.4f} {recall:>15.4f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"run": str(args.run_dir), "items_without_cf": int(new.size),
                                     "rows": [dict(r, offset=str(r["offset"])) for r in rows]}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
