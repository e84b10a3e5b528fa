"""An HAProxy configuration for N `genre-serve serve` replicas.

What it does, and why:

* **HTTP and gRPC** each get a frontend; gRPC is HTTP/2 end to end
  (``proto h2`` on the bind and the servers).
* **Health** comes from each replica's genre_serve health endpoint
  (``/v2/health/ready`` on its health port), not Triton's server readiness,
  which stays green while a model instance is dead. A replica that is
  reloading a model or draining for shutdown leaves the rotation after one
  failed check (every ``check_interval_ms``) and comes back after two good ones.
* **Retries**: a request that finds a replica dead (connection refused or
  reset, no answer, a 5xx such as a dead instance's "Stub ... is not
  healthy") is sent again to another replica (``retry-on``, ``option
  redispatch``). Recommending is a read, so that is safe. gRPC errors travel
  as HTTP 200 with a grpc-status trailer, which HAProxy cannot see; there the
  connection-level retries apply and the SDK's own retries do the rest.
* **Only inference and health pass**: the HTTP paths of health, server and
  model metadata, readiness, config, statistics and infer, and the gRPC
  methods of the same; the model-repository (load, unload, index), shared
  memory, trace and log APIs are refused with 403 at the balancer, on top of
  the control key the replicas already require.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from genre_serve.errors import UsageError

HTTP_ALLOWED = r"^/v2(/health/(live|ready)|/models/[^/]+(/versions/[0-9]+)?(/(infer|ready|config|stats))?)?$"
GRPC_SERVICE = "/inference.GRPCInferenceService/"
GRPC_ALLOWED = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
                "ModelStreamInfer", "ModelConfig", "ModelStatistics")
DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT = 9000, 9001


@dataclass(frozen=True)
class Replica:
    """One `genre-serve serve`: its host and its HTTP, gRPC and health ports."""

    host: str
    http_port: int
    grpc_port: int
    health_port: int

    @classmethod
    def parse(cls, text: str) -> Replica:
        """``HOST:HTTP:GRPC:HEALTH``, e.g. ``127.0.0.1:8000:8001:8003``."""
        parts = text.rsplit(":", 3)
        try:
            if len(parts) != 4 or not parts[0]:
                raise ValueError
            ports = [int(p) for p in parts[1:]]
            if not all(0 < p < 65536 for p in ports):
                raise ValueError
        except ValueError:
            raise UsageError(f"--replica: HOST:HTTP_PORT:GRPC_PORT:HEALTH_PORT, got {text!r}") from None
        return cls(parts[0], *ports)


def haproxy_config(replicas: Sequence[Replica], bind_host: str = "127.0.0.1",
                   http_port: int = DEFAULT_HTTP_PORT, grpc_port: int = DEFAULT_GRPC_PORT,
                   check_interval_ms: int = 500, retries: int = 3, maxconn: int = 4096) -> str:
    """The haproxy.cfg text."""
    if not replicas:
        raise UsageError("at least one --replica")
    if check_interval_ms < 50:
        raise UsageError("--check-interval-ms: at least 50")
    for r in replicas:
        if not re.fullmatch(r"[A-Za-z0-9_.:\[\]-]+", r.host):
            raise UsageError(f"--replica host {r.host!r}: a hostname or an address")
    check = f"check port {{health}} inter {check_interval_ms}ms fall 1 rise 2"
    grpc_methods = " ".join(GRPC_SERVICE + m for m in GRPC_ALLOWED)
    lines = [
        "# Rendered by `genre-serve haproxy-config` (genre_serve/deploy/haproxy.py): balances",
        f"# {len(replicas)} `genre-serve serve` replica(s). Run: haproxy -f haproxy.cfg",
        "global",
        f"    maxconn {maxconn}",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout check 1s",
        f"    retries {retries}",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response response-timeout 500 502 503 504",
        "    option http-keep-alive",
        "",
        "frontend genre_http",
        f"    bind {bind_host}:{http_port}",
        f"    http-request deny deny_status 403 unless {{ path -m reg {HTTP_ALLOWED} }}",
        "    default_backend genre_http_replicas",
        "",
        "frontend genre_grpc",
        f"    bind {bind_host}:{grpc_port} proto h2",
        f"    http-request deny deny_status 403 unless {{ path {grpc_methods} }}",
        "    default_backend genre_grpc_replicas",
        "",
        "backend genre_http_replicas",
        "    balance leastconn",
        "    option httpchk",
        "    http-check send meth GET uri /v2/health/ready",
        "    http-check expect status 200",
    ]
    for i, r in enumerate(replicas, 1):
        lines.append(f"    server replica{i} {r.host}:{r.http_port} {check.format(health=r.health_port)}")
    lines += [
        "",
        "backend genre_grpc_replicas",
        "    balance leastconn",
        "    option httpchk",
        "    http-check send meth GET uri /v2/health/ready",
        "    http-check expect status 200",
    ]
    for i, r in enumerate(replicas, 1):
        lines.append(f"    server replica{i} {r.host}:{r.grpc_port} proto h2 "
                     f"{check.format(health=r.health_port)} check-proto h1")
    return "\n".join(lines) + "\n"


def haproxy_binary() -> str:
    import os
    import shutil

    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.path.exists(p)), None)
    if not found:
        from genre_serve.errors import ServerError

        raise ServerError("haproxy is not installed: scripts/install.sh installs it with apt-get "
                          "(or: apt-get install haproxy)")
    return found


class HAProxy:
    """``haproxy -db -f CONFIG`` in the foreground, as a context manager; for
    tests and the reliability report (a deployment runs it as a service)."""

    def __init__(self, config: str, workdir):
        from pathlib import Path

        self.path = Path(workdir) / "haproxy.cfg"
        self.path.write_text(config)
        self.proc = None

    def start(self, timeout_s: float = 10.0) -> HAProxy:
        import subprocess
        import time

        from genre_serve.errors import ServerError

        binary = haproxy_binary()
        checked = subprocess.run([binary, "-c", "-q", "-f", str(self.path)], capture_output=True, text=True)
        if checked.returncode != 0:
            raise ServerError(f"haproxy rejects {self.path}: {checked.stderr.strip() or checked.stdout.strip()}")
        self.proc = subprocess.Popen([binary, "-db", "-f", str(self.path)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise ServerError(f"haproxy exited at once: {self.proc.stdout.read()[-500:]}")
        return self

    def stop(self) -> None:
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
