"""What several subcommands share: exit codes, the training configuration,
the data source arguments, loading a new version into a running server."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from genre_serve.errors import UsageError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
Subparsers = Any  # argparse's _SubParsersAction is private


def add_data_args(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("data (one of --dataset or --interactions)")
    src.add_argument("--dataset", choices=["movielens-small"], help="a built-in data set")
    src.add_argument("--movielens", type=Path, help="a MovieLens folder (ml-latest-small or ml-100k layout)")
    src.add_argument("--interactions", type=Path,
                     help="CSV/Parquet: user_id,item_id,timestamp[,rating,event,scenario]")
    src.add_argument("--items", type=Path, help="CSV/Parquet: item_id,title[,text,tags]")
    src.add_argument("--synthetic", action="store_true", help="the synthetic generator (fast; for trying things)")


def load_dataset(args, config):
    from genre_serve.data import build_dataset, load_builtin, load_csv_dataset, load_movielens, synthetic

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


def train_config(args):
    """The TrainConfig of a command: --config's file (or the defaults), the
    GENRE_SERVE_TRAIN_* environment, then --epochs/--seed."""
    from genre_serve.config import TrainConfig

    cfg = TrainConfig.from_toml(args.config) if getattr(args, "config", None) else TrainConfig()
    cfg = cfg.with_env()
    overrides = {k: getattr(args, k) for k in ("epochs", "seed") if getattr(args, k, None) is not None}
    if getattr(args, "no_refit", False):
        overrides["refit"] = False
    return dataclasses.replace(cfg, **overrides)


def roll_out(urls: str | list[str] | None, version: int, repository=None) -> None:
    """Loads the repository's newest version into the server at each of
    `urls`, one replica after another (each one answers throughout: Triton
    serves the old version until the new one is ready), with the servers'
    model-control key (GENRE_SERVE_CONTROL_KEY, else the key file `serve`
    wrote into `repository`)."""
    from genre_serve.client.model_control import load_latest
    from genre_serve.formats.repository import control_key_of

    for url in [urls] if isinstance(urls, str) else (urls or []):
        load_latest(url, control_key=control_key_of(repository))
        print(f"server at {url} now serves version {version}")


def add_keep_versions(p) -> None:
    """The flags of every command that writes a version: how many to keep, how long to wait for another writer."""
    from genre_serve.formats import repository as fmt

    p.add_argument("--keep-versions", type=int, default=fmt.DEFAULT_KEEP_VERSIONS,
                   help="versions kept on disk (default: %(default)s)")
    p.add_argument("--lock-timeout-s", type=float, default=fmt.DEFAULT_LOCK_TIMEOUT_S,
                   help="wait this long for another command writing the same repository (0: fail at once; "
                        "default: %(default)s)")


def add_url(p) -> None:
    p.add_argument("--url", action="append",
                   help="also load the new version into the server at this HTTP URL (repeat for several replicas: "
                        "loaded one after another)")
