"""genre_recommend and genre_recommend_batch: the two entry points (python
backend), one class. Each answers whole requests in its own stub process
(serving/recommender.py): no Business Logic Scripting call, no other model.

genre_recommend (max_batch_size 0): one user per request, external item ids
of the history `HISTORY` [n], `K` [1], optional `SCENARIO` [1] and `ALPHA` [1]
-> `ITEM_IDS` [k], `SCORES` [k], best first, never an item of the history.

genre_recommend_batch (max_batch_size > 0, dynamic batching): the same tensors
with a batch dimension, `HISTORY` [b, n] (shorter histories padded with empty
ids, `allow_ragged_batch`: requests of any n batch together), `K` [b, 1] ->
`ITEM_IDS` [b, w], `SCORES` [b, w], a row shorter than w padded with empty ids
and -inf. Every user of every request the dynamic batcher hands over is
answered by one encoder run, one catalog pass and one ranker run; a bad
request fails alone.

A cold user (empty history, or no id the catalog knows) gets the most popular
items. Time per stage goes to Triton's Prometheus endpoint as custom metrics
(`genre_serve_stage_seconds`, `genre_serve_users`; labels model, version, stage),
sent every quarter second by a thread of the stub (StageMetrics).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from genre_serve.errors import RequestError
from genre_serve.formats import repository as fmt
from genre_serve.formats.resources import thread_settings
from genre_serve.serving.recommend_logic import Request, parse_request
from genre_serve.serving.recommender import STAGES, Ranking, VersionRecommender
from genre_serve.serving.stubs.responses import error_response, optional_input, tensor_response


class StageMetrics:
    """Counters of seconds per stage and of users answered, per model version.

    Each increment is a message from the stub to the server process (about
    25 us here, 0.13 ms for a request's five), so requests only add to sums
    in the stub and a background thread sends them every FLUSH_S: the
    counters lag by at most that, and no request waits for them.
    """

    FLUSH_S = 0.25

    def __init__(self, model: str, version: str):
        self.families = (
            pb_utils.MetricFamily(name="genre_serve_stage_seconds", kind=pb_utils.MetricFamily.COUNTER,
                                  description="Seconds genre_recommend spent per stage (id_mapping, user_tower, "
                                              "retrieval, ranking), summed over requests"),
            pb_utils.MetricFamily(name="genre_serve_users", kind=pb_utils.MetricFamily.COUNTER,
                                  description="Users answered (one per genre_recommend request, b per batch row)"),
        )
        labels = {"model": model, "version": version}
        self.seconds = {s: self.families[0].Metric(labels=labels | {"stage": s}) for s in STAGES}
        self.users = self.families[1].Metric(labels=labels)
        self.pending_seconds = dict.fromkeys(STAGES, 0.0)
        self.pending_users = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="genre-serve-metrics", daemon=True)
        self.thread.start()

    def record(self, times: dict[str, float], users: int) -> None:
        with self.lock:
            for stage, seconds in times.items():
                self.pending_seconds[stage] += seconds
            self.pending_users += users

    def _run(self) -> None:
        while not self.stopped.wait(self.FLUSH_S):
            self.flush()

    def flush(self) -> None:
        with self.lock:
            seconds, users = self.pending_seconds, self.pending_users
            self.pending_seconds, self.pending_users = dict.fromkeys(STAGES, 0.0), 0
        for stage, value in seconds.items():
            if value:
                self.seconds[stage].increment(value)
        if users:
            self.users.increment(users)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=2 * self.FLUSH_S)
        self.flush()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.batched = int(config.get("max_batch_size", 0)) > 0
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        threads = thread_settings(params)
        folder = Path(args["model_repository"]) / args["model_version"]
        self.recommender = VersionRecommender(folder, threads.ort_threads, threads.kernel_threads)
        self.catalog = self.recommender.catalog
        try:
            self.metrics: StageMetrics | None = StageMetrics(args["model_name"], args["model_version"])
        except Exception:  # noqa: BLE001 - metrics are optional (a server started with metrics off)
            self.metrics = None

    def finalize(self):
        if self.metrics is not None:
            self.metrics.close()

    def execute(self, requests):
        responses = [None] * len(requests)
        parsed: list[tuple[int, list[Request]]] = []
        times = {"id_mapping": 0.0}
        for r, request in enumerate(requests):
            t0 = time.perf_counter()
            try:
                parsed.append((r, self._parse(request)))
            except RequestError as e:
                responses[r] = error_response(str(e))
            except Exception as e:  # noqa: BLE001 - one request's failure must not fail the others
                responses[r] = error_response(f"internal error: {type(e).__name__}: {e}", invalid_argument=False)
            times["id_mapping"] += time.perf_counter() - t0
        users = [u for _, us in parsed for u in us]
        because: list = []
        try:
            answers = self.recommender.rank_batch(users, times, because)
        except Exception:  # noqa: BLE001 - find the request at fault: answer each alone
            answers = None
        offset = 0
        t0 = time.perf_counter()
        for r, us in parsed:
            try:
                if answers is not None:
                    mine, why = answers[offset : offset + len(us)], because[offset : offset + len(us)]
                else:
                    why = []
                    mine = self.recommender.rank_batch(us, times, why)
                responses[r] = self._response(mine, why)
            except Exception as e:  # noqa: BLE001
                responses[r] = error_response(f"internal error: {type(e).__name__}: {e}", invalid_argument=False)
            offset += len(us)
        times["id_mapping"] += time.perf_counter() - t0
        if self.metrics is not None:
            self.metrics.record(times, len(users))
        return responses

    def _parse(self, request) -> list[Request]:
        """The users of one request: one for genre_recommend, b for a batch row each."""
        history, k, scenario, alpha, explain = (optional_input(request, name)
                                                for name in fmt.TENSORS[fmt.RECOMMEND].inputs)
        if not self.batched:
            return [parse_request(self.catalog, history, k, scenario, alpha, explain)]
        if history is None or k is None:
            return [parse_request(self.catalog, history, k, scenario, alpha, explain)]  # the missing-input error
        history = history.reshape(history.shape[0], -1)
        rows = history.shape[0]
        users = []
        for b in range(rows):
            try:
                users.append(parse_request(self.catalog, history[b], k[b],
                                           None if scenario is None else scenario[b],
                                           None if alpha is None else alpha[b],
                                           None if explain is None else explain[b]))
            except RequestError as e:
                raise RequestError(f"user {b} of the batch: {e}" if rows > 1 else str(e)) from None
        return users

    def _response(self, answers: list[Ranking], because: list):
        """ITEM_IDS and SCORES, and BECAUSE where a user of the request asked
        for it (EXPLAIN): a request without EXPLAIN gets exactly what it got
        before BECAUSE existed."""
        ids = self.catalog.ids
        explained = any(b is not None for b in because)
        if not self.batched:
            top, scores = answers[0]
            out = {fmt.ITEM_IDS: ids.encoded(top), fmt.SCORES: np.asarray(scores, np.float32)}
            if explained:
                out[fmt.BECAUSE] = self._because_bytes(because[0])
            return tensor_response(out)
        width = max((len(top) for top, _ in answers), default=0)
        out_ids = np.full((len(answers), width), b"", dtype=np.object_)
        out_scores = np.full((len(answers), width), -np.inf, np.float32)
        out_because = np.full((len(answers), width), b"", dtype=np.object_)
        for b, (top, scores) in enumerate(answers):
            out_ids[b, : len(top)] = ids.encoded(top)
            out_scores[b, : len(top)] = scores
            if because[b] is not None:
                out_because[b, : len(top)] = self._because_bytes(because[b])
        out = {fmt.ITEM_IDS: out_ids, fmt.SCORES: out_scores}
        if explained:
            out[fmt.BECAUSE] = out_because
        return tensor_response(out)

    def _because_bytes(self, because: np.ndarray | None) -> np.ndarray:
        if because is None or not because.size:
            return np.zeros(0, dtype=np.object_)
        encoded = self.catalog.ids.encoded(np.maximum(because, 0))
        return np.where(because >= 0, encoded, b"").astype(np.object_)
