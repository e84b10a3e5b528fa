"""The serving settings an export writes into config.pbtxt (the `export`
flags take their defaults from here). Import-light: the CLI reads it to
build its parser."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServingConfig:
    """What config.pbtxt is generated from (the `export` flags)."""

    max_batch_size: int = 64
    max_queue_delay_us: int = 500  # dynamic batching: how long a request may wait for company
    instances: int = 1  # per batched model
    recommend_instances: int = 4  # genre_recommend is one user per request: concurrency = instances
    kind: str = "KIND_CPU"  # KIND_GPU on GPU hosts (the NGC container)
    num_versions: int = 1  # versions each model serves (latest N)
    # Overload protection of the entry models: past this many waiting requests
    # the server rejects at once (HTTP 503 / gRPC UNAVAILABLE, "Exceeds maximum
    # queue size") instead of letting latency grow without bound. 0: unbounded.
    max_queue_size: int = 64
    queue_timeout_us: int = 0  # > 0: a request still queued after this long is rejected
