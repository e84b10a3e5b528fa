"""Security defaults: loopback unless asked, one model repository, no shell."""

import ast
from pathlib import Path

from genre_serve.cli import build_parser
from genre_serve.serving.launcher import TritonServer, server_environment

ROOT = Path(__file__).resolve().parents[2]


def test_the_server_binds_every_endpoint_to_loopback_by_default(tmp_path):
    server = TritonServer(tmp_path / "repo", http_port=1, grpc_port=2, metrics_port=3)
    args = server.command(tmp_path / "backends")
    assert server.host == "127.0.0.1"
    for flag in ("--http-address", "--grpc-address", "--metrics-address"):
        assert f"{flag}=127.0.0.1" in args
    assert build_parser().parse_args(["serve", "--model-repository", "r"]).host == "127.0.0.1"


def test_models_come_from_the_given_repository_only(tmp_path):
    args = TritonServer(tmp_path / "repo", http_port=1, grpc_port=2, metrics_port=3).command(tmp_path / "b")
    assert [a for a in args if a.startswith("--model-repository")] == [f"--model-repository={tmp_path / 'repo'}"]
    assert "--model-control-mode=explicit" in args  # nothing loads or unloads except through the launcher
    # The backend stubs import installed packages only, never the caller's working folder.
    paths = server_environment()["PYTHONPATH"].split(":")
    assert all(p and Path(p).is_absolute() and ("site-packages" in p or "dist-packages" in p) for p in paths)


def _calls(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_nothing_is_passed_to_a_shell():
    sources = [p for d in ("genre_serve", "benchmarks", "scripts") for p in (ROOT / d).rglob("*.py")]
    assert sources
    offenders = []
    for path in sources:
        for call in _calls(path):
            name = ast.unparse(call.func)
            if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"):
                offenders.append(f"{path}:{call.lineno} {name}")
            for kw in call.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    offenders.append(f"{path}:{call.lineno} shell=")
    assert not offenders, offenders


def test_model_control_is_restricted_to_the_servers_key(tmp_path):
    args = TritonServer(tmp_path / "repo", http_port=1, grpc_port=2, metrics_port=3, control_key="k1").command(
        tmp_path / "b")
    assert "--http-restricted-api=model-repository:genre-serve-control-key=k1" in args
    assert "--grpc-restricted-protocol=model-repository:genre-serve-control-key=k1" in args
    assert not [a for a in TritonServer(tmp_path / "repo", http_port=1, grpc_port=2, metrics_port=3,
                                        control_key="k1", restrict_control=False).command(tmp_path / "b")
                if "restricted" in a]
