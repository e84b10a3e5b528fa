import importlib

try:
    importlib.import_module("genre_serve._C")
except ImportError as e:  # pragma: no cover - a setup problem, not a test failure
    raise RuntimeError(
        "genre_serve's compiled module is missing: install the package "
        "(bash scripts/install.sh) and run `pytest` (not `python -m pytest`, which "
        "puts the working directory and its uncompiled source folder on sys.path)"
    ) from e
