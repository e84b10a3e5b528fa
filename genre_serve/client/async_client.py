"""The asyncio client, on tritonclient's aio clients: same API as GenreClient,
awaitable, with the same typed errors and retry policy."""

from __future__ import annotations

import asyncio
from typing import Iterable, Sequence

from genre_serve.client.client import (
    RECOMMEND_MODEL,
    Recommendation,
    classify,
    is_retryable,
    parse_recommendations,
    recommend_inputs,
)
from genre_serve.errors import ClientTimeoutError


class AsyncGenreClient:
    def __init__(self, url: str = "127.0.0.1:8000", protocol: str = "http", timeout_s: float = 10.0,
                 retries: int = 3, backoff_s: float = 0.1, model: str = RECOMMEND_MODEL,
                 retry_overloaded: bool = False):
        if protocol == "http":
            import tritonclient.http as module
            import tritonclient.http.aio as aio

            self._client = aio.InferenceServerClient(url, conn_timeout=timeout_s)
        elif protocol == "grpc":
            import tritonclient.grpc as module
            import tritonclient.grpc.aio as aio

            self._client = aio.InferenceServerClient(url)
        else:
            raise ValueError(f"protocol: 'http' or 'grpc', got {protocol!r}")
        self._module = module
        self.url, self.protocol, self.timeout_s = url, protocol, timeout_s
        self.retries, self.backoff_s, self.model = retries, backoff_s, model
        self.retry_overloaded = retry_overloaded

    async def recommend(self, history: Sequence[str], k: int = 10, scenario: str | None = None,
                        alpha: float | None = None) -> list[Recommendation]:
        inputs, outputs = recommend_inputs(self._module, history, k, scenario, alpha)
        attempt = 0
        while True:
            try:
                result = await asyncio.wait_for(self._client.infer(self.model, inputs, outputs=outputs),
                                                self.timeout_s)
                return parse_recommendations(result)
            except asyncio.TimeoutError as e:
                raise ClientTimeoutError(f"no answer within {self.timeout_s} s") from e
            except Exception as e:  # noqa: BLE001 - classified below
                err = classify(e)
                if is_retryable(err, self.retry_overloaded) and attempt < self.retries:
                    await asyncio.sleep(self.backoff_s * (2**attempt))
                    attempt += 1
                    continue
                raise err from e

    async def recommend_many(self, histories: Iterable[Sequence[str]], k: int = 10,
                             scenario: str | None = None, alpha: float | None = None):
        return await asyncio.gather(*(self.recommend(h, k, scenario, alpha) for h in histories))

    async def is_ready(self) -> bool:
        try:
            return bool(await self._client.is_server_ready()) and bool(await self._client.is_model_ready(self.model))
        except Exception:  # noqa: BLE001
            return False

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> "AsyncGenreClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
