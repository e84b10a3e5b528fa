"""Model control is not open to clients: loading and unloading need the
server's key; inference, health and metadata stay open."""

import stat

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from genre_serve.client import GenreClient
from genre_serve.client.model_control import load_latest
from genre_serve.formats import repository as fmt

pytestmark = pytest.mark.triton


def test_an_unkeyed_unload_is_refused_and_the_model_keeps_serving(server, repository):
    for module, url in ((httpclient, server.http_url), (grpcclient, server.grpc_url)):
        client = module.InferenceServerClient(url)
        with pytest.raises(InferenceServerException, match="(?i)restricted|unauthori|permission|denied"):
            client.unload_model(fmt.RECOMMEND)
        with pytest.raises(InferenceServerException):
            client.unload_model(fmt.RECOMMEND, headers=fmt.control_headers("a wrong key", "http" if module is
                                                                           httpclient else "grpc"))
        with pytest.raises(InferenceServerException):
            client.get_model_repository_index()
        assert client.is_model_ready(fmt.RECOMMEND)  # inference, health and metadata stay open
        client.close()
    with GenreClient(server.http_url) as client:
        assert len(client.recommend(["i1", "i2"], 3)) == 3
        assert client.model_versions() == [1]


def test_the_key_file_is_the_owners_and_the_rollout_commands_use_it(server, repository):
    path = repository / fmt.CONTROL_KEY_FILE
    assert path.read_text() == server.control_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert fmt.control_key_of(repository) == server.control_key
    load_latest(server.http_url, control_key=fmt.control_key_of(repository))  # keyed: allowed
    load_latest(server.grpc_url, "grpc", control_key=server.control_key)
    with GenreClient(server.http_url) as client:
        np.testing.assert_equal(len(client.recommend(["i1"], 2)), 2)
