"""`genre-serve serve`, `recommend` and `loadtest`: running a server and talking to one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from genre_serve.cli.common import EXIT_FAILURE, EXIT_OK, Subparsers
from genre_serve.errors import UsageError
from genre_serve.serving.launcher import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HEALTH_PORT,
    DEFAULT_HTTP_PORT,
    DEFAULT_METRICS_PORT,
    LOOPBACK,
)

LOCAL_HTTP = f"{LOOPBACK}:{DEFAULT_HTTP_PORT}"


def register(commands: Subparsers) -> None:
    s = commands.add_parser("serve", help="start tritonserver on a model repository")
    s.add_argument("--model-repository", type=_repository, required=True,
                   help="a local folder, or s3://, gs://, as:// (read by Triton itself; needs --control-key or "
                        "GENRE_SERVE_CONTROL_KEY)")
    s.add_argument("--host", default=LOOPBACK, help="address to bind (default: %(default)s, loopback only)")
    s.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT)
    s.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT)
    s.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT)
    s.add_argument("--health-port", type=int, default=DEFAULT_HEALTH_PORT,
                   help="genre_serve's health endpoint: /v2/health/ready (false while a model instance is dead and "
                        "being reloaded, and once a shutdown began), /v2/health/live, /health (JSON); what "
                        "balancers and probes should ask (default: %(default)s)")
    s.add_argument("--drain-delay-s", type=float, default=5.0,
                   help="on SIGTERM: seconds to keep answering with readiness false, for balancers to notice "
                        "(default: %(default)s; Ctrl-C skips it)")
    s.add_argument("--drain-timeout-s", type=int, default=20,
                   help="on SIGTERM or Ctrl-C: seconds tritonserver then waits for the requests on open connections "
                        "(default: %(default)s)")
    s.add_argument("--no-heal", action="store_true",
                   help="do not reload a model whose instance died, nor restart a tritonserver that exited "
                        "(the health endpoint still reports them)")
    s.add_argument("--log-verbose", type=int, default=0)
    s.add_argument("--quiet", action="store_true", help="do not forward the server's log")
    s.add_argument("--control-key",
                   help="the key model control (load, unload, repository index) needs in the genre-serve-control-key "
                        "header (default: GENRE_SERVE_CONTROL_KEY, else REPO/.genre_serve.control_key, made with "
                        "a random key if missing)")
    s.add_argument("--open-control", action="store_true",
                   help="leave model control open to every client (not recommended beyond loopback)")
    s.set_defaults(handler=cmd_serve)

    r = commands.add_parser("recommend", help="ask a running server for recommendations")
    _add_request_args(r)
    r.add_argument("--history", required=True, help="item ids, comma separated, oldest first ('' for a cold user)")
    r.add_argument("--scenario")
    r.add_argument("--alpha", type=float)
    r.add_argument("--explain", action="store_true",
                   help="also say, per item, the history item it is closest to (because you watched ...)")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.set_defaults(handler=cmd_recommend)

    lt = commands.add_parser("loadtest", help="closed-loop concurrency sweep against a running server")
    _add_request_args(lt)
    lt.add_argument("--concurrency", default="1,4,16,64", help="levels, comma separated (default: %(default)s)")
    lt.add_argument("--duration-s", type=float, default=30.0, help="seconds per level (at most 600)")
    src = lt.add_mutually_exclusive_group(required=True)
    src.add_argument("--histories", type=Path, help="one history per line, item ids comma separated")
    src.add_argument("--from-run", type=Path, help="the test-split histories of a training run")
    lt.add_argument("--metrics-url",
                    help=f"the server's Prometheus endpoint (default: port {DEFAULT_METRICS_PORT} of --url's host)")
    lt.add_argument("--json", type=Path, help="write the results here")
    lt.add_argument("--plot", type=Path, help="write a PNG of latency and throughput against concurrency")
    lt.add_argument("--allow-remote", action="store_true", help="allow a non-loopback target")
    lt.add_argument("--batched", action="store_true",
                    help="send the requests to genre_recommend_batch (one user each, batched by the server) "
                         "instead of genre_recommend")
    lt.set_defaults(handler=cmd_loadtest)


def _repository(text: str) -> Path | str:
    from genre_serve.serving.launcher import is_remote_repository

    return text if is_remote_repository(text) else Path(text)


def _add_request_args(p) -> None:
    """Where genre_recommend is and how to ask it (recommend, loadtest)."""
    p.add_argument("--url", default=LOCAL_HTTP, help="the server's HTTP or gRPC endpoint (default: %(default)s)")
    p.add_argument("--protocol", choices=["http", "grpc"], default="http")
    p.add_argument("--k", type=int, default=10, help="items per answer (default: %(default)s)")
    p.add_argument("--timeout-s", type=float, default=10.0, help="per-request timeout (default: %(default)s)")


def cmd_serve(args) -> int:
    import os
    import signal
    import threading

    from genre_serve.formats.repository import CONTROL_HEADER, CONTROL_KEY_ENV, CONTROL_KEY_FILE
    from genre_serve.serving.launcher import TritonServer
    from genre_serve.serving.supervisor import Supervisor

    if args.drain_delay_s < 0 or args.drain_timeout_s < 0:
        raise UsageError("--drain-delay-s and --drain-timeout-s: at least 0")
    server = TritonServer(args.model_repository, args.host, args.http_port, args.grpc_port, args.metrics_port,
                          log_verbose=args.log_verbose, forward_logs=not args.quiet,
                          control_key=args.control_key or os.environ.get(CONTROL_KEY_ENV) or None,
                          restrict_control=not args.open_control, exit_timeout_s=args.drain_timeout_s)
    supervisor = Supervisor(server, health_port=args.health_port, heal=not args.no_heal,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
    stop = threading.Event()
    signals: list[int] = []

    def on_signal(sig: int) -> None:
        supervisor.state.draining = True  # readiness false before anything else happens
        signals.append(sig)
        stop.set()

    watch_signals(on_signal, (signal.SIGINT, signal.SIGTERM))
    supervisor.start()
    drained = False
    try:
        print(f"genre_serve is ready: HTTP {server.http_url}  gRPC {server.grpc_url}  metrics {server.metrics_url}  "
              f"health {supervisor.endpoint.url}", flush=True)
        if args.open_control:
            print("model control is open to every client (--open-control)", flush=True)
        else:
            where = "the key you gave" if (args.control_key or os.environ.get(CONTROL_KEY_ENV)) else \
                f"the key in {server.model_repository / CONTROL_KEY_FILE}"
            print(f"model control (load, unload) needs the {CONTROL_HEADER} header with {where}; "
                  "export/add-items/refresh-popularity --url read it from there", flush=True)
        print("SIGTERM drains and stops it; Ctrl-C stops it sooner.", flush=True)
        while not stop.wait(0.5):
            if supervisor.failed:
                print(f"genre_serve: giving up: {supervisor.failed}", file=sys.stderr)
                return EXIT_FAILURE
            if args.no_heal and not server.running:
                print("tritonserver exited unexpectedly", file=sys.stderr)
                return EXIT_FAILURE
        # SIGTERM: what a rolling update sends; wait for balancers. Ctrl-C: a person waiting.
        delay = args.drain_delay_s if signals[0] == signal.SIGTERM else 0.0
        stop.clear()  # a second signal cuts the delay short
        supervisor.drain(delay, interrupted=stop)
        drained = True
    finally:
        if not drained:
            supervisor.stop()
        print("stopped", flush=True)
    return EXIT_OK


def watch_signals(handle, signals) -> None:
    """Calls `handle(signal number)` from a thread of its own as soon as one
    of `signals` arrives. A Python signal handler runs only in the main
    thread, and only once that thread wakes: one waiting with a timeout when
    the kernel hands the signal to another thread sleeps the timeout out, and
    readiness stayed true for that long after a SIGTERM. The C-level handler
    writes the signal's number to the wakeup pipe at once, whichever thread
    it interrupts; the watcher thread reads it."""
    import os
    import signal
    import threading

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the C handler must never block
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for sig in signals:
        signal.signal(sig, lambda *_: None)  # a Python handler, so that the wakeup byte is written

    def watch() -> None:
        while True:
            for number in os.read(read_end, 64):
                if number in signals:
                    handle(number)

    threading.Thread(target=watch, name="genre-serve-signals", daemon=True).start()


def cmd_recommend(args) -> int:
    from genre_serve.client import GenreClient

    history = [h.strip() for h in args.history.split(",") if h.strip()]
    with GenreClient(args.url, args.protocol, timeout_s=args.timeout_s) as client:
        recs = client.recommend(history, args.k, args.scenario, args.alpha, explain=args.explain)
    if args.json:
        print(json.dumps([{"item_id": r.item_id, "score": r.score, **({"because": r.because} if args.explain else {})}
                          for r in recs]))
    else:
        for rank, r in enumerate(recs, 1):
            because = f"  because of {r.because}" if args.explain and r.because else ""
            print(f"{rank:>3}. {r.item_id:<20} {r.score:.4f}{because}")
    return EXIT_OK


def cmd_loadtest(args) -> int:
    from genre_serve.loadtest import sweep

    try:
        levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        raise UsageError(f"--concurrency: integers separated by commas, got {args.concurrency!r}") from None
    histories = sweep.load_histories(args.histories) if args.histories else sweep.histories_from_run(args.from_run)
    metrics = args.metrics_url or f"http://{args.url.rsplit(':', 1)[0]}:{DEFAULT_METRICS_PORT}/metrics"
    model = "genre_recommend_batch" if args.batched else "genre_recommend"
    print(f"load test of {model} at {args.url} ({args.protocol}): {len(histories)} histories, k={args.k}, "
          f"{args.duration_s:.0f} s per level")
    print(sweep.HEADER)
    results = sweep.run_sweep(args.url, histories, levels, args.duration_s, args.protocol, args.k,
                              args.timeout_s, metrics, args.allow_remote, batched=args.batched)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = sweep.to_json(results, url=args.url, protocol=args.protocol, k=args.k, duration_s=args.duration_s,
                            model=model)
        args.json.write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json}")
    if args.plot:
        sweep.plot(results, args.plot, f"{model} ({args.protocol}), closed loop")
        print(f"wrote {args.plot}")
    return EXIT_OK if all(not r.errors for r in results) else EXIT_FAILURE
