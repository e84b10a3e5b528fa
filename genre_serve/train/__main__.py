"""`python -m genre_serve.train ARGS`: `genre-serve train ARGS`, the entry point torchrun starts
(`torchrun --standalone --nproc_per_node N -m genre_serve.train ...`; train/distributed.py)."""

import sys

from genre_serve.cli import main

raise SystemExit(main(["train", *sys.argv[1:]]))
