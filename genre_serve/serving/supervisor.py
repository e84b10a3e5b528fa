"""Keeps a tritonserver answering, and says honestly whether it can.

`genre-serve serve` runs tritonserver under a :class:`Supervisor`, which adds
three things the Triton in use does not do by itself:

* **Self-healing.** Every python-backend model instance (``genre_recommend``,
  ``genre_recommend_batch``, the local ``onnxruntime`` stand-in) runs in a
  stub process of its own. When one dies (an OOM kill, a crash in native
  code), Triton 2.51 (the ``nvidia-pytriton`` wheel, r24.10) neither replaces
  it nor reports it: the instance answers every request it is handed with
  ``Stub process '...' is not healthy`` and the server and model readiness
  stay green. (Tritons up to r24.05 restarted a dead stub on its next
  request; r24.06 dropped that; r25.12's python backend makes the *model's*
  readiness false while a stub is dead, but still does not restart it.) The
  :class:`Watchdog` sees a stub vanish from tritonserver's children, confirms
  in the repository index that its version is still meant to be serving,
  and reloads the model through the model-control API. The reload passes the
  model's own configuration with one extra parameter, because Triton skips a
  load of an unchanged model, and pins the versions being served, so that a
  heal never rolls out a version nobody loaded. Triton serves the old
  instances (the healthy ones answer) until the new ones are ready, then
  swaps them in and finalises the old ones. If tritonserver itself dies, it
  is started again on the same ports.
* **A readiness endpoint that tells the truth** (:class:`HealthEndpoint`, its
  own port): ``/v2/health/ready`` is 200 only while every model has a
  version ready (a new version loading beside the served one does not count
  against it, unlike Triton's strict readiness), no instance is known dead
  and no drain has begun; ``/v2/health/live`` is 200 while the supervisor is
  up and tritonserver is running or being restarted; ``/health`` says why,
  in JSON. Balancers and probes use this port, in every deployment file.
  It answers at once, from what a background look at the repository index
  found at most ``poll_s`` ago, never by asking tritonserver while a probe
  waits: HAProxy's check gives a replica 1 s (deploy/haproxy) and drops it
  after one miss, and Kubernetes' probes default to 1 s, so an answer that
  waited on a busy tritonserver would take a serving replica out of
  rotation. A tritonserver that has not answered its index for
  ``index_stale_s`` (hung, or starved) is reported not ready, with why.
* **Graceful shutdown** (:meth:`Supervisor.drain`): readiness goes false
  first, the server keeps answering for a drain delay (balancers notice and
  stop sending), then tritonserver gets SIGTERM and finishes what it holds:
  Triton refuses new connections at once and answers on the open ones until
  they close, up to its exit timeout (the drain timeout).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from genre_serve.errors import ServerError
from genre_serve.serving.launcher import TritonServer

STUB_BINARY = "triton_python_backend_stub"
# The model-config parameter a heal sets (to a new value each time): Triton
# reloads a model only when something about it changed.
RESTART_PARAMETER = "genre_serve_heal"


@dataclass(frozen=True)
class Stub:
    """A live python-backend stub: the process of one model instance."""

    pid: int
    model: str
    version: str
    instance: str  # Triton's instance name, e.g. genre_recommend_0_1
    started: int = 0  # start time in clock ticks since boot (/proc/PID/stat): which of two namesakes is newer

    @property
    def key(self) -> tuple[str, str, str]:
        return self.model, self.version, self.instance


def _parse_stub(pid: int, argv: list[str], started: int = 0) -> Stub | None:
    """The stub's command line is ``<stub> <model dir>/<version>/model.py
    <shm region> <shm size> <shm growth> <parent pid> <backend dir>
    <ipc handle> <instance name> ...``."""
    if len(argv) < 9 or Path(argv[0]).name != STUB_BINARY:
        return None
    model_file = Path(argv[1])
    model = model_file.parent.parent.name
    if argv[8] == model:
        # The short-lived stub Triton forks while loading a model, to
        # auto-complete its configuration: named after the model, serving nothing.
        return None
    return Stub(pid, model, model_file.parent.name, argv[8], started)


def stub_processes(server_pid: int, proc: Path = Path("/proc")) -> list[Stub]:
    """The live stubs among `server_pid`'s children. A dead stub Triton has
    not reaped (a zombie) has an empty command line and is not listed."""
    stubs = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return stubs
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = (proc / entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) != server_pid or fields[0] in ("Z", "X"):
                continue
            argv = (proc / entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        started = int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else 0
        stub = _parse_stub(int(entry), [a.decode(errors="replace") for a in argv], started)
        if stub is not None:
            stubs.append(stub)
    return stubs


@dataclass
class Heal:
    """One recovery: what died, what was reloaded, how long it took."""

    model: str
    instances: list[str]
    detected: float  # time.time()
    seconds: float | None = None  # detection -> the reloaded model ready; None: still healing or failed
    error: str | None = None

    def as_dict(self) -> dict:
        return {"model": self.model, "instances": self.instances, "detected": round(self.detected, 3),
                "seconds": None if self.seconds is None else round(self.seconds, 3), "error": self.error}


class Watchdog:
    """Finds dead model instances of one tritonserver and reloads their models.

    An instance counts as dead when the newest stub seen for a (model,
    version, instance name) is gone, no newer one has taken its name, and the
    repository index still reports that version READY. A version being
    unloaded (a rollout retiring it) is UNLOADING or UNAVAILABLE there, and a
    reload's new stubs carry the old names with a later start, so neither
    looks like a death; nor do the old stubs of a reload, which linger for
    seconds until Triton has finalised them (and must not hide a death of
    their successors, which is why the newest stub of a name is what counts).
    """

    def __init__(self, server: TritonServer, log: Callable[[str], None] = print, heal: bool = True):
        self.server, self.log, self.heal = server, log, heal
        self.heals: deque[Heal] = deque(maxlen=100)
        self.broken: dict[str, list[str]] = {}  # model -> its dead instances, until reloaded
        self._newest: dict[tuple[str, str, str], Stub] = {}  # (model, version, instance) -> newest stub seen
        self.proc = Path("/proc")
        self._server_pid: int | None = None
        self._count = 0
        self._lock = threading.Lock()

    def _control(self):
        import tritonclient.http as http

        return http.InferenceServerClient(self.server.http_url, network_timeout=60.0, connection_timeout=5.0)

    def _headers(self) -> dict[str, str] | None:
        from genre_serve.formats.repository import control_headers

        return control_headers(self.server.control_key, "http") if self.server.restrict_control else None

    def _ready_versions(self, client) -> dict[str, set[str]]:
        index = client.get_model_repository_index(headers=self._headers())
        ready: dict[str, set[str]] = {}
        for entry in index:
            if entry.get("state") == "READY":
                ready.setdefault(entry["name"], set()).add(str(entry.get("version", "")))
        return ready

    def check(self) -> list[str]:
        """One look: the models with a dead instance, healed before this
        returns (the readiness endpoint says not-ready meanwhile)."""
        pid = self.server.pid
        if pid is None or not self.server.running:
            return []
        if pid != self._server_pid:  # a new tritonserver: nothing of the old one applies
            self._server_pid, self._newest = pid, {}
        alive: dict[tuple[str, str, str], Stub] = {}
        for stub in stub_processes(pid, self.proc):
            if stub.key not in alive or stub.started > alive[stub.key].started:
                alive[stub.key] = stub
        for key, stub in alive.items():
            if key not in self._newest or stub.started >= self._newest[key].started:
                self._newest[key] = stub
        gone = [key for key, stub in self._newest.items()
                if key not in alive or alive[key].started < stub.started]
        missing: dict[tuple[str, str], list[str]] = {}
        for model, version, instance in gone:
            missing.setdefault((model, version), []).append(instance)
        with self._lock:  # a model reloaded by someone else (--no-heal) is whole again
            for model in [m for m in self.broken if not any(k[0] == m for k in missing)]:
                self.broken.pop(model)
        if not missing:
            return []
        client = self._control()
        try:
            ready = self._ready_versions(client)
            dead: dict[str, list[str]] = {}
            for (model, version), names in missing.items():
                if version in ready.get(model, set()):
                    dead.setdefault(model, []).extend(names)
                else:  # retired (or failed to load): not ours to bring back
                    for name in names:
                        self._newest.pop((model, version, name), None)
            for model, names in dead.items():
                if self.heal:
                    self._heal(client, model, sorted(names), ready.get(model, set()))
                elif model not in self.broken:
                    with self._lock:
                        self.broken[model] = sorted(names)
                    self.log(f"genre_serve: {model}: instance {', '.join(sorted(names))} died "
                             "(--no-heal: not reloading it; readiness stays false)")
            return sorted(dead)
        finally:
            client.close()

    def _heal(self, client, model: str, instances: list[str], versions: set[str]) -> None:
        heal = Heal(model, instances, time.time())
        with self._lock:
            self.broken[model] = instances
            self.heals.append(heal)
        self.log(f"genre_serve: {model}: instance {', '.join(instances)} died; reloading the model")
        t0 = time.monotonic()
        try:
            config = client.get_model_config(model)
            self._count += 1
            config.setdefault("parameters", {})[RESTART_PARAMETER] = {"string_value": str(self._count)}
            numeric = sorted(int(v) for v in versions if v.isdigit())
            if numeric:  # serve exactly what was serving
                config["version_policy"] = {"specific": {"versions": numeric}}
            client.load_model(model, headers=self._headers(), config=json.dumps(config))
        except Exception as e:  # noqa: BLE001 - reported; the next check tries again
            heal.error = f"{type(e).__name__}: {e}"[:300]
            self.log(f"genre_serve: {model}: reload failed ({heal.error}); trying again")
            return
        heal.seconds = time.monotonic() - t0
        for stub in stub_processes(self.server.pid or 0, self.proc):  # the reloaded instances: newest from now on
            if stub.model == model and stub.key in self._newest and stub.started >= self._newest[stub.key].started:
                self._newest[stub.key] = stub
        with self._lock:
            self.broken.pop(model, None)
        self.log(f"genre_serve: {model}: reloaded in {heal.seconds:.1f} s")

    def forget(self) -> None:
        """tritonserver is being restarted: every instance is new."""
        with self._lock:
            self.broken.clear()
        self._newest, self._server_pid = {}, None


@dataclass
class HealthState:
    """What the health endpoint answers from."""

    draining: bool = False
    restarting: bool = False
    gave_up: str | None = None
    triton_restarts: int = 0


class Supervisor:
    """tritonserver, its watchdog, the health endpoint and the drain.

    Parameters
    ----------
    server : the TritonServer to run (not started yet).
    health_host, health_port : where the health endpoint listens (port None: a free one).
    poll_s : how often the watchdog looks at the stubs and tritonserver, and
        the readiness look at the repository index.
    index_stale_s : readiness is false once tritonserver has not answered its
        repository index for this long.
    heal : False: watch and report (readiness false), never reload or restart.
    max_restarts : tritonserver restarts allowed within ``restart_window_s``
        before the supervisor gives up (a server that dies on every start
        is not helped by starting it again).
    """

    def __init__(self, server: TritonServer, health_host: str | None = None, health_port: int | None = None,
                 poll_s: float = 0.2, heal: bool = True, max_restarts: int = 5, restart_window_s: float = 300.0,
                 log: Callable[[str], None] = print, index_stale_s: float = 5.0):
        self.server, self.poll_s, self.heal, self.log = server, poll_s, heal, log
        self.index_stale_s = index_stale_s
        # (monotonic time the latest look at the repository index ended, its verdict, why)
        self._models: tuple[float, bool, str] | None = None
        server.die_with_parent = True  # started by threads that outlive it: the caller's, then the watchdog's
        self.max_restarts, self.restart_window_s = max_restarts, restart_window_s
        self.state = HealthState()
        self.watchdog = Watchdog(server, log, heal)
        self.endpoint = HealthEndpoint(self, health_host or server.host, health_port)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._index_thread: threading.Thread | None = None
        self._restarts: deque[float] = deque()

    # --- what the endpoint says ---------------------------------------------------------------

    def live(self) -> bool:
        return self.state.gave_up is None and (self.server.running or self.state.restarting)

    def ready(self) -> tuple[bool, str]:
        """(ready, why not)."""
        if self.state.gave_up:
            return False, self.state.gave_up
        if self.state.draining:
            return False, "draining: shutting down"
        if self.state.restarting or not self.server.running:
            return False, "tritonserver is restarting"
        broken = dict(self.watchdog.broken)
        if broken:
            return False, "; ".join(f"{m}: instance {', '.join(n)} died, reloading" for m, n in broken.items())
        return self._models_serving()

    def _models_serving(self) -> tuple[bool, str]:
        """The latest look at the repository index, if it is recent enough
        (answers at once: a probe never waits on tritonserver)."""
        look = self._models
        if look is None:
            return False, "the models have not been looked at yet"
        ended, ok, why = look
        age = time.monotonic() - ended
        if age > self.index_stale_s:
            return False, f"tritonserver has not answered its repository index for {age:.1f} s"
        return ok, why

    def _look_at_models(self) -> None:
        """Whether every model of the server has a version READY. Not
        Triton's strict server readiness, which is false while a *new*
        version loads beside the one serving: a replica in a rollout answers
        throughout and must stay in its balancer's rotation."""
        verdict = self._index_verdict()
        self._models = (time.monotonic(), *verdict)  # the time it ended: a slow answer is as old as its end

    def _index_verdict(self) -> tuple[bool, str]:
        import urllib.error
        import urllib.request

        from genre_serve.formats.repository import control_headers

        headers = (control_headers(self.server.control_key, "http") or {}) if self.server.restrict_control else {}
        request = urllib.request.Request(f"http://{self.server.http_url}/v2/repository/index", data=b"{}",
                                         headers={"Content-Type": "application/json", **headers}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.index_stale_s) as r:
                index = json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            return False, f"tritonserver does not answer its repository index ({e})"
        states: dict[str, set[str]] = {}
        for entry in index:
            states.setdefault(entry.get("name", "?"), set()).add(entry.get("state", ""))
        if not states:
            return False, "no model loaded"
        down = sorted(m for m, s in states.items() if "READY" not in s)
        if down:
            return False, f"{', '.join(down)}: no version ready (loading, or failed to load)"
        return True, "ready"

    def report(self) -> dict:
        ready, why = self.ready()
        return {"ready": ready, "live": self.live(), "reason": why, "draining": self.state.draining,
                "tritonserver": {"pid": self.server.pid, "http": self.server.http_url, "grpc": self.server.grpc_url,
                                 "restarts": self.state.triton_restarts},
                "heals": [h.as_dict() for h in self.watchdog.heals]}

    # --- running ---------------------------------------------------------------------------------

    def start(self, timeout_s: float = 180.0) -> Supervisor:
        self.endpoint.start()
        try:
            self.server.start(timeout_s)
            self.watchdog.check()  # the baseline: every stub of a ready server, before anything can die unseen
            self._look_at_models()
        except BaseException:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._watch, name="genre-serve-watchdog", daemon=True)
        self._thread.start()
        # Its own thread: a heal or a restart blocks the watchdog for seconds (readiness is false then
        # for its own reasons), and a hung index call must not stop the watchdog's looks at the stubs.
        self._index_thread = threading.Thread(target=self._watch_models, name="genre-serve-readiness", daemon=True)
        self._index_thread.start()
        return self

    def _watch_models(self) -> None:
        while not self._stop.wait(self.poll_s):
            if self.state.draining or not self.server.running:
                continue
            try:
                self._look_at_models()
            except Exception as e:  # noqa: BLE001 - the look must outlive one bad answer
                self._models = (time.monotonic(), False, f"looking at the repository index failed: {e}")

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            if self.state.draining:
                continue
            try:
                if not self.server.running:
                    if self.heal:
                        self._restart_server()
                    elif self.state.gave_up is None:
                        self.state.gave_up = f"tritonserver exited (code {self.server.returncode})"
                    continue
                self.watchdog.check()
            except Exception as e:  # noqa: BLE001 - the watchdog must outlive one bad look
                self.log(f"genre_serve: watchdog: {type(e).__name__}: {e}")

    def _restart_server(self) -> None:
        if self.state.gave_up:
            return
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > self.restart_window_s:
            self._restarts.popleft()
        code = self.server.returncode
        if len(self._restarts) >= self.max_restarts:
            self.state.gave_up = (f"tritonserver exited (code {code}) {len(self._restarts) + 1} times within "
                                  f"{self.restart_window_s:.0f} s; not restarting it again")
            self.log(f"genre_serve: {self.state.gave_up}")
            return
        self._restarts.append(now)
        self.state.restarting = True
        self.watchdog.forget()
        self.log(f"genre_serve: tritonserver exited unexpectedly (code {code}); starting it again")
        t0 = time.monotonic()
        try:
            self.server.restart()
            self.watchdog.check()  # the new server's baseline
            self.state.triton_restarts += 1
            self.log(f"genre_serve: tritonserver is back in {time.monotonic() - t0:.1f} s")
        except ServerError as e:
            self.log(f"genre_serve: tritonserver did not come back: {e}")
        finally:
            self.state.restarting = False

    @property
    def failed(self) -> str | None:
        """Why the supervisor gave up (tritonserver keeps dying), or None."""
        return self.state.gave_up

    def drain(self, delay_s: float, interrupted: threading.Event | None = None) -> None:
        """Readiness false, answer for `delay_s` more (until `interrupted`),
        then stop tritonserver gracefully (it finishes the open connections'
        requests within its exit timeout)."""
        self.state.draining = True
        if delay_s > 0:
            self.log(f"genre_serve: draining: readiness is false; still answering for {delay_s:g} s")
            (interrupted or threading.Event()).wait(delay_s)
        self.stop()

    def stop(self) -> None:
        self.state.draining = True  # the watchdog stands still from here
        # tritonserver first: one the watchdog thread restarted dies with that
        # thread (its parent-death signal), which must not cut the drain short.
        self.server.stop(timeout_s=self.server.exit_timeout_s + 10)
        self._stop.set()
        for thread in (self._thread, self._index_thread):
            if thread is not None:
                thread.join(timeout=60)
        self.endpoint.stop()

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class HealthEndpoint:
    """``/v2/health/ready``, ``/v2/health/live`` (200 or 503, as Triton's
    paths, so probe configurations read the same) and ``/health`` (JSON) on
    a port of the supervisor's own."""

    def __init__(self, supervisor: Supervisor, host: str, port: int | None):
        self.supervisor, self.host, self.port = supervisor, host, port
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        from genre_serve.serving.launcher import free_port, port_is_free

        if self.port is None:
            self.port = free_port(self.host)
        elif not port_is_free(self.host, self.port):
            raise ServerError(f"health port {self.port} on {self.host} is already in use")
        supervisor = self.supervisor

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body_wanted: bool) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/v2/health/ready":
                    ok, why = supervisor.ready()
                    code, body, kind = (200 if ok else 503), why.encode(), "text/plain"
                elif path == "/v2/health/live":
                    ok = supervisor.live()
                    code, body, kind = (200 if ok else 503), (b"live" if ok else b"not live"), "text/plain"
                elif path == "/health":
                    doc = supervisor.report()
                    code, body, kind = (200 if doc["ready"] else 503), json.dumps(doc).encode(), "application/json"
                else:
                    code, body, kind = 404, b"not found: /v2/health/ready, /v2/health/live, /health", "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body_wanted:
                    self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._answer(True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(False)

            def log_message(self, *args) -> None:  # probes every second: not worth a log line
                pass

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="genre-serve-health", daemon=True).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
