"""A whole genre_recommend request in one process: the id lookup, the user
encoder (onnxruntime), the fused top-K over the catalog and the cross
features (the genre_serve kernels), the ranker (onnxruntime), the final order.

Both entry points run it inside their stub process (serving/stubs/recommend.py),
and `benchmarks/bench_serving.py` runs it in process as the served math's
own baseline. Every hop to another python-backend model costs about 1 ms of
IPC on a 2-core machine, several times the compute of a request on
ml-latest-small, so nothing here leaves the process.

A batch of users costs one encoder run, one pass over the item tables and
one ranker run; each user's answer equals the answer it gets alone (the
history is padded to the same length either way and every kernel works per
user). Everything is read from one version folder, the tables memory-mapped:
a rollout never pairs one version's catalog with another's tables, and N
instances on a machine share one copy of the tables in the page cache.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genre_serve.formats import repository as fmt
from genre_serve.serving.recommend_logic import ItemTables, Request, cold_ranking, parse_python_request, ranked

# The stages of a request, in order, as the per-stage metrics name them.
STAGES = ("id_mapping", "user_tower", "retrieval", "ranking")

Answer = tuple[list[str], np.ndarray]
Ranking = tuple[np.ndarray, np.ndarray]  # catalog indices and scores, best first


def onnx_session(path: Path, threads: int = 1):
    """An onnxruntime CPU session with `threads` intra-op threads, no spinning
    (idle threads would take CPU from the other instances)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class VersionRecommender:
    """genre_recommend's answer from one exported version folder."""

    def __init__(self, version_dir: str | Path, ort_threads: int = 1, kernel_threads: int = 1):
        folder = Path(version_dir)
        self.catalog = fmt.Catalog.load(folder)
        self.tables = ItemTables.load(folder)
        self.encoder = onnx_session(folder / fmt.USER_ENCODER_ONNX, ort_threads)
        self.ranker = onnx_session(folder / fmt.RANKER_ONNX, ort_threads)
        self.kernel_threads = kernel_threads

    def recommend(self, history: Sequence[str], k: int = 10, scenario: str | None = None,
                  alpha: float | None = None) -> Answer:
        """(item ids, scores) for Python values, as genre_recommend answers them."""
        return self.recommend_batch([parse_python_request(self.catalog, history, k, scenario, alpha)])[0]

    def explain(self, history: Sequence[str], k: int = 10, scenario: str | None = None,
                alpha: float | None = None) -> list[str]:
        """BECAUSE for Python values: per recommended item, the history item it is closest to ("": none)."""
        because: list = []
        self.rank_batch([parse_python_request(self.catalog, history, k, scenario, alpha, explain=True)],
                        because=because)
        return self.because_ids(because[0])

    def because_ids(self, because: np.ndarray | None) -> list[str]:
        """External ids of because_you_watched indices ("" for -1)."""
        if because is None:
            return []
        ids = self.catalog.ids.external(np.maximum(because, 0))
        return [i if b >= 0 else "" for i, b in zip(ids, because, strict=True)]

    def recommend_batch(self, requests: Sequence[Request], times: dict[str, float] | None = None) -> list[Answer]:
        """Each request's answer (external ids and scores)."""
        return [(self.catalog.ids.external(idx), scores) for idx, scores in self.rank_batch(requests, times)]

    def rank_batch(self, requests: Sequence[Request], times: dict[str, float] | None = None,
                   because: list | None = None) -> list[Ranking]:
        """Each request's answer as catalog indices; `times` (if given) gets the
        seconds spent per stage added (id_mapping is the caller's: parsing and
        writing the ids out). `because` (if given) gets, per request, the
        because_you_watched indices of its answer where it asked for them
        (EXPLAIN), else None."""
        times = {} if times is None else times
        answers: list[Ranking | None] = [None] * len(requests)
        alphas = np.zeros(len(requests), np.float32)
        warm = [i for i, r in enumerate(requests) if r.known.size]
        for i, r in enumerate(requests):
            if not r.known.size:
                answers[i] = cold_ranking(self.catalog, r.k)
        if warm:
            rankings, warm_alpha = self._warm([requests[i] for i in warm], times)
            for i, answer, a in zip(warm, rankings, warm_alpha, strict=True):
                answers[i], alphas[i] = answer, a
        if because is not None:
            because.clear()
            for r, answer, a in zip(requests, answers, alphas, strict=True):
                because.append(self.tables.because(r.known[-self.catalog.max_history :], answer[0], float(a))
                               if r.explain else None)
        return answers  # type: ignore[return-value]

    def _warm(self, requests: list[Request], times: dict[str, float]) -> tuple[list[Ranking], np.ndarray]:
        t0 = time.perf_counter()
        u_cf, u_ct, alpha = self._encode(requests)
        t1 = time.perf_counter()
        depths = [r.retrieval_depth(self.catalog) for r in requests]
        excludes = [self.catalog.exclusions(r.known) for r in requests]
        idx, scores = self.tables.topk(u_cf, u_ct, alpha, excludes, max(depths), self.kernel_threads)
        for b, depth in enumerate(depths):  # each user's own depth: the prefix of the sorted top-max
            idx[b, depth:], scores[b, depth:] = -1, -np.inf
        t2 = time.perf_counter()
        features = self.tables.features(u_cf, u_ct, idx, scores, self.kernel_threads)
        logits = self.ranker.run([fmt.LOGITS], {fmt.FEATURES: features})[0]
        out = []
        for b, r in enumerate(requests):
            n = int((idx[b] >= 0).sum())
            if n == 0:  # the history covers the whole catalog
                out.append((np.zeros(0, np.int64), np.zeros(0, np.float32)))
            else:
                out.append(ranked(idx[b, :n], logits[b, :n], r.k))
        t3 = time.perf_counter()
        for stage, seconds in (("user_tower", t1 - t0), ("retrieval", t2 - t1), ("ranking", t3 - t2)):
            times[stage] = times.get(stage, 0.0) + seconds
        return out, alpha

    def _encode(self, requests: list[Request]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The user encoder on the histories' item rows, padded to max_history
        (the same shape alone or in a batch: batch-independent answers)."""
        length = self.catalog.max_history
        history = np.full((len(requests), length), -1, np.int64)
        lengths = np.zeros((len(requests), 1), np.int64)
        for b, r in enumerate(requests):
            recent = r.known[-length:]
            history[b, length - recent.size :] = recent
            lengths[b, 0] = recent.size
        rows = np.maximum(history, 0).reshape(-1)
        tables = self.tables
        feed = {
            fmt.HISTORY_CF: np.asarray(tables.item_cf[rows]).reshape(len(requests), length, -1),
            fmt.HISTORY_CT: np.asarray(tables.item_ct[rows]).reshape(len(requests), length, -1),
            fmt.LENGTHS: lengths,
            fmt.SCENARIO: np.array([[r.scenario] for r in requests], np.int64),
        }
        u_cf, u_ct, alpha = self.encoder.run([fmt.U_CF, fmt.U_CT, fmt.ALPHA], feed)
        alpha = np.array([[r.alpha] if r.alpha is not None else alpha[b] for b, r in enumerate(requests)],
                         np.float32).reshape(-1)
        return u_cf, u_ct, alpha
