"""add-items: new items become a new version; the server switches with no failed request."""

import shutil
import time

import pandas as pd
import pytest

from genre_serve.client import GenreClient
from genre_serve.client.model_control import load_latest
from genre_serve.export.add_items import add_items
from genre_serve.loadtest.traffic import BackgroundTraffic
from genre_serve.serving.launcher import TritonServer

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
        with BackgroundTraffic(server.http_url, [["i1", "i2"]], k=10**6, concurrency=2, timeout_s=30) as traffic:
            traffic.wait_for_answers(5)
            _, version, count = add_items(repo, tmp_path / "new.csv")
            assert (version, count) == (2, 2)
            load_latest(server.http_url, control_key=server.control_key)
            switched = time.monotonic()
            traffic.wait_for_answers(5, since=switched)
        summary = traffic.summary()
        assert summary["errors"] == {}, summary  # zero failed requests across the switch
        assert set(summary["versions"]) <= {1, 2} and 1 in summary["versions"]
        after = [o for o in traffic.outcomes if o.started >= switched]
        assert after and all(o.version == 2 and len(o.answer) == catalog_size + 2 - 2 for o in after)
        assert traffic.inconsistent_answers() == 0
        assert client.model_versions() == [2]
        ids = {r.item_id for r in client.recommend([], 10**6)}
        assert {"new-1", "new-2"} <= ids and len(ids) == catalog_size + 2
        # The new items are known ids now: inside a history they count (excluded from the answer).
        assert "new-1" not in {r.item_id for r in client.recommend(["new-1", "i1"], 10**6)}
