"""The serving settings an export writes into config.pbtxt (the `export`
flags take their defaults from here). Import-light: the CLI reads it to
build its parser."""

from __future__ import annotations

from dataclasses import dataclass

from genre_serve.formats.resources import AUTO, available_cpus, default_instances


@dataclass(frozen=True)
class ServingConfig:
    """What config.pbtxt is generated from (the `export` flags)."""

    max_batch_size: int = 64
    max_queue_delay_us: int = 500  # dynamic batching: how long a request may wait for company
    instances: int = 1  # per batched inner model (item tower; the standalone models)
    # None: the rule of formats/resources.py from `cpus` (None: the CPUs this machine lets the process use).
    recommend_instances: int | None = None  # genre_recommend is one user per request: concurrency = instances
    batch_instances: int | None = None  # genre_recommend_batch
    cpus: int | None = None
    ort_threads: str = AUTO  # per instance of the entry points; "auto": decided on the serving machine
    kernel_threads: str = AUTO
    kind: str = "KIND_CPU"  # KIND_GPU on GPU hosts (the NGC container)
    num_versions: int = 1  # versions each model serves (latest N)
    # Overload protection of the entry models: past this many waiting requests
    # the server rejects at once (HTTP 503 / gRPC UNAVAILABLE, "Exceeds maximum
    # queue size") instead of letting latency grow without bound. 0: unbounded.
    max_queue_size: int = 64
    queue_timeout_us: int = 0  # > 0: a request still queued after this long is rejected

    def instance_counts(self) -> tuple[int, int]:
        """(genre_recommend, genre_recommend_batch) instances."""
        rule = default_instances(self.cpus or available_cpus())
        return (self.recommend_instances or rule.recommend_instances,
                self.batch_instances or rule.batch_instances)


# The tracked model_repository/ template: the defaults, instance counts for a 2-CPU server.
TEMPLATE_SERVING = ServingConfig(cpus=2)
