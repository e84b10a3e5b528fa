"""`genre-serve loadtest`: an asyncio closed-loop concurrency sweep against a
running genre_recommend (or, `batched`, genre_recommend_batch: one-user
requests that the server's dynamic batcher groups).

At each level, `concurrency` workers each send one request, wait for the
answer, and send the next (closed loop), for `duration_s`. Per level: requests,
errors by kind, throughput, p50/p95/p99/max latency, and the server's own
average queue and compute time per request and its time per stage (user
tower, retrieval, ranking, id mapping: genre_serve's custom metrics), scraped
from its Prometheus endpoint before and after the level. Bounded in time and
count; loopback only unless explicitly allowed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from genre_serve.client.core import classify, parse_batch_recommendations, parse_recommendations, recommend_request
from genre_serve.errors import LoadTestError
from genre_serve.formats import repository as fmt

MAX_DURATION_S = 600.0
MAX_CONCURRENCY = 1024


@dataclass
class LevelResult:
    concurrency: int
    duration_s: float
    requests: int
    ok: int
    errors: dict[str, int] = field(default_factory=dict)
    throughput_rps: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)  # answered requests
    error_latency_ms: dict[str, float] = field(default_factory=dict)  # failed ones (how fast a rejection is)
    server: dict[str, float] = field(default_factory=dict)
    client_cpus: float = 0.0  # CPUs the load generator itself used (process time / wall time)


def check_target(url: str, allow_remote: bool) -> None:
    host = url.rsplit(":", 1)[0].strip("[]")
    try:
        addresses = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
    except socket.gaierror as e:
        raise LoadTestError(f"cannot resolve {host!r}: {e}") from None
    if not allow_remote and not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise LoadTestError(f"{url} is not a loopback address; pass --allow-remote to load-test another host")


def load_histories(path: str | Path) -> list[list[str]]:
    """One history per line: item ids separated by commas (empty line: cold user)."""
    lines = Path(path).read_text().splitlines()
    histories = [[i.strip() for i in line.split(",") if i.strip()] for line in lines]
    if not histories:
        raise LoadTestError(f"{path}: no history")
    return histories


def histories_from_run(run_dir: str | Path) -> list[list[str]]:
    from genre_serve.formats.run_dir import load_run

    run = load_run(run_dir)
    return [run.items.external(h) for h in run.split.stage("test").histories]


STAGE_SECONDS, STAGE_USERS = "genre_serve_stage_seconds", "genre_serve_users"


def model_counters(text: str, model: str = fmt.RECOMMEND) -> dict[str, float]:
    """Triton's nv_inference_* samples and genre_serve's stage counters for
    `model`, summed over versions, from Prometheus text (parsed by
    prometheus_client, which reads the format exactly). A stage counter is
    named `genre_serve_stage_seconds:<stage>`."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(("nv_inference_", STAGE_SECONDS, STAGE_USERS)):
            continue
        for sample in family.samples:
            if sample.labels.get("model") != model:
                continue
            # The parser names counter samples <family>_total (OpenMetrics); keep Triton's names.
            name = family.name if family.type == "counter" and sample.name == f"{family.name}_total" else sample.name
            if name == STAGE_SECONDS:
                name = f"{name}:{sample.labels.get('stage')}"
            out[name] = out.get(name, 0.0) + float(sample.value)
    return out


def scrape(metrics_url: str | None, model: str = fmt.RECOMMEND) -> dict[str, float]:
    """Triton's cumulative counters for `model` from its Prometheus endpoint ({} if unreachable)."""
    if not metrics_url:
        return {}
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as r:
            return model_counters(r.read().decode(), model)
    except OSError:
        return {}


def server_side(before: dict, after: dict) -> dict[str, float]:
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    n = d.get("nv_inference_request_success", 0.0)
    if n <= 0:
        return {}
    return {
        "requests": n,
        "queue_ms_avg": d.get("nv_inference_queue_duration_us", 0.0) / n / 1e3,
        "compute_ms_avg": (d.get("nv_inference_compute_input_duration_us", 0.0)
                           + d.get("nv_inference_compute_infer_duration_us", 0.0)
                           + d.get("nv_inference_compute_output_duration_us", 0.0)) / n / 1e3,
        "request_ms_avg": d.get("nv_inference_request_duration_us", 0.0) / n / 1e3,
        "failed": d.get("nv_inference_request_failure", 0.0),
    } | stage_ms(d)


def stage_ms(deltas: dict[str, float]) -> dict[str, float]:
    """Milliseconds per user in each stage, from the stage counters' increments."""
    users = deltas.get(STAGE_USERS, 0.0)
    if users <= 0:
        return {}
    prefix = f"{STAGE_SECONDS}:"
    return {f"{k[len(prefix):]}_ms_per_user": v / users * 1e3 for k, v in deltas.items() if k.startswith(prefix)}


async def _run_level(make_client, module, histories, k, concurrency, duration_s, timeout_s, seed,
                     model: str = fmt.RECOMMEND) -> LevelResult:
    batched = model == fmt.RECOMMEND_BATCH
    latencies: list[float] = []
    error_latencies: list[float] = []
    errors: dict[str, int] = {}
    rng = random.Random(seed)
    deadline = time.perf_counter() + duration_s
    clients = [make_client() for _ in range(min(concurrency, 64))]

    async def worker(w: int):
        client = clients[w % len(clients)]
        while time.perf_counter() < deadline:
            history = histories[rng.randrange(len(histories))]
            inputs, outputs = recommend_request(module, history, k, batched=batched)
            t0 = time.perf_counter()
            try:
                result = await asyncio.wait_for(client.infer(model, inputs, outputs=outputs), timeout_s)
                parse_batch_recommendations(result) if batched else parse_recommendations(result)
                latencies.append(time.perf_counter() - t0)
            except asyncio.TimeoutError:
                errors["ClientTimeoutError"] = errors.get("ClientTimeoutError", 0) + 1
                error_latencies.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - counted by kind
                kind = type(classify(e)).__name__
                errors[kind] = errors.get(kind, 0) + 1
                error_latencies.append(time.perf_counter() - t0)
                await asyncio.sleep(0.01)  # a refused connection must not become a busy loop

    t_start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - t_start
    cpus = (time.process_time() - cpu_start) / elapsed
    for c in clients:
        await c.close()
    requests = len(latencies) + sum(errors.values())
    return LevelResult(concurrency, elapsed, requests, len(latencies), errors, len(latencies) / elapsed,
                       percentiles_ms(latencies), percentiles_ms(error_latencies), client_cpus=cpus)


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1e3
    if not ms.size:
        return {}
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max()), "mean": float(ms.mean())}


def run_sweep(url: str, histories: list[list[str]], concurrency: list[int], duration_s: float,
              protocol: str = "http", k: int = 10, timeout_s: float = 10.0, metrics_url: str | None = None,
              allow_remote: bool = False, seed: int = 0, progress=print,
              batched: bool = False) -> list[LevelResult]:
    """`batched`: one-user requests to genre_recommend_batch instead of genre_recommend."""
    model = fmt.RECOMMEND_BATCH if batched else fmt.RECOMMEND
    if not 0 < duration_s <= MAX_DURATION_S:
        raise LoadTestError(f"duration_s: must be in (0, {MAX_DURATION_S:.0f}]")
    if not concurrency or any(not 0 < c <= MAX_CONCURRENCY for c in concurrency):
        raise LoadTestError(f"concurrency: levels must be in [1, {MAX_CONCURRENCY}]")
    check_target(url, allow_remote)
    if protocol == "http":
        import tritonclient.http as module
        import tritonclient.http.aio as aio

        def make_client():
            return aio.InferenceServerClient(url, conn_limit=1024, conn_timeout=timeout_s)
    elif protocol == "grpc":
        import tritonclient.grpc as module
        import tritonclient.grpc.aio as aio

        def make_client():
            return aio.InferenceServerClient(url)
    else:
        raise LoadTestError(f"protocol: http or grpc, got {protocol!r}")
    results = []
    for level in concurrency:
        before = scrape(metrics_url, model)
        result = asyncio.run(_run_level(make_client, module, histories, k, level, duration_s, timeout_s, seed,
                                        model))
        result.server = server_side(before, scrape(metrics_url, model))
        results.append(result)
        if progress:
            progress(format_row(result))
    return results


HEADER = (f"{'conc':>5} {'requests':>9} {'errors':>7} {'rps':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'srv queue':>9} {'srv compute':>11} {'client CPUs':>11}")


def format_row(r: LevelResult) -> str:
    lat = r.latency_ms or {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    q = r.server.get("queue_ms_avg", float("nan"))
    c = r.server.get("compute_ms_avg", float("nan"))
    return (f"{r.concurrency:>5} {r.requests:>9} {sum(r.errors.values()):>7} {r.throughput_rps:>8.1f} "
            f"{lat['p50']:>8.2f} {lat['p95']:>8.2f} {lat['p99']:>8.2f} {lat['max']:>8.2f} {q:>9.2f} {c:>11.2f} "
            f"{r.client_cpus:>11.2f}")


def to_json(results: list[LevelResult], **meta) -> dict:
    return {**meta, "levels": [asdict(r) for r in results]}


def plot(results: list[LevelResult], path: str | Path, title: str = "genre_recommend") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conc = [r.concurrency for r in results]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^:")):
        ax.plot(conc, [r.latency_ms.get(key, np.nan) for r in results], style, label=f"{key} latency")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrency (closed loop)")
    ax.set_ylabel("latency (ms)")
    ax2 = ax.twinx()
    ax2.plot(conc, [r.throughput_rps for r in results], "k-", lw=2, label="throughput")
    ax2.set_ylabel("throughput (requests/s)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
