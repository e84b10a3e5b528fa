"""The client SDK: a thin layer over tritonclient (HTTP or gRPC), no model code.

Errors are typed (rooted at GenreServeError) and wrap tritonclient's with
``raise ... from e``. Only what is safe to retry is retried, with
exponential backoff: a refused connection or an unavailable server (a
restart). An invalid request is never retried; a timeout is not either (the
server may still be working on it); an overload rejection (full queue) is not
by default: retrying into a saturated server only adds to its load.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from genre_serve.errors import (
    ClientError,
    ClientTimeoutError,
    InvalidRequestError,
    ModelUnavailableError,
    ServerOverloadedError,
)

RECOMMEND_MODEL = "genre_recommend"
ITEM_TOWER_MODEL = "genre_item_tower"


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float


def protocol_module(protocol: str):
    """tritonclient.http or tritonclient.grpc."""
    if protocol == "http":
        import tritonclient.http as module
    elif protocol == "grpc":
        import tritonclient.grpc as module
    else:
        raise ValueError(f"protocol: 'http' or 'grpc', got {protocol!r}")
    return module


def recommend_inputs(module, history: Sequence[str], k: int, scenario: str | None, alpha: float | None):
    """The genre_recommend request tensors (shared by the sync and async clients)."""
    if isinstance(history, (str, bytes)):
        raise TypeError("history: a sequence of item ids, not one string")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k: must be an integer, got {type(k).__name__}")
    ids = np.array([str(h).encode("utf-8") for h in history], dtype=np.object_)
    inputs = [module.InferInput("HISTORY", [len(ids)], "BYTES"), module.InferInput("K", [1], "INT32")]
    inputs[0].set_data_from_numpy(ids)
    inputs[1].set_data_from_numpy(np.array([k], np.int32))
    if scenario is not None:
        s = module.InferInput("SCENARIO", [1], "BYTES")
        s.set_data_from_numpy(np.array([scenario.encode("utf-8")], dtype=np.object_))
        inputs.append(s)
    if alpha is not None:
        a = module.InferInput("ALPHA", [1], "FP32")
        a.set_data_from_numpy(np.array([alpha], np.float32))
        inputs.append(a)
    outputs = [module.InferRequestedOutput("ITEM_IDS"), module.InferRequestedOutput("SCORES")]
    return inputs, outputs


def parse_recommendations(result) -> list[Recommendation]:
    ids = result.as_numpy("ITEM_IDS")
    scores = result.as_numpy("SCORES")
    if ids is None or scores is None:
        raise ClientError("genre_recommend answered without ITEM_IDS/SCORES")
    return [
        Recommendation(i.decode("utf-8") if isinstance(i, bytes) else str(i), float(s))
        for i, s in zip(ids.reshape(-1), scores.reshape(-1))
    ]


_UNAVAILABLE_MARKERS = ("unavailable", "connection refused", "failed to connect", "not ready",
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


def is_retryable(err: ClientError, retry_overloaded: bool) -> bool:
    """The retry policy of both clients (see the module docstring)."""
    return isinstance(err, ModelUnavailableError) or (retry_overloaded and isinstance(err, ServerOverloadedError))


class GenreClient:
    """Client of a running genre_serve (tritonserver) endpoint.

    Parameters
    ----------
    url : "host:port" of the HTTP (default 8000) or gRPC (default 8001) endpoint.
    protocol : "http" or "grpc".
    timeout_s : per-request timeout.
    retries : attempts after the first for retryable failures (server down/unavailable).
    backoff_s : first backoff; doubles per attempt.
    retry_overloaded : also retry (with the same backoff) requests the server
        rejected because its queue was full.

    ``retried`` counts the retries this client has made (all calls).
    """

    def __init__(self, url: str = "127.0.0.1:8000", protocol: str = "http", timeout_s: float = 10.0,
                 retries: int = 3, backoff_s: float = 0.1, model: str = RECOMMEND_MODEL,
                 retry_overloaded: bool = False):
        if timeout_s <= 0:
            raise ValueError("timeout_s: must be positive")
        if retries < 0:
            raise ValueError("retries: must be >= 0")
        self.url, self.protocol, self.timeout_s = url, protocol, timeout_s
        self.retries, self.backoff_s, self.model = retries, backoff_s, model
        self.retry_overloaded = retry_overloaded
        self.retried = 0
        self._module = protocol_module(protocol)
        self._client = self._make_client()

    def _make_client(self):
        if self.protocol == "http":
            return self._module.InferenceServerClient(
                self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s, concurrency=16
            )
        return self._module.InferenceServerClient(self.url)

    # -- plumbing ---------------------------------------------------------
    def _with_retries(self, fn):
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - classified below
                err = classify(e)
                if is_retryable(err, self.retry_overloaded) and attempt < self.retries:
                    time.sleep(self.backoff_s * (2**attempt))
                    attempt += 1
                    self.retried += 1
                    continue
                raise err from e

    def _infer(self, model: str, inputs, outputs):
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        return self._with_retries(lambda: self._client.infer(model, inputs, outputs=outputs, **kwargs))

    # -- API --------------------------------------------------------------
    def recommend(self, history: Sequence[str], k: int = 10, scenario: str | None = None,
                  alpha: float | None = None) -> list[Recommendation]:
        """Top-k items for one user: `history` is external item ids, oldest first."""
        return self.recommend_versioned(history, k, scenario, alpha)[0]

    def recommend_versioned(self, history: Sequence[str], k: int = 10, scenario: str | None = None,
                            alpha: float | None = None) -> tuple[list[Recommendation], int]:
        """recommend(), and the genre_recommend version that answered (rollouts)."""
        inputs, outputs = recommend_inputs(self._module, history, k, scenario, alpha)
        result = self._infer(self.model, inputs, outputs)
        response = result.get_response()
        version = response.get("model_version") if isinstance(response, dict) else response.model_version
        return parse_recommendations(result), int(version or 0)

    def recommend_many(self, histories: Iterable[Sequence[str]], k: int = 10, scenario: str | None = None,
                       alpha: float | None = None, max_workers: int = 8) -> list[list[Recommendation]]:
        """Several users, sent concurrently; answers in input order."""
        histories = list(histories)
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(histories) or 1))) as pool:
            return list(pool.map(lambda h: self.recommend(h, k, scenario, alpha), histories))

    def embed_items(self, texts: Sequence[str], tokenizer: str | None = None, max_length: int = 64) -> np.ndarray:
        """Content vectors of item texts through genre_item_tower (cold-start items).

        `tokenizer`: a tokenizer.json or a folder holding one (the export writes
        it to genre_item_tower/<version>/tokenizer/); default: the tokenizer of
        the default encoder package.
        """
        ids, mask = tokenize(texts, tokenizer, max_length)
        module = self._module
        a = module.InferInput("INPUT_IDS", list(ids.shape), "INT64")
        a.set_data_from_numpy(ids)
        b = module.InferInput("ATTENTION_MASK", list(mask.shape), "INT64")
        b.set_data_from_numpy(mask)
        result = self._infer(ITEM_TOWER_MODEL, [a, b], [module.InferRequestedOutput("ITEM_CT")])
        return result.as_numpy("ITEM_CT")

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready()) and bool(self._client.is_model_ready(self.model))
        except Exception:  # noqa: BLE001 - not ready is the answer
            return False

    def wait_until_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.is_ready():
                return
            time.sleep(0.2)
        raise ClientTimeoutError(f"{self.url} was not ready within {timeout_s:.0f} s")

    def model_versions(self, model: str | None = None) -> list[int]:
        """Versions of `model` (default genre_recommend) that are loaded and ready."""
        model = model or self.model

        def fetch():
            index = self._client.get_model_repository_index()
            if self.protocol == "grpc":
                index = [{"name": m.name, "version": m.version, "state": m.state} for m in index.models]
            return sorted(int(m["version"]) for m in index
                          if m.get("name") == model and m.get("state") == "READY" and m.get("version"))

        return self._with_retries(fetch)

    def model_metadata(self, model: str | None = None) -> dict:
        md = self._with_retries(lambda: self._client.get_model_metadata(model or self.model))
        if self.protocol == "grpc":
            from google.protobuf.json_format import MessageToDict

            return MessageToDict(md)
        return md

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "GenreClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tokenize(texts: Sequence[str], tokenizer: str | None, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-length token ids and attention mask (fixed length: requests batch together)."""
    from pathlib import Path

    from tokenizers import Tokenizer

    if tokenizer is None:
        from genre_serve.models.text_encoder import default_encoder_path

        tokenizer = default_encoder_path()
    path = Path(tokenizer)
    tok = Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))
    tok.enable_truncation(max_length)
    tok.enable_padding(length=max_length)
    encoded = tok.encode_batch([t or " " for t in texts])
    ids = np.array([e.ids for e in encoded], np.int64)
    mask = np.array([e.attention_mask for e in encoded], np.int64)
    return ids, mask
