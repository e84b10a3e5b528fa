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


def test_retired_items_are_never_served_and_stay_retired_across_exports(repository, trained_run, tmp_path):
    from genre_serve.export.add_items import retire_items
    from genre_serve.export.repository import export_run
    from genre_serve.formats import repository as fmt

    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    with TritonServer(repo) as server, GenreClient(server.http_url, timeout_s=30) as client:
        everything = [r.item_id for r in client.recommend(["i1", "i2"], 10**6)]
        cold = [r.item_id for r in client.recommend([], 10)]
        gone = {everything[0], everything[5], cold[0]}
        _, version, count = retire_items(repo, sorted(gone))
        assert count == len(gone)
        load_latest(server.http_url, control_key=server.control_key)
        served, served_version = client.recommend_versioned(["i1", "i2"], 10**6)
        assert served_version == version
        ids = [r.item_id for r in served]
        assert not gone & set(ids) and len(ids) == len(everything) - len(gone)
        assert cold[0] not in {r.item_id for r in client.recommend([], 10)}  # cold users too
        for answer in client.recommend_many([["i1", "i2"], []], 10**6, batched=True):  # the batched entry point
            assert answer and not gone & {r.item_id for r in answer}
        # A retired item in a history still reads as history (it is in the catalog).
        assert len(client.recommend([next(iter(gone))], 10)) == 10
    # The next export of a run into this repository keeps them retired.
    export_run(trained_run, repo)
    latest = fmt.Catalog.load(repo / fmt.RECOMMEND / str(fmt.latest_version(repo)))
    assert set(latest.ids.external(latest.retired)) == gone
