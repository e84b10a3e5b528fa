"""A real tritonserver on free loopback ports, serving a small synthetic model
(Merlin Systems' run_triton_server pattern): trained, exported and started
once per session, stopped at the end."""

import pytest

from genre_serve.config import TrainConfig
from genre_serve.data import build_dataset
from genre_serve.data import synthetic
from genre_serve.export.repository import export_run
from genre_serve.serving.launcher import TritonServer
from genre_serve.train.trainer import train

SMALL = {
    "epochs": 3,
    "ranker_epochs": 1,
    "batch_size": 128,
    "model": {"dim": 16, "hidden": 32, "max_history": 20, "ranker_hidden": [16]},
}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    raw, items = synthetic.generate(num_users=120, num_items=150, seed=7)
    ds = build_dataset(raw, items, name="synthetic")
    out = tmp_path_factory.mktemp("run")
    train(ds, TrainConfig.from_dict(SMALL), out, progress=False)
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
