"""`genre-serve train` and `genre-serve evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

from genre_serve.cli.common import EXIT_OK, Subparsers, add_data_args, load_dataset, train_config


def register(commands: Subparsers) -> None:
    t = commands.add_parser("train", help="train a GENRE model into RUN_DIR")
    add_data_args(t)
    t.add_argument("--out", type=Path, required=True, help="the run directory to write")
    t.add_argument("--config", type=Path, help="a TOML file with [model], [data] tables and training keys")
    t.add_argument("--epochs", type=int, help="override the training epochs")
    t.add_argument("--seed", type=int, help="override the seed")
    t.add_argument("--no-refit", action="store_true",
                   help="serve the selection-stage model instead of refitting it on every interaction")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(handler=cmd_train)

    e = commands.add_parser("evaluate", help="metrics of a run and the baselines on its split")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--json", type=Path, help="also write the report as JSON here")
    e.add_argument("--stage", choices=["test", "valid"], default="test")
    e.add_argument("--no-baselines", action="store_true", help="only most-popular and the GENRE variants")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(handler=cmd_evaluate)


def cmd_train(args) -> int:
    from genre_serve.train.trainer import train

    cfg = train_config(args)
    ds = load_dataset(args, cfg)
    print(f"data: {ds.name}: {ds.num_users} users, {ds.num_items} items, "
          f"{len(ds.interactions)} interactions ({ds.report.summary()})")
    out = train(ds, cfg, args.out, progress=not args.quiet)
    meta = json.loads((out / "meta.json").read_text())
    best = max((h["valid_ndcg@10"] for h in meta["ranker_history"] or meta["retrieval_history"]), default=0)
    print(f"trained in {meta['seconds']['total']:.0f} s; best validation NDCG@10 {best:.4f}; run saved to {out}")
    return EXIT_OK


def evaluate(run_dir: Path, stage: str = "test", with_baselines: bool = True, progress: bool = True,
             json_path: Path | None = None) -> None:
    """Prints the evaluation table of a run (and writes its JSON)."""
    from genre_serve.evaluation.evaluate import evaluate_run
    from genre_serve.evaluation.report import format_table
    from genre_serve.formats.run_dir import load_run

    run = load_run(run_dir, weights="selection")  # the served weights may have trained on the split's test
    report = evaluate_run(run, stage, with_baselines=with_baselines, progress=progress)
    print(format_table(report))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_dict(), indent=2))
        print(f"wrote {json_path}")


def cmd_evaluate(args) -> int:
    evaluate(args.run_dir, args.stage, not args.no_baselines, not args.quiet, args.json)
    return EXIT_OK
