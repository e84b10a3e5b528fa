"""The asyncio client, on tritonclient's aio clients: same API as GenreClient,
awaitable, with the same settings, typed errors and retry policy
(:class:`genre_serve.client.core.ClientCore`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from genre_serve.client.core import (
    BATCH_USERS,
    RECOMMEND_OUTPUTS,
    ClientCore,
    Recommendation,
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


class AsyncGenreClient(ClientCore):
    __doc__ = f"""The asyncio client of a running genre_serve endpoint (awaitable GenreClient).

    {ClientCore.__doc__}"""

    def _connect(self) -> Any:
        if self.protocol == "http":
            import tritonclient.http.aio as http_aio

            return http_aio.InferenceServerClient(self.url, conn_timeout=self.timeout_s)
        import tritonclient.grpc.aio as grpc_aio

        return grpc_aio.InferenceServerClient(self.url)

    async def _infer_result(self, model: str, arrays: Mapping[str, np.ndarray], outputs: Sequence[str],
                            version: int | None = None) -> Any:
        inputs, kwargs = self.prepared_request(arrays, outputs, version)
        attempt = 0
        while True:
            try:
                return await asyncio.wait_for(self._client.infer(model, inputs, **kwargs),
                                              self.timeout_s)
            except asyncio.TimeoutError as e:
                raise ClientTimeoutError(f"no answer within {self.timeout_s} s") from e
            except Exception as e:  # noqa: BLE001 - classified below
                err = classify(e)
                delay = self.retry_delay(err, attempt)
                if delay is None:
                    raise err from e
                await asyncio.sleep(delay)
                attempt += 1

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str],
                    version: int | None = None) -> dict[str, np.ndarray]:
        """GenreClient.infer, awaitable."""
        result = await self._infer_result(model, inputs, outputs, version)
        return {name: result.as_numpy(name) for name in outputs}

    async def recommend(self, history: Sequence[str], k: int = 10, scenario: str | None = None,
                        alpha: float | None = None, explain: bool = False) -> list[Recommendation]:
        result = await self._infer_result(self.model, recommend_arrays(history, k, scenario, alpha, explain),
                                          recommend_outputs(explain))
        return parse_recommendations(result)

    async def recommend_many(self, histories: Iterable[Sequence[str]], k: int = 10, scenario: str | None = None,
                             alpha: float | None = None, batched: bool = False) -> list[list[Recommendation]]:
        """GenreClient.recommend_many, awaitable: all requests at once."""
        histories = list(histories)
        if batched:
            parts = await asyncio.gather(*(self.recommend_batch(chunk, k, scenario, alpha)
                                           for chunk in chunks(histories, BATCH_USERS)))
            return [answer for part in parts for answer in part]
        return list(await asyncio.gather(*(self.recommend(h, k, scenario, alpha) for h in histories)))

    async def recommend_batch(self, histories: Sequence[Sequence[str]], k: int = 10, scenario: str | None = None,
                              alpha: float | None = None) -> list[list[Recommendation]]:
        """GenreClient.recommend_batch, awaitable."""
        result = await self._infer_result(fmt.RECOMMEND_BATCH,
                                          recommend_batch_arrays(list(histories), k, scenario, alpha),
                                          RECOMMEND_OUTPUTS)
        return parse_batch_recommendations(result)

    async def is_ready(self) -> bool:
        try:
            return bool(await self._client.is_server_ready()) and bool(await self._client.is_model_ready(self.model))
        except Exception:  # noqa: BLE001 - not ready is the answer
            return False

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> AsyncGenreClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
