"""The HAProxy configuration `genre-serve haproxy-config` writes: what haproxy
itself accepts, and the rules it must carry (the running balancer:
tests/integration/test_balancer.py)."""

import os
import re
import shutil
import subprocess

import pytest

from genre_serve.cli import main
from genre_serve.deploy.haproxy import GRPC_ALLOWED, HTTP_ALLOWED, Replica, haproxy_config

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)


def test_the_cli_writes_a_configuration_haproxy_accepts(tmp_path, capsys):
    out = tmp_path / "haproxy.cfg"
    assert main(["haproxy-config", "--replica", "127.0.0.1:8000:8001:8003", "--replica",
                 "127.0.0.1:8100:8101:8103", "--out", str(out)]) == 0
    text = out.read_text()
    # Health from genre_serve's endpoint on each replica's health port, for HTTP and gRPC alike.
    assert text.count("check port 8003") == 2 and text.count("check port 8103") == 2
    assert "uri /v2/health/ready" in text and "retry-on conn-failure empty-response" in text
    assert "bind 127.0.0.1:9001 proto h2" in text
    if HAPROXY is None:
        pytest.skip("haproxy is not installed: only the text was checked")
    checked = subprocess.run([HAPROXY, "-c", "-f", str(out)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_only_inference_and_health_paths_pass():
    allowed = re.compile(HTTP_ALLOWED)
    for path in ("/v2", "/v2/health/ready", "/v2/health/live", "/v2/models/genre_recommend",
                 "/v2/models/genre_recommend/infer", "/v2/models/genre_recommend/versions/3/infer",
                 "/v2/models/genre_recommend/ready", "/v2/models/genre_recommend/config",
                 "/v2/models/genre_recommend/stats"):
        assert allowed.match(path), path
    for path in ("/v2/repository/index", "/v2/repository/models/genre_recommend/load",
                 "/v2/repository/models/genre_recommend/unload", "/v2/systemsharedmemory/status",
                 "/v2/cudasharedmemory/register", "/v2/trace/setting", "/v2/logging",
                 "/v2/models/genre_recommend/trace/setting", "/metrics", "/v2/models/a/b/infer"):
        assert not allowed.match(path), path
    assert not {"RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload"} & set(GRPC_ALLOWED)


@pytest.mark.parametrize("bad", ["127.0.0.1:8000:8001", "127.0.0.1:a:8001:8003", ":8000:8001:8003",
                                 "127.0.0.1:8000:8001:70000"])
def test_a_malformed_replica_is_one_clear_line(bad, capsys):
    assert main(["haproxy-config", "--replica", bad]) == 2
    assert "HOST:HTTP_PORT:GRPC_PORT:HEALTH_PORT" in capsys.readouterr().err


def test_hostnames_and_ipv6_are_accepted_but_not_config_injection():
    assert "server replica1 genre-0.genre:8000" in haproxy_config([Replica.parse("genre-0.genre:8000:8001:8003")])
    with pytest.raises(ValueError, match="host"):
        haproxy_config([Replica("evil\n    bind *:1", 8000, 8001, 8003)])
