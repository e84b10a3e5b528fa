"""The `genre-serve` command line."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genre-serve",
        description="Train, export and serve GENRE recommendation models.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("quickstart", help="data -> train -> export -> serve -> query on the built-in data")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "quickstart":
        print("genre-serve quickstart: not yet available (training and serving land in later issues)")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
