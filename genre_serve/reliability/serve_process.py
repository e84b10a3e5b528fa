"""`genre-serve serve` as a user runs it, in a subprocess on free loopback
ports: for the fault cases (a killed stub, a killed tritonserver, SIGTERM
under load) of the tests and the reliability report, which must see the
command's own signal handling, watchdog and health endpoint."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

from genre_serve.errors import ServerError
from genre_serve.serving.launcher import LOOPBACK, free_port
from genre_serve.serving.supervisor import Stub, stub_processes


def genre_serve_command() -> list[str]:
    """The installed `genre-serve` entry point beside this interpreter (not
    `python -m`, which would import a source folder in the working directory)."""
    script = Path(sys.executable).parent / "genre-serve"
    return [str(script)] if script.exists() else [sys.executable, "-m", "genre_serve.cli"]


class ServeProcess:
    """A context manager: `genre-serve serve --model-repository REPO` until the block ends."""

    def __init__(self, repository: Path, *extra_args: str, start_timeout_s: float = 180.0,
                 ports: tuple[int, int, int, int] | None = None):
        """`ports`: HTTP, gRPC, metrics, health (default: free ones); a
        restarted replica takes its predecessor's `.ports`."""
        self.repository, self.extra_args, self.start_timeout_s = Path(repository), list(extra_args), start_timeout_s
        self.http_port, self.grpc_port, self.metrics_port, self.health_port = ports or tuple(
            free_port() for _ in range(4))
        self.lines: deque[str] = deque(maxlen=500)
        self.proc: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"{LOOPBACK}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def ports(self) -> tuple[int, int, int, int]:
        return self.http_port, self.grpc_port, self.metrics_port, self.health_port

    def inference_count(self, model: str = "genre_recommend") -> float:
        """Successful inferences of `model` so far (Triton's Prometheus counter), 0 if unreachable."""
        from genre_serve.loadtest.sweep import scrape

        return scrape(f"http://{LOOPBACK}:{self.metrics_port}/metrics", model).get("nv_inference_request_success",
                                                                                  0.0)

    def kill(self) -> None:
        """SIGKILL of the whole replica: `serve` and its tritonserver with the stubs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            triton = self.tritonserver_pid()
        except (ServerError, KeyError, ValueError):
            triton = None
        self.proc.kill()
        if triton is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(triton, signal.SIGKILL)
        self.proc.wait()

    @property
    def health_url(self) -> str:
        return f"{LOOPBACK}:{self.health_port}"

    def start(self) -> ServeProcess:
        cmd = genre_serve_command() + [
            "serve", "--model-repository", str(self.repository), "--quiet",
            "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port), *self.extra_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=self.repository.parent)
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + self.start_timeout_s
        while not any("is ready" in line for line in list(self.lines)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.2)
                self.stop()
                raise ServerError("genre-serve serve did not start:\n" + self.log())
            time.sleep(0.1)
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def log(self) -> str:
        return "\n".join(self.lines)

    def _get(self, path: str, timeout_s: float = 2.0) -> tuple[int | None, bytes]:
        try:
            with urllib.request.urlopen(f"http://{self.health_url}{path}", timeout=timeout_s) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError):
            return None, b""

    def ready(self, timeout_s: float = 2.0) -> int | None:
        """The health endpoint's readiness answer: 200, 503, or None (no
        answer within `timeout_s`)."""
        return self._get("/v2/health/ready", timeout_s)[0]

    def report(self) -> dict:
        code, body = self._get("/health")
        if code is None:
            raise ServerError(f"no health report from {self.health_url}")
        return json.loads(body)

    def tritonserver_pid(self) -> int:
        return int(self.report()["tritonserver"]["pid"])

    def stubs(self, model: str | None = None) -> list[Stub]:
        return [s for s in stub_processes(self.tritonserver_pid()) if model is None or s.model == model]

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                triton = self.tritonserver_pid()
            except (ServerError, KeyError, ValueError):
                triton = None
            self.proc.send_signal(signal.SIGINT)  # no drain delay
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                if triton is not None:  # its own session: not killed with its parent
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(triton, signal.SIGKILL)

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def watch_readiness(process: ServeProcess, seconds: float, every_s: float = 0.05,
                    timeout_s: float = 2.0) -> list[tuple[float, int | None]]:
    """(seconds since the call, readiness answer) every `every_s` for
    `seconds`; None where no answer came within `timeout_s`."""
    t0, out = time.monotonic(), []
    while time.monotonic() - t0 < seconds:
        out.append((time.monotonic() - t0, process.ready(timeout_s)))
        time.sleep(every_s)
    return out
