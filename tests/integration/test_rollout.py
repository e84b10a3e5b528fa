"""add-items: new items become a new version; the server switches with no failed request."""

import shutil
import threading
import time

import pandas as pd
import pytest

from genre_serve.client import GenreClient
from genre_serve.export.add_items import add_items
from genre_serve.serving.launcher import TritonServer
from genre_serve.serving.rollout import load_latest

pytestmark = pytest.mark.triton


def test_added_items_are_served_after_a_rollout_without_failed_requests(repository, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    new = pd.DataFrame({
        "item_id": ["new-1", "new-2"],
        "title": ["The dragon and the wizard", "The galaxy and the rocket"],
        "text": ["A quest for a sword in a castle.", "An astronaut in orbit of a planet."],
    })
    new.to_csv(tmp_path / "new.csv", index=False)
    with TritonServer(repo) as server, GenreClient(server.http_url, timeout_s=30) as client:
        catalog_size = len(client.recommend([], 10**6))
        assert client.model_versions() == [1]
        failures, answers, stop = [], [], threading.Event()

        def traffic():
            with GenreClient(server.http_url, timeout_s=30, retries=0) as c:
                while not stop.is_set():
                    try:
                        answers.append(len(c.recommend(["i1", "i2"], 10**6)))
                    except Exception as e:  # noqa: BLE001 - counted, asserted below
                        failures.append(e)

        worker = threading.Thread(target=traffic)
        worker.start()
        try:
            time.sleep(0.5)
            _, version, count = add_items(repo, tmp_path / "new.csv")
            assert (version, count) == (2, 2)
            load_latest(server.http_url)
            time.sleep(0.5)
        finally:
            stop.set()
            worker.join()
        assert not failures, failures[:3]
        assert client.model_versions() == [2]
        ids = {r.item_id for r in client.recommend([], 10**6)}
        assert {"new-1", "new-2"} <= ids and len(ids) == catalog_size + 2
        # The new items are known ids now: inside a history they count (excluded from the answer).
        assert "new-1" not in {r.item_id for r in client.recommend(["new-1", "i1"], 10**6)}
        assert answers and answers[-1] == catalog_size + 2 - 2
