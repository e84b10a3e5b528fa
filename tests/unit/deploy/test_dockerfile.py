"""deploy/Dockerfile cannot be built here (no Docker engine). What can be
checked is: it parses, its stages are the documented ones, and the paths,
ports, Python, package names and the command line it uses are the project's."""

import json
import re
import shlex
from pathlib import Path

from genre_serve.cli import build_parser
from genre_serve.deploy import image
from genre_serve.serving import launcher

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
INSTRUCTIONS = {"FROM", "ARG", "RUN", "COPY", "ENV", "WORKDIR", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "LABEL",
                "VOLUME", "HEALTHCHECK", "SHELL", "STOPSIGNAL"}


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(instruction, arguments) in order, continuations joined, comments dropped."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        pending += (" " if pending else "") + line.rstrip("\\").strip()
        if line.endswith("\\"):
            continue
        word, _, rest = pending.partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    assert not pending, "a continuation line at the end"
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(ins)
    return found


def _args() -> dict[str, str]:
    return dict(a.split("=", 1) for k, a in instructions() if k == "ARG" and "=" in a)


def test_it_parses_into_a_builder_and_a_runtime_stage():
    parsed = instructions()
    assert {k for k, _ in parsed} <= INSTRUCTIONS
    builder, runtime = stages()
    assert builder[0][1].endswith("AS builder") and "AS" not in runtime[0][1]


def test_it_builds_on_the_ngc_release_of_the_triton_tested_here():
    args = _args()
    assert args["TRITON_IMAGE"] == image.TRITON_IMAGE == f"nvcr.io/nvidia/tritonserver:{image.NGC_RELEASE}-py3"
    assert args["CUDA_DEVEL_IMAGE"] == image.CUDA_DEVEL_IMAGE and image.IMAGE_CUDA in image.CUDA_DEVEL_IMAGE
    builder, runtime = stages()
    assert builder[0][1].startswith("${CUDA_DEVEL_IMAGE}") and runtime[0][1] == "${TRITON_IMAGE}"
    text = DOCKERFILE.read_text()
    assert f"Triton {image.TRITON_VERSION} from NGC {image.NGC_RELEASE}" in text
    assert f"Python {image.IMAGE_PYTHON}" in text and f"CUDA {image.IMAGE_CUDA}" in text


def test_the_extension_is_compiled_for_the_images_python_and_the_runtime_has_no_compiler():
    builder, runtime = stages()
    build = " ".join(a for k, a in builder if k == "RUN")
    assert f"python{image.IMAGE_PYTHON}-dev" in build and f"python{image.IMAGE_PYTHON} -m pip wheel" in build
    assert "GENRE_SERVE_NATIVE_ARCH=OFF" in build  # not tied to the builder's CPU
    assert ("GENRE_SERVE_CUDA=ON" in " ".join(a for k, a in builder if k == "ENV"))
    requires = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text()).groups()
    assert tuple(map(int, image.IMAGE_PYTHON.split("."))) >= tuple(map(int, requires))
    run = " ".join(a for k, a in runtime if k == "RUN")
    assert not re.search(r"\b(gcc|g\+\+|build-essential|cmake|nvcc|-dev)\b", run)
    assert "--no-deps /tmp/wheels/" in run and "COPY --from=builder /wheels /tmp/wheels" in [
        f"{k} {a}" for k, a in runtime]


def test_every_copied_path_exists_in_the_checkout():
    for kind, arguments in instructions():
        if kind != "COPY" or arguments.startswith("--from"):
            continue
        *sources, _dest = shlex.split(arguments)
        for source in sources:
            assert (ROOT / source).exists(), source


def test_the_serving_requirements_are_the_projects_packages():
    pyproject = (ROOT / "pyproject.toml").read_text()
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "deploy" / "requirements-serve.txt").read_text().splitlines()]
    names = [re.match(r"[A-Za-z0-9_.-]+", ln).group(0) for ln in lines if ln]
    assert names == ["numpy", "onnxruntime-gpu", "tritonclient"]
    for name in names:
        assert f'"{name}' in pyproject, name  # a dependency, or (onnxruntime-gpu) the gpu extra


def test_the_serving_path_imports_nothing_the_image_lacks():
    """The image has no torch, transformers, onnx or pandas: what `serve` and
    the model processes import must not need them (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import sys, types; sys.modules['triton_python_backend_utils'] = types.ModuleType('pb');"
            "import genre_serve.cli as c; c.build_parser();"
            "import genre_serve.serving.supervisor, genre_serve.serving.stubs.recommend,"
            " genre_serve.serving.stubs.onnxruntime_backend, genre_serve.client.model_control;"
            "import json; print(json.dumps(sorted(m for m in ('torch', 'transformers', 'onnx', 'pandas',"
            " 'sklearn', 'implicit', 'scipy') if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_the_entrypoint_is_the_launchers_serve_on_all_interfaces_of_the_container():
    runtime = stages()[1]
    env = dict(a.split("=", 1) for k, a in runtime if k == "ENV")
    assert env[launcher.TRITON_HOME_ENV] == image.IMAGE_TRITON_HOME
    exposed = [int(p) for k, a in runtime if k == "EXPOSE" for p in a.split()]
    assert exposed == [launcher.DEFAULT_HTTP_PORT, launcher.DEFAULT_GRPC_PORT, launcher.DEFAULT_METRICS_PORT,
                       launcher.DEFAULT_HEALTH_PORT]
    entry = json.loads(next(a for k, a in runtime if k == "ENTRYPOINT"))
    cmd = json.loads(next((a for k, a in runtime if k == "CMD"), "[]"))
    assert entry[0] == "genre-serve"
    args = build_parser().parse_args(entry[1:] + cmd)
    assert args.command == "serve" and str(args.model_repository) == image.IMAGE_MODEL_REPOSITORY
    assert args.host == "0.0.0.0" and args.health_port == launcher.DEFAULT_HEALTH_PORT
    assert not args.open_control and not args.no_heal
    assert "USER 1000" in [f"{k} {a}" for k, a in runtime]  # not root
