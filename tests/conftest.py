import importlib
import importlib.util
import os
import sys

# scripts/asan_fuzz.sh runs the kernel tests against a sanitizer build of the
# extension: that build's module stands in for the installed one.
_override = os.environ.get("GENRE_SERVE_TEST_EXTENSION")
if _override:
    spec = importlib.util.spec_from_file_location("genre_serve._C", _override)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["genre_serve._C"] = module

try:
    importlib.import_module("genre_serve._C")
except ImportError as e:  # pragma: no cover - a setup problem, not a test failure
    raise RuntimeError(
        "genre_serve's compiled module is missing: install the package "
        "(bash scripts/install.sh) and run `pytest` (not `python -m pytest`, which "
        "puts the working directory and its uncompiled source folder on sys.path)"
    ) from e
