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
