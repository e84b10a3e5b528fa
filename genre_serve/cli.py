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

    q = commands.add_parser("quickstart", help="built-in data -> train -> evaluate -> export -> serve -> query")
    q.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="run directory (default: %(default)s)")
    q.add_argument("--epochs", type=int, default=None, help="override the training epochs")
    q.add_argument("--retrain", action="store_true", help="train again even if --out holds a finished run")

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

    x = commands.add_parser("export", help="a run -> a new version in a Triton model repository")
    x.add_argument("run_dir", type=Path)
    x.add_argument("--model-repository", type=Path, required=True)
    x.add_argument("--version", type=int, help="version number (default: the next one)")
    x.add_argument("--keep-versions", type=int, default=3, help="versions kept on disk (default: %(default)s)")
    x.add_argument("--max-batch-size", type=int, default=64)
    x.add_argument("--max-queue-delay-us", type=int, default=500)
    x.add_argument("--instances", type=int, default=1, help="instances of each batched model")
    x.add_argument("--recommend-instances", type=int, default=4, help="instances of genre_recommend")
    x.add_argument("--max-queue-size", type=int, default=64,
                   help="genre_recommend/genre_item_tower reject requests past this many waiting (0: unbounded; "
                        "default: %(default)s)")
    x.add_argument("--max-k", type=int, default=1000, help="largest K genre_recommend answers (default: %(default)s)")
    x.add_argument("--new-items", choices=("content", "discounted"), default="content",
                   help="items without interactions: scored by their content alone plus a bias (default), or "
                        "discounted like every item (alpha * 0 + (1 - alpha) * content: they rarely reach a top K)")
    x.add_argument("--new-item-bias", type=float, default=None,
                   help="the bias added to new items' content scores (default: the one training fitted on "
                        "validation, in the run's meta.json; higher shows new items more often)")
    x.add_argument("--queue-timeout-us", type=int, default=0,
                   help="reject requests still waiting after this long (0: no limit)")
    x.add_argument("--gpu", action="store_true", help="instance groups KIND_GPU (for the NGC container on GPU hosts)")
    x.add_argument("--url", help="also load the new version into the server at this HTTP URL")

    s = commands.add_parser("serve", help="start tritonserver on a model repository")
    s.add_argument("--model-repository", type=Path, required=True)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only)")
    s.add_argument("--http-port", type=int, default=8000)
    s.add_argument("--grpc-port", type=int, default=8001)
    s.add_argument("--metrics-port", type=int, default=8002)
    s.add_argument("--log-verbose", type=int, default=0)
    s.add_argument("--quiet", action="store_true", help="do not forward the server's log")

    r = commands.add_parser("recommend", help="ask a running server for recommendations")
    r.add_argument("--url", default="127.0.0.1:8000")
    r.add_argument("--protocol", choices=["http", "grpc"], default="http")
    r.add_argument("--history", required=True, help="item ids, comma separated, oldest first ('' for a cold user)")
    r.add_argument("--k", type=int, default=10)
    r.add_argument("--scenario")
    r.add_argument("--alpha", type=float)
    r.add_argument("--timeout-s", type=float, default=10.0)
    r.add_argument("--json", action="store_true", help="machine-readable output")

    lt = commands.add_parser("loadtest", help="closed-loop concurrency sweep against a running server")
    lt.add_argument("--url", default="127.0.0.1:8000")
    lt.add_argument("--protocol", choices=["http", "grpc"], default="http")
    lt.add_argument("--concurrency", default="1,4,16,64", help="levels, comma separated (default: %(default)s)")
    lt.add_argument("--duration-s", type=float, default=30.0, help="seconds per level (at most 600)")
    src = lt.add_mutually_exclusive_group(required=True)
    src.add_argument("--histories", type=Path, help="one history per line, item ids comma separated")
    src.add_argument("--from-run", type=Path, help="the test-split histories of a training run")
    lt.add_argument("--k", type=int, default=10)
    lt.add_argument("--timeout-s", type=float, default=10.0)
    lt.add_argument("--metrics-url", help="the server's Prometheus endpoint (default: port 8002 of --url's host)")
    lt.add_argument("--json", type=Path, help="write the results here")
    lt.add_argument("--plot", type=Path, help="write a PNG of latency and throughput against concurrency")
    lt.add_argument("--allow-remote", action="store_true", help="allow a non-loopback target")

    a = commands.add_parser("add-items", help="embed new items' texts and add them as a new version")
    a.add_argument("target", type=Path, help="a model repository, or a run directory with model_repository/")
    a.add_argument("--items", type=Path, required=True, help="CSV/Parquet: item_id,title[,text,tags]")
    a.add_argument("--keep-versions", type=int, default=3)
    a.add_argument("--url", help="also load the new version into the server at this HTTP URL")
    r = commands.add_parser("refresh-popularity",
                            help="recount the served recent popularity from a newer log, as a new version")
    r.add_argument("target", type=Path, help="a model repository, or a run directory with model_repository/")
    r.add_argument("--interactions", type=Path, required=True, help="CSV/Parquet: user_id,item_id,timestamp")
    r.add_argument("--at", help="the time to count back from (seconds or a date; default: just after the log's "
                                "newest interaction)")
    r.add_argument("--keep-versions", type=int, default=3)
    r.add_argument("--url", help="also load the new version into the server at this HTTP URL")
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


def _roll_out(url: str | None, version: int) -> None:
    """Loads the repository's newest version into the server at `url`, if given."""
    if url:
        from genre_serve.serving.rollout import load_latest

        load_latest(url)
        print(f"server at {url} now serves version {version}")


def cmd_export(args) -> int:
    from genre_serve.export.model_configs import ServingConfig
    from genre_serve.export.repository import export_run

    serving = ServingConfig(
        max_batch_size=args.max_batch_size, max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances, recommend_instances=args.recommend_instances,
        kind="KIND_GPU" if args.gpu else "KIND_CPU", max_queue_size=args.max_queue_size,
        queue_timeout_us=args.queue_timeout_us,
    )
    if args.max_k < 1:
        raise UsageError("--max-k: must be at least 1")
    result = export_run(args.run_dir, args.model_repository, args.version, serving, args.keep_versions,
                        max_k=args.max_k, new_items=args.new_items, new_item_bias=args.new_item_bias)
    diffs = ", ".join(f"{m} {d:.1e}" for m, d in result.max_abs_diff.items())
    print(f"exported version {result.version} to {result.repository} (onnxruntime vs PyTorch max |diff|: {diffs})")
    if result.removed_versions:
        print(f"removed old versions {result.removed_versions}")
    _roll_out(args.url, result.version)
    return EXIT_OK


def cmd_add_items(args) -> int:
    from genre_serve.export.add_items import add_items

    repo, version, count = add_items(args.target, args.items, args.keep_versions)
    print(f"added {count} item(s) as version {version} of {repo}")
    _roll_out(args.url, version)
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
    res = refresh_popularity(args.target, args.interactions, at, args.keep_versions)
    when = pd.Timestamp(res.at, unit="s", tz="UTC").isoformat()
    print(f"recent popularity at {when}: {res.counted} interaction(s) in the window; skipped "
          f"{res.unknown_items} row(s) with an item outside the catalog, {res.malformed} malformed; "
          f"version {res.version} of {res.repository}")
    _roll_out(args.url, res.version)
    return EXIT_OK


def cmd_serve(args) -> int:
    import signal
    import threading

    from genre_serve.serving.launcher import TritonServer

    server = TritonServer(args.model_repository, args.host, args.http_port, args.grpc_port, args.metrics_port,
                          log_verbose=args.log_verbose, forward_logs=not args.quiet)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    try:
        print(f"genre_serve is ready: HTTP {server.http_url}  gRPC {server.grpc_url}  metrics {server.metrics_url}",
              flush=True)
        print("Ctrl-C stops it.", flush=True)
        while not stop.wait(0.5):
            if not server.running:
                print("tritonserver exited unexpectedly", file=sys.stderr)
                return EXIT_FAILURE
    finally:
        server.stop()
        print("stopped", flush=True)
    return EXIT_OK


def cmd_recommend(args) -> int:
    from genre_serve.client import GenreClient

    history = [h.strip() for h in args.history.split(",") if h.strip()]
    with GenreClient(args.url, args.protocol, timeout_s=args.timeout_s) as client:
        recs = client.recommend(history, args.k, args.scenario, args.alpha)
    if args.json:
        print(json.dumps([{"item_id": r.item_id, "score": r.score} for r in recs]))
    else:
        for rank, r in enumerate(recs, 1):
            print(f"{rank:>3}. {r.item_id:<20} {r.score:.4f}")
    return EXIT_OK


def cmd_quickstart(args) -> int:
    from genre_serve.client import GenreClient
    from genre_serve.data import load_builtin
    from genre_serve.export.repository import export_run
    from genre_serve.serving.launcher import TritonServer
    from genre_serve.train.run_dir import load_run
    from genre_serve.train.trainer import train

    cfg = _train_config(args)
    print("genre-serve quickstart: built-in MovieLens (ml-latest-small) -> train -> evaluate -> export -> serve -> query")
    out = args.out
    if args.retrain or not (out / "model.pt").exists():
        ds = load_builtin("movielens-small", cfg.data)
        print(f"[1/5] data: {ds.num_users} users, {ds.num_items} movies, {len(ds.interactions)} ratings")
        train(ds, cfg, out)
    else:
        print(f"[1/5] reusing the trained run in {out} (--retrain to train again)")
    print("[2/5] evaluating on the held-out last interaction of each user")
    args.run_dir, args.stage, args.no_baselines, args.quiet, args.json = out, "test", True, False, None
    cmd_evaluate(args)
    repo = out / "model_repository"
    result = export_run(out, repo)
    print(f"[3/5] exported version {result.version} to {repo}")
    print("[4/5] starting tritonserver on 127.0.0.1 (free ports)")
    run = load_run(out)
    with TritonServer(repo) as server:
        print(f"      ready: HTTP {server.http_url}  gRPC {server.grpc_url}")
        users, hist, _, _, _ = run.split.stage("test")
        history = run.items.external(hist[0][-10:])
        titles = dict(zip(run.items.ids, run.titles))
        with GenreClient(server.http_url) as client:
            recs = client.recommend(history, k=10)
        print(f"[5/5] user {run.meta['users'][users[0]]} recently watched:")
        for i in history[-5:]:
            print(f"        {titles.get(i, i)}")
        print("      genre_serve recommends:")
        for rank, r in enumerate(recs, 1):
            print(f"  {rank:>3}. {titles.get(r.item_id, r.item_id):<60} {r.score:.3f}")
    print(f"done. Serve it again with: genre-serve serve --model-repository {repo}")
    return EXIT_OK


def cmd_loadtest(args) -> int:
    from genre_serve.loadtest import sweep

    try:
        levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        raise UsageError(f"--concurrency: integers separated by commas, got {args.concurrency!r}") from None
    histories = sweep.load_histories(args.histories) if args.histories else sweep.histories_from_run(args.from_run)
    metrics = args.metrics_url or f"http://{args.url.rsplit(':', 1)[0]}:8002/metrics"
    print(f"load test of {args.url} ({args.protocol}): {len(histories)} histories, k={args.k}, "
          f"{args.duration_s:.0f} s per level")
    print(sweep.HEADER)
    results = sweep.run_sweep(args.url, histories, levels, args.duration_s, args.protocol, args.k,
                              args.timeout_s, metrics, args.allow_remote)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = sweep.to_json(results, url=args.url, protocol=args.protocol, k=args.k, duration_s=args.duration_s)
        args.json.write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json}")
    if args.plot:
        sweep.plot(results, args.plot, f"genre_recommend ({args.protocol}), closed loop")
        print(f"wrote {args.plot}")
    return EXIT_OK if all(not r.errors for r in results) else EXIT_FAILURE


COMMANDS = {
    "loadtest": cmd_loadtest,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "quickstart": cmd_quickstart,
    "export": cmd_export,
    "add-items": cmd_add_items,
    "refresh-popularity": cmd_refresh_popularity,
    "serve": cmd_serve,
    "recommend": cmd_recommend,
}


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
