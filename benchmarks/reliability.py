"""The reliability report: every bad input, overload, rollout, restart and
fuzz case of issue 6 against a real tritonserver on loopback, with counts.

    python benchmarks/reliability.py --run runs/quickstart            # about 10 minutes
    python benchmarks/reliability.py --run runs/quickstart --asan     # + the AddressSanitizer fuzz run

Writes benchmarks/results/reliability.json and benchmarks/RELIABILITY.md and
prints the same tables. The fast versions of these checks are tests
(tests/integration/test_reliability.py and friends); this script runs them
longer, on the real MovieLens model, and records the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from genre_serve.client import GenreClient
from genre_serve.client.core import DEFAULT_BACKOFF_S, DEFAULT_RETRIES
from genre_serve.client.model_control import load_latest
from genre_serve.export import model_configs as mc
from genre_serve.export.add_items import add_items
from genre_serve.export.repository import export_run, reconfigure
from genre_serve.formats import repository as fmt
from genre_serve.formats.run_dir import load_run
from genre_serve.loadtest import sweep
from genre_serve.loadtest.traffic import BackgroundTraffic
from genre_serve.reliability import bad_inputs, batching, raw_http
from genre_serve.reliability.serve_process import ServeProcess, genre_serve_command
from genre_serve.serving.launcher import TritonServer

ROOT = Path(__file__).resolve().parent.parent
# The pytest entry point, not `python -m pytest`: that would import the source
# folder (without its compiled extension) ahead of the installed package.
PYTEST = str(Path(sys.executable).parent / "pytest")


class Crashes:
    """Counts servers found dead when they should have been running."""

    def __init__(self):
        self.count, self.where = 0, []

    def check(self, server: TritonServer, phase: str) -> None:
        if not server.running:
            self.count += 1
            self.where.append(phase)


def phase_bad_inputs(server, catalog, max_k, crashes) -> dict:
    rows = []
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        for case in bad_inputs.recommend_cases():
            r = bad_inputs.run_case(case, protocol, url, catalog, max_k)
            rows.append(r.__dict__)
            crashes.check(server, f"bad input {case.name} ({protocol})")
    raw = []
    for case in raw_http.cases(server.http_url):
        r = raw_http.run_case(case, server.http_url)
        raw.append(r.__dict__ | {"passed": r.passed})
        crashes.check(server, f"raw HTTP {case.name}")
    return {"model_inputs": rows, "raw_http": raw}


def phase_batching(run_dir: Path, work: Path, histories, crashes) -> list[dict]:
    """A bad request in a batch of genre_recommend_batch and of the standalone models
    (exported for it: they are not in a default export)."""
    repo = work / "batching"
    export_run(run_dir, repo, serving=mc.ServingConfig(max_queue_delay_us=20_000), standalone_models=True)
    shapes = batching.served_shapes(repo)
    with TritonServer(repo) as server:
        reports = [batching.recommend_batch_burst(server.http_url, histories[:16], size=16),
                   batching.retrieve_burst(server.http_url, shapes["num_items"], shapes["cf_dim"], shapes["ct_dim"],
                                           size=16),
                   batching.user_tower_burst(server.http_url, shapes["num_items"], shapes["max_history"], size=16)]
        crashes.check(server, "batch isolation")
    return [r.__dict__ | {"passed": r.passed} for r in reports]


def phase_overload(repo_src: Path, work: Path, histories, levels, duration_s, crashes) -> list[dict]:
    out = []
    for label, serving in (("unbounded queue (max_queue_size 0)", mc.ServingConfig(max_queue_size=0)),
                           ("default export (max_queue_size 64)", mc.ServingConfig()),
                           ("max_queue_size 8", mc.ServingConfig(max_queue_size=8)),
                           ("max_queue_size 64 + 50 ms queue timeout",
                            mc.ServingConfig(max_queue_size=64, queue_timeout_us=50_000))):
        repo = work / f"overload-{serving.max_queue_size}-{serving.queue_timeout_us}"
        shutil.copytree(repo_src, repo)
        reconfigure(repo, serving)
        with TritonServer(repo) as server:
            print(f"  {label}")
            print("  " + sweep.HEADER)
            results = sweep.run_sweep(server.http_url, histories, levels, duration_s, timeout_s=30.0,
                                      metrics_url=server.metrics_url, progress=lambda row: print("  " + row))
            crashes.check(server, f"overload {label}")
        out.append({"config": label, "max_queue_size": serving.max_queue_size,
                    "queue_timeout_us": serving.queue_timeout_us, "levels": [r.__dict__ for r in results]})
    return out


def phase_rollout(repo_src: Path, work: Path, run_dir: Path, histories, crashes) -> dict:
    repo = work / "rollout"
    shutil.copytree(repo_src, repo)
    new_items = work / "new_items.csv"
    pd.DataFrame({"item_id": ["reliability-new-1", "reliability-new-2"],
                  "title": ["A brand new film about space", "A brand new comedy about a wedding"]}).to_csv(
        new_items, index=False)
    switches = []
    with TritonServer(repo) as server:
        with BackgroundTraffic(server.http_url, histories, k=10, concurrency=8, timeout_s=30) as traffic:
            traffic.wait_for_answers(200)
            for how in ("export of the run as a new version", "add-items (2 new items) as a new version"):
                t0 = time.monotonic()
                if how.startswith("export"):
                    version = export_run(run_dir, repo).version
                else:
                    _, version, _ = add_items(repo, new_items)
                load_latest(server.http_url, control_key=server.control_key)
                switched = time.monotonic()
                traffic.wait_for_answers(200, since=switched)
                after = [o for o in traffic.outcomes if o.started >= switched]
                switches.append({"how": how, "version": version, "switch_s": round(switched - t0, 2),
                                 "answers_after_switch": sum(o.ok for o in after),
                                 "answers_after_switch_from_new_version": sum(o.ok and o.version == version
                                                                              for o in after)})
            time.sleep(2)
        crashes.check(server, "rollout")
    summary = traffic.summary()
    return {"switches": switches, "traffic": summary, "inconsistent_answers": traffic.inconsistent_answers(),
            "lost": summary["requests"] - summary["ok"]}


def phase_restart(repo_src: Path, work: Path, histories, cycles: int) -> dict:
    """Two client populations through the kills: 8 with retries (they should
    recover) and 2 without (their failures must be typed, and prompt)."""
    repo = work / "restart"
    shutil.copytree(repo_src, repo)
    timeout_s, retries, backoff_s = 10.0, 8, 0.1
    downtime = []
    with TritonServer(repo) as server:
        retrying = BackgroundTraffic(server.http_url, histories, k=10, concurrency=8, timeout_s=timeout_s,
                                     retries=retries, backoff_s=backoff_s)
        failing = BackgroundTraffic(server.http_url, histories, k=10, concurrency=2, timeout_s=timeout_s,
                                    retries=0)
        with retrying, failing:
            retrying.wait_for_answers(100)
            for _ in range(cycles):
                t0 = time.monotonic()
                server.restart(kill=True)  # SIGKILL: tritonserver and its stubs die at once
                downtime.append(time.monotonic() - t0)
                retrying.wait_for_answers(100, since=time.monotonic())
    typed = ("ModelUnavailableError", "ClientTimeoutError")
    with_retries, no_retry = retrying.summary(), failing.summary()
    return {"kills": cycles, "downtime_s": [round(d, 1) for d in downtime], "client": {
        "timeout_s": timeout_s, "retries": retries, "backoff_s": backoff_s,
        "bound_s": timeout_s * (retries + 1) + backoff_s * (2 ** retries)},
        "traffic": with_retries, "inconsistent_answers": retrying.inconsistent_answers(),
        "no_retry_traffic": no_retry,
        "errors_typed": all(e in typed for e in list(with_retries["errors"]) + list(no_retry["errors"])),
        "slowest_failure_s": max((o.seconds for o in failing.outcomes if not o.ok), default=0.0)}


# -- issue 15: faults the server must survive ------------------------------------------------------------------
def _readiness_until_ready(serve: ServeProcess, t0: float, timeout_s: float = 60.0) -> dict:
    """Readiness samples from `t0` (a kill) until the endpoint says 200 again."""
    samples = []
    while time.monotonic() - t0 < timeout_s:
        code = serve.ready()
        samples.append((time.monotonic() - t0, code))
        if code == 200 and any(c != 200 for _, c in samples):
            break
        if code == 200 and time.monotonic() - t0 > 3.0:  # never went false: report it as such
            break
        time.sleep(0.02)
    first_false = next((t for t, c in samples if c != 200), None)
    back = next((t for t, c in samples if c == 200 and first_false is not None and t > first_false), None)
    return {"first_not_ready_s": None if first_false is None else round(first_false, 3),
            "ready_again_s": None if back is None else round(back, 3),
            "samples": len(samples), "not_ready_samples": sum(c != 200 for _, c in samples)}


def _serving_stubs(serve: ServeProcess, model: str, wait_s: float = 30.0) -> list:
    """The stubs serving `model`, one per instance, sorted by instance name.
    After a reload the old instances' stubs linger until Triton has finalised
    them (seconds); killing one of those would test nothing, so wait for
    them to go, and else take the newest stub of each instance."""
    deadline = time.monotonic() + wait_s
    while True:
        stubs = serve.stubs(model)
        names = [s.instance for s in stubs]
        if len(names) == len(set(names)) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    newest = {}
    for stub in sorted(stubs, key=lambda s: s.pid):
        newest[stub.instance] = stub
    return [newest[name] for name in sorted(newest)]


def phase_stub_kills(repo_src: Path, work: Path, histories, kills: int) -> dict:
    """SIGKILL of one python-backend stub at a time (each entry model in turn)
    under load, through `genre-serve serve`: clients with the SDK's default
    retries, and clients without retries for the raw failures."""
    repo = work / "stub_kills"
    shutil.copytree(repo_src, repo)
    cycles = []
    with ServeProcess(repo) as serve:
        retrying = BackgroundTraffic(serve.http_url, histories, k=10, concurrency=4, timeout_s=10.0,
                                     retries=DEFAULT_RETRIES, backoff_s=DEFAULT_BACKOFF_S)
        raw = BackgroundTraffic(serve.http_url, histories, k=10, concurrency=1, timeout_s=10.0, retries=0)
        with retrying, raw:
            retrying.wait_for_answers(200)
            for i in range(kills):
                model = fmt.RECOMMEND if i % 2 == 0 else fmt.RECOMMEND_BATCH
                serving = _serving_stubs(serve, model)
                victim = serving[(i // 2) % len(serving)]
                heals_before = len(serve.report()["heals"])
                t0 = time.monotonic()
                os.kill(victim.pid, signal.SIGKILL)
                readiness = _readiness_until_ready(serve, t0)
                heals = serve.report()["heals"]
                heal = heals[-1] if len(heals) > heals_before else None
                cycles.append({"model": model, "instance": victim.instance, **readiness,
                               "reload_s": heal and heal["seconds"], "heal_error": heal and heal["error"]})
                print(f"  kill {i + 1}/{kills}: {victim.instance}: not ready after "
                      f"{readiness['first_not_ready_s']} s, ready again after {readiness['ready_again_s']} s")
                retrying.wait_for_answers(200, since=time.monotonic())
        after_all = {s.instance for s in serve.stubs()}
    ok = retrying.summary()
    return {"kills": cycles, "client": {"retries": DEFAULT_RETRIES, "backoff_s": DEFAULT_BACKOFF_S,
                                        "timeout_s": 10.0},
            "traffic": ok, "no_retry_traffic": raw.summary(), "instances_after": sorted(after_all),
            "slowest_request_s": max((o.seconds for o in retrying.outcomes + raw.outcomes), default=0.0)}


def phase_tritonserver_kill(repo_src: Path, work: Path, histories) -> dict:
    """SIGKILL of tritonserver and its stubs under `genre-serve serve`: it is started again."""
    repo = work / "triton_kill"
    shutil.copytree(repo_src, repo)
    with ServeProcess(repo) as serve:
        with BackgroundTraffic(serve.http_url, histories, k=10, concurrency=4, timeout_s=10.0,
                               retries=DEFAULT_RETRIES, backoff_s=DEFAULT_BACKOFF_S) as traffic:
            traffic.wait_for_answers(200)
            t0 = time.monotonic()
            os.killpg(serve.tritonserver_pid(), signal.SIGKILL)
            readiness = _readiness_until_ready(serve, t0, timeout_s=180.0)
            traffic.wait_for_answers(200, since=time.monotonic())
        restarts = serve.report()["tritonserver"]["restarts"]
    return {**readiness, "restarts": restarts, "traffic": traffic.summary()}


def _items_file(path: Path, tag: str) -> Path:
    pd.DataFrame({"item_id": [f"{tag}-1", f"{tag}-2"],
                  "title": [f"A new film called {tag}", f"Another new film called {tag}"]}).to_csv(path, index=False)
    return path


def phase_concurrent_writers(repo_src: Path, work: Path, histories, pairs: int) -> dict:
    """`pairs` times two `genre-serve add-items --url` started together on a
    served repository, with load running."""
    repo = work / "writers"
    shutil.copytree(repo_src, repo)
    rows = []
    with ServeProcess(repo) as serve, \
            BackgroundTraffic(serve.http_url, histories, k=10, concurrency=4, timeout_s=10.0) as traffic:
        traffic.wait_for_answers(100)
        for i in range(pairs):
            before = fmt.versions_of(repo, fmt.RECOMMEND)
            procs = [subprocess.Popen(genre_serve_command() + [
                "add-items", str(repo), "--items", str(_items_file(work / f"new_{i}_{j}.csv", f"pair{i}-{j}")),
                "--url", serve.http_url, "--keep-versions", "3"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for j in range(2)]
            outs = [p.communicate(timeout=600) for p in procs]
            after = fmt.versions_of(repo, fmt.RECOMMEND)
            new = [v for v in after if v not in before]
            rows.append({"pair": i + 1, "exit_codes": [p.returncode for p in procs], "new_versions": new,
                         "tracebacks": sum("Traceback" in err for _, err in outs),
                         "complete": fmt.check_repository(repo) == after,
                         "errors": [err.strip().splitlines()[-1] for (_, err), proc in zip(outs, procs)
                                    if err.strip() and proc.returncode]})
            print(f"  pair {i + 1}/{pairs}: exit {rows[-1]['exit_codes']}, new versions {new}")
        time.sleep(1.0)
    return {"pairs": rows, "traffic": traffic.summary(),
            "one_version_per_command": all(len(r["new_versions"]) == sum(c == 0 for c in r["exit_codes"])
                                           for r in rows)}


def phase_disk_full(run_dir: Path, work: Path) -> dict:
    """A real small filesystem (tmpfs, needs root): room for one version and a half."""
    probe = work / "disk_probe"
    export_run(run_dir, probe)
    one_version = sum(p.stat().st_size for p in probe.rglob("*") if p.is_file())
    disk = work / "small_disk"
    disk.mkdir()
    size_mb = one_version * 3 // 2 // 2**20
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        return {"skipped": f"cannot mount a tmpfs: {mounted.stderr.strip()}"}
    try:
        repo = disk / "repo"
        export_run(run_dir, repo)
        with ServeProcess(repo) as serve, GenreClient(serve.http_url) as client:
            answer = client.recommend_versioned(["1", "2"], 10)
            files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))
            proc = subprocess.run(genre_serve_command() + ["export", str(run_dir), "--model-repository", str(repo),
                                                           "--url", serve.http_url], capture_output=True, text=True)
            left = sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))
            still = client.recommend_versioned(["1", "2"], 10) == answer
        return {"filesystem_mb": size_mb, "version_mb": round(one_version / 2**20, 1), "exit_code": proc.returncode,
                "message": (proc.stderr.strip().splitlines() or [""])[-1], "traceback": "Traceback" in proc.stderr,
                "left_behind": sorted(set(left) - set(files)), "served_version_unchanged": still}
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def phase_sigterm_export(run_dir: Path, work: Path) -> dict:
    repo = work / "sigterm_export"
    export_run(run_dir, repo)
    proc = subprocess.Popen(genre_serve_command() + ["export", str(run_dir), "--model-repository", str(repo)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    staging = repo / fmt.RECOMMEND / ".2.staging"
    deadline = time.monotonic() + 300
    while not staging.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    return {"exit_code": proc.returncode, "message": (err.strip().splitlines() or [""])[-1],
            "traceback": "Traceback" in err, "versions": fmt.versions_of(repo, fmt.RECOMMEND),
            "staging_left": [str(p.relative_to(repo)) for p in repo.glob("*/.*.staging")]}


def phase_sigterm_under_load(repo_src: Path, work: Path, histories, drain_delay_s: float = 2.0) -> dict:
    repo = work / "sigterm_load"
    shutil.copytree(repo_src, repo)
    with ServeProcess(repo, "--drain-delay-s", str(drain_delay_s), "--drain-timeout-s", "10") as serve, \
            BackgroundTraffic(serve.http_url, histories, k=10, concurrency=4, timeout_s=10.0, retries=0) as traffic:
        traffic.wait_for_answers(200)
        t0 = time.monotonic()
        serve.signal(signal.SIGTERM)
        readiness = []
        while serve.proc.poll() is None and time.monotonic() - t0 < 60:
            readiness.append((time.monotonic() - t0, serve.ready()))
            time.sleep(0.05)
        code = serve.wait(60)
        exited = time.monotonic() - t0
    accepted = [o for o in traffic.outcomes if o.started < t0]
    later = [o for o in traffic.outcomes if o.started >= t0]
    return {"drain_delay_s": drain_delay_s, "exit_code": code, "exited_after_s": round(exited, 2),
            "ready_answers_after_signal": sum(c == 200 for _, c in readiness),
            "not_ready_answers_after_signal": sum(c == 503 for _, c in readiness),
            "accepted_before_signal": len(accepted), "accepted_lost": sum(not o.ok for o in accepted),
            "sent_after_signal": len(later), "answered_after_signal": sum(o.ok for o in later),
            "errors_after_signal": dict(Counter(o.error for o in later if not o.ok))}


def phase_balancer(repo_src: Path, work: Path, histories) -> dict:
    """Two replicas behind a real HAProxy (deploy/haproxy), HTTP clients without
    retries through it; one replica SIGKILLed mid-load and started again."""
    from genre_serve.deploy.haproxy import HAProxy, Replica, haproxy_config
    from genre_serve.serving.launcher import free_port

    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        return {"skipped": "haproxy is not installed"}
    repo = work / "balancer"
    shutil.copytree(repo_src, repo)
    first, second = ServeProcess(repo), ServeProcess(repo)
    http_port, grpc_port = free_port(), free_port()
    config = haproxy_config([Replica("127.0.0.1", s.http_port, s.grpc_port, s.health_port) for s in (first, second)],
                            http_port=http_port, grpc_port=grpc_port, check_interval_ms=200)
    with first, second, HAProxy(config, work):
        url = f"127.0.0.1:{http_port}"
        with BackgroundTraffic(url, histories, k=10, concurrency=4, timeout_s=10.0, retries=0) as traffic:
            traffic.wait_for_answers(200)
            t0 = time.monotonic()
            first.kill()
            killed = time.monotonic()
            traffic.wait_for_answers(200, since=killed)
            restarted = ServeProcess(repo, ports=first.ports)
            t_start = time.monotonic()
            restarted.start()
            started = time.monotonic()
            try:
                base = restarted.inference_count()
                while restarted.inference_count() <= base + 50 and time.monotonic() - started < 120:
                    time.sleep(0.05)
                serving = time.monotonic()
                traffic.wait_for_answers(200, since=serving)
            finally:
                restarted.stop()
    summary = traffic.summary()
    return {"requests": summary["requests"], "ok": summary["ok"], "errors": summary["errors"],
            "kill_to_restart_s": round(t_start - t0, 2), "replica_start_s": round(started - t_start, 2),
            "back_in_rotation_after_start_s": round(serving - started, 2),
            "killed_replica_recovered_s": round(serving - t_start, 2)}


def phase_unkeyed_control(repo_src: Path, work: Path) -> dict:
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    repo = work / "control"
    shutil.copytree(repo_src, repo)
    with ServeProcess(repo) as serve:
        client = http.InferenceServerClient(serve.http_url)
        try:
            client.unload_model(fmt.RECOMMEND)
            refused, message = False, "unloaded"
        except InferenceServerException as e:
            refused, message = True, str(e)[:200]
        finally:
            client.close()
        with GenreClient(serve.http_url) as genre:
            serving = len(genre.recommend(["1", "2"], 5)) == 5
    return {"refused": refused, "message": message, "still_serving": serving}


def phase_fuzz(asan: bool, examples: int) -> dict:
    env = {"GENRE_SERVE_FUZZ_EXAMPLES": str(examples)}
    if asan:
        cmd = ["bash", str(ROOT / "scripts" / "asan_fuzz.sh")]
    else:
        cmd = [PYTEST, "-m", "slow or not slow", "tests/unit/kernels/test_kernel_fuzz.py",
               "-p", "no:cacheprovider", "-q", "-rA"]
    proc = subprocess.run(cmd, cwd=ROOT, env=os.environ | env, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    found = re.search(r"fuzz cases: (\{.*\})", text)
    counts = {k: int(v) for k, v in re.findall(r"'([a-z ]+)': (\d+)", found.group(1))} if found else {}
    return {"sanitizer": "AddressSanitizer" if asan else None, "passed": proc.returncode == 0,
            "cases": counts, "total": sum(counts.values()), "examples_per_test": examples,
            "asan_canary": "caught a deliberate heap-buffer-overflow" in text,
            "tail": text.strip().splitlines()[-3:]}


def security_facts(repo: Path) -> list[dict]:
    server = TritonServer(repo, http_port=8000, grpc_port=8001, metrics_port=8002, control_key="<random key>")
    args = server.command(Path("<backends>"))
    proc = subprocess.run([PYTEST, "tests/unit/test_security_defaults.py", "-q",
                           "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True)
    return [
        {"check": "endpoints bind to 127.0.0.1 by default",
         "outcome": " ".join(a for a in args if "-address=" in a)},
        {"check": "models load from the given repository only, explicit model control",
         "outcome": " ".join(a for a in args if a.startswith(("--model-repository", "--model-control-mode")))},
        {"check": "model control (load, unload, repository index) needs the server's key; inference stays open",
         "outcome": " ".join(a.split(":")[0] + ":...=<random key>" for a in args if "restricted" in a)},
        {"check": "tests/unit/test_security_defaults.py (loopback, one repository, no shell anywhere)",
         "outcome": "passed" if proc.returncode == 0 else "FAILED: " + proc.stdout[-300:]},
        {"check": "load tests refuse non-loopback targets unless --allow-remote",
         "outcome": _loopback_refusal()},
    ]


def _loopback_refusal() -> str:
    try:
        sweep.check_target("10.1.2.3:8000", allow_remote=False)
    except sweep.LoadTestError as e:
        return f"refused: {e}"
    return "NOT refused"


# -- report ---------------------------------------------------------------------------------------------------
def _md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(doc: dict) -> str:
    s = doc["summary"]
    bi = doc["bad_inputs"]
    parts = [
        "# Reliability report (issues 6 and 15)",
        "",
        f"Produced by `{doc['command']}` on {doc['date']} ({doc['machine']}), against a real tritonserver on "
        f"loopback serving the model of `{doc['run']}` ({doc['catalog_size']:,} items). Numbers below are from "
        "that run; the fast versions of every check run in the test suite.",
        "",
        "## Summary",
        "",
        _md_table(["what", "count"], [
            ["bad inputs tried (model boundary, HTTP + gRPC)", s["bad_inputs_tried"]],
            ["  answered as documented (error naming the field, or the documented answer)", s["bad_inputs_passed"]],
            ["raw HTTP requests tried", s["raw_http_tried"]],
            ["  answered 4xx / connection closed / 500 from Triton's JSON parser (upstream #8762)",
             f"{s['raw_http_4xx']} / {s['raw_http_closed']} / {s['raw_http_upstream_500']}"],
            ["bursts with one bad request in a dynamic batch (batched / total)",
             f"{s['batched_bursts']} / {s['bursts']}"],
            ["  good requests in those bursts answered differently than alone", s["batch_good_mismatches"]],
            ["server crashes", s["server_crashes"]],
            ["requests during rollouts / lost", f"{s['rollout_requests']} / {s['rollout_lost']}"],
            ["requests during kill-and-restart cycles / answered / failed with a typed error",
             f"{s['restart_requests']} / {s['restart_ok']} / {s['restart_failed']}"],
            ["  requests recovered by client retries after a restart", s["restart_recovered"]],
            ["requests of clients without retries through the kills / failed, each with a typed error",
             f"{s['restart_no_retry_requests']} / {s['restart_no_retry_failed']}"],
            ["kernel fuzz cases run" + (" (under AddressSanitizer)" if doc["fuzz"]["sanitizer"] else ""),
             s["fuzz_cases"]],
        ]),
        "",
        "## 1. Bad input",
        "",
        "Each case is sent with tritonclient exactly as built (the dtype, shape or value named), over HTTP and "
        "gRPC; a good request follows each one and must be answered. K is capped at the catalog and at the "
        f"export's `max_k` ({doc['max_k']}): a larger K is answered with what exists, best first.",
        "",
        _md_table(["case", "protocol", "expected", "outcome", "ok", "served next"],
                  [[r["name"], r["protocol"], r["expected"], r["outcome"][:110], "yes" if r["passed"] else "NO",
                    "yes" if r["server_answers_after"] else "NO"] for r in bi["model_inputs"]]),
        "",
        "Raw HTTP against `/v2/models/genre_recommend/infer` (a socket, no client library). Triton answers a "
        "body it cannot parse as JSON with HTTP 500 instead of 400: a known upstream bug "
        "(triton-inference-server/server#8762, fix proposed in PR #8773). The server stays up and answers the "
        "next request every time.",
        "",
        _md_table(["request", "status", "verdict", "answer", "server up after"],
                  [[r["name"], r["status"] if r["status"] is not None else "-", r["verdict"], r["detail"][:90],
                    "yes" if r["server_up_after"] else "NO"] for r in bi["raw_http"]]),
        "",
        "One bad request in a dynamic batch (20 ms batching window so that bursts batch; Triton's statistics "
        "confirm that at least two requests ran together):",
        "",
        _md_table(["model", "bad request", "expected", "bursts (batched)", "good requests", "differing from alone",
                   "bad request outcome"],
                  [[r["model"], r["bad_request"], r["expected"], f"{r['bursts']} ({r['batched_bursts']})",
                    r["good_requests"], r["good_mismatches"], r["bad_outcomes"][0][:80] if r["bad_outcomes"] else "-"]
                   for r in doc["batching"]]),
        "",
        "The CLI and loaders (missing, empty or wrongly shaped files, a corrupt ONNX file, a repository with a "
        "missing version) are covered by tests/integration/test_cli_errors.py: one line, exit 2, no traceback "
        "without `--debug`.",
        "",
        "## 2. Overload",
        "",
        f"Closed-loop load far above capacity (the 2 cores saturate near 4 concurrent requests), "
        f"{doc['overload_duration_s']:.0f} s per level, HTTP, k = 10. The entry models carry a bounded queue "
        "(`genre-serve export --max-queue-size`, default 64; `--queue-timeout-us` adds a deadline); past it the "
        "server answers at once with HTTP 503 / gRPC UNAVAILABLE \"Exceeds maximum queue size\", which the "
        "client raises as `ServerOverloadedError`; with a queue timeout, a request still waiting after it "
        "is rejected the same way (\"Request timeout expired\").",
        "",
        "Read the server columns for what the queue limit controls: the server's own average queue time and "
        "request time per answered request (its Prometheus counters). The client columns add the load "
        "generator's own waiting: it is one Python process sharing the 2 cores with the server, so at 256 "
        "concurrent requests its event loop is itself a queue.",
        "",
    ]
    for cfg in doc["overload"]:
        nan = float("nan")
        parts += [f"**{cfg['config']}**", "", _md_table(
            ["concurrency", "requests", "answered", "rejected (ServerOverloadedError)", "other errors", "answered/s",
             "server queue ms (avg)", "server request ms (avg)", "client p50 ms", "client p99 ms", "client max ms",
             "rejection p50 ms (client)"],
            [[lv["concurrency"], lv["requests"], lv["ok"], lv["errors"].get("ServerOverloadedError", 0),
              sum(v for k, v in lv["errors"].items() if k != "ServerOverloadedError"),
              f"{lv['throughput_rps']:.0f}", f"{lv['server'].get('queue_ms_avg', nan):.1f}",
              f"{lv['server'].get('request_ms_avg', nan):.1f}", f"{lv['latency_ms'].get('p50', nan):.1f}",
              f"{lv['latency_ms'].get('p99', nan):.1f}", f"{lv['latency_ms'].get('max', nan):.1f}",
              f"{lv['error_latency_ms'].get('p50', nan):.1f}" if lv["error_latency_ms"] else "-"]
             for lv in cfg["levels"]]), ""]
    top = [(cfg["config"], cfg["levels"][-1]) for cfg in doc["overload"]]
    parts += ["At the highest concurrency, the server's average queue time per answered request: " + "; ".join(
        f"{name}: {lv['server'].get('queue_ms_avg', float('nan')):.0f} ms" for name, lv in top)
        + ". Without a limit it grows with the offered load; with one it stops at the depth the limit allows, "
        "and everything past it is a typed rejection, never an untyped failure or a hang.", ""]
    ro = doc["rollout"]
    rs = doc["restart"]
    parts += [
        "## 3. Rollout under load",
        "",
        "8 closed-loop clients (no retries) send requests throughout; meanwhile a new version is exported "
        "and loaded, then a version with two new items (`add-items`).",
        "",
        _md_table(["rollout", "version", "load took s", "answers after the switch", "of which from the new version"],
                  [[w["how"], w["version"], w["switch_s"], w["answers_after_switch"],
                    w["answers_after_switch_from_new_version"]] for w in ro["switches"]]),
        "",
        f"Requests: {ro['traffic']['requests']}, answered {ro['traffic']['ok']}, lost {ro['lost']} "
        f"(errors: {ro['traffic']['errors'] or 'none'}); answers by version {ro['traffic']['versions']}; "
        f"answers that differed from another answer to the same history on the same version: "
        f"{ro['inconsistent_answers']}.",
        "",
        "## 4. Kill and restart under load",
        "",
        f"8 clients with retries ({rs['client']['retries']} retries, backoff from {rs['client']['backoff_s']} s "
        f"doubling, {rs['client']['timeout_s']:.0f} s timeout) while tritonserver is SIGKILLed with its stubs and "
        f"started again on the same ports, {rs['kills']} times (down for {', '.join(map(str, rs['downtime_s']))} s).",
        "",
        f"Requests: {rs['traffic']['requests']}, answered {rs['traffic']['ok']} "
        f"({rs['traffic']['recovered_after_retries']} of them after retries across a restart), failed "
        f"{rs['traffic']['requests'] - rs['traffic']['ok']} with typed errors {rs['traffic']['errors'] or '(none)'}. "
        f"Slowest request {rs['traffic']['slowest_request_s']:.1f} s against a bound of "
        f"{rs['client']['bound_s']:.0f} s (timeout x attempts + backoff): none hung. Answers differing "
        f"before and after a restart: {rs['inconsistent_answers']}.",
        "",
        f"2 more clients without retries ran through the same kills: {rs['no_retry_traffic']['requests']} "
        f"requests, {rs['no_retry_traffic']['ok']} answered, failed with "
        f"{rs['no_retry_traffic']['errors'] or '(none)'}; the slowest failure took "
        f"{rs['slowest_failure_s']:.2f} s (timeout {rs['client']['timeout_s']:.0f} s). Every failure is a typed "
        f"error: {'yes' if rs['errors_typed'] else 'NO'}.",
        "",
        "## 5. Kernel fuzz",
        "",
        f"`fused_topk` and `cross_features` on random shapes, dtypes, layouts (strided, transposed), k, alpha and "
        f"index values, valid and invalid (tests/kernel_fuzz.py; hypothesis, {doc['fuzz']['examples_per_test']} "
        f"cases per slow test). Contract: raise TypeError/ValueError exactly where the NumPy reference does, "
        f"otherwise return its answer.",
        "",
        _md_table(["kernel", "calls that returned (reached native code)", "calls rejected by validation"],
                  [["fused_topk", doc["fuzz"]["cases"].get("fused returned", 0),
                    doc["fuzz"]["cases"].get("fused raised", 0)],
                   ["cross_features", doc["fuzz"]["cases"].get("cross returned", 0),
                    doc["fuzz"]["cases"].get("cross raised", 0)]]),
        "",
        ("Run under AddressSanitizer (`bash scripts/asan_fuzz.sh`: the CPU kernels built with "
         "`-fsanitize=address` and loaded in place of the installed extension; a canary overflow is caught "
         "first to show the runtime is active): "
         + ("no error reported." if doc["fuzz"]["passed"] else "FAILED, see the log.")
         if doc["fuzz"]["sanitizer"] else
         "This run did not use a sanitizer (pass `--asan`)."),
        "The CUDA kernels were not fuzzed: this machine has no GPU.",
        "",
        "## 6. Security defaults",
        "",
        _md_table(["check", "outcome"], [[f["check"], f["outcome"]] for f in doc["security"]]),
        "",
    ]
    parts += render_faults(doc["faults"])
    return "\n".join(parts)


def render_faults(f: dict) -> list[str]:
    k, tk, w, d = f["stub_kills"], f["tritonserver_kill"], f["concurrent_writers"], f["disk_full"]
    se, sl, uc = f["sigterm_export"], f["sigterm_under_load"], f["unkeyed_control"]
    kt, raw = k["traffic"], k["no_retry_traffic"]
    parts = [
        "## 7. Faults (issue 15)",
        "",
        f"Run on {k.get('date', f.get('date', '?'))}.",
        "",
        "Through `genre-serve serve` in a subprocess, as a user runs it: its watchdog reloads a model whose "
        "python-backend stub died and starts a tritonserver that exited again; readiness is its health "
        "endpoint's `/v2/health/ready` (Triton's own stays green while a stub is dead, in the Triton of the "
        "nvidia-pytriton wheel).",
        "",
        f"**A stub SIGKILLed under load**, {len(k['kills'])} times (one instance at a time, the entry models in "
        f"turn). 4 clients with the SDK's default retry settings ({k['client']['retries']} retries, backoff from "
        f"{k['client']['backoff_s']} s doubling, {k['client']['timeout_s']:.0f} s timeout) and 1 without retries:",
        "",
        _md_table(["kill", "instance", "readiness false after s", "ready again after s", "reload took s",
                   "readiness samples false / all"],
                  [[i + 1, c["instance"], c["first_not_ready_s"], c["ready_again_s"], c["reload_s"],
                    f"{c['not_ready_samples']} / {c['samples']}"] for i, c in enumerate(k["kills"])]),
        "",
        f"Default clients: {kt['requests']} requests, {kt['ok']} answered, {kt['requests'] - kt['ok']} failed"
        f"{' ' + str(kt['errors']) if kt['errors'] else ''}, {kt['recovered_after_retries']} answered after "
        "retries. Without retries: "
        f"{raw['requests']} requests, {raw['requests'] - raw['ok']} failed ({raw['errors'] or 'none'}), each at "
        f"once with a typed error. Slowest request {k['slowest_request_s']:.2f} s (timeout 10 s): none hung.",
        "",
        f"**tritonserver SIGKILLed** with its stubs under load: readiness false after {tk['first_not_ready_s']} s, "
        f"started again and ready after {tk['ready_again_s']} s (restarts: {tk['restarts']}). Default clients: "
        f"{tk['traffic']['requests']} requests, {tk['traffic']['ok']} answered "
        f"({tk['traffic']['errors'] or 'no errors'}). The default retries wait 6.3 s in all, so a slower start "
        "(a bigger model, a busier host) would show: a balancer in front (deploy/haproxy) is what hides a "
        "restart reliably.",
        "",
        f"**Concurrent writers**: {len(w['pairs'])} pairs of `genre-serve add-items --url` started together on the "
        "served repository, with 4 clients (no retries) running:",
        "",
        _md_table(["pair", "exit codes", "new versions", "tracebacks", "repository complete"],
                  [[r["pair"], r["exit_codes"], r["new_versions"], r["tracebacks"], "yes" if r["complete"] else "NO"]
                   for r in w["pairs"]]),
        "",
        f"One version per completed command: {'yes' if w['one_version_per_command'] else 'NO'}; requests "
        f"meanwhile {w['traffic']['requests']}, failed {w['traffic']['requests'] - w['traffic']['ok']}.",
        "",
    ]
    if "skipped" in d:
        parts += [f"**Disk full**: skipped ({d['skipped']}).", ""]
    else:
        parts += [f"**Disk full**: a real {d['filesystem_mb']} MB tmpfs (a version is {d['version_mb']} MB) holding a "
                  f"served version 1; `genre-serve export --url` of version 2 exited {d['exit_code']} with "
                  f"`{d['message']}` (traceback: {'yes' if d['traceback'] else 'no'}); left behind: "
                  f"{d['left_behind'] or 'nothing'}; version 1 still answering the same: "
                  f"{'yes' if d['served_version_unchanged'] else 'NO'}.", ""]
    parts += [
        f"**SIGTERM during an export**: exit {se['exit_code']}, `{se['message']}` (traceback: "
        f"{'yes' if se['traceback'] else 'no'}); versions after {se['versions']}, staging left "
        f"{se['staging_left'] or 'none'}.",
        "",
        f"**SIGTERM to `genre-serve serve` under load** (drain delay {sl['drain_delay_s']} s, 4 clients without "
        f"retries): readiness answered 200 {sl['ready_answers_after_signal']} times and 503 "
        f"{sl['not_ready_answers_after_signal']} times after the signal; of {sl['accepted_before_signal']} requests "
        f"sent before it, {sl['accepted_lost']} lost; {sl['answered_after_signal']} of {sl['sent_after_signal']} "
        f"sent after it answered (the rest: {sl['errors_after_signal'] or 'none'}, once tritonserver closed its "
        f"connections); exit code {sl['exit_code']} after {sl['exited_after_s']} s.",
        "",
        *_render_balancer(f.get("balancer")),
        f"**Model control without the key**: unloading genre_recommend was "
        f"{'refused' if uc['refused'] else 'NOT refused'} (`{uc['message']}`); still serving: "
        f"{'yes' if uc['still_serving'] else 'NO'}.",
        "",
    ]
    return parts


def summarize(doc: dict) -> dict:
    bi, raw = doc["bad_inputs"]["model_inputs"], doc["bad_inputs"]["raw_http"]
    ro, rs = doc["rollout"]["traffic"], doc["restart"]["traffic"]
    return {
        "bad_inputs_tried": len(bi),
        "bad_inputs_passed": sum(r["passed"] and r["server_answers_after"] for r in bi),
        "raw_http_tried": len(raw),
        "raw_http_4xx": sum(r["verdict"] == "4xx" for r in raw),
        "raw_http_closed": sum(r["verdict"] == "closed" for r in raw),
        "raw_http_upstream_500": sum(r["verdict"].startswith("500") for r in raw),
        "raw_http_failed": sum(not r["passed"] for r in raw),
        "bursts": sum(r["bursts"] for r in doc["batching"]),
        "batched_bursts": sum(r["batched_bursts"] for r in doc["batching"]),
        "batch_good_mismatches": sum(r["good_mismatches"] for r in doc["batching"]),
        "server_crashes": doc["crashes"]["count"],
        "rollout_requests": ro["requests"], "rollout_lost": doc["rollout"]["lost"],
        "restart_requests": rs["requests"], "restart_ok": rs["ok"], "restart_failed": rs["requests"] - rs["ok"],
        "restart_recovered": rs["recovered_after_retries"],
        "restart_no_retry_requests": doc["restart"]["no_retry_traffic"]["requests"],
        "restart_no_retry_failed": (doc["restart"]["no_retry_traffic"]["requests"]
                                    - doc["restart"]["no_retry_traffic"]["ok"]),
        "fuzz_cases": doc["fuzz"]["total"],
        **summarize_faults(doc["faults"]),
    }


def _render_balancer(b: dict | None) -> list[str]:
    if not b:
        return []
    if "skipped" in b:
        return [f"**Two replicas behind HAProxy**: skipped ({b['skipped']}).", ""]
    return [f"**Two replicas behind HAProxy** (deploy/haproxy; 4 HTTP clients through it, without retries of their "
            f"own): one replica SIGKILLed mid-load and started again on its ports. Requests {b['requests']}, answered "
            f"{b['ok']}, failed {b['requests'] - b['ok']}{' ' + str(b['errors']) if b['errors'] else ''}. "
            "The killed replica was back in the "
            f"rotation {b['killed_replica_recovered_s']} s after its restart began ({b['replica_start_s']} s to "
            f"start, {b['back_in_rotation_after_start_s']} s more until the balancer sent it traffic).", ""]


def summarize_faults(f: dict) -> dict:
    kills = f["stub_kills"]
    back = [k["ready_again_s"] for k in kills["kills"] if k["ready_again_s"] is not None]
    writers = f["concurrent_writers"]
    return {
        "stub_kills": len(kills["kills"]),
        "stub_kill_requests": kills["traffic"]["requests"],
        "stub_kill_failed": kills["traffic"]["requests"] - kills["traffic"]["ok"],
        "stub_kill_recovered_max_s": max(back) if len(back) == len(kills["kills"]) else None,
        "stub_kill_not_ready_every_time": all(k["first_not_ready_s"] is not None for k in kills["kills"]),
        "writers_ok": (writers["one_version_per_command"] and all(
            r["tracebacks"] == 0 and r["complete"] for r in writers["pairs"])
            and writers["traffic"]["requests"] == writers["traffic"]["ok"]),
        "sigterm_accepted_lost": f["sigterm_under_load"]["accepted_lost"],
        "unkeyed_control_refused": f["unkeyed_control"]["refused"],
        **({"balancer_failed": f["balancer"]["requests"] - f["balancer"]["ok"],
            "balancer_replica_recovered_s": f["balancer"]["killed_replica_recovered_s"]}
           if "requests" in f.get("balancer", {}) else {}),
    }


FAULT_PHASES = ("stub_kills", "tritonserver_kill", "concurrent_writers", "disk_full", "sigterm_export",
                "sigterm_under_load", "unkeyed_control", "balancer")


def run_faults(args, base: Path, work: Path, histories, only: tuple[str, ...] = FAULT_PHASES) -> dict:
    phases = {
        "stub_kills": lambda: phase_stub_kills(base, work, histories, args.stub_kills),
        "tritonserver_kill": lambda: phase_tritonserver_kill(base, work, histories),
        "concurrent_writers": lambda: phase_concurrent_writers(base, work, histories, args.writer_pairs),
        "disk_full": lambda: phase_disk_full(args.run, work),
        "sigterm_export": lambda: phase_sigterm_export(args.run, work),
        "sigterm_under_load": lambda: phase_sigterm_under_load(base, work, histories),
        "unkeyed_control": lambda: phase_unkeyed_control(base, work),
        "balancer": lambda: phase_balancer(base, work, histories),
    }
    out: dict = {}
    for name in only:
        print(f"  {name}")
        out[name] = phases[name]() | {"date": time.strftime("%Y-%m-%d")}
    return out


def faults_only(args, histories) -> int:
    """Section 7 again, the rest of the report as it was."""
    if not args.json.exists():
        print(f"{args.json}: no earlier report to update (run without --faults-only first)", file=sys.stderr)
        return 2
    doc = json.loads(args.json.read_text())
    with tempfile.TemporaryDirectory(prefix="genre-reliability-") as tmp:
        work = Path(tmp)
        export_run(args.run, work / "base")
        print("[7/7] faults: killed stubs, a killed tritonserver, concurrent writers, a full disk, SIGTERM")
        only = tuple(args.faults_only.split(",")) if isinstance(args.faults_only, str) else FAULT_PHASES
        unknown = set(only) - set(FAULT_PHASES)
        if unknown:
            print(f"--faults-only: unknown phase(s) {sorted(unknown)}; known: {', '.join(FAULT_PHASES)}",
                  file=sys.stderr)
            return 2
        doc["faults"] = doc.get("faults", {}) | run_faults(args, work / "base", work, histories, only)
    doc["summary"] = summarize(doc)
    args.json.write_text(json.dumps(doc, indent=2, default=str))
    args.report.write_text(render(doc))
    for key, value in summarize_faults(doc["faults"]).items():
        print(f"{key:>32}: {value}")
    print(f"wrote {args.json} and {args.report}")
    s = doc["summary"]
    return 0 if (s["stub_kill_failed"] == 0 and s["writers_ok"] and s["sigterm_accepted_lost"] == 0
                 and s["unkeyed_control_refused"]) else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "quickstart", help="a trained run directory")
    ap.add_argument("--overload-concurrency", default="4,64,256")
    ap.add_argument("--overload-duration-s", type=float, default=10.0)
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--fuzz-examples", type=int, default=3000)
    ap.add_argument("--stub-kills", type=int, default=6, help="stub SIGKILLs under load (entry models in turn)")
    ap.add_argument("--writer-pairs", type=int, default=10, help="pairs of simultaneous add-items")
    ap.add_argument("--faults-only", nargs="?", const=True, default=False, metavar="PHASE[,PHASE]",
                    help="run only section 7 (the faults), or the named phases of it, and update them in the "
                         "existing --json and --report")
    ap.add_argument("--asan", action="store_true", help="run the kernel fuzz under AddressSanitizer")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "reliability.json")
    ap.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "RELIABILITY.md")
    args = ap.parse_args(argv)
    if not (args.run / "model.pt").exists():
        print(f"{args.run}: no trained run (run `genre-serve quickstart` first, or pass --run)", file=sys.stderr)
        return 2
    run = load_run(args.run)
    histories = [run.items.external(h) for h in run.split.stage("test").histories]
    if args.faults_only:
        return faults_only(args, histories)
    crashes = Crashes()
    doc: dict = {"command": "python benchmarks/reliability.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                 "date": time.strftime("%Y-%m-%d"), "machine": "2-core x86-64 CPU, no GPU",
                 "run": str(args.run), "catalog_size": len(run.items), "overload_duration_s": args.overload_duration_s}
    with tempfile.TemporaryDirectory(prefix="genre-reliability-") as tmp:
        work = Path(tmp)
        base = work / "base"
        export_run(args.run, base)
        doc["max_k"] = fmt.Catalog.load(base / fmt.RECOMMEND / "1").max_k
        print("[1/7] bad input")
        with TritonServer(base) as server:
            doc["bad_inputs"] = phase_bad_inputs(server, run.items.ids, doc["max_k"], crashes)
        doc["batching"] = phase_batching(args.run, work, histories, crashes)
        print("[2/7] overload")
        levels = [int(c) for c in args.overload_concurrency.split(",")]
        doc["overload"] = phase_overload(base, work, histories, levels, args.overload_duration_s, crashes)
        print("[3/7] rollout under load")
        doc["rollout"] = phase_rollout(base, work, args.run, histories, crashes)
        print("[4/7] kill and restart under load")
        doc["restart"] = phase_restart(base, work, histories, args.restarts)
        print("[5/7] kernel fuzz" + (" under AddressSanitizer" if args.asan else ""))
        doc["fuzz"] = phase_fuzz(args.asan, args.fuzz_examples)
        print("[6/7] security defaults")
        doc["security"] = security_facts(base)
        print("[7/7] faults: killed stubs, a killed tritonserver, concurrent writers, a full disk, SIGTERM")
        doc["faults"] = run_faults(args, base, work, histories)
    doc["crashes"] = {"count": crashes.count, "where": crashes.where}
    doc["summary"] = summarize(doc)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2, default=str))
    args.report.write_text(render(doc))
    for key, value in doc["summary"].items():
        print(f"{key:>28}: {value}")
    print(f"wrote {args.json} and {args.report}")
    s = doc["summary"]
    healthy = (s["server_crashes"] == 0 and s["rollout_lost"] == 0 and s["bad_inputs_passed"] == s["bad_inputs_tried"]
               and s["raw_http_failed"] == 0 and s["batch_good_mismatches"] == 0 and doc["fuzz"]["passed"]
               and doc["restart"]["errors_typed"] and s["stub_kill_failed"] == 0 and s["writers_ok"]
               and s["sigterm_accepted_lost"] == 0 and s["unkeyed_control_refused"])
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
