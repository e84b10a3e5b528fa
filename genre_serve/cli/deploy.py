"""`genre-serve haproxy-config`: a load balancer's configuration for several `serve` replicas."""

from __future__ import annotations

import sys
from pathlib import Path

from genre_serve.cli.common import EXIT_OK, Subparsers


def register(commands: Subparsers) -> None:
    from genre_serve.deploy.haproxy import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT

    h = commands.add_parser("haproxy-config",
                            help="write an HAProxy configuration balancing several `genre-serve serve` replicas")
    h.add_argument("--replica", action="append", required=True, metavar="HOST:HTTP:GRPC:HEALTH",
                   help="a replica's host and its HTTP, gRPC and health ports (repeat per replica), "
                        "e.g. 127.0.0.1:8000:8001:8003")
    h.add_argument("--bind", default="127.0.0.1", help="address the balancer listens on (default: %(default)s)")
    h.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT)
    h.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT)
    h.add_argument("--check-interval-ms", type=int, default=500,
                   help="how often each replica's /v2/health/ready is asked (default: %(default)s)")
    h.add_argument("--out", type=Path, help="write here (default: standard output)")
    h.set_defaults(handler=cmd_haproxy_config)


def cmd_haproxy_config(args) -> int:
    from genre_serve.deploy.haproxy import Replica, haproxy_config

    text = haproxy_config([Replica.parse(r) for r in args.replica], args.bind, args.http_port, args.grpc_port,
                          args.check_interval_ms)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK
