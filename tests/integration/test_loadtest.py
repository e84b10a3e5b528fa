"""A short load test against the real server produces the documented fields."""

import json

import pytest

from genre_serve.cli import main
from genre_serve.errors import LoadTestError
from genre_serve.loadtest.sweep import check_target

pytestmark = pytest.mark.triton


def test_short_loadtest_writes_json_and_plot(server, trained_run, tmp_path, capsys):
    out, png = tmp_path / "lt.json", tmp_path / "lt.png"
    code = main(["loadtest", "--url", server.http_url, "--concurrency", "1,4", "--duration-s", "2",
                 "--from-run", str(trained_run), "--metrics-url", server.metrics_url,
                 "--json", str(out), "--plot", str(png)])
    assert code == 0
    doc = json.loads(out.read_text())
    assert [lv["concurrency"] for lv in doc["levels"]] == [1, 4]
    for level in doc["levels"]:
        assert level["requests"] > 0 and level["ok"] == level["requests"] and level["errors"] == {}
        assert {"p50", "p95", "p99", "max"} <= set(level["latency_ms"])
        assert level["throughput_rps"] > 0
        assert level["server"]["requests"] > 0 and level["server"]["compute_ms_avg"] > 0
    assert png.stat().st_size > 1000


def test_grpc_loadtest_from_a_histories_file(server, tmp_path):
    (tmp_path / "h.txt").write_text("i1,i2,i3\n\ni4\n")
    assert main(["loadtest", "--url", server.grpc_url, "--protocol", "grpc", "--concurrency", "2",
                 "--duration-s", "1", "--histories", str(tmp_path / "h.txt"),
                 "--metrics-url", server.metrics_url]) == 0


def test_loadtest_refuses_remote_targets_and_unbounded_runs():
    with pytest.raises(LoadTestError, match="loopback"):
        check_target("8.8.8.8:8000", allow_remote=False)
    assert main(["loadtest", "--url", "127.0.0.1:1", "--duration-s", "100000", "--histories", "/dev/null"]) == 2

