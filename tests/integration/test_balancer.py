"""Two `genre-serve serve` replicas behind a real HAProxy (Debian's package,
installed by scripts/install.sh): one is SIGKILLed mid-load and started
again, and the clients see no failure (issue 17, item 1)."""

import os
import shutil
import time

import pandas as pd
import pytest

from genre_serve.cli import main
from genre_serve.client import GenreClient
from genre_serve.deploy.haproxy import HAProxy, Replica, haproxy_config
from genre_serve.loadtest.traffic import BackgroundTraffic
from genre_serve.reliability.serve_process import ServeProcess
from genre_serve.serving.launcher import free_port

pytestmark = [pytest.mark.triton,
              pytest.mark.skipif(shutil.which("haproxy") is None and not os.path.exists("/usr/sbin/haproxy"),
                                 reason="haproxy is not installed (scripts/install.sh installs it as root)")]

HISTORIES = [[f"i{j}" for j in range(i, i + 12)] for i in range(40)]


def _replica(serve: ServeProcess) -> Replica:
    return Replica("127.0.0.1", serve.http_port, serve.grpc_port, serve.health_port)


def _until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)


def test_a_replica_killed_mid_load_and_restarted_loses_no_request(repository, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)  # one repository, both replicas (shared storage)
    http_port, grpc_port = free_port(), free_port()
    first, second = ServeProcess(repo), ServeProcess(repo)
    config = haproxy_config([_replica(first), _replica(second)], http_port=http_port, grpc_port=grpc_port,
                            check_interval_ms=200)
    with first, second, HAProxy(config, tmp_path):
        http_url, grpc_url = f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"
        with GenreClient(http_url) as client:
            _until(lambda: client.is_ready(), 30, "the balancer answers")
        # HTTP clients without retries of their own: the balancer's retries must be enough.
        http_traffic = BackgroundTraffic(http_url, HISTORIES, k=5, concurrency=3, timeout_s=10, retries=0)
        # gRPC errors ride in HTTP 200 trailers, which HAProxy cannot retry: the SDK's defaults do.
        grpc_traffic = BackgroundTraffic(grpc_url, HISTORIES, k=5, concurrency=1, timeout_s=10,
                                         protocol="grpc", retries=6)
        with http_traffic, grpc_traffic:
            http_traffic.wait_for_answers(100)
            grpc_traffic.wait_for_answers(20)
            first.kill()
            http_traffic.wait_for_answers(100, since=time.monotonic())  # the survivor carries the load
            restarted = ServeProcess(repo, ports=first.ports).start()
            try:
                served_before = restarted.inference_count()
                _until(lambda: restarted.inference_count() > served_before + 20, 60,
                       "the restarted replica back in the rotation")
                assert second.inference_count() > 0
                grpc_traffic.wait_for_answers(20, since=time.monotonic())
                # A rollout across the replicas, one after another, under the same load.
                items = tmp_path / "new.csv"
                pd.DataFrame({"item_id": ["n1"], "title": ["A brand new quest"]}).to_csv(items, index=False)
                assert main(["add-items", str(repo), "--items", str(items), "--url", restarted.http_url,
                             "--url", second.http_url]) == 0
                rolled = time.monotonic()
                http_traffic.wait_for_answers(100, since=rolled)
            finally:
                restarted.stop()
        for traffic in (http_traffic, grpc_traffic):
            summary = traffic.summary()
            assert summary["requests"] == summary["ok"], summary
        assert {o.version for o in http_traffic.outcomes if o.started > rolled + 0.5} == {2}


def test_the_balancer_forwards_inference_and_health_but_never_model_control(repository, tmp_path):
    import urllib.error
    import urllib.request

    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    http_port, grpc_port = free_port(), free_port()
    serve = ServeProcess(repo)
    config = haproxy_config([_replica(serve)], http_port=http_port, grpc_port=grpc_port, check_interval_ms=200)
    with serve, HAProxy(config, tmp_path):
        base = f"http://127.0.0.1:{http_port}"
        with GenreClient(f"127.0.0.1:{http_port}") as client:
            _until(lambda: client.is_ready(), 30, "the balancer answers")
            assert len(client.recommend(["i1", "i2"], 5)) == 5
        with GenreClient(f"127.0.0.1:{grpc_port}", "grpc") as client:
            assert len(client.recommend(["i1", "i2"], 5)) == 5
        key = (repo / ".genre_serve.control_key").read_text().strip()
        for path in ("/v2/repository/index", "/v2/repository/models/genre_recommend/unload",
                     "/v2/systemsharedmemory/status", "/v2/logging", "/v2/trace/setting"):
            request = urllib.request.Request(base + path, data=b"{}", method="POST",
                                             headers={"genre-serve-control-key": key})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 403, path  # even with the key: not through the balancer
        import tritonclient.grpc as grpcclient

        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        with pytest.raises(Exception, match="403|PERMISSION|Unavailable|UNAVAILABLE|denied|Forbidden"):
            grpc.get_model_repository_index(headers={"triton-grpc-protocol-genre-serve-control-key": key})
        grpc.close()
        with GenreClient(f"127.0.0.1:{http_port}") as client:
            assert len(client.recommend(["i1", "i2"], 5)) == 5  # still loaded
