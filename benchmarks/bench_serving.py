"""Serving against what a user would pick instead, all contenders in one sitting.

    python benchmarks/bench_serving.py --run-dir runs/quickstart            # everything (about 12 min)
    python benchmarks/bench_serving.py --run-dir runs/quickstart --only latency,throughput

Sections (--only picks some):
- latency: concurrency 1, the same requests round by round through each
  contender (order shuffled per round; the VM's bandwidth drifts): in process
  with PyTorch towers (InProcessRecommender) and with the onnxruntime towers
  (VersionRecommender, the served math), served genre_recommend and
  genre_recommend_batch over HTTP and gRPC, and the same in-process pipeline
  bound to PyTriton. Also each stage's time per request, from the server's
  custom metrics.
- throughput: closed loop at concurrency 16 (the load test's asyncio client,
  in this process): both entry points, PyTriton, and the in-process pipeline
  in 2 worker processes fed by this process (the machine's ceiling; the load
  generator's CPU counted as in the others). Repeated, alternating, medians.
- sweep: the load-test sweep 1, 4, 16, 64 against both entry points.
- million: the latency table on a synthetic catalog of 1,000,000 items (the
  run's tables tiled with noise, the run's encoder and ranker), served vs in
  process.
- memory: PSS (and RSS) of the whole replica (tritonserver and its stubs) at 1
  and 4 instances of each entry point, on ml-latest-small and on the 1M
  catalog; and what a dict id -> index would cost per process.
- threads: throughput at concurrency 16 for instance and thread settings of
  both entry points (the rule in genre_serve/formats/resources.py).

The run must be trained on ml-latest-small (the quickstart's run is); with no
run at --run-dir, a 1-epoch model is trained there first (latency does not
depend on model quality). Writes a table per section and one JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import numpy as np

SECTIONS = ("latency", "throughput", "sweep", "million", "memory", "threads")


def percentiles(samples_s: list[float]) -> dict:
    ms = np.array(samples_s) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "n": int(ms.size)}


def interleaved(contenders: dict, requests: list, rounds: int, warmup: int = 10, seed: int = 0) -> dict:
    """Per contender, the latency of every request, measured round by round
    (each round: every contender answers the round's requests, in a shuffled order)."""
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():
        for history, k in requests[:warmup]:
            fn(history, k)
    per_round = max(1, len(requests) // rounds)
    for r in range(rounds):
        chunk = requests[r * per_round : (r + 1) * per_round]
        names = list(contenders)
        rng.shuffle(names)
        for name in names:
            fn = contenders[name]
            for history, k in chunk:
                t0 = time.perf_counter()
                fn(history, k)
                samples[name].append(time.perf_counter() - t0)
    return {name: percentiles(s) for name, s in samples.items()}


def print_latency(title: str, results: dict, base_names: tuple[str, ...]) -> None:
    base = min(results[n]["p50_ms"] for n in base_names if n in results)
    print(f"\n{title}")
    print(f"{'path':<48} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'p50 - in-process':>17}")
    for name, r in results.items():
        print(f"{name:<48} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['p50_ms'] - base:>+17.2f}")


# -- contenders -------------------------------------------------------------------
FLOOR_MODEL = """import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            history = pb_utils.get_input_tensor_by_name(r, "HISTORY").as_numpy()
            k = int(pb_utils.get_input_tensor_by_name(r, "K").as_numpy()[0])
            ids = np.array((list(history) * k)[:k] if history.size else [b"x"] * k, dtype=np.object_)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("ITEM_IDS", ids),
                                                   pb_utils.Tensor("SCORES", np.zeros(k, np.float32))]))
        return out
"""


def floor_repository(repo: Path, target: Path) -> Path:
    """A python-backend model with genre_recommend's config and tensors that
    answers without computing anything: what a served request costs at least."""
    from genre_serve.formats import repository as fmt

    (target / fmt.RECOMMEND / "1").mkdir(parents=True)
    config = (repo / fmt.RECOMMEND / fmt.CONFIG_PBTXT).read_text()
    (target / fmt.RECOMMEND / fmt.CONFIG_PBTXT).write_text(config.split("parameters {")[0])
    (target / fmt.RECOMMEND / "1" / fmt.MODEL_PY).write_text(FLOOR_MODEL)
    return target


def _pytriton_main(run_dir: str, ports: tuple[int, int, int], ready) -> None:
    """The child process of PyTritonRecommender: PyTriton serving the in-process pipeline until killed."""
    from genre_serve.serving.launcher import LOOPBACK, server_environment

    os.environ.update(server_environment())  # the stub needs this interpreter's packages and libpython
    from pytriton.model_config import ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from genre_serve.serving.pipeline import InProcessRecommender

    recommender = InProcessRecommender(run_dir)

    def infer(requests):
        out = []
        for r in requests:
            history = [h.decode() if isinstance(h, bytes) else str(h) for h in r["HISTORY"].reshape(-1)]
            ids, scores = recommender.recommend(history, int(r["K"].reshape(-1)[0]))
            out.append({"ITEM_IDS": np.array([i.encode() for i in ids], dtype=np.object_),
                        "SCORES": np.asarray(scores, np.float32)})
        return out

    config = TritonConfig(http_address=LOOPBACK, grpc_address=LOOPBACK, http_port=ports[0], grpc_port=ports[1],
                          metrics_port=ports[2])
    with Triton(config=config) as triton:
        triton.bind(model_name="genre_recommend", infer_func=infer,
                    inputs=[Tensor(name="HISTORY", dtype=bytes, shape=(-1,)),
                            Tensor(name="K", dtype=np.int32, shape=(1,))],
                    outputs=[Tensor(name="ITEM_IDS", dtype=bytes, shape=(-1,)),
                             Tensor(name="SCORES", dtype=np.float32, shape=(-1,))],
                    config=ModelConfig(batching=False))
        triton.run()
        ready.set()
        while True:
            time.sleep(3600)


class PyTritonRecommender:
    """The in-process pipeline behind PyTriton: one inference callable calling
    InProcessRecommender.recommend, bound as `genre_recommend` with the same
    tensors (so the same clients and load test talk to it). In a process of
    its own, so that its threads do not slow the in-process contenders."""

    def __init__(self, run_dir: Path, timeout_s: float = 180.0):
        from genre_serve.serving.launcher import LOOPBACK, free_port

        ports = (free_port(), free_port(), free_port())
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        self.process = ctx.Process(target=_pytriton_main, args=(str(run_dir), ports, ready), daemon=True)
        self.process.start()
        if not ready.wait(timeout_s):
            self.close()
            raise RuntimeError("PyTriton did not start")
        self.http_url = f"{LOOPBACK}:{ports[0]}"

    def close(self) -> None:
        self.process.terminate()
        self.process.join(30)


_WORKER = None


def _worker_init(version_dir: str) -> None:
    global _WORKER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from genre_serve.serving.recommender import VersionRecommender

    _WORKER = VersionRecommender(version_dir)


def _worker_answer(request) -> int:
    history, k = request
    return len(_WORKER.recommend(history, k)[0])


def pool_throughput(version_dir: Path, requests: list, seconds: float, workers: int = 2,
                    in_flight: int = 16) -> float:
    """Requests/s of `workers` processes running the in-process pipeline, fed by
    this process with `in_flight` requests outstanding."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_worker_init, initargs=(str(version_dir),)) as pool:
        pool.map(_worker_answer, requests[:20])  # warm-up
        done, pending, i = 0, [], 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            while len(pending) < in_flight:
                pending.append(pool.apply_async(_worker_answer, (requests[i % len(requests)],)))
                i += 1
            pending.pop(0).get()
            done += 1
        elapsed = time.perf_counter() - t0
        for p in pending:
            p.get()
    return done / elapsed


def sweep_level(url: str, histories, concurrency: int, seconds: float, protocol: str = "http",
                batched: bool = False, metrics_url: str | None = None):
    from genre_serve.loadtest import sweep

    return sweep.run_sweep(url, histories, [concurrency], seconds, protocol, metrics_url=metrics_url,
                           progress=None, batched=batched)[0]


# -- a synthetic large catalog ----------------------------------------------------------
def million_repository(source_repo: Path, target: Path, items: int, seed: int = 0) -> Path:
    """A repository serving `items` items: the source version's items first
    (real histories keep working), then rows drawn from its tables plus noise,
    ids "syn<i>". The source's encoder and ranker (they hold no item table)."""
    from genre_serve.formats import repository as fmt

    src = source_repo / fmt.RECOMMEND / str(fmt.latest_version(source_repo))
    tables = fmt.ItemTableFiles.load(src, mmap=False)
    catalog = fmt.Catalog.load(src, titles=True, mmap=False)
    n0 = len(catalog.ids)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n0, items - n0)
    noise = np.float32(0.05)
    item_cf = np.concatenate([tables.item_cf, tables.item_cf[pick] + noise * rng.standard_normal(
        (items - n0, tables.item_cf.shape[1]), np.float32)])
    item_ct = np.concatenate([tables.item_ct, tables.item_ct[pick] + noise * rng.standard_normal(
        (items - n0, tables.item_ct.shape[1]), np.float32)])
    ids = catalog.ids.tolist() + [f"syn{i}" for i in range(items - n0)]
    popularity = np.concatenate([np.asarray(catalog.popularity), np.asarray(catalog.popularity)[pick]])
    if fmt.latest_version(source_repo) != 1:
        raise ValueError(f"{source_repo}: a fresh export (version 1 only) is expected")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source_repo, target, ignore=shutil.ignore_patterns("__pycache__"))
    folder = target / fmt.RECOMMEND / "1"
    tables.with_tables(item_cf, item_ct).save(folder)
    fmt.Catalog.of(ids, popularity, titles=catalog.titles + [""] * (items - n0), scenarios=catalog.scenarios,
                   max_history=catalog.max_history, depth=catalog.depth, max_k=catalog.max_k,
                   cf_dim=catalog.cf_dim, ct_dim=catalog.ct_dim,
                   recent_popularity_days=catalog.recent_popularity_days, dataset="synthetic").save(folder)
    fmt.share_recommend_files({fmt.RECOMMEND: folder, fmt.RECOMMEND_BATCH: target / fmt.RECOMMEND_BATCH / "1"})
    return target


def dict_cost_mib(ids: list[str]) -> float:
    """What {id: index} costs a process (tracemalloc), for comparison with the mapped id files."""
    import tracemalloc

    copies = [str(i) + "" for i in ids]  # the strings a process would hold, too
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    strings = [s.encode().decode() for s in copies]
    index = {s: i for i, s in enumerate(strings)}
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del index, strings
    return (after - before) / 2**20


def served_memory(repo: Path, instances: int, requests: list) -> dict:
    """PSS/RSS of a replica with `instances` of each entry point, after every
    instance has answered requests (its pages touched)."""
    from genre_serve.client import GenreClient
    from genre_serve.export import model_configs as mc
    from genre_serve.export.repository import reconfigure
    from genre_serve.serving.launcher import TritonServer
    from genre_serve.serving.memory import tree_memory

    reconfigure(repo, mc.ServingConfig(recommend_instances=instances, batch_instances=instances))
    with TritonServer(repo) as server, GenreClient(server.http_url) as client:
        histories = [h for h, _ in requests[: 8 * instances]]
        client.recommend_many(histories, 10, max_workers=instances)  # concurrent: every instance works
        client.recommend_many(histories, 10, batched=True)
        for h in histories[: 2 * instances]:
            client.recommend_batch([h], 10)
        time.sleep(1)
        memory = tree_memory(server.pid)
    return {"pss_mib": memory.pss_mib, "rss_mib": memory.rss_mib, "processes": memory.processes}


def counters(metrics_url: str, model: str) -> dict:
    """The server's counters once what its stubs hold back (at most 0.25 s of them) has been sent."""
    from genre_serve.loadtest.sweep import model_counters

    time.sleep(0.6)
    return model_counters(urllib.request.urlopen(metrics_url).read().decode(), model)


def stage_breakdown(metrics_url: str, before: dict, model: str) -> dict:
    from genre_serve.loadtest.sweep import server_side

    after = counters(metrics_url, model)
    return {k: v for k, v in server_side(before, after).items() if k.endswith("_ms_per_user")}


# -- main -----------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=Path("runs/quickstart"))
    ap.add_argument("--requests", type=int, default=300, help="latency: requests per contender")
    ap.add_argument("--rounds", type=int, default=6, help="latency: rounds the requests are split into")
    ap.add_argument("--seconds", type=float, default=8.0, help="throughput / sweep / threads: seconds per level")
    ap.add_argument("--repeats", type=int, default=3, help="throughput: alternating repeats (median reported)")
    ap.add_argument("--million-items", type=int, default=1_000_000)
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma separated, of {', '.join(SECTIONS)}")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/bench_serving.json"))
    args = ap.parse_args(argv)
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    if sections - set(SECTIONS):
        ap.error(f"--only: unknown section(s) {', '.join(sorted(sections - set(SECTIONS)))}")

    from genre_serve.client import GenreClient
    from genre_serve.export.repository import export_run
    from genre_serve.formats import repository as fmt
    from genre_serve.formats.run_dir import load_run
    from genre_serve.serving.launcher import TritonServer
    from genre_serve.serving.pipeline import InProcessRecommender
    from genre_serve.serving.recommender import VersionRecommender

    if not (args.run_dir / "model.pt").exists():
        from genre_serve.config import TrainConfig
        from genre_serve.data import load_builtin
        from genre_serve.train.trainer import train

        print(f"no run at {args.run_dir}: training a 1-epoch model on ml-latest-small first")
        train(load_builtin(), TrainConfig(epochs=1, ranker_epochs=1), args.run_dir)
    run = load_run(args.run_dir)
    hist = run.split.stage("test").histories
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(hist), size=args.requests)
    requests = [(run.items.external(hist[i]), args.k) for i in picks]
    histories = [run.items.external(h) for h in hist]
    report: dict = {
        "command": " ".join(["python", "benchmarks/bench_serving.py"] + (argv if argv is not None else sys.argv[1:])),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "catalog_items": len(run.items), "k": args.k,
        "history_length_median": int(np.median([len(h) for h, _ in requests])),
    }
    print(f"{len(run.items)} items, {args.requests} requests, k={args.k}, history length median "
          f"{report['history_length_median']}")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        repo = Path(tmp) / "repo"
        export_run(args.run_dir, repo)
        version_dir = repo / fmt.RECOMMEND / "1"
        torch_path = InProcessRecommender(run)
        onnx_path = VersionRecommender(version_dir)
        in_process = {"in-process, PyTorch towers": lambda h, k: torch_path.recommend(h, k),
                      "in-process, onnxruntime towers": lambda h, k: onnx_path.recommend(h, k)}
        needs_server = sections & {"latency", "throughput", "sweep"}
        server = stack.enter_context(TritonServer(repo)) if needs_server else None
        pytriton = None
        if sections & {"latency", "throughput"}:
            pytriton = PyTritonRecommender(args.run_dir)
            stack.callback(pytriton.close)

        if "latency" in sections:
            floor = stack.enter_context(TritonServer(floor_repository(repo, Path(tmp) / "floor"),
                                                     check_format=False))
            clients = {p: stack.enter_context(GenreClient(u, p)) for p, u in
                       (("http", server.http_url), ("grpc", server.grpc_url))}
            floors = {p: stack.enter_context(GenreClient(u, p)) for p, u in
                      (("http", floor.http_url), ("grpc", floor.grpc_url))}
            pt_client = stack.enter_context(GenreClient(pytriton.http_url))
            contenders = dict(in_process)
            for p, c in clients.items():
                contenders[f"served genre_recommend ({p})"] = lambda h, k, c=c: c.recommend(h, k)
                contenders[f"served genre_recommend_batch ({p}), 1 user"] = \
                    lambda h, k, c=c: c.recommend_batch([h], k)
            contenders["PyTriton + InProcessRecommender (http)"] = lambda h, k: pt_client.recommend(h, k)
            for p, c in floors.items():
                contenders[f"floor: a python model that computes nothing ({p})"] = lambda h, k, c=c: c.recommend(h, k)
            before = counters(server.metrics_url, fmt.RECOMMEND)
            results = interleaved(contenders, requests, args.rounds)
            stages = stage_breakdown(server.metrics_url, before, fmt.RECOMMEND)
            mismatches = {}
            for name, fn in contenders.items():
                if name.startswith(("served", "PyTriton")):
                    got = [[r.item_id for r in (fn(h, k)[0] if "batch" in name else fn(h, k))]
                           for h, k in requests[:50]]
                    mismatches[name] = sum(g != torch_path.recommend(h, k)[0] for g, (h, k) in zip(got, requests))
            print_latency("latency at concurrency 1 (ml-latest-small)", results, tuple(in_process))
            print("answers differing from the in-process PyTorch pipeline (of 50):", mismatches)
            print("genre_recommend's stages, ms per request:", {k: round(v, 3) for k, v in stages.items()})
            report["latency"] = {"results": results, "mismatches_of_50": mismatches, "stages_ms": stages}

        if "throughput" in sections:
            runs: dict[str, list[float]] = {}
            for _ in range(args.repeats):
                contenders_t = {
                    "genre_recommend (http)": lambda: sweep_level(server.http_url, histories, 16, args.seconds),
                    "genre_recommend_batch (http)": lambda: sweep_level(server.http_url, histories, 16,
                                                                        args.seconds, batched=True),
                    "genre_recommend (grpc)": lambda: sweep_level(server.grpc_url, histories, 16, args.seconds,
                                                                  "grpc"),
                    "genre_recommend_batch (grpc)": lambda: sweep_level(server.grpc_url, histories, 16,
                                                                        args.seconds, "grpc", batched=True),
                    "PyTriton + InProcessRecommender (http)": lambda: sweep_level(pytriton.http_url, histories,
                                                                                  16, args.seconds),
                }
                for name, fn in contenders_t.items():
                    level = fn()
                    runs.setdefault(name, []).append(level.throughput_rps if not level.errors else float("nan"))
                runs.setdefault("in-process pipeline, 2 worker processes", []).append(
                    pool_throughput(version_dir, requests, args.seconds))
            medians = {name: float(np.median(v)) for name, v in runs.items()}
            ceiling = medians["in-process pipeline, 2 worker processes"]
            pt = medians["PyTriton + InProcessRecommender (http)"]
            print(f"\nthroughput at concurrency 16, {args.seconds:.0f} s x {args.repeats} alternating repeats")
            print(f"{'contender':<44} {'req/s':>8} {'x ceiling':>10} {'x PyTriton':>11}")
            for name, v in medians.items():
                print(f"{name:<44} {v:>8.1f} {v / ceiling:>10.2f} {v / pt:>11.2f}")
            report["throughput"] = {"runs": runs, "median_rps": medians}

        if "sweep" in sections:
            from genre_serve.loadtest import sweep

            report["sweep"] = {}
            for name, batched in (("genre_recommend", False), ("genre_recommend_batch", True)):
                print(f"\nload-test sweep, {name} (http), {args.seconds:.0f} s per level")
                print(sweep.HEADER)
                levels = sweep.run_sweep(server.http_url, histories, [1, 4, 16, 64], args.seconds,
                                         metrics_url=server.metrics_url, batched=batched)
                report["sweep"][name] = sweep.to_json(levels)
                p50_1, p99_4 = levels[0].latency_ms["p50"], levels[1].latency_ms["p99"]
                errors = sum(sum(level.errors.values()) for level in levels)
                print(f"p99 at 4 / p50 at 1: {p99_4 / p50_1:.2f} (target <= 3); errors 1..64: {errors}")
        if server is not None:
            stack.close()  # the next sections start their own servers

        big_repo = None
        if sections & {"million", "memory"}:
            t0 = time.perf_counter()
            big_repo = million_repository(repo, Path(tmp) / "million", args.million_items)
            print(f"\nsynthetic catalog of {args.million_items:,} items written in {time.perf_counter() - t0:.0f} s")

        if "million" in sections:
            with TritonServer(big_repo) as big, GenreClient(big.http_url) as http, \
                    GenreClient(big.grpc_url, "grpc") as grpc:
                big_onnx = VersionRecommender(big_repo / fmt.RECOMMEND / "1")
                contenders = {"in-process, onnxruntime towers": lambda h, k: big_onnx.recommend(h, k),
                              "served genre_recommend (http)": lambda h, k: http.recommend(h, k),
                              "served genre_recommend (grpc)": lambda h, k: grpc.recommend(h, k),
                              "served genre_recommend_batch (http), 1 user":
                                  lambda h, k: http.recommend_batch([h], k)}
                few = requests[: max(60, args.requests // 5)]
                before = counters(big.metrics_url, fmt.RECOMMEND)
                results = interleaved(contenders, few, 3, warmup=5)
                stages = stage_breakdown(big.metrics_url, before, fmt.RECOMMEND)
                same = sum([r.item_id for r in http.recommend(h, k)] == big_onnx.recommend(h, k)[0]
                           for h, k in few[:20])
            print_latency(f"latency at concurrency 1, synthetic {args.million_items:,}-item catalog", results,
                          ("in-process, onnxruntime towers",))
            print(f"served == in-process on {same}/20; stages ms per request:",
                  {k: round(v, 2) for k, v in stages.items()})
            report["million"] = {"items": args.million_items, "results": results, "same_of_20": same,
                                 "stages_ms": stages}

        if "memory" in sections:
            rows = {}
            for label, target in (("ml-latest-small", repo), (f"{args.million_items:,} items", big_repo)):
                for n in (1, 4):
                    rows[f"{label}, {n} instance(s) of each entry point"] = served_memory(target, n, requests)
            ids = fmt.ItemIds.load(big_repo / fmt.RECOMMEND / "1").tolist()
            table_mib = sum((big_repo / fmt.RECOMMEND / "1" / f).stat().st_size
                            for f in (fmt.ITEM_CF_NPY, fmt.ITEM_CT_NPY)) / 2**20
            id_files_mib = sum((big_repo / fmt.RECOMMEND / "1" / f).stat().st_size for f in
                               (fmt.ITEM_IDS_NPY, fmt.ITEM_IDS_SORTED_NPY, fmt.ITEM_IDS_ORDER_NPY)) / 2**20
            per_dict = dict_cost_mib(ids)
            print("\nreplica memory (tritonserver + stubs, after every instance answered)")
            print(f"{'case':<60} {'PSS MiB':>9} {'RSS MiB':>9} {'procs':>6}")
            for name, m in rows.items():
                print(f"{name:<60} {m['pss_mib']:>9.0f} {m['rss_mib']:>9.0f} {m['processes']:>6}")
            print(f"1M catalog: item tables {table_mib:.0f} MiB, id files {id_files_mib:.0f} MiB (mapped, shared); "
                  f"a dict id -> index would cost {per_dict:.0f} MiB per process")
            report["memory"] = {"replica": rows, "million_table_mib": table_mib, "million_id_files_mib": id_files_mib,
                                "dict_per_process_mib": per_dict}

        if "threads" in sections:
            from genre_serve.export import model_configs as mc
            from genre_serve.export.repository import reconfigure

            settings = [(1, "1"), (2, "1"), (3, "1"), (4, "1"), (1, "2"), (2, "2")]
            table = {}
            for instances, threads in settings:
                reconfigure(repo, mc.ServingConfig(recommend_instances=instances, batch_instances=instances,
                                                   ort_threads=threads, kernel_threads=threads))
                with TritonServer(repo) as srv:
                    for name, batched in (("genre_recommend", False), ("genre_recommend_batch", True)):
                        sweep_level(srv.http_url, histories, 16, 2, batched=batched)  # warm-up
                        alone = sweep_level(srv.http_url, histories, 1, args.seconds / 2, batched=batched)
                        level = sweep_level(srv.http_url, histories, 16, args.seconds, batched=batched)
                        table[f"{name}: {instances} instance(s), {threads} thread(s)"] = {
                            "rps": level.throughput_rps, "p50_ms": level.latency_ms.get("p50"),
                            "p99_ms": level.latency_ms.get("p99"), "errors": sum(level.errors.values()),
                            "p50_ms_concurrency_1": alone.latency_ms.get("p50")}
            print(f"\ninstances and threads (http): concurrency 16 for {args.seconds:.0f} s, "
                  "concurrency 1 for half that")
            print(f"{'setting':<56} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p50 at c=1':>11}")
            for name, r in table.items():
                print(f"{name:<56} {r['rps']:>8.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                      f"{r['p50_ms_concurrency_1']:>11.2f}")
            report["threads"] = table

    args.json.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.json.read_text()) if args.json.exists() else {}
    if sections != set(SECTIONS):  # a partial run updates its sections only
        report = previous | report
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
