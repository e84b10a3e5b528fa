"""GENRE_SERVE_TRITON_HOME: the launcher runs another Triton installation with
that installation's own backends directory, as in the GPU image
(/opt/tritonserver). Stood in for here by a home assembled from the
nvidia-pytriton wheel: its binary, and a backends directory laid out as
Triton's (python/, onnxruntime/)."""

import os
import sysconfig

import pytest

from genre_serve.client import GenreClient
from genre_serve.errors import ServerError
from genre_serve.serving import launcher

pytestmark = pytest.mark.triton


def test_a_bad_triton_home_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(launcher.TRITON_HOME_ENV, str(tmp_path))
    with pytest.raises(ServerError, match="no bin/tritonserver and backends/"):
        launcher.triton_home()


def test_a_triton_home_serves_with_its_own_backends(repository, tmp_path, monkeypatch):
    home = tmp_path / "tritonserver"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "tritonserver").symlink_to(launcher.pytriton_dist() / "bin" / "tritonserver")
    launcher.assemble_backends(home / "backends")
    monkeypatch.setenv(launcher.TRITON_HOME_ENV, str(home))
    # An installed Triton finds its libraries itself; the wheel's needs them named.
    libs = [str(launcher.pytriton_dist().parent.parent / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR")]
    monkeypatch.setenv("LD_LIBRARY_PATH", ":".join(libs + [os.environ.get("LD_LIBRARY_PATH", "")]))
    server = launcher.TritonServer(repository)
    assert server.command(home / "backends")[0] == str(home / "bin" / "tritonserver")
    with server:
        assert f"--backend-directory={home / 'backends'}" in server.command(home / "backends")
        with GenreClient(server.http_url) as client:
            assert len(client.recommend(["i1", "i2"], 5)) == 5
