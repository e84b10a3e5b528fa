"""One bad request in a dynamic batch fails alone.

A burst of concurrent requests goes to a dynamically batched model, one of
them malformed in its values (shapes and dtypes are checked by Triton before
batching, so only values can reach a batch). The server's statistics show
whether the burst was batched; bursts are repeated until one was. The good
requests of the burst must answer exactly as they do when sent alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genre_serve.client.core import Tensors, classify, infer_inputs
from genre_serve.errors import ServerOverloadedError
from genre_serve.formats import repository as fmt


@dataclass
class BurstReport:
    model: str
    bad_request: str
    expected: str  # "error naming X" or "answered"
    bursts: int = 0
    batched_bursts: int = 0  # bursts in which the server ran at least two requests together
    good_requests: int = 0
    good_mismatches: int = 0  # good answers that differed from the same request sent alone
    bad_outcomes: list[str] = field(default_factory=list)
    # Bursts the server's queue limit cut short (a request rejected as
    # overloaded): they show nothing about isolation, and are sent again.
    overloaded_bursts: int = 0

    @property
    def passed(self) -> bool:
        return self.batched_bursts > 0 and self.good_mismatches == 0 and all(
            o.startswith("ok") for o in self.bad_outcomes)


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    """Exact for indices; for floats, equal up to the summation order a batched
    matrix product may use."""
    if got.shape != want.shape:
        return False
    if np.issubdtype(want.dtype, np.floating):
        return bool(np.allclose(got, want, rtol=1e-5, atol=1e-6))
    return bool(np.array_equal(got, want))


def _executions(client, model: str) -> tuple[int, int]:
    stats = client.get_inference_statistics(model_name=model)["model_stats"]
    return (sum(int(s["inference_count"]) for s in stats), sum(int(s["execution_count"]) for s in stats))


def burst(http_url: str, model: str, outputs: list[str], good: list[Tensors], bad: Tensors, expect_field: str | None,
          bad_name: str, max_bursts: int = 10, min_batched: int = 2) -> BurstReport:
    import tritonclient.http as module

    report = BurstReport(model, bad_name, f"error naming {expect_field}" if expect_field else "answered")
    client = module.InferenceServerClient(http_url, concurrency=len(good) + 1, network_timeout=60.0)
    try:
        requested = [module.InferRequestedOutput(o) for o in outputs]
        alone = [[client.infer(model, infer_inputs(module, t), outputs=requested).as_numpy(o) for o in outputs]
                 for t in good]
        attempts = 0
        while report.bursts < max_bursts and report.batched_bursts < min_batched and attempts < 3 * max_bursts:
            attempts += 1
            before = _executions(client, model)
            order = list(range(len(good)))
            middle = len(order) // 2
            pending = [(i, client.async_infer(model, infer_inputs(module, good[i]), outputs=requested))
                       for i in order[:middle]]
            pending.append((-1, client.async_infer(model, infer_inputs(module, bad), outputs=requested)))
            pending += [(i, client.async_infer(model, infer_inputs(module, good[i]), outputs=requested))
                        for i in order[middle:]]
            outcomes = []
            for i, handle in pending:
                try:
                    outcomes.append((i, handle.get_result(), None))
                except Exception as e:  # noqa: BLE001 - judged below
                    outcomes.append((i, None, e))
            if any(e is not None and isinstance(classify(e), ServerOverloadedError) for _, _, e in outcomes):
                report.overloaded_bursts += 1
                continue
            for i, result, e in outcomes:
                if e is None and i < 0:
                    report.bad_outcomes.append("ok: answered" if expect_field is None
                                               else "FAIL: answered, an error was expected")
                elif e is None:
                    report.good_requests += 1
                    same = all(_same(result.as_numpy(o), want) for o, want in zip(outputs, alone[i]))
                    report.good_mismatches += not same
                elif i >= 0:
                    report.good_requests += 1
                    report.good_mismatches += 1
                else:
                    text = str(e)
                    named = expect_field is not None and expect_field in text
                    report.bad_outcomes.append(f"{'ok' if named else 'FAIL'}: {type(classify(e)).__name__}: "
                                               f"{text[:120]}")
            after = _executions(client, model)
            inferences, executions = after[0] - before[0], after[1] - before[1]
            report.bursts += 1
            report.batched_bursts += executions < inferences
    finally:
        client.close()
    return report


def served_shapes(repository) -> dict:
    """Catalog size and tensor widths of a repository's newest version: what a
    burst needs to build well-formed requests for the internal models."""
    catalog = fmt.Catalog.load(Path(repository) / fmt.RECOMMEND / str(fmt.latest_version(Path(repository))))
    return {"num_items": len(catalog.ids), "cf_dim": catalog.cf_dim, "ct_dim": catalog.ct_dim,
            "max_history": catalog.max_history}


def retrieve_burst(http_url: str, num_items: int, cf_dim: int, ct_dim: int, size: int = 12, seed: int = 0):
    """genre_retrieve: one request excludes an item index that does not exist."""
    rng = np.random.default_rng(seed)

    def request(exclude: np.ndarray) -> Tensors:
        return [("U_CF", "FP32", rng.standard_normal((1, cf_dim)).astype(np.float32)),
                ("U_CT", "FP32", rng.standard_normal((1, ct_dim)).astype(np.float32)),
                ("ALPHA", "FP32", np.array([[0.5]], np.float32)),
                ("EXCLUDE", "INT64", exclude.reshape(1, -1).astype(np.int64)),
                ("K", "INT32", np.array([[10]], np.int32))]

    good = [request(rng.integers(0, num_items, 5)) for _ in range(size)]
    bad = request(np.array([1, num_items + 5]))
    return burst(http_url, fmt.RETRIEVE, [fmt.CANDIDATES, fmt.SCORES], good, bad, "EXCLUDE",
                 "EXCLUDE holds an index past the catalog")


def user_tower_burst(http_url: str, num_items: int, max_history: int, size: int = 12, seed: int = 0):
    """genre_user_tower: one request holds item indices outside the catalog
    (answered: they count as padding) and an unknown scenario index."""
    rng = np.random.default_rng(seed)

    def request(history: np.ndarray, scenario: int) -> Tensors:
        return [("HISTORY", "INT64", history.reshape(1, max_history).astype(np.int64)),
                ("LENGTHS", "INT64", np.array([[max_history]], np.int64)),
                ("SCENARIO", "INT64", np.array([[scenario]], np.int64))]

    good = [request(rng.integers(0, num_items, max_history), 0) for _ in range(size)]
    bad_history = rng.integers(0, num_items, max_history)
    bad_history[:3] = (-7, num_items, 10**12)
    return burst(http_url, fmt.USER_TOWER, [fmt.U_CF, fmt.U_CT, fmt.ALPHA], good, request(bad_history, 10**6), None,
                 "HISTORY indices outside the catalog, SCENARIO index 10^6")


def recommend_batch_burst(http_url: str, histories: list[list[str]], size: int = 12):
    """genre_recommend_batch: one request asks for K = 0 (an error naming K);
    the others, users of every history length batched together (ragged
    HISTORY), must get the answers they get alone."""

    def request(history: list[str], k: int) -> Tensors:
        return [("HISTORY", "BYTES", np.array([[h.encode() for h in history]], dtype=np.object_)),
                ("K", "INT32", np.array([[k]], np.int32))]

    good = [request(histories[i % len(histories)], 10) for i in range(size)]
    return burst(http_url, fmt.RECOMMEND_BATCH, [fmt.ITEM_IDS, fmt.SCORES], good, request(histories[0], 0), "K",
                 "K = 0")
