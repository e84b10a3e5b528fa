"""Reliability against a real tritonserver: malformed requests at the model
and HTTP boundaries, one bad request in a dynamic batch, overload rejections,
and a server killed and restarted under load. The long runs of the same
checks, with figures, are benchmarks/reliability.py."""

import shutil
import time

import pytest

from genre_serve.client import GenreClient, InvalidRequestError, ServerOverloadedError
from genre_serve.formats.run_dir import load_run
from genre_serve.loadtest.traffic import BackgroundTraffic
from genre_serve.reliability import bad_inputs, batching, raw_http
from genre_serve.serving.launcher import TritonServer
from genre_serve.serving.pipeline import InProcessRecommender

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def catalog(trained_run):
    return load_run(trained_run).items.ids


@pytest.fixture(scope="module")
def histories(trained_run):
    run = load_run(trained_run)
    return [run.items.external(h) for h in run.split.stage("test").histories[:40]]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("case", bad_inputs.recommend_cases(), ids=lambda c: c.name)
def test_a_bad_request_gets_its_documented_answer_and_the_server_serves_on(server, catalog, case, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    result = bad_inputs.run_case(case, protocol, url, catalog, max_k=1000)
    assert result.passed, result
    assert result.server_answers_after


def test_raw_http_garbage_is_answered_promptly_and_the_server_stays_up(server):
    results = [raw_http.run_case(c, server.http_url) for c in raw_http.cases(server.http_url)]
    failed = [r for r in results if not r.passed]
    assert not failed, failed
    # Everything Triton parses gets a 4xx; only its JSON parse errors are 500 (upstream #8762).
    assert sum(r.verdict == "4xx" for r in results) >= 7
    assert server.running


def test_one_bad_request_in_a_recommend_batch_fails_alone(strict_server, histories):
    report = batching.recommend_batch_burst(strict_server.http_url, histories[:8], size=8)
    assert report.batched_bursts > 0, "the burst was never batched: nothing was shown"
    assert report.good_mismatches == 0 and report.good_requests == 8 * report.bursts
    assert report.passed, report.bad_outcomes


def test_one_bad_request_in_a_retrieve_batch_fails_alone(strict_server, standalone_repository):
    shapes = batching.served_shapes(standalone_repository)
    report = batching.retrieve_burst(strict_server.http_url, shapes["num_items"], shapes["cf_dim"], shapes["ct_dim"],
                                     size=8)
    assert report.batched_bursts > 0, "the burst was never batched: nothing was shown"
    assert report.good_mismatches == 0 and report.good_requests == 8 * report.bursts
    assert report.passed, report.bad_outcomes


def test_out_of_range_indices_in_a_user_tower_batch_are_answered_and_harm_no_one(strict_server,
                                                                                  standalone_repository):
    shapes = batching.served_shapes(standalone_repository)
    report = batching.user_tower_burst(strict_server.http_url, shapes["num_items"], shapes["max_history"], size=8)
    assert report.batched_bursts > 0
    assert report.passed, report


def test_past_its_queue_limit_the_server_rejects_with_a_typed_error(strict_server, trained_run, histories):
    reference = InProcessRecommender(trained_run)
    with BackgroundTraffic(strict_server.http_url, histories, k=5, concurrency=24, timeout_s=30) as traffic:
        traffic.wait_for_answers(40)
    summary = traffic.summary()
    assert summary["ok"] >= 40
    assert set(summary["errors"]) == {"ServerOverloadedError"}, summary["errors"]
    for o in traffic.outcomes[:60]:  # what was accepted was answered correctly
        if o.ok:
            assert list(o.answer) == reference.recommend(histories[o.request], 5)[0]
    with GenreClient(strict_server.http_url, retries=0) as client:  # once the burst is over, all is served
        assert len(client.recommend(histories[0], 5)) == 5


def test_an_overload_rejection_is_a_typed_error_of_the_sdk():
    from tritonclient.utils import InferenceServerException

    from genre_serve.client.core import classify

    e = InferenceServerException("[request id: <id_unknown>] Exceeds maximum queue size", status="503")
    assert isinstance(classify(e), ServerOverloadedError)
    assert isinstance(classify(InferenceServerException("Request timeout expired", status="503")),
                      ServerOverloadedError)


def test_a_killed_server_restarted_under_load_loses_nothing_silently(repository, tmp_path, histories):
    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    timeout_s, retries, backoff_s = 10.0, 8, 0.1
    with TritonServer(repo) as server:
        traffic = BackgroundTraffic(server.http_url, histories, k=5, concurrency=3, timeout_s=timeout_s,
                                    retries=retries, backoff_s=backoff_s)
        with traffic:
            traffic.wait_for_answers(20)
            server.restart(kill=True)
            restarted = time.monotonic()
            traffic.wait_for_answers(20, since=restarted)
        summary = traffic.summary()
    # Requests in flight at the kill failed with a typed error or were retried into the new server.
    messages = {o.error: o.message for o in traffic.outcomes if not o.ok}
    assert set(summary["errors"]) <= {"ModelUnavailableError", "ClientTimeoutError"}, messages
    assert summary["recovered_after_retries"] >= 1, summary
    bound = timeout_s * (retries + 1) + backoff_s * (2 ** retries)
    assert summary["slowest_request_s"] < bound  # nothing hung past its timeout and retries
    assert traffic.inconsistent_answers() == 0  # the restarted server answers as before


def test_a_bad_request_never_reaches_retries(server):
    client = GenreClient(server.http_url, retries=5)
    with pytest.raises(InvalidRequestError):
        client.recommend(["i1"], 0)
    assert client.retried == 0


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_answering_version_is_reported(server, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    with GenreClient(url, protocol) as client:
        recs, version = client.recommend_versioned(["i1", "i2"], 3)
    assert len(recs) == 3 and version == 1
