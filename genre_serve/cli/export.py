"""`genre-serve export`, `add-items` and `refresh-popularity`: commands that
write a new version into a model repository (and may load it into a server)."""

from __future__ import annotations

from pathlib import Path

from genre_serve.cli.common import EXIT_OK, Subparsers, add_keep_versions, add_url, roll_out
from genre_serve.errors import UsageError
from genre_serve.export.serving_config import ServingConfig
from genre_serve.formats.repository import (
    DEFAULT_MAX_K,
    DEFAULT_NEW_ITEMS,
    NEW_ITEM_RULES,
)

SERVING = ServingConfig()


def register(commands: Subparsers) -> None:
    x = commands.add_parser("export", help="a run -> a new version in a Triton model repository")
    x.add_argument("run_dir", type=Path)
    x.add_argument("--model-repository", type=Path, required=True)
    x.add_argument("--version", type=int, help="version number (default: the next one)")
    add_keep_versions(x)
    x.add_argument("--max-batch-size", type=int, default=SERVING.max_batch_size)
    x.add_argument("--max-queue-delay-us", type=int, default=SERVING.max_queue_delay_us)
    x.add_argument("--instances", type=int, default=SERVING.instances,
                   help="instances of the item tower and of each standalone model (default: %(default)s)")
    x.add_argument("--cpus", type=int, default=None,
                   help="CPUs the server may use, for the instance rule (default: what this machine gives the "
                        "process: its cgroup quota or CPU affinity)")
    x.add_argument("--recommend-instances", type=int, default=None,
                   help="instances of genre_recommend (default: one per CPU, plus one)")
    x.add_argument("--batch-instances", type=int, default=None,
                   help="instances of genre_recommend_batch (default: one per CPU)")
    x.add_argument("--ort-threads", default=SERVING.ort_threads,
                   help="onnxruntime intra-op threads per entry-point instance (default: %(default)s, i.e. 1)")
    x.add_argument("--kernel-threads", default=SERVING.kernel_threads,
                   help="fused_topk/cross_features threads per entry-point instance (default: %(default)s, i.e. 1)")
    x.add_argument("--standalone-models", action="store_true",
                   help="also serve genre_user_tower, genre_retrieve and genre_ranker, for clients that run their "
                        "own pipeline (LocalScorer); genre_recommend never calls them")
    x.add_argument("--max-queue-size", type=int, default=SERVING.max_queue_size,
                   help="genre_recommend/genre_item_tower reject requests past this many waiting (0: unbounded; "
                        "default: %(default)s)")
    x.add_argument("--max-k", type=int, default=DEFAULT_MAX_K,
                   help="largest K genre_recommend answers (default: %(default)s)")
    x.add_argument("--new-items", choices=NEW_ITEM_RULES, default=DEFAULT_NEW_ITEMS,
                   help="items without interactions: scored by their content alone plus a bias (default), or "
                        "discounted like every item (alpha * 0 + (1 - alpha) * content: they rarely reach a top K)")
    x.add_argument("--new-item-bias", type=float, default=None,
                   help="the bias added to new items' content scores (default: the one training fitted on "
                        "validation, in the run's meta.json; higher shows new items more often)")
    x.add_argument("--queue-timeout-us", type=int, default=SERVING.queue_timeout_us,
                   help="reject requests still waiting after this long (0: no limit)")
    x.add_argument("--gpu", action="store_true", help="instance groups KIND_GPU (for the NGC container on GPU hosts)")
    add_url(x)
    x.set_defaults(handler=cmd_export)

    a = commands.add_parser("add-items", help="embed new items' texts and add them as a new version")
    _add_target(a)
    a.add_argument("--items", type=Path, required=True, help="CSV/Parquet: item_id,title[,text,tags]")
    add_keep_versions(a)
    add_url(a)
    a.set_defaults(handler=cmd_add_items)

    t = commands.add_parser("retire-items", help="never recommend these items again, as a new version")
    _add_target(t)
    ids = t.add_mutually_exclusive_group(required=True)
    ids.add_argument("--ids", help="item ids, comma separated")
    ids.add_argument("--items", type=Path, help="a CSV/Parquet file with an item_id column, or one id per line")
    add_keep_versions(t)
    add_url(t)
    t.set_defaults(handler=cmd_retire_items)

    r = commands.add_parser("refresh-popularity",
                            help="recount the served recent popularity from a newer log, as a new version")
    _add_target(r)
    r.add_argument("--interactions", type=Path, required=True, help="CSV/Parquet: user_id,item_id,timestamp")
    r.add_argument("--at", help="the time to count back from (seconds or a date; default: just after the log's "
                                "newest interaction)")
    add_keep_versions(r)
    add_url(r)
    r.set_defaults(handler=cmd_refresh_popularity)


def _add_target(p) -> None:
    p.add_argument("target", type=Path, help="a model repository, or a run directory with model_repository/")


def cmd_export(args) -> int:
    from genre_serve.export.repository import export_run
    from genre_serve.formats.resources import KERNEL_THREADS, ORT_THREADS, check_thread_value

    for flag, value in (("--cpus", args.cpus), ("--recommend-instances", args.recommend_instances),
                        ("--batch-instances", args.batch_instances), ("--instances", args.instances),
                        ("--max-batch-size", args.max_batch_size)):
        if value is not None and value < 1:
            raise UsageError(f"{flag}: must be at least 1, got {value}")
    try:
        ort_threads = check_thread_value(args.ort_threads, ORT_THREADS)
        kernel_threads = check_thread_value(args.kernel_threads, KERNEL_THREADS)
    except ValueError as e:
        raise UsageError(str(e)) from None
    serving = ServingConfig(
        max_batch_size=args.max_batch_size, max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances, recommend_instances=args.recommend_instances,
        batch_instances=args.batch_instances, cpus=args.cpus, ort_threads=ort_threads,
        kernel_threads=kernel_threads, kind="KIND_GPU" if args.gpu else SERVING.kind,
        max_queue_size=args.max_queue_size, queue_timeout_us=args.queue_timeout_us,
    )
    if args.max_k < 1:
        raise UsageError("--max-k: must be at least 1")
    result = export_run(args.run_dir, args.model_repository, args.version, serving, args.keep_versions,
                        max_k=args.max_k, new_items=args.new_items, new_item_bias=args.new_item_bias,
                        standalone_models=args.standalone_models, lock_timeout_s=args.lock_timeout_s)
    diffs = ", ".join(f"{m} {d:.1e}" for m, d in result.max_abs_diff.items())
    print(f"exported version {result.version} to {result.repository} (onnxruntime vs PyTorch max |diff|: {diffs})")
    if result.removed_versions:
        print(f"removed old versions {result.removed_versions}")
    roll_out(args.url, result.version, result.repository)
    return EXIT_OK


def cmd_add_items(args) -> int:
    from genre_serve.export.add_items import add_items

    repo, version, count = add_items(args.target, args.items, args.keep_versions, args.lock_timeout_s)
    print(f"added {count} item(s) as version {version} of {repo}")
    roll_out(args.url, version, repo)
    return EXIT_OK


def cmd_retire_items(args) -> int:
    from genre_serve.export.add_items import retire_items

    if args.ids is not None:
        ids = args.ids.split(",")
    elif args.items.suffix in (".csv", ".parquet", ".gz"):
        from genre_serve.data.loaders import read_table
        from genre_serve.errors import DataError

        table = read_table(args.items, "items")
        if "item_id" not in table.columns:
            raise DataError(f"items: {args.items} has no item_id column")
        ids = table["item_id"].dropna().astype(str).tolist()
    else:
        ids = args.items.read_text().splitlines()
    repo, version, count = retire_items(args.target, ids, args.keep_versions, args.lock_timeout_s)
    print(f"retired {count} item(s) as version {version} of {repo}")
    roll_out(args.url, version, repo)
    return EXIT_OK


def cmd_refresh_popularity(args) -> int:
    import pandas as pd

    from genre_serve.data.dataset import parse_timestamps
    from genre_serve.errors import DataError
    from genre_serve.export.refresh_popularity import refresh_popularity

    at = None
    if args.at is not None:
        parsed = parse_timestamps(pd.Series([args.at]))[0]
        if pd.isna(parsed):
            raise DataError(f"--at: cannot read {args.at!r} as a time (seconds since the epoch or a date)")
        at = int(parsed)
    res = refresh_popularity(args.target, args.interactions, at, args.keep_versions, args.lock_timeout_s)
    when = pd.Timestamp(res.at, unit="s", tz="UTC").isoformat()
    print(f"recent popularity at {when}: {res.counted} interaction(s) in the window; skipped "
          f"{res.unknown_items} row(s) with an item outside the catalog, {res.malformed} malformed; "
          f"version {res.version} of {res.repository}")
    roll_out(args.url, res.version, res.repository)
    return EXIT_OK
