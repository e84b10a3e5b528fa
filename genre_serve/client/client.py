"""The client SDK: a thin layer over tritonclient (HTTP or gRPC), no model code.

Settings, the retry policy and the typed errors are in
:mod:`genre_serve.client.core`, shared with the asyncio client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from genre_serve.client.core import (
    BATCH_USERS,
    ClientCore,
    Recommendation,
    answered_version,
    chunks,
    classify,
    parse_batch_recommendations,
    parse_recommendations,
    recommend_arrays,
    recommend_batch_arrays,
    recommend_outputs,
)
from genre_serve.errors import ClientTimeoutError
from genre_serve.formats import repository as fmt
from genre_serve.text import DEFAULT_MAX_LENGTH, tokenize

T = TypeVar("T")


class GenreClient(ClientCore):
    __doc__ = f"""Client of a running genre_serve (tritonserver) endpoint.

    {ClientCore.__doc__}"""

    def _connect(self) -> Any:
        if self.protocol == "http":
            return self._module.InferenceServerClient(
                self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s, concurrency=16)
        return self._module.InferenceServerClient(self.url)

    def _with_retries(self, fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - classified below
                err = classify(e)
                delay = self.retry_delay(err, attempt)
                if delay is None:
                    raise err from e
                time.sleep(delay)
                attempt += 1

    def _infer_result(self, model: str, arrays: Mapping[str, np.ndarray], outputs: Sequence[str],
                      version: int | None = None) -> Any:
        inputs, kwargs = self.prepared_request(arrays, outputs, version)
        return self._with_retries(lambda: self._client.infer(model, inputs, **kwargs))

    # -- API --------------------------------------------------------------
    def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str],
              version: int | None = None) -> dict[str, np.ndarray]:
        """One request to any model of the repository (`version`: that version,
        else the newest loaded), with this client's timeout, retries and typed
        errors: the named output arrays."""
        result = self._infer_result(model, inputs, outputs, version)
        return {name: result.as_numpy(name) for name in outputs}

    def recommend(self, history: Sequence[str], k: int = 10, scenario: str | None = None,
                  alpha: float | None = None, explain: bool = False) -> list[Recommendation]:
        """Top-k items for one user: `history` is external item ids, oldest first.
        `explain`: each Recommendation's `because` is the history item it is
        closest to ("because you watched ...")."""
        return self.recommend_versioned(history, k, scenario, alpha, explain)[0]

    def recommend_versioned(self, history: Sequence[str], k: int = 10, scenario: str | None = None,
                            alpha: float | None = None, explain: bool = False) -> tuple[list[Recommendation], int]:
        """recommend(), and the genre_recommend version that answered (rollouts)."""
        result = self._infer_result(self.model, recommend_arrays(history, k, scenario, alpha, explain),
                                    recommend_outputs(explain))
        return parse_recommendations(result), answered_version(result)

    def recommend_many(self, histories: Iterable[Sequence[str]], k: int = 10, scenario: str | None = None,
                       alpha: float | None = None, max_workers: int = 8,
                       batched: bool = False) -> list[list[Recommendation]]:
        """Several users; answers in input order. Default: one genre_recommend
        request per user, `max_workers` at a time. `batched`: genre_recommend_batch,
        up to BATCH_USERS users per request (one user-tower run, one catalog
        pass and one ranker run for them all on the server); the answers are the same."""
        histories = list(histories)
        if batched:
            return [answer for chunk in chunks(histories, BATCH_USERS)
                    for answer in self.recommend_batch(chunk, k, scenario, alpha)]
        # One connection per worker thread: tritonclient's HTTP client (gevent)
        # must not be used from a thread other than the one it was made in.
        local, made = threading.local(), []

        def one(history: Sequence[str]) -> list[Recommendation]:
            if not hasattr(local, "client"):
                local.client = self.sibling()
                made.append(local.client)
            return local.client.recommend(history, k, scenario, alpha)

        try:
            with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(histories) or 1))) as pool:
                return list(pool.map(one, histories))
        finally:
            for client in made:
                self.retried += client.retried
                client.close()

    def sibling(self) -> GenreClient:
        """A new client with this one's settings (its own connection)."""
        return GenreClient(self.url, self.protocol, self.timeout_s, self.retries, self.backoff_s, self.model,
                           self.retry_overloaded, None if self.feedback is None else self.feedback.directory)

    def recommend_batch(self, histories: Sequence[Sequence[str]], k: int = 10, scenario: str | None = None,
                        alpha: float | None = None, explain: bool = False) -> list[list[Recommendation]]:
        """One genre_recommend_batch request for several users (at most the
        model's max_batch_size, 64 by default): a list of answers in input order."""
        result = self._infer_result(fmt.RECOMMEND_BATCH,
                                    recommend_batch_arrays(list(histories), k, scenario, alpha, explain),
                                    recommend_outputs(explain))
        return parse_batch_recommendations(result)

    def embed_items(self, texts: Sequence[str], tokenizer: str | None = None,
                    max_length: int = DEFAULT_MAX_LENGTH) -> np.ndarray:
        """Content vectors of item texts through genre_item_tower (cold-start items).

        `tokenizer`: a tokenizer.json or a folder holding one (the export writes
        it to genre_item_tower/<version>/tokenizer/); default: the tokenizer of
        the default encoder package.
        """
        ids, mask = tokenize(texts, tokenizer, max_length)
        return self.infer(fmt.ITEM_TOWER, {fmt.INPUT_IDS: ids, fmt.ATTENTION_MASK: mask}, [fmt.ITEM_CT])[fmt.ITEM_CT]

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
        name = model or self.model

        def fetch() -> list[int]:
            # Model metadata, not the repository index: that is model control, which needs the server's key.
            metadata = self._client.get_model_metadata(name)
            versions = metadata["versions"] if isinstance(metadata, dict) else metadata.versions
            return sorted(int(v) for v in versions)

        return self._with_retries(fetch)

    def model_metadata(self, model: str | None = None) -> dict:
        md = self._with_retries(lambda: self._client.get_model_metadata(model or self.model))
        if self.protocol == "grpc":
            from google.protobuf.json_format import MessageToDict

            return MessageToDict(md)
        return md

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GenreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
