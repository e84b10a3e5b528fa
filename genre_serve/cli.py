"""The `genre-serve` command line.

Errors a user can cause (a missing file, a bad config, a malformed dataset)
print one line and exit non-zero; `--debug` shows the traceback.
Exit codes: 0 success, 1 runtime failure, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genre_serve.errors import GenreServeError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _add_data_args(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("data (one of --dataset or --interactions)")
    src.add_argument("--dataset", choices=["movielens-small"], help="a built-in data set")
    src.add_argument("--movielens", type=Path, help="a MovieLens folder (ml-latest-small or ml-100k layout)")
    src.add_argument("--interactions", type=Path, help="CSV/Parquet: user_id,item_id,timestamp[,rating,event,scenario]")
    src.add_argument("--items", type=Path, help="CSV/Parquet: item_id,title[,text,tags]")
    src.add_argument("--synthetic", action="store_true", help="the synthetic generator (fast; for trying things)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genre-serve", description="Train, evaluate, export and serve GENRE recommendation models."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    q = commands.add_parser("quickstart", help="built-in data -> train -> evaluate -> recommend")
    q.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="run directory (default: %(default)s)")
    q.add_argument("--epochs", type=int, default=None, help="override the training epochs")

    t = commands.add_parser("train", help="train a GENRE model into RUN_DIR")
    _add_data_args(t)
    t.add_argument("--out", type=Path, required=True, help="the run directory to write")
    t.add_argument("--config", type=Path, help="a TOML file with [model], [data] tables and training keys")
    t.add_argument("--epochs", type=int, help="override the training epochs")
    t.add_argument("--seed", type=int, help="override the seed")
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    e = commands.add_parser("evaluate", help="metrics of a run and the baselines on its split")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--json", type=Path, help="also write the report as JSON here")
    e.add_argument("--stage", choices=["test", "valid"], default="test")
    e.add_argument("--no-baselines", action="store_true", help="only most-popular and the GENRE variants")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _load_dataset(args, config):
    from genre_serve.data import build_dataset, load_builtin, load_csv_dataset, load_movielens
    from genre_serve.data import synthetic

    chosen = [n for n in ("dataset", "movielens", "interactions") if getattr(args, n)] + (
        ["synthetic"] if args.synthetic else []
    )
    if len(chosen) != 1:
        raise UsageError("give exactly one of --dataset, --movielens, --interactions, --synthetic")
    if args.items and not args.interactions:
        raise UsageError("--items goes with --interactions")
    if args.dataset:
        return load_builtin(args.dataset, config.data)
    if args.movielens:
        return load_movielens(args.movielens, config.data)
    if args.synthetic:
        raw, items = synthetic.generate(seed=config.seed)
        return build_dataset(raw, items, config.data, name="synthetic")
    return load_csv_dataset(args.interactions, args.items, config.data)


class UsageError(GenreServeError, ValueError):
    """The command line asked for something inconsistent."""


def _train_config(args):
    import dataclasses

    from genre_serve.config import TrainConfig

    cfg = TrainConfig.from_toml(args.config) if getattr(args, "config", None) else TrainConfig()
    cfg = cfg.with_env()
    overrides = {k: getattr(args, k) for k in ("epochs", "seed") if getattr(args, k, None) is not None}
    return dataclasses.replace(cfg, **overrides)


def cmd_train(args) -> int:
    from genre_serve.train.trainer import train

    cfg = _train_config(args)
    ds = _load_dataset(args, cfg)
    print(f"data: {ds.name}: {ds.num_users} users, {ds.num_items} items, "
          f"{len(ds.interactions)} interactions ({ds.report.summary()})")
    out = train(ds, cfg, args.out, progress=not args.quiet)
    meta = json.loads((out / "meta.json").read_text())
    best = max((h["valid_ndcg@10"] for h in meta["ranker_history"] or meta["retrieval_history"]), default=0)
    print(f"trained in {meta['seconds']['total']:.0f} s; best validation NDCG@10 {best:.4f}; run saved to {out}")
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from genre_serve.evaluation.evaluate import evaluate_run, format_table
    from genre_serve.train.run_dir import load_run

    run = load_run(args.run_dir)
    report = evaluate_run(run, args.stage, with_baselines=not args.no_baselines, progress=not args.quiet)
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return EXIT_OK


def cmd_quickstart(args) -> int:
    from genre_serve.data import load_builtin
    from genre_serve.train.trainer import train

    cfg = _train_config(args)
    print("genre-serve quickstart: built-in MovieLens (ml-latest-small) -> train -> evaluate")
    ds = load_builtin("movielens-small", cfg.data)
    print(f"data: {ds.num_users} users, {ds.num_items} items, {len(ds.interactions)} interactions")
    out = train(ds, cfg, args.out)
    args.run_dir, args.stage, args.no_baselines, args.quiet, args.json = out, "test", True, False, None
    cmd_evaluate(args)
    print("serving (export -> tritonserver -> query) is not yet available: it lands with the serving issue")
    return EXIT_OK


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "quickstart": cmd_quickstart}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (GenreServeError, FileNotFoundError, PermissionError) as e:
        if args.debug:
            raise
        print(f"genre-serve {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, ValueError) else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
