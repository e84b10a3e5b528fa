"""Starts a real `tritonserver` on a model repository.

Locally the binary comes from the PyPI package nvidia-pytriton. That build has
the python backend but no native onnxruntime backend, so the launcher
assembles a backend directory: the python backend's files (copied, not
symlinked) with the stub for the running Python beside them, and a
Python-based backend named ``onnxruntime`` that runs model.onnx with
onnxruntime. The same repository runs unchanged in the NGC container, whose
native onnxruntime backend takes over there: with GENRE_SERVE_TRITON_HOME set
(deploy/Dockerfile sets /opt/tritonserver) the launcher runs that
installation's tritonserver with its own backends directory.

Security defaults: binds to 127.0.0.1 unless told otherwise; loads models only
from the given repository; the command line is an argument list, never a
shell string.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from genre_serve.errors import ServerError

LOOPBACK = "127.0.0.1"
# `genre-serve serve`'s ports (Triton's defaults, and genre_serve's health endpoint
# beside them); tests and the quickstart take free ones.
DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT = 8000, 8001, 8002
DEFAULT_HEALTH_PORT = 8003

ONNXRUNTIME_BACKEND_SHIM = (
    "# Python-based Triton backend 'onnxruntime' assembled by genre_serve's launcher.\n"
    "from genre_serve.serving.stubs.onnxruntime_backend import TritonPythonModel  # noqa: F401\n"
)


REMOTE_REPOSITORY_SCHEMES = ("s3://", "gs://", "as://")


def is_remote_repository(repository: object) -> bool:
    """A model repository in object storage, which Triton reads natively."""
    return isinstance(repository, str) and repository.startswith(REMOTE_REPOSITORY_SCHEMES)


def pytriton_dist() -> Path:
    try:
        import pytriton
    except ImportError:
        raise ServerError("the local tritonserver comes from the package nvidia-pytriton: "
                          "pip install nvidia-pytriton") from None
    return Path(pytriton.__file__).parent / "tritonserver"


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def assemble_backends(dest: Path) -> Path:
    """<dest>/python (files copied + stub for this Python) and <dest>/onnxruntime."""
    dist = pytriton_dist()
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise ServerError(f"nvidia-pytriton has no python backend stub for Python {version}")
    python_dir = dest / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for f in (dist / "backends" / "python").iterdir():
        if f.is_file():
            shutil.copy2(f, python_dir / f.name)
    shutil.copy2(stub, python_dir / "triton_python_backend_stub")
    ort_dir = dest / "onnxruntime"
    ort_dir.mkdir(parents=True, exist_ok=True)
    (ort_dir / "model.py").write_text(ONNXRUNTIME_BACKEND_SHIM)
    return dest


def http_ready(http_url: str, timeout_s: float = 2.0) -> bool:
    """Whether the server at `http_url` ("host:port") answers its readiness probe."""
    try:
        with urllib.request.urlopen(f"http://{http_url}/v2/health/ready", timeout=timeout_s) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


# A Triton installation with its own backends (the NGC container's /opt/tritonserver):
# `serve` then runs its tritonserver with its native onnxruntime and python backends.
TRITON_HOME_ENV = "GENRE_SERVE_TRITON_HOME"


def triton_home() -> Path | None:
    """GENRE_SERVE_TRITON_HOME, checked, or None (the nvidia-pytriton wheel's tritonserver)."""
    home = os.environ.get(TRITON_HOME_ENV)
    if not home:
        return None
    home_path = Path(home)
    if not (home_path / "bin" / "tritonserver").is_file() or not (home_path / "backends").is_dir():
        raise ServerError(f"{TRITON_HOME_ENV}={home}: no bin/tritonserver and backends/ there")
    return home_path


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that started it
    dies (Linux's PR_SET_PDEATHSIG), so that a killed `serve` or test never
    leaves a tritonserver holding its ports; its stubs then exit on their own."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux/glibc: the server outlives a killed parent, as before


def server_environment(native: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    libs = [] if native else [
        str(pytriton_dist().parent.parent / "nvidia_pytriton.libs"),
        sysconfig.get_config_var("LIBDIR"),  # the stub embeds libpython3.X.so
    ]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libs)
    # The stub must see the launcher's packages (numpy, onnxruntime,
    # genre_serve) and nothing from the working directory.
    site = [p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p)]
    env["PYTHONPATH"] = ":".join(dict.fromkeys(site))
    env.setdefault("OMP_NUM_THREADS", "1")  # many small requests: no per-call thread teams
    return env


@dataclass
class TritonServer:
    """A tritonserver process on loopback ports; a context manager.

    ``model_control="explicit"`` loads every model at start and lets
    :mod:`genre_serve.client.model_control` load new versions in dependency order.
    """

    model_repository: Path  # or an object-storage URL (s3://, gs://, as://) that Triton reads itself
    host: str = LOOPBACK
    http_port: int | None = None
    grpc_port: int | None = None
    metrics_port: int | None = None
    model_control: str = "explicit"
    log_verbose: int = 0
    forward_logs: bool = False
    extra_args: list[str] = field(default_factory=list)
    # Seconds tritonserver waits on SIGTERM for the open connections' requests (Triton's --exit-timeout-secs).
    exit_timeout_s: int = 10
    # SIGKILL tritonserver when the thread that started it exits (PR_SET_PDEATHSIG):
    # a killed `serve` leaves no server holding its ports. Off by default: a
    # server started from a short-lived thread would die with it.
    die_with_parent: bool = False
    check_format: bool = True  # False: any Triton repository (the benchmarks' trivial floor model)
    # The model-repository API (load, unload, index) needs this key in the
    # genre-serve-control-key header; None: the repository's key file (made
    # with a new random key if missing). restrict_control=False leaves the API open.
    control_key: str | None = None
    restrict_control: bool = True
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _workdir: tempfile.TemporaryDirectory | None = field(default=None, init=False, repr=False)
    _log: deque = field(default_factory=lambda: deque(maxlen=200), init=False, repr=False)

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def command(self, backend_dir: Path) -> list[str]:
        home = triton_home()
        binary = (home or pytriton_dist()) / "bin" / "tritonserver"
        args = [
            str(binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--model-control-mode={self.model_control}",
            f"--log-verbose={self.log_verbose}",
            f"--exit-timeout-secs={int(self.exit_timeout_s)}",
            "--strict-readiness=true",
        ]
        if self.model_control == "explicit":
            args.append("--load-model=*")
        if self.restrict_control and self.control_key:
            from genre_serve.formats.repository import CONTROL_HEADER

            args += [f"--http-restricted-api=model-repository:{CONTROL_HEADER}={self.control_key}",
                     f"--grpc-restricted-protocol=model-repository:{CONTROL_HEADER}={self.control_key}"]
        return args + list(self.extra_args)

    def start(self, timeout_s: float = 180.0) -> TritonServer:
        from genre_serve.formats.repository import check_repository

        if is_remote_repository(self.model_repository):
            # Triton reads s3://, gs://, as:// itself (into a local temporary copy); nothing to check here.
            if self.restrict_control and self.control_key is None:
                raise ServerError(f"{self.model_repository}: a repository in object storage has no key file: "
                                  "give --control-key or GENRE_SERVE_CONTROL_KEY (or --open-control)")
        else:
            repo = Path(self.model_repository)
            if self.check_format:
                check_repository(repo)  # one clear line now, rather than a failed model load in the server log
            self.model_repository = repo.resolve()
        if self.restrict_control and self.control_key is None:
            from genre_serve.formats.repository import serving_control_key

            self.control_key = serving_control_key(self.model_repository)
        for name in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, name)
            if port is None:
                setattr(self, name, free_port(self.host))
            elif not port_is_free(self.host, port):
                raise ServerError(f"{name.replace('_', ' ')} {port} on {self.host} is already in use")
        self._workdir = tempfile.TemporaryDirectory(prefix="genre-serve-triton-")
        home = triton_home()
        # The wheel's Triton has no native onnxruntime backend: assemble a directory with the stand-in.
        backends = home / "backends" if home else assemble_backends(Path(self._workdir.name) / "backends")
        self._proc = subprocess.Popen(
            self.command(backends),
            env=server_environment(native=home is not None),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Not the caller's folder: the python-backend stubs would import a
            # source checkout found there (without its compiled _C) instead of
            # the installed package.
            cwd=self._workdir.name,
            start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop the server
            # The death signal follows the *thread* that started the server, so
            # only a caller whose starting threads outlive the server asks for it
            # (the supervisor: its main thread, then its watchdog's for restarts).
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )
        threading.Thread(target=self._pump_logs, daemon=True).start()
        self.wait_until_ready(timeout_s)
        return self

    def _pump_logs(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._log.append(line.rstrip())
            if self.forward_logs:
                print(line, end="", file=sys.stderr, flush=True)

    def logs(self) -> str:
        return "\n".join(self._log)

    def _failure_summary(self) -> str:
        """Triton's error lines (E<date> ...) first, then the last lines of the log."""
        errors = [line for line in self._log if line[:1] == "E" and line[1:5].isdigit()]
        return "\n".join(errors[-10:] + ["..."] + list(self._log)[-15:])

    def is_ready(self) -> bool:
        return http_ready(self.http_url)

    def wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                time.sleep(0.2)  # let the log pump drain
                raise ServerError(
                    f"tritonserver exited with code {self._proc.returncode} while starting:\n" + self._failure_summary()
                )
            if self.is_ready():
                return
            time.sleep(0.25)
        tail = self._failure_summary()
        self.stop()
        raise ServerError(f"tritonserver was not ready within {timeout_s:.0f} s:\n{tail}")

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        """tritonserver's exit code once it has exited, else None."""
        return None if self._proc is None else self._proc.poll()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None:
            # A tritonserver that exits at its exit timeout, or dies, can leave
            # python-backend stubs running (reparented, still in its process
            # group): end them with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def kill(self) -> None:
        """Stops the server abruptly (SIGKILL), as a crash would: tritonserver
        and its python-backend stubs (its process group) at once."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def restart(self, timeout_s: float = 180.0, kill: bool = False) -> TritonServer:
        """Stops the server (SIGTERM, or SIGKILL with ``kill``) and starts it
        again on the same ports, ready when this returns."""
        if kill:
            self.kill()
        self.stop()
        deadline = time.monotonic() + 30
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        while not all(port_is_free(self.host, p) for p in ports):  # the old sockets may linger briefly
            if time.monotonic() > deadline:
                raise ServerError(f"ports {ports} on {self.host} stayed busy after the server stopped")
            time.sleep(0.1)
        return self.start(timeout_s)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
