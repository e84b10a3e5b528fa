"""A real tritonserver on free loopback ports, serving a small synthetic model
(Merlin Systems' run_triton_server pattern): trained, exported and started
once per session, stopped at the end."""

import pytest

from genre_serve.export import model_configs as mc
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


@pytest.fixture(scope="session")
def standalone_repository(trained_run, tmp_path_factory):
    """An export with the standalone models (genre_user_tower, genre_retrieve,
    genre_ranker), one genre_recommend instance, a queue of 2 and a 20 ms
    batching window (so that concurrent requests batch together)."""
    repo = tmp_path_factory.mktemp("standalone") / "repo"
    serving = mc.ServingConfig(max_queue_delay_us=20_000, max_queue_size=2, recommend_instances=1,
                               batch_instances=1)
    export_run(trained_run, repo, serving=serving, standalone_models=True)
    return repo


@pytest.fixture(scope="session")
def strict_server(standalone_repository):
    with TritonServer(standalone_repository) as srv:
        yield srv
