"""Experiment (issues 14/16): items without training interactions left out of the retrieval softmax
(masked like the history) against the stock trainer; attention default, no deployment fit.

The content projection is a function of item text; trained with a softmax over the whole catalog, it sees
items that no training interaction names only as negatives and learns to score them low, which is what a
cold-start item (and, in the feedback replay, every item the logs bring later) then gets
(benchmarks/RESULTS.md, 2026-12-05). The stock trainer (softmax_items "all") is run beside the masked
one ("trained": the softmax over items with a training interaction only) in the same process.

    python benchmarks/mask_unseen_softmax.py [SEED] [--out runs/mask_unseen] [--json FILE]

Prints each model's figures as JSON lines and writes them to --json
(default benchmarks/results/mask_unseen_softmax_s{SEED}.json).
"""
import argparse
import dataclasses
import json
from pathlib import Path

import genre_serve.train.trainer as T
from genre_serve.config import TrainConfig
from genre_serve.data import load_builtin
from genre_serve.evaluation.evaluate import evaluate_run
from genre_serve.formats.run_dir import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seed", type=int, nargs="?", default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/mask_unseen"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    seed = args.seed
    json_out = args.json or Path(f"benchmarks/results/mask_unseen_softmax_s{seed}.json")
    cfg = dataclasses.replace(TrainConfig().with_env(), seed=seed, refit=False)
    ds = load_builtin("movielens-small", cfg.data)
    out = {}
    for name, items in (("stock", "all"), ("masked", "trained")):
        d = str(args.out / f"mask_{name}_s{seed}")
        T.train(ds, dataclasses.replace(cfg, softmax_items=items), d, progress=False)
        rep = evaluate_run(load_run(d, weights="selection"), with_baselines=False, progress=False)
        m = rep.to_dict()["methods"]
        meta = json.loads(Path(d, "meta.json").read_text())
        scored = [h["valid_ndcg@10"] for h in T.validated_epochs(meta["retrieval_history"])]
        out[name] = {"valid_best": max(scored),
                     "test": {k: m[k]["NDCG@10"] for k in m},
                     "cold": {k: (v.recall20, v.recall20_among_held_out) for k, v in rep.cold_start.items()},
                     "new_item_bias": meta["new_item_bias"], "alpha": meta["alpha_per_scenario"]}
        print(name, json.dumps(out[name], default=float), flush=True)
    json_out.write_text(json.dumps(out, default=float, indent=1))


if __name__ == "__main__":
    main()
