"""`genre-serve serve` heals itself and drains (issue 15, items 1 and 4): a
real server in a subprocess, a real load, real SIGKILLs and SIGTERMs.

The fast versions; benchmarks/reliability.py repeats them on the MovieLens
model and records the recovery times."""

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from genre_serve.client import GenreClient
from genre_serve.client.core import DEFAULT_RETRIES
from genre_serve.client.model_control import load_latest
from genre_serve.errors import ServerError
from genre_serve.export.repository import export_run
from genre_serve.loadtest.traffic import BackgroundTraffic
from genre_serve.reliability.serve_process import ServeProcess, watch_readiness

pytestmark = pytest.mark.triton

HISTORIES = [[f"i{j}" for j in range(i, i + 12)] for i in range(40)]


@pytest.fixture()
def repo_copy(repository, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    return repo


def _wait_for(predicate, timeout_s: float, what: str, serve: ServeProcess | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    log = "" if serve is None else "\nthe server's log (last 60 lines):\n" + "\n".join(serve.log().splitlines()[-60:])
    raise AssertionError(f"not within {timeout_s} s: {what}{log}")


def _healed(serve: ServeProcess) -> bool:
    try:
        heals = serve.report()["heals"]
    except ServerError:  # the health endpoint did not answer this time (a loaded machine)
        return False
    return bool(heals) and heals[-1]["seconds"] is not None


def test_a_killed_stub_is_replaced_under_load_and_default_clients_see_no_failure(repo_copy, trained_run):
    with ServeProcess(repo_copy) as serve:
        assert serve.ready() == 200
        before = {s.instance: s.pid for s in serve.stubs("genre_recommend")}
        victim = sorted(before)[0]
        # The SDK's default retry settings (6 retries from 0.1 s, doubling).
        with BackgroundTraffic(serve.http_url, HISTORIES, k=5, concurrency=4, timeout_s=10,
                               retries=DEFAULT_RETRIES) as traffic:
            traffic.wait_for_answers(50)
            os.kill(before[victim], signal.SIGKILL)
            readiness = watch_readiness(serve, 1.0)
            # Healed: the health report's heal has its duration (read there, not in the log's
            # last lines), and readiness is back. Typically 2-3 s; the bound is for a loaded CI machine.
            _wait_for(lambda: serve.ready() == 200 and _healed(serve), 120, "the model reloaded", serve)
            traffic.wait_for_answers(50, since=time.monotonic())
        summary = traffic.summary()
        assert summary["requests"] == summary["ok"], summary
        assert 503 in [code for _, code in readiness], readiness  # not ready while the instance was dead
        after = {s.instance: s.pid for s in serve.stubs("genre_recommend")}
        assert set(after) == set(before) and after[victim] != before[victim]
        heal = serve.report()["heals"][-1]
        assert heal["model"] == "genre_recommend" and heal["instances"] == [victim] and heal["error"] is None

        # A rollout after a heal still switches to the new version (the heal's
        # pinned configuration does not outlive the next load).
        version = export_run(trained_run, repo_copy).version
        during = []
        # Probed as HAProxy checks (deploy/haproxy: a 1 s timeout, out after one miss).
        watcher = threading.Thread(target=lambda: during.extend(watch_readiness(serve, 2.0, timeout_s=1.0)))
        watcher.start()
        load_latest(serve.http_url, control_key=(repo_copy / ".genre_serve.control_key").read_text().strip())
        watcher.join()
        # Loading a new version beside the served one is no reason to leave a balancer's rotation,
        # nor is it a death: the stubs a load starts and retires are not mistaken for crashed ones.
        assert during and all(code == 200 for _, code in during), during
        time.sleep(1.0)
        assert len(serve.report()["heals"]) == 1, serve.report()["heals"]
        with GenreClient(serve.http_url) as client:
            _, served = client.recommend_versioned(["i1", "i2"], 5)
        assert served == version


def test_a_killed_tritonserver_is_started_again(repo_copy):
    with ServeProcess(repo_copy) as serve:
        old = serve.tritonserver_pid()
        os.killpg(old, signal.SIGKILL)  # tritonserver and its stubs, as an OOM kill of the group would
        _wait_for(lambda: serve.ready() != 200, 10, "readiness false after the kill", serve)
        _wait_for(lambda: serve.ready() == 200, 120, "tritonserver back", serve)
        assert serve.tritonserver_pid() != old and serve.report()["tritonserver"]["restarts"] == 1
        with GenreClient(serve.http_url) as client:
            assert len(client.recommend(["i1", "i2"], 5)) == 5


def test_readiness_answers_at_once_while_tritonserver_hangs_and_then_says_it_is_not_ready(repo_copy):
    # A probe gets its answer within HAProxy's 1 s check timeout whatever tritonserver does: a
    # stopped (or starved) tritonserver is first answered for from the last look (it was ready a
    # moment ago), then, once it has not answered its index for a while, reported not ready.
    with ServeProcess(repo_copy) as serve:
        triton = serve.tritonserver_pid()
        os.kill(triton, signal.SIGSTOP)
        try:
            answers = watch_readiness(serve, 2.0, every_s=0.2, timeout_s=1.0)
            _wait_for(lambda: serve.ready(timeout_s=1.0) == 503, 30, "readiness false while hung", serve)
            reason = serve.report()["reason"]
        finally:
            os.kill(triton, signal.SIGCONT)
        assert answers and all(code is not None for _, code in answers), answers
        assert "has not answered its repository index" in reason, reason
        _wait_for(lambda: serve.ready() == 200, 30, "readiness back after the hang", serve)
        assert serve.tritonserver_pid() == triton  # a hang is reported, not mistaken for a death
        with GenreClient(serve.http_url) as client:
            assert len(client.recommend(["i1", "i2"], 5)) == 5


def test_without_heal_a_dead_instance_is_reported_not_hidden(repo_copy):
    with ServeProcess(repo_copy, "--no-heal") as serve:
        victim = serve.stubs("genre_recommend")[0]
        os.kill(victim.pid, signal.SIGKILL)
        # Nothing reloads it, and Triton's own readiness stays green: ours must not.
        _wait_for(lambda: serve.ready() == 503, 10, "readiness false", serve)
        time.sleep(1.0)
        assert serve.ready() == 503 and "reloaded" not in serve.log()
        assert victim.instance in serve.report()["reason"]


def test_sigterm_under_load_answers_what_was_accepted_then_exits_zero(repo_copy):
    with ServeProcess(repo_copy, "--drain-delay-s", "1", "--drain-timeout-s", "5") as serve:
        with BackgroundTraffic(serve.http_url, HISTORIES, k=5, concurrency=4, timeout_s=10, retries=0) as traffic:
            traffic.wait_for_answers(50)
            triton = serve.tritonserver_pid()
            signalled = time.monotonic()
            serve.signal(signal.SIGTERM)
            readiness = watch_readiness(serve, 0.5)
            code = serve.wait(60)
        assert code == 0
        # False at once: from the first answer that can follow the signal's delivery (the
        # process must first be scheduled on a loaded machine) to the end of the window.
        settled = [c for t, c in readiness if t >= 0.1]
        assert settled and all(c != 200 for c in settled), readiness
        accepted = [o for o in traffic.outcomes if o.started < signalled]
        assert accepted and all(o.ok for o in accepted), [o.message for o in accepted if not o.ok][:3]
        # The drain delay kept answering on the open connections.
        assert any(o.ok and o.started > signalled + 0.5 for o in traffic.outcomes)
        assert "draining" in serve.log()
        # Nothing of the server outlives it: no stub left running in its process group.
        _wait_for(lambda: not _group_members(triton), 10, "the stubs to go with tritonserver")


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                members.append(int(entry))
    return members


def test_a_sigkilled_serve_leaves_no_tritonserver_behind(repo_copy):
    serve = ServeProcess(repo_copy).start()
    try:
        triton = serve.tritonserver_pid()
        serve.proc.kill()  # serve alone: nothing gets to stop its server
        serve.proc.wait()

        def gone() -> bool:
            try:
                with open(f"/proc/{triton}/stat") as f:
                    return f.read().split(") ")[1][0] in "ZX"  # a zombie is dead, only not yet reaped
            except FileNotFoundError:
                return True

        _wait_for(gone, 15, "tritonserver to die with its parent")
    finally:
        serve.stop()
