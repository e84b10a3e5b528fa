"""Malformed genre_recommend requests, sent with tritonclient over HTTP or
gRPC exactly as a careless client would build them (wrong dtypes, shapes,
values), each with the answer it must get: an error that names the field,
or a documented answer. After each, a good request must still be answered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from genre_serve.client.core import Tensors, classify, infer_inputs, protocol_module
from genre_serve.errors import InvalidRequestError
from genre_serve.formats import repository as fmt

GOOD_K = 5


@dataclass(frozen=True)
class BadInput:
    name: str
    # tensors: (name, datatype, numpy value); shape is the value's shape
    tensors: Callable[[Sequence[str]], Tensors]
    field: str | None  # the error must name this input; None: the request must be answered
    check: Callable[[list[str], Sequence[str], int], str | None] | None = None  # answered: problem or None


@dataclass(frozen=True)
class CaseResult:
    name: str
    protocol: str
    expected: str
    outcome: str
    passed: bool
    server_answers_after: bool


def _ids(values: Sequence[str]) -> np.ndarray:
    return np.array([v.encode() if isinstance(v, str) else v for v in values], dtype=np.object_)


def _k(value, dtype=np.int32) -> np.ndarray:
    return np.array([value], dtype)


def _expect_length(expected: Callable[[int], int], history: Callable[[Sequence[str]], Sequence[str]]):
    def check(answer: list[str], catalog: Sequence[str], max_k: int) -> str | None:
        seen = set(history(catalog))
        want = expected(len([c for c in catalog if c not in seen]))
        if len(answer) != min(want, max_k):
            return f"{len(answer)} items, expected {min(want, max_k)}"
        if seen & set(answer):
            return "an item of the history was recommended"
        if len(set(answer)) != len(answer):
            return "an item recommended twice"
        return None

    return check


def recommend_cases() -> list[BadInput]:
    """Every malformed-request case for genre_recommend (`catalog` ids are
    passed to each builder, so cases use real ids where it matters)."""
    some = lambda c: list(c[:3])  # noqa: E731 - small builders read best inline
    huge = lambda c: [f"unknown-{i}" for i in range(100_000 - 3)] + list(c[:3])  # noqa: E731
    return [
        BadInput("missing HISTORY", lambda c: [("K", "INT32", _k(GOOD_K))], "HISTORY"),
        BadInput("missing K", lambda c: [("HISTORY", "BYTES", _ids(some(c)))], "K"),
        BadInput("HISTORY as INT64", lambda c: [("HISTORY", "INT64", np.arange(3, dtype=np.int64)),
                                                ("K", "INT32", _k(GOOD_K))], "HISTORY"),
        BadInput("K as FP32", lambda c: [("HISTORY", "BYTES", _ids(some(c))), ("K", "FP32", _k(5.0, np.float32))],
                 "K"),
        BadInput("K with two values", lambda c: [("HISTORY", "BYTES", _ids(some(c))),
                                                 ("K", "INT32", np.array([3, 4], np.int32))], "K"),
        BadInput("K = 0", lambda c: [("HISTORY", "BYTES", _ids(some(c))), ("K", "INT32", _k(0))], "K"),
        BadInput("K = -5", lambda c: [("HISTORY", "BYTES", _ids(some(c))), ("K", "INT32", _k(-5))], "K"),
        BadInput("K larger than the catalog", lambda c: [("HISTORY", "BYTES", _ids(some(c))),
                                                         ("K", "INT32", _k(len(c) + 10))], None,
                 _expect_length(lambda unseen: unseen, some)),
        BadInput("K = 10^9", lambda c: [("HISTORY", "BYTES", _ids(some(c))), ("K", "INT32", _k(10**9))], None,
                 _expect_length(lambda unseen: unseen, some)),
        BadInput("HISTORY of 100k ids", lambda c: [("HISTORY", "BYTES", _ids(huge(c))), ("K", "INT32", _k(GOOD_K))],
                 None, _expect_length(lambda unseen: GOOD_K, some)),
        BadInput("HISTORY with non-UTF-8 bytes", lambda c: [("HISTORY", "BYTES", _ids([c[0], b"\xff\xfe\x80"])),
                                                            ("K", "INT32", _k(GOOD_K))], "HISTORY"),
        BadInput("HISTORY of empty ids", lambda c: [("HISTORY", "BYTES", _ids(["", ""])),
                                                    ("K", "INT32", _k(GOOD_K))], None,
                 _expect_length(lambda unseen: GOOD_K, lambda c: [])),
        BadInput("SCENARIO unknown", lambda c: [("HISTORY", "BYTES", _ids(some(c))), ("K", "INT32", _k(GOOD_K)),
                                                ("SCENARIO", "BYTES", _ids(["no-such-scenario"]))], "SCENARIO"),
        BadInput("SCENARIO non-UTF-8", lambda c: [("HISTORY", "BYTES", _ids(some(c))), ("K", "INT32", _k(GOOD_K)),
                                                  ("SCENARIO", "BYTES", _ids([b"\xc3\x28"]))], "SCENARIO"),
        *[BadInput(f"ALPHA = {label}", (lambda v: lambda c: [("HISTORY", "BYTES", _ids(some(c))),
                                                             ("K", "INT32", _k(GOOD_K)),
                                                             ("ALPHA", "FP32", _k(v, np.float32))])(value), "ALPHA")
          for label, value in (("NaN", np.nan), ("inf", np.inf), ("-0.5", -0.5), ("1.5", 1.5))],
        BadInput("ALPHA as INT32", lambda c: [("HISTORY", "BYTES", _ids(some(c))), ("K", "INT32", _k(GOOD_K)),
                                              ("ALPHA", "INT32", _k(1))], "ALPHA"),
        BadInput("an input the model does not have", lambda c: [("HISTORY", "BYTES", _ids(some(c))),
                                                                ("K", "INT32", _k(GOOD_K)),
                                                                ("BOGUS", "INT32", _k(1))], "BOGUS"),
    ]


def send(client, module, tensors: Tensors, timeout_s: float = 30.0):
    inputs = infer_inputs(module, tensors)
    outputs = [module.InferRequestedOutput("ITEM_IDS"), module.InferRequestedOutput("SCORES")]
    kwargs = {"client_timeout": timeout_s} if module.__name__.endswith("grpc") else {}
    return client.infer(fmt.RECOMMEND, inputs, outputs=outputs, **kwargs)


def good_request_answered(client, module, catalog: Sequence[str]) -> bool:
    try:
        result = send(client, module, [("HISTORY", "BYTES", _ids(catalog[:3])), ("K", "INT32", _k(GOOD_K))])
        return result.as_numpy("ITEM_IDS").size == GOOD_K
    except Exception:  # noqa: BLE001 - "not answered" is the finding
        return False


def run_case(case: BadInput, protocol: str, url: str, catalog: Sequence[str], max_k: int) -> CaseResult:
    """Sends one case and a good request after it; judges the answer."""
    module = protocol_module(protocol)
    client = (module.InferenceServerClient(url, network_timeout=60.0) if protocol == "http"
              else module.InferenceServerClient(url))
    try:
        expected = f"error naming {case.field}" if case.field else "answered"
        try:
            result = send(client, module, case.tensors(catalog))
            answer = [v.decode() for v in result.as_numpy("ITEM_IDS").reshape(-1)]
            problem = "answered, but an error was expected" if case.field else (
                case.check(answer, catalog, max_k) if case.check else None)
            outcome = f"answered with {len(answer)} items" + (f" ({problem})" if problem else "")
            passed = problem is None
        except Exception as e:  # noqa: BLE001 - judged below
            err = classify(e)
            message = str(e).replace("\n", " ")
            outcome = f"{type(err).__name__}: {message[:160]}"
            passed = case.field is not None and isinstance(err, InvalidRequestError) and case.field in message
        return CaseResult(case.name, protocol, expected, outcome, passed,
                          good_request_answered(client, module, catalog))
    finally:
        client.close()
