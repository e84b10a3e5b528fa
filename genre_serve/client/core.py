"""What the sync and async clients share: settings and their validation, the
retry policy, error classification, and the request and answer tensors.

Errors are typed (rooted at GenreServeError) and wrap tritonclient's with
``raise ... from e``. Only what is safe to retry is retried, with
exponential backoff: a refused connection or an unavailable server (a
restart). An invalid request is never retried; a timeout is not either (the
server may still be working on it); an overload rejection (full queue) is not
by default: retrying into a saturated server only adds to its load.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from genre_serve.errors import (
    ClientError,
    ClientTimeoutError,
    InvalidRequestError,
    ModelUnavailableError,
    ServerOverloadedError,
)
from genre_serve.formats import repository as fmt


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    # With explain=True: the history item this one is closest to ("because
    # you watched ..."; serving/recommend_logic.py:because_you_watched), "" if none.
    because: str | None = None


def protocol_module(protocol: str) -> ModuleType:
    """tritonclient.http or tritonclient.grpc."""
    if protocol == "http":
        import tritonclient.http as http

        return http
    if protocol == "grpc":
        import tritonclient.grpc as grpc

        return grpc
    raise ValueError(f"protocol: 'http' or 'grpc', got {protocol!r}")


# "is not healthy": a model instance whose process died; `genre-serve serve`
# reloads the model within seconds, and the retry lands on a live instance.
_UNAVAILABLE_MARKERS = ("unavailable", "is not healthy", "connection refused", "failed to connect", "not ready",
                        "is not found", "unknown model", "no version", "connect failed", "socket closed",
                        "broken pipe", "connection reset", "connection closed", "connection aborted")
_TIMEOUT_MARKERS = ("deadline", "timed out", "timeout")
# Triton's queue policy: a full queue, or a request that waited past the queue timeout.
_OVERLOAD_MARKERS = ("exceeds maximum queue size", "request timeout expired")


def classify(e: BaseException) -> ClientError:
    """tritonclient/network exception -> our typed error (not raised here)."""
    from tritonclient.utils import InferenceServerException

    text = str(e).lower()
    if any(m in text for m in _OVERLOAD_MARKERS):
        return ServerOverloadedError(str(e))
    if isinstance(e, InferenceServerException):
        status = str(e.status() or "").lower()
        if any(m in text or m in status for m in _TIMEOUT_MARKERS):
            return ClientTimeoutError(str(e))
        if "400" in status or "invalid_argument" in status or "invalid" in status:
            return InvalidRequestError(e.message() if hasattr(e, "message") else str(e))
        if any(m in text or m in status for m in _UNAVAILABLE_MARKERS):
            return ModelUnavailableError(str(e))
        return ClientError(str(e))
    if isinstance(e, (socket.timeout, TimeoutError)) or any(m in text for m in _TIMEOUT_MARKERS):
        return ClientTimeoutError(str(e) or "timed out")
    # A connection dropped mid-request (the server died): recommending is a
    # read, so sending it again to a restarted server is safe.
    if isinstance(e, (ConnectionError, OSError)) or any(m in text for m in _UNAVAILABLE_MARKERS):
        return ModelUnavailableError(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
    return ClientError(f"{type(e).__name__}: {e}")


# The default retry policy: 6 retries, backoff 0.1 s doubling (0.1 .. 3.2 s),
# 6.3 s of waiting in all: longer than `genre-serve serve` takes to reload a
# model whose instance died (a few seconds), so a default client rides it out.
DEFAULT_RETRIES, DEFAULT_BACKOFF_S = 6, 0.1


class ClientCore:
    """Settings, validation and retry policy of GenreClient and AsyncGenreClient.

    Parameters
    ----------
    url : "host:port" of the HTTP (default 8000) or gRPC (default 8001) endpoint.
    protocol : "http" or "grpc".
    timeout_s : per-request timeout.
    retries : attempts after the first for retryable failures (server down or
        restarting, model not loaded, a dead model instance); default 6.
    backoff_s : first backoff (default 0.1 s); doubles per attempt: 6.3 s of
        waiting over the default 6 retries.
    model : the entry point (genre_recommend).
    retry_overloaded : also retry (with the same backoff) requests the server
        rejected because its queue was full.
    feedback_log : a directory: :meth:`log_feedback` appends what users did
        with the recommendations there (genre_serve/formats/feedback.py), for
        `genre-serve update`.

    ``retried`` counts the retries this client has made (all calls).
    """

    def __init__(self, url: str = "127.0.0.1:8000", protocol: str = "http", timeout_s: float = 10.0,
                 retries: int = DEFAULT_RETRIES, backoff_s: float = DEFAULT_BACKOFF_S, model: str = fmt.RECOMMEND,
                 retry_overloaded: bool = False, feedback_log: str | os.PathLike | None = None):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s: must be positive, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries: must be >= 0, got {retries}")
        if backoff_s < 0:
            raise ValueError(f"backoff_s: must be >= 0, got {backoff_s}")
        self.url, self.protocol, self.timeout_s = url, protocol, timeout_s
        self.retries, self.backoff_s, self.model = retries, backoff_s, model
        self.retry_overloaded = retry_overloaded
        self.retried = 0
        self.feedback = None
        if feedback_log is not None:
            from genre_serve.client.feedback import FeedbackLog

            self.feedback = FeedbackLog(feedback_log)
        self._module = protocol_module(protocol)
        self._client = self._connect()

    def _connect(self) -> Any:
        """The tritonclient client this client sends through (per subclass)."""
        raise NotImplementedError

    def log_feedback(self, user_id: str, item_id: str, event: str = "click", scenario: str | None = None,
                     timestamp: float | None = None, version: int | None = None) -> None:
        """Records that `user_id` did `event` (click, watch, purchase, ...) with
        `item_id`, recommended by genre_recommend `version` (see
        recommend_versioned), at `timestamp` (Unix seconds; default now), into
        the client's feedback log. A local file append: nothing is sent."""
        if self.feedback is None:
            raise ValueError("log_feedback: this client has no feedback log (GenreClient(..., feedback_log=DIR))")
        self.feedback.log(user_id, item_id, event, scenario, timestamp, version)

    def retry_delay(self, err: ClientError, attempt: int) -> float | None:
        """Seconds to wait before retrying after `err` on attempt `attempt`
        (0 = the first), or None: raise it."""
        retryable = isinstance(err, ModelUnavailableError) or (
            self.retry_overloaded and isinstance(err, ServerOverloadedError))
        if not retryable or attempt >= self.retries:
            return None
        self.retried += 1
        return float(self.backoff_s * (2**attempt))

    def prepared_request(self, arrays: Mapping[str, np.ndarray], outputs: Sequence[str],
                         version: int | None) -> tuple[list[Any], dict[str, Any]]:
        """tritonclient's `inputs` and the keyword arguments of its `infer` (outputs, version, timeout)."""
        kwargs: dict[str, Any] = {"outputs": [self._module.InferRequestedOutput(n) for n in outputs]}
        if version is not None:
            kwargs["model_version"] = str(version)
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s
        return infer_inputs(self._module, named_tensors(arrays)), kwargs


# (name, Triton datatype, value) of each input tensor; the shape is the value's.
Tensors = list[tuple[str, str, np.ndarray]]


def named_tensors(arrays: Mapping[str, np.ndarray]) -> Tensors:
    """Named arrays as tensors, the datatype from the array's (object/bytes: BYTES)."""
    from tritonclient.utils import np_to_triton_dtype

    return [(name, np_to_triton_dtype(value.dtype), value) for name, value in arrays.items()]


def infer_inputs(module: ModuleType, tensors: Tensors) -> list[Any]:
    """tritonclient InferInputs (HTTP or gRPC `module`) exactly as given."""
    out = []
    for name, datatype, value in tensors:
        tensor = module.InferInput(name, list(value.shape), datatype)
        tensor.set_data_from_numpy(value)
        out.append(tensor)
    return out


def recommend_arrays(history: Sequence[str], k: int, scenario: str | None,
                     alpha: float | None, explain: bool = False) -> dict[str, np.ndarray]:
    """The genre_recommend request tensors, validated as far as the client can."""
    if isinstance(history, (str, bytes)):
        raise TypeError("history: a sequence of item ids, not one string")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k: must be an integer, got {type(k).__name__}")
    arrays = {fmt.HISTORY: np.array([str(h).encode("utf-8") for h in history], dtype=np.object_),
              fmt.K: np.array([k], np.int32)}
    if scenario is not None:
        arrays[fmt.SCENARIO] = np.array([scenario.encode("utf-8")], dtype=np.object_)
    if alpha is not None:
        arrays[fmt.ALPHA] = np.array([alpha], np.float32)
    if explain:
        arrays[fmt.EXPLAIN] = np.array([True])
    return arrays


RECOMMEND_OUTPUTS = (fmt.ITEM_IDS, fmt.SCORES)
EXPLAINED_OUTPUTS = (fmt.ITEM_IDS, fmt.SCORES, fmt.BECAUSE)


def recommend_outputs(explain: bool) -> tuple[str, ...]:
    """The outputs a recommend request asks for (BECAUSE only with explain)."""
    return EXPLAINED_OUTPUTS if explain else RECOMMEND_OUTPUTS
# Users per genre_recommend_batch request: its max_batch_size as exported by default.
BATCH_USERS = 64


def recommend_batch_arrays(histories: Sequence[Sequence[str]], k: int, scenario: str | None,
                           alpha: float | None, explain: bool = False) -> dict[str, np.ndarray]:
    """The genre_recommend_batch request tensors for several users: HISTORY
    [b, n] (shorter histories padded with empty ids, which no catalog has),
    K, SCENARIO and ALPHA [b, 1]."""
    rows = [recommend_arrays(h, k, scenario, alpha, explain) for h in histories]
    if not rows:
        raise ValueError("histories: at least one user")
    width = max(1, max(r[fmt.HISTORY].size for r in rows))
    history = np.full((len(rows), width), b"", dtype=np.object_)
    for b, r in enumerate(rows):
        history[b, : r[fmt.HISTORY].size] = r[fmt.HISTORY]
    arrays = {fmt.HISTORY: history}
    for name in (fmt.K, fmt.SCENARIO, fmt.ALPHA, fmt.EXPLAIN):
        if name in rows[0]:
            arrays[name] = np.stack([r[name] for r in rows])
    return arrays


def parse_batch_recommendations(result: Any) -> list[list[Recommendation]]:
    """genre_recommend_batch's answer, one list per user (the padding dropped)."""
    ids = result.as_numpy(fmt.ITEM_IDS)
    scores = result.as_numpy(fmt.SCORES)
    if ids is None or scores is None:
        raise ClientError(f"{fmt.RECOMMEND_BATCH} answered without {fmt.ITEM_IDS}/{fmt.SCORES}")
    ids, scores = ids.reshape(ids.shape[0], -1), scores.reshape(scores.shape[0], -1)
    because = _because(result)
    because = because.reshape(ids.shape) if because is not None else np.full(ids.shape, None, dtype=object)
    return [[Recommendation(_text(i), float(s), None if w is None else _text(w))
             for i, s, w in zip(row_ids, row_scores, row_because, strict=True) if i not in (b"", "")]
            for row_ids, row_scores, row_because in zip(ids, scores, because, strict=True)]


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _because(result: Any) -> np.ndarray | None:
    """BECAUSE of an answer, None where the request did not ask for it."""
    try:
        return result.as_numpy(fmt.BECAUSE)
    except Exception:  # noqa: BLE001 - tritonclient raises where the output was not requested
        return None


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def recommend_request(module: ModuleType, history: Sequence[str], k: int, scenario: str | None = None,
                      alpha: float | None = None, batched: bool = False,
                      explain: bool = False) -> tuple[list[Any], list[Any]]:
    """tritonclient inputs and requested outputs of one genre_recommend request
    (`batched`: of a one-user genre_recommend_batch request), for callers with
    a tritonclient client of their own (the load tests)."""
    arrays = (recommend_batch_arrays([history], k, scenario, alpha, explain) if batched
              else recommend_arrays(history, k, scenario, alpha, explain))
    inputs = infer_inputs(module, named_tensors(arrays))
    return inputs, [module.InferRequestedOutput(n) for n in recommend_outputs(explain)]


def parse_recommendations(result: Any) -> list[Recommendation]:
    ids = result.as_numpy(fmt.ITEM_IDS)
    scores = result.as_numpy(fmt.SCORES)
    if ids is None or scores is None:
        raise ClientError(f"{fmt.RECOMMEND} answered without {fmt.ITEM_IDS}/{fmt.SCORES}")
    answered = _because(result)
    because = [None] * ids.size if answered is None else [_text(b) for b in answered.reshape(-1)]
    if len(because) != ids.size:
        raise ClientError(f"{fmt.RECOMMEND} answered {len(because)} {fmt.BECAUSE} for {ids.size} items")
    return [Recommendation(_text(i), float(s), w)
            for i, s, w in zip(ids.reshape(-1), scores.reshape(-1), because, strict=True)]


def answered_version(result: Any) -> int:
    response = result.get_response()
    version = response.get("model_version") if isinstance(response, dict) else response.model_version
    return int(version or 0)
