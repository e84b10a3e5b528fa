"""The watchdog's view of tritonserver's children and the health endpoint's
answers (the real server: tests/integration/test_self_healing.py)."""

import json
import shutil
import types
import urllib.error
import urllib.request

import pytest

from genre_serve.serving.launcher import TritonServer
from genre_serve.serving.supervisor import (
    STUB_BINARY,
    HealthEndpoint,
    Stub,
    Supervisor,
    Watchdog,
    stub_processes,
)


def _process(proc, pid, ppid, state, argv, started=1000):
    folder = proc / str(pid)
    folder.mkdir()
    rest = " ".join(["0"] * 17)  # pgrp .. itrealvalue, then starttime
    (folder / "stat").write_text(f"{pid} (triton_python_b) {state} {ppid} {rest} {started} 0 0\n")
    (folder / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + (b"\0" if argv else b""))


def _stub_argv(model, version, instance):
    return [f"/tmp/b/python/{STUB_BINARY}", f"/repo/{model}/{version}/model.py", "shm", "1048576", "1048576",
            "100", "/tmp/b/python", "336", instance, "/tmp/b/python"]


def test_stub_processes_lists_the_live_stubs_of_one_server(tmp_path):
    _process(tmp_path, 200, 100, "S", _stub_argv("genre_recommend", "3", "genre_recommend_0_1"))
    _process(tmp_path, 201, 100, "Z", [])  # a dead stub nobody reaped: empty command line
    _process(tmp_path, 202, 999, "S", _stub_argv("genre_recommend", "3", "genre_recommend_0_0"))  # another server's
    _process(tmp_path, 203, 100, "S", ["/usr/bin/sleep", "10"])  # not a stub
    _process(tmp_path, 204, 100, "S", _stub_argv("genre_item_tower", "1", "genre_item_tower_0_0")[:5])  # cut short
    # The stub a load forks to auto-complete the model's configuration (named after the model): no instance.
    _process(tmp_path, 205, 100, "S", _stub_argv("genre_recommend", "4", "genre_recommend"))
    (tmp_path / "self").mkdir()
    assert stub_processes(100, tmp_path) == [Stub(200, "genre_recommend", "3", "genre_recommend_0_1", 1000)]
    assert stub_processes(100, tmp_path / "missing") == []


def _get(url):
    try:
        with urllib.request.urlopen(f"http://{url}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class _Answers(Supervisor):
    """The endpoint's answers for states set by hand: no tritonserver runs."""

    def __init__(self):
        super().__init__(TritonServer("/nonexistent"), health_port=None, log=lambda line: None)
        self.up = True

    def live(self):
        return self.up

    def ready(self):
        if self.state.draining:
            return False, "draining: shutting down"
        broken = self.watchdog.broken
        return (not broken, "ready" if not broken else f"{next(iter(broken))}: dead")


@pytest.fixture()
def endpoint():
    answers = _Answers()
    ep = HealthEndpoint(answers, "127.0.0.1", None)
    ep.start()
    yield answers, ep.url
    ep.stop()


def test_the_health_endpoint_answers_readiness_liveness_and_why(endpoint):
    answers, url = endpoint
    assert _get(f"{url}/v2/health/ready") == (200, "ready")
    assert _get(f"{url}/v2/health/live")[0] == 200
    answers.watchdog.broken["genre_recommend"] = ["genre_recommend_0_1"]
    assert _get(f"{url}/v2/health/ready") == (503, "genre_recommend: dead")
    code, body = _get(f"{url}/health")
    assert code == 503 and json.loads(body)["reason"] == "genre_recommend: dead"
    answers.watchdog.broken.clear()
    answers.state.draining = True
    assert _get(f"{url}/v2/health/ready")[0] == 503 and _get(f"{url}/v2/health/live")[0] == 200
    answers.up = False
    assert _get(f"{url}/v2/health/live")[0] == 503
    assert _get(f"{url}/v2/models/genre_recommend/infer")[0] == 404  # nothing but health here


def test_a_taken_health_port_is_refused_in_one_line(endpoint):
    answers, url = endpoint
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(Exception, match="health port .* already in use"):
        HealthEndpoint(answers, "127.0.0.1", port).start()


class _FakeServer:
    pid, running, http_url, control_key, restrict_control = 100, True, "127.0.0.1:1", None, False


class _Watchdog(Watchdog):
    """The watchdog's bookkeeping on a fake /proc; the index says every version is READY; heals are recorded."""

    def __init__(self, proc):
        super().__init__(_FakeServer(), log=lambda line: None)
        self.proc, self.healed = proc, []

    def _control(self):
        return types.SimpleNamespace(close=lambda: None)

    def _ready_versions(self, client):
        return {"genre_recommend": {"1"}}

    def _heal(self, client, model, instances, versions):
        self.healed.append((model, instances))


def test_a_dead_stub_is_found_even_while_an_older_namesake_lingers(tmp_path):
    """After a reload the old instances' stubs live on for seconds with the
    same names: the death of a new one must not hide behind them."""
    argv = _stub_argv("genre_recommend", "1", "genre_recommend_0_0")
    _process(tmp_path, 300, 100, "S", argv, started=1000)  # the old instance, being finalised
    _process(tmp_path, 301, 100, "S", argv, started=2000)  # its successor, serving
    dog = _Watchdog(tmp_path)
    assert dog.check() == [] and dog.healed == []
    shutil.rmtree(tmp_path / "301")  # the successor dies; the old one still runs
    assert dog.check() == ["genre_recommend"] and dog.healed == [("genre_recommend", ["genre_recommend_0_0"])]
    _process(tmp_path, 302, 100, "S", argv, started=3000)  # reloaded
    shutil.rmtree(tmp_path / "300")  # and the old one finally goes: no death
    dog.healed.clear()
    assert dog.check() == [] and dog.healed == []
