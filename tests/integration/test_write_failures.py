"""A write that fails (disk full, SIGTERM) publishes nothing, leaves nothing
behind, and says so in one line; a killed writer's staging is cleaned."""

import errno
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from genre_serve.cli import main
from genre_serve.export.add_items import add_items
from genre_serve.export.repository import export_run
from genre_serve.formats import repository as fmt


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "/repo/genre_recommend/.2.staging/item_cf.npy")


def test_a_full_disk_publishes_nothing_and_leaves_nothing(trained_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fmt.ItemTableFiles, "save", _disk_full)
    fresh = tmp_path / "fresh"
    assert main(["export", str(trained_run), "--model-repository", str(fresh)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "item_cf.npy" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1  # (besides progress bars)
    assert not fresh.exists()  # the repository this export created is gone again
    monkeypatch.undo()
    repo = tmp_path / "repo"
    export_run(trained_run, repo)
    before = sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))
    monkeypatch.setattr(fmt.ItemTableFiles, "save", _disk_full)
    assert main(["export", str(trained_run), "--model-repository", str(repo)]) == 1
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == before  # version 1 as it was, nothing else


def test_a_killed_writers_staging_is_removed_by_the_next_writer(trained_run, tmp_path):
    repo = tmp_path / "repo"
    export_run(trained_run, repo)
    stale = repo / fmt.RECOMMEND / ".7.staging"
    stale.mkdir()
    (stale / "item_cf.npy").write_bytes(b"half a table")
    pd.DataFrame({"item_id": ["n1"], "title": ["A new one"]}).to_csv(tmp_path / "new.csv", index=False)
    assert add_items(repo, tmp_path / "new.csv")[1] == 2
    assert not stale.exists()


@pytest.mark.triton
def test_sigterm_during_an_export_publishes_nothing(trained_run, tmp_path):
    repo = tmp_path / "repo"
    export_run(trained_run, repo)
    proc = subprocess.Popen([sys.executable, "-m", "genre_serve.cli", "export", str(trained_run),
                             "--model-repository", str(repo)], stderr=subprocess.PIPE, text=True)
    staging = repo / fmt.RECOMMEND / ".2.staging"
    deadline = time.time() + 120
    while not staging.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert staging.exists(), "the export never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert fmt.versions_of(repo, fmt.RECOMMEND) == [1]
    assert not list(repo.glob("*/.*.staging"))


@pytest.fixture()
def small_disk(tmp_path):
    """A real small filesystem (tmpfs) of the size asked for, unmounted after;
    skipped where this process may not mount one (it needs root)."""
    mounted = []

    def make(size_mb: int):
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _files(repo):
    return sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))


@pytest.mark.triton
def test_a_really_full_disk_keeps_the_served_version_and_leaves_nothing(trained_run, tmp_path, small_disk, capsys):
    from genre_serve.client import GenreClient
    from genre_serve.client.model_control import load_latest
    from genre_serve.serving.launcher import TritonServer

    one_version = sum(p.stat().st_size for p in (tmp_path / "probe").rglob("*") if p.is_file()) \
        if export_run(trained_run, tmp_path / "probe") else 0
    # Too small for one version: the export that creates the repository fails and takes it away again.
    tiny = small_disk(max(1, one_version // 2 // 2**20))
    assert main(["export", str(trained_run), "--model-repository", str(tiny / "repo")]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert not (tiny / "repo").exists() and not list(tiny.iterdir())
    # Room for one version and a half: version 1 serves, version 2 cannot be written.
    disk = small_disk(one_version * 3 // 2 // 2**20)
    repo = disk / "repo"
    assert main(["export", str(trained_run), "--model-repository", str(repo)]) == 0
    capsys.readouterr()
    with TritonServer(repo) as server, GenreClient(server.http_url) as client:
        answer = client.recommend_versioned(["i1", "i2"], 5)
        before = _files(repo)  # with what the server wrote (its key file, the stubs' bytecode)
        assert main(["export", str(trained_run), "--model-repository", str(repo)]) == 1
        err = capsys.readouterr().err
        assert "No space left on device" in err and str(repo) in err and "Traceback" not in err
        assert _files(repo) == before  # no partial version, no staging folder
        load_latest(server.http_url, control_key=server.control_key)  # nothing new to load
        assert client.recommend_versioned(["i1", "i2"], 5) == answer  # version 1 still serving
