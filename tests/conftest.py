from pathlib import Path

import genre_serve

# The source folder has no compiled _C: the suite must test the installed package.
_SOURCE = Path(__file__).resolve().parent.parent / "genre_serve"
if Path(genre_serve.__file__).resolve().parent == _SOURCE:
    raise RuntimeError(
        "tests imported genre_serve from the source folder; install it "
        "(bash scripts/install.sh) and run `pytest` (not `python -m pytest`, "
        "which puts the working directory on sys.path)"
    )
