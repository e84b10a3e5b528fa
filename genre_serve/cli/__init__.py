"""The `genre-serve` command line.

Each subcommand lives in one module of this package, its parser beside its
handler (``register(commands)`` adds both). Errors a user can cause (a
missing file, a bad config, a malformed dataset) print one line and exit
non-zero; `--debug` shows the traceback. Exit codes: 0 success, 1 runtime
failure, 2 bad usage or input, 3 `update`'s gate rejected the candidate.
"""

from __future__ import annotations

import argparse
import sys

from genre_serve import __version__
from genre_serve.cli import deploy, export, quickstart, serve, train, update
from genre_serve.cli.common import EXIT_FAILURE, EXIT_USAGE
from genre_serve.errors import GenreServeError

MODULES = (quickstart, train, update, export, serve, deploy)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genre-serve", description="Train, evaluate, export and serve GENRE recommendation models."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in MODULES:
        module.register(commands)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised where the command is, so that its cleanup (staging
    folders, partial files) runs as it does for Ctrl-C."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)  # `serve` installs its own handler
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print(f"genre-serve {args.command}: interrupted; nothing half-written was published", file=sys.stderr)
        return 130
    except Terminated:
        print(f"genre-serve {args.command}: terminated (SIGTERM); nothing half-written was published",
              file=sys.stderr)
        return 143
    except (GenreServeError, OSError) as e:
        if args.debug:
            raise
        print(f"genre-serve {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, ValueError) else EXIT_FAILURE


def _one_line(e: BaseException) -> str:
    """An OSError as its cause and path (`[Errno 28] No space left on device: '/x'`), anything else as itself."""
    if isinstance(e, OSError) and e.strerror:
        where = f": {e.filename!r}" if e.filename else ""
        return f"{e.strerror}{where}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
