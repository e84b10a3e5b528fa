"""ruff and mypy, run by the test suite so that CI's one command checks them.

ruff: the rule set in pyproject.toml over the whole checkout. mypy: the
kernels, the client SDK and the repository format (pyproject.toml's
[tool.mypy] files), against the `_C.pyi` stub.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    out = _run("ruff", "check", "--no-cache", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_finds_nothing_in_the_typed_modules():
    out = _run("mypy", "--no-incremental")
    assert out.returncode == 0, out.stdout + out.stderr
