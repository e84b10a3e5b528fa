"""The client against a real server: timeouts, a server that comes up late, versions."""

import threading

import pytest

from genre_serve.client import ClientTimeoutError, GenreClient
from genre_serve.serving.launcher import TritonServer, free_port

pytestmark = pytest.mark.triton


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_request_slower_than_the_timeout_raises_client_timeout(server, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    with GenreClient(url, protocol, timeout_s=0.0005, retries=0) as client:
        with pytest.raises(ClientTimeoutError):
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
        assert names == {"HISTORY", "K", "SCENARIO", "ALPHA"}
    with GenreClient(server.http_url) as client:
        client.wait_until_ready(5)
        vecs = client.embed_items(["a space opera", "a murder mystery"])
        assert vecs.shape[0] == 2
