"""The package's layers go one way, and the client stays free of model code.

Layers, lowest first: a module may import its own layer and those below it,
never one above (function-level imports count too: they run as well).
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "genre_serve"

LAYERS = [
    # What everything may use: no model code.
    {"genre_serve", "genre_serve._C", "genre_serve.errors", "genre_serve.text", "genre_serve.formats",
     "genre_serve.formats.repository"},
    {"genre_serve.data", "genre_serve.models", "genre_serve.kernels", "genre_serve.retrieval"},
    {"genre_serve.config"},
    {"genre_serve.formats.run_dir"},  # the run directory: written by train, read by evaluation and export
    {"genre_serve.evaluation"},
    {"genre_serve.train"},
    {"genre_serve.export"},
    {"genre_serve.serving"},
    {"genre_serve.client", "genre_serve.loadtest", "genre_serve.reliability", "genre_serve.deploy"},
    # genre_serve.train.__main__: `python -m genre_serve.train`, the command torchrun starts (a CLI entry point).
    {"genre_serve.cli", "genre_serve.train.__main__"},
]
STUBS = "genre_serve.serving.stubs"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer of the longest prefix of `module` that LAYERS names."""
    best, rank = "", None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best):
                best, rank = name, i
    assert rank is not None, f"{module} is in no layer: add it to LAYERS"
    return rank


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every genre_serve import in a file, wherever it stands."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from genre_serve.x import y` may import the module genre_serve.x.y
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return [(line, m) for line, m in out if m.split(".")[0] == "genre_serve"]


def sources() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    return files


def _resolve(imported: str) -> str:
    """`genre_serve.x.y` where y is a name inside module x: the module x."""
    parts = imported.split(".")
    while len(parts) > 1 and not ((ROOT.joinpath(*parts)).with_suffix(".py").exists()
                                  or (ROOT.joinpath(*parts) / "__init__.py").exists()
                                  or ROOT.joinpath(*parts).with_suffix(".pyi").exists()):
        parts.pop()
    return ".".join(parts)


def test_imports_go_down_the_layers_only():
    wrong = []
    for path in sources():
        importer = module_name(path)
        for line, imported in imports_of(path):
            target = _resolve(imported)
            if layer_of(target) > layer_of(importer):
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({importer}) imports {target}")
    assert not wrong, "\n".join(wrong)


def test_evaluation_does_not_import_training():
    for path in (PACKAGE / "evaluation").rglob("*.py"):
        assert not [m for _, m in imports_of(path) if m.startswith("genre_serve.train")], path


def test_the_triton_stub_code_is_imported_by_nothing_outside_it():
    """Only Triton imports genre_serve.serving.stubs (through the repository's
    model.py entry points); only code there imports the stub-only utilities."""
    for path in sources():
        module = module_name(path)
        if module.startswith(STUBS):
            continue
        assert not [m for _, m in imports_of(path) if m.startswith(STUBS)], path
        assert "triton_python_backend_utils" not in path.read_text(), path


MODEL_CODE = ["torch", "onnx", "onnxruntime", "transformers", "pandas", "genre_serve._C", "genre_serve.export",
              "genre_serve.train", "genre_serve.models", "genre_serve.kernels", "genre_serve.serving"]


def _loaded_after(statement: str, heavy: list[str] = MODEL_CODE) -> list[str]:
    """Which of `heavy` `statement` loads in a fresh interpreter, run outside
    the checkout (so that the installed package is imported)."""
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_importing_the_client_loads_no_model_code():
    assert _loaded_after("import genre_serve.client") == []
    assert _loaded_after("from genre_serve.client import GenreClient, AsyncGenreClient\n"
                         "GenreClient('127.0.0.1:1').close()") == []


def test_local_scorer_is_imported_on_demand():
    assert "genre_serve.kernels" in _loaded_after("from genre_serve.client import LocalScorer")


def test_the_repository_format_loads_no_model_code():
    assert _loaded_after("import genre_serve.formats.repository") == []


def test_the_command_line_loads_model_code_only_for_the_command_that_needs_it():
    heavy = ["torch", "onnx", "onnxruntime", "transformers", "pandas", "tritonclient", "genre_serve._C"]
    assert _loaded_after("from genre_serve.cli import build_parser\nbuild_parser().format_help()", heavy) == []
