"""The served genre_recommend equals the in-process pipeline, over HTTP and gRPC."""

import numpy as np
import pytest

from genre_serve.client import GenreClient, InvalidRequestError
from genre_serve.formats.run_dir import load_run
from genre_serve.serving.pipeline import InProcessRecommender

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def reference(trained_run):
    return InProcessRecommender(trained_run)


def sample_requests(trained_run):
    run = load_run(trained_run)
    hist = run.split.stage("test").histories
    out = []
    for i, h in enumerate(hist[:12]):
        ids = run.items.external(h)
        scenario = run.scenarios[1 + i % (len(run.scenarios) - 1)] if i % 2 else None
        out.append((ids, 5 + i % 7, scenario))
    return out


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_answers_equal_the_in_process_model(server, trained_run, reference, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    with GenreClient(url, protocol) as client:
        for history, k, scenario in sample_requests(trained_run):
            got = client.recommend(history, k, scenario)
            want_ids, want_scores = reference.recommend(history, k, scenario)
            assert [r.item_id for r in got] == want_ids
            np.testing.assert_allclose([r.score for r in got], want_scores, rtol=1e-4, atol=1e-4)
            assert not set(want_ids) & set(history)
            assert len(got) == k


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_explain_answers_because_you_watched_like_in_process_and_only_when_asked(server, trained_run, reference,
                                                                                protocol):
    import tritonclient.http as http

    url = server.http_url if protocol == "http" else server.grpc_url
    with GenreClient(url, protocol) as client:
        for history, k, scenario in sample_requests(trained_run)[:6]:
            explained = client.recommend(history, k, scenario, explain=True)
            plain = client.recommend(history, k, scenario)
            assert [r.item_id for r in explained] == [r.item_id for r in plain]
            assert [r.because for r in explained] == reference.explain(history, k, scenario)
            assert all(r.because in history for r in explained) and all(r.because is None for r in plain)
        assert all(r.because == "" for r in client.recommend([], 5, explain=True))  # a cold user: nothing
        batch = client.recommend_batch([h for h, _, _ in sample_requests(trained_run)[:3]], 5, explain=True)
        for (history, _, _), answer in zip(sample_requests(trained_run)[:3], batch):
            assert [r.because for r in answer] == reference.explain(history, 5)
    # A request without EXPLAIN that asks for no particular output gets exactly
    # the outputs it got before BECAUSE existed.
    raw = http.InferenceServerClient(server.http_url.removeprefix("http://"))
    history = sample_requests(trained_run)[0][0]
    tensor = http.InferInput("HISTORY", [len(history)], "BYTES")
    tensor.set_data_from_numpy(np.array([h.encode() for h in history], dtype=object))
    k = http.InferInput("K", [1], "INT32")
    k.set_data_from_numpy(np.array([5], np.int32))
    names = {o["name"] for o in raw.infer("genre_recommend", [tensor, k]).get_response()["outputs"]}
    assert names == {"ITEM_IDS", "SCORES"}


def test_alpha_override_changes_the_answer_like_in_process(server, trained_run, reference):
    history, _, _ = sample_requests(trained_run)[0]
    with GenreClient(server.http_url) as client:
        for alpha in (0.0, 1.0):
            got = [r.item_id for r in client.recommend(history, 10, alpha=alpha)]
            assert got == reference.recommend(history, 10, alpha=alpha)[0]


def test_cold_user_gets_the_most_popular_items(server, reference):
    with GenreClient(server.http_url) as client:
        got = [r.item_id for r in client.recommend([], 5)]
        unknown_only = [r.item_id for r in client.recommend(["no-such-item", "nor-this"], 5)]
    assert got == reference.recommend([], 5)[0] == unknown_only


def test_unknown_ids_in_a_history_are_skipped(server, trained_run, reference):
    history, _, _ = sample_requests(trained_run)[1]
    with GenreClient(server.http_url) as client:
        got = [r.item_id for r in client.recommend(["unknown-1"] + history + ["unknown-2"], 6)]
    assert got == reference.recommend(history, 6)[0]


def test_k_beyond_the_catalog_returns_every_unseen_item(server, trained_run):
    run = load_run(trained_run)
    history = run.items.ids[:10]
    with GenreClient(server.http_url) as client:
        got = client.recommend(history, 10**9)
    assert len(got) == len(run.items) - 10
    assert len({r.item_id for r in got}) == len(got)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(history=["i1"], k=0), "K"),
        (dict(history=["i1"], k=-5), "K"),
        (dict(history=["i1"], k=3, scenario="nowhere"), "SCENARIO"),
        (dict(history=["i1"], k=3, alpha=1.5), "ALPHA"),
        (dict(history=["i1"], k=3, alpha=float("nan")), "ALPHA"),
    ],
)
def test_bad_requests_get_an_error_naming_the_field_and_the_server_keeps_serving(server, kwargs, field):
    with GenreClient(server.http_url, retries=0) as client:
        with pytest.raises(InvalidRequestError, match=field):
            client.recommend(**kwargs)
        assert len(client.recommend(["i1"], 3)) == 3


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_batched_entry_point_answers_like_genre_recommend(server, trained_run, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    requests = sample_requests(trained_run)
    histories = [h for h, _, _ in requests] + [[], ["no-such-item"], requests[0][0][:1]]
    with GenreClient(url, protocol) as client:
        for scenario in (None, load_run(trained_run).scenarios[-1]):
            one_by_one = [client.recommend(h, 7, scenario) for h in histories]
            batched = client.recommend_many(histories, 7, scenario, batched=True)
            assert [[r.item_id for r in a] for a in batched] == [[r.item_id for r in a] for a in one_by_one]
            for a, b in zip(batched, one_by_one):
                np.testing.assert_allclose([r.score for r in a], [r.score for r in b], rtol=1e-5, atol=1e-5)
        # More users than one request carries: split into requests of BATCH_USERS.
        many = (histories * 12)[:70]
        assert [[r.item_id for r in a] for a in client.recommend_many(many, 3, batched=True)] == \
            [[r.item_id for r in a] for a in client.recommend_many(many, 3)]


def test_a_bad_batched_request_fails_alone_naming_the_field(server, trained_run):
    history = sample_requests(trained_run)[0][0]
    with GenreClient(server.http_url) as client:
        with pytest.raises(InvalidRequestError, match="SCENARIO"):
            client.recommend_batch([history, history], 5, scenario="no-such-scenario")
        with pytest.raises(InvalidRequestError, match="K"):
            client.recommend_batch([history], 0)
        assert len(client.recommend_batch([history], 5)[0]) == 5


def test_the_time_per_stage_is_on_the_prometheus_endpoint(server, trained_run):
    import time
    import urllib.request

    from genre_serve.loadtest.sweep import model_counters, server_side

    history = sample_requests(trained_run)[0][0]
    time.sleep(0.6)  # what earlier tests' requests left pending has been sent
    before = model_counters(urllib.request.urlopen(server.metrics_url).read().decode())
    with GenreClient(server.http_url) as client:
        for _ in range(6):
            client.recommend(history, 5)
    time.sleep(0.6)  # each instance sends its counters every 0.25 s
    after = model_counters(urllib.request.urlopen(server.metrics_url).read().decode())
    stages = server_side(before, after)
    for stage in ("id_mapping", "user_tower", "retrieval", "ranking"):
        assert stages[f"{stage}_ms_per_user"] > 0, stages
    assert after["genre_serve_users"] - before.get("genre_serve_users", 0) == 6


def test_the_triton_here_is_the_one_the_gpu_image_builds_on(server):
    """deploy/Dockerfile builds on the NGC release of this Triton (genre_serve/deploy/image.py)."""
    import tritonclient.http as http

    from genre_serve.deploy import image

    client = http.InferenceServerClient(server.http_url)
    try:
        assert client.get_server_metadata()["version"] == image.TRITON_VERSION
    finally:
        client.close()
