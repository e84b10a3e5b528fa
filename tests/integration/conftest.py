"""A real tritonserver on free loopback ports, serving a small synthetic model
(Merlin Systems' run_triton_server pattern): trained, exported and started
once per session, stopped at the end."""

import pytest

from genre_serve.export.repository import export_run
from genre_serve.serving.launcher import TritonServer
from tests_support import train_synthetic


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train_synthetic(out, num_users=120, num_items=150, seed=7)
    return out


@pytest.fixture(scope="session")
def repository(trained_run, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    export_run(trained_run, repo)
    return repo


@pytest.fixture(scope="session")
def server(repository):
    with TritonServer(repository) as srv:
        yield srv
