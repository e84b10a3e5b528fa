"""Error classification and retry policy of the client (no server needed)."""


import pytest
from tritonclient.utils import InferenceServerException

from genre_serve.client import (
    AsyncGenreClient,
    ClientTimeoutError,
    GenreClient,
    InvalidRequestError,
    ModelUnavailableError,
    ServerOverloadedError,
)
from genre_serve.client.core import classify
from genre_serve.errors import GenreServeError
from genre_serve.serving.launcher import free_port


@pytest.mark.parametrize(
    "exc, kind",
    [
        (InferenceServerException("K: must be positive", status="400"), InvalidRequestError),
        (InferenceServerException("bad", status="StatusCode.INVALID_ARGUMENT"), InvalidRequestError),
        (InferenceServerException("x", status="StatusCode.UNAVAILABLE"), ModelUnavailableError),
        (InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED"), ClientTimeoutError),
        (ConnectionRefusedError(111, "Connection refused"), ModelUnavailableError),
        # A dead model instance, until `serve` reloads the model: retried.
        (InferenceServerException("Stub process 'genre_recommend_0_1' is not healthy.", status="500"),
         ModelUnavailableError),
        (TimeoutError("timed out"), ClientTimeoutError),
    ],
)
def test_tritonclient_errors_map_to_typed_errors(exc, kind):
    err = classify(exc)
    assert isinstance(err, kind) and isinstance(err, GenreServeError)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_server_that_is_down_is_retried_then_reported_as_unavailable(protocol):
    url = f"127.0.0.1:{free_port()}"
    with GenreClient(url, protocol, timeout_s=2, retries=2, backoff_s=0.01) as client:
        assert not client.is_ready()
        with pytest.raises(ModelUnavailableError) as info:
            client.recommend(["1"], 3)
    assert info.value.__cause__ is not None  # wraps tritonclient's exception


def test_client_rejects_bad_arguments_before_sending():
    with pytest.raises(ValueError, match="protocol"):
        GenreClient(protocol="ftp")
    with GenreClient(f"127.0.0.1:{free_port()}") as client:
        with pytest.raises(TypeError, match="history"):
            client.recommend("1,2,3", 3)
        with pytest.raises(TypeError, match="k"):
            client.recommend(["1"], 2.5)


@pytest.mark.parametrize("make", [GenreClient, AsyncGenreClient])
def test_both_clients_validate_their_settings_alike(make):
    for bad, match in (({"timeout_s": 0}, "timeout_s"), ({"retries": -1}, "retries"),
                       ({"backoff_s": -1.0}, "backoff_s"), ({"protocol": "ftp"}, "protocol")):
        with pytest.raises(ValueError, match=match):
            make(f"127.0.0.1:{free_port()}", **bad)


def test_the_retry_policy_backs_off_and_stops_after_the_retries():
    client = GenreClient(f"127.0.0.1:{free_port()}", retries=2, backoff_s=0.5)
    down = ModelUnavailableError("down")
    assert [client.retry_delay(down, a) for a in range(3)] == [0.5, 1.0, None]
    assert client.retry_delay(InvalidRequestError("bad"), 0) is None
    assert client.retry_delay(ServerOverloadedError("full"), 0) is None
    assert client.retried == 2
    client.close()


def test_the_default_retries_outlast_a_model_reload():
    """serve reloads a model with a dead instance within a few seconds
    (benchmarks/RELIABILITY.md); the default policy must wait longer than that."""
    client = GenreClient(f"127.0.0.1:{free_port()}")
    down = ModelUnavailableError("down")
    delays = [client.retry_delay(down, a) for a in range(client.retries + 1)]
    assert delays[-1] is None and sum(delays[:-1]) > 5.0
    client.close()
