"""The resources of the entry points, as config.pbtxt carries them: how many
instances and threads they get, from the CPUs the server may use
(`available_cpus`: the cgroup quota where there is one).

The rule, measured on ml-latest-small (benchmarks/RESULTS.md, "instances and
threads"; 2 CPUs, HTTP): one onnxruntime and one kernel thread per instance
(with 2 threads per instance throughput under load fell to a fraction: the
intra-op threads wait for cores the other processes hold, and a request's
steps are too short for them to pay off anyway); genre_recommend one
instance per CPU plus one (each answers one request at a time and spends
part of it in the server's IPC: at concurrency 16, 1 instance gave 189
requests/s, 2 gave 644, 3 gave 750, 4 gave 750, while the p50 alone rose
from 2.47 to 2.53, 2.64 and 2.70 ms as requests rotate over more processes'
caches); genre_recommend_batch one per CPU (one batch forms while another
runs: 1,096 requests/s with 2, 985 with 1, 1,073 with 4). `export --cpus`,
`--recommend-instances`, `--batch-instances`, `--ort-threads` and
`--kernel-threads` override it; the thread counts travel in config.pbtxt
`parameters` ("auto": the rule).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

AUTO = "auto"
ORT_THREADS, KERNEL_THREADS = "ort_threads", "kernel_threads"


class ThreadSettings(NamedTuple):
    ort_threads: int  # onnxruntime intra-op threads per session
    kernel_threads: int  # OpenMP threads of fused_topk / cross_features per call


@dataclass(frozen=True)
class InstanceRule:
    recommend_instances: int
    batch_instances: int


def available_cpus() -> int:
    """The CPUs this process may use: the cgroup's CPU quota where there is one
    (a container's limit), else the CPUs it is allowed to run on (not nproc
    of the host)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(-(-int(quota) // int(period)))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def default_instances(cpus: int) -> InstanceRule:
    cpus = max(1, int(cpus))
    return InstanceRule(recommend_instances=cpus + 1, batch_instances=cpus)


def _count(value: str | int | None, name: str) -> int | None:
    if value is None or value == "" or value == AUTO:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: a positive integer or {AUTO!r}, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{name}: a positive integer or {AUTO!r}, got {value!r}")
    return n


def thread_settings(params: dict[str, str]) -> ThreadSettings:
    """The threads of one instance: the config's parameters, else one of each
    whatever the CPU count (see the module docstring for why)."""
    ort = _count(params.get(ORT_THREADS), ORT_THREADS) or 1
    kernel = _count(params.get(KERNEL_THREADS), KERNEL_THREADS) or 1
    return ThreadSettings(ort, kernel)


def check_thread_value(value: str | int, name: str) -> str:
    """A config parameter value: 'auto' or a positive integer, as a string."""
    n = _count(value, name)
    return AUTO if n is None else str(n)
