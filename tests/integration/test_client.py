"""The client against a real server: timeouts, a server that comes up late, versions."""

import threading

import numpy as np
import pytest

from genre_serve.client import ClientTimeoutError, GenreClient
from genre_serve.serving.launcher import TritonServer, free_port

pytestmark = pytest.mark.triton


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_request_slower_than_the_timeout_raises_client_timeout(server, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    with GenreClient(url, protocol, timeout_s=0.0005, retries=0) as client, pytest.raises(ClientTimeoutError):
        client.recommend(["i1", "i2"], 10**6)


def test_client_retries_until_a_late_server_is_up(repository):
    http_port = free_port()
    server = TritonServer(repository, http_port=http_port)
    starter = threading.Timer(1.0, server.start)
    starter.start()
    try:
        with GenreClient(f"127.0.0.1:{http_port}", timeout_s=10, retries=12, backoff_s=0.25) as client:
            recs = client.recommend(["i1"], 3)
            assert len(recs) == 3
    finally:
        starter.join()
        server.stop()


def test_metadata_and_versions(server):
    with GenreClient(server.grpc_url, "grpc") as client:
        assert client.model_versions() == [1]
        names = {i["name"] for i in client.model_metadata()["inputs"]}
        assert names == {"HISTORY", "K", "SCENARIO", "ALPHA", "EXPLAIN"}  # EXPLAIN: optional, issue 14
    with GenreClient(server.http_url) as client:
        client.wait_until_ready(5)
        vecs = client.embed_items(["a space opera", "a murder mystery"])
        assert vecs.shape[0] == 2


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_async_client_gives_the_sync_answers(server, protocol):
    import asyncio

    from genre_serve.client import AsyncGenreClient

    url = server.http_url if protocol == "http" else server.grpc_url
    histories = [["i1", "i2"], ["i3"], []]
    with GenreClient(url, protocol) as client:
        want = [client.recommend(h, 4) for h in histories]

    async def run():
        async with AsyncGenreClient(url, protocol) as client:
            assert await client.is_ready()
            batched = await client.recommend_many(histories, 4, batched=True)
            assert batched == await client.recommend_many(histories, 4)
            return batched

    assert asyncio.run(run()) == want


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_client_side_scoring_equals_the_server(strict_server, standalone_repository, protocol):
    from genre_serve.client import LocalScorer

    server = strict_server
    url = server.http_url if protocol == "http" else server.grpc_url
    with GenreClient(url, protocol) as client:
        local = LocalScorer(client, standalone_repository)
        for history, k, scenario in ((["i1", "i2", "i3"], 5, None), (["i7"], 8, "home"), ([], 3, None)):
            ids, scores = local.recommend(history, k, scenario)
            served = client.recommend(history, k, scenario)
            assert ids == [r.item_id for r in served]
            np.testing.assert_allclose(scores, [r.score for r in served], rtol=1e-5, atol=1e-5)


def test_client_side_scoring_needs_the_standalone_models(server, repository):
    from genre_serve.client import ClientError, LocalScorer

    with GenreClient(server.http_url) as client, pytest.raises(ClientError, match="--standalone-models"):
        LocalScorer(client, repository)
