"""Every user mistake at the CLI is one clear line and a non-zero exit; no
traceback unless --debug."""

import json
import shutil

import pytest

from genre_serve.cli import main
from genre_serve.formats import repository as fmt


def _one_clear_line(capsys, *words):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "wrong.csv").write_text("a,b\n1,2\n")
    (tmp_path / "items.csv").write_text("item_id,title\ni1,x\n")
    return tmp_path


@pytest.mark.parametrize("name, words", [
    ("missing.csv", ["file not found", "missing.csv"]),
    ("empty.csv", ["empty", "empty.csv"]),
    ("wrong.csv", ["missing column", "user_id"]),
])
def test_train_on_a_bad_interactions_file(files, capsys, name, words):
    assert main(["train", "--interactions", str(files / name), "--items", str(files / "items.csv"),
                 "--out", str(files / "run")]) == 2
    _one_clear_line(capsys, *words)
    assert not (files / "run" / "model.pt").exists()


def test_debug_shows_the_traceback(files):
    with pytest.raises(Exception, match="file not found"):
        main(["--debug", "train", "--interactions", str(files / "missing.csv"), "--out", str(files / "run")])


@pytest.fixture
def broken_repo(repository, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    return repo


@pytest.mark.triton
def test_serve_refuses_a_corrupt_onnx_file(broken_repo, capsys):
    (broken_repo / fmt.RECOMMEND / "1" / fmt.RANKER_ONNX).write_bytes(b"\x08\x07garbage, not a protobuf" * 10)
    assert main(["serve", "--model-repository", str(broken_repo)]) == 2
    _one_clear_line(capsys, "genre_recommend", "ranker.onnx", "not a valid ONNX model")


@pytest.mark.triton
def test_add_items_refuses_a_corrupt_item_tower(broken_repo, files, capsys):
    (broken_repo / fmt.ITEM_TOWER / "1" / "model.onnx").write_bytes(b"garbage")
    assert main(["add-items", str(broken_repo), "--items", str(files / "items.csv")]) == 2
    _one_clear_line(capsys, "genre_item_tower", "not a valid ONNX model")
    assert sorted(p.name for p in (broken_repo / fmt.RECOMMEND).iterdir() if p.name.isdigit()) == ["1"]


@pytest.mark.triton
def test_serve_refuses_a_repository_with_a_missing_version(broken_repo, capsys):
    shutil.rmtree(broken_repo / fmt.RECOMMEND_BATCH / "1")
    assert main(["serve", "--model-repository", str(broken_repo)]) == 2
    _one_clear_line(capsys, "genre_recommend_batch/1", "missing")


@pytest.mark.triton
def test_serve_refuses_a_repository_of_the_previous_layout_with_what_to_do(broken_repo, capsys):
    shutil.rmtree(broken_repo / fmt.RECOMMEND_BATCH)  # format 2 had no batched entry point
    assert main(["serve", "--model-repository", str(broken_repo)]) == 2
    _one_clear_line(capsys, "older genre_serve", "export the run again")


@pytest.mark.triton
def test_serve_refuses_a_version_missing_a_file(broken_repo, capsys):
    (broken_repo / fmt.RECOMMEND / "1" / "catalog.json").unlink()
    assert main(["serve", "--model-repository", str(broken_repo)]) == 2
    _one_clear_line(capsys, "catalog.json", "missing")


def test_other_commands_on_missing_inputs(files, capsys):
    assert main(["evaluate", str(files / "no-run")]) == 2
    _one_clear_line(capsys, "run directory not found")
    assert main(["export", str(files / "no-run"), "--model-repository", str(files / "repo")]) == 2
    _one_clear_line(capsys, "run directory not found")
    assert main(["loadtest", "--url", "127.0.0.1:1", "--histories", str(files / "empty.csv"), "--duration-s", "1"]) == 2
    _one_clear_line(capsys, "no history")
    assert main(["add-items", str(files / "no-repo"), "--items", str(files / "items.csv")]) == 2
    _one_clear_line(capsys)


@pytest.mark.triton
def test_serve_refuses_a_repository_of_another_format_in_one_line(broken_repo, capsys):
    path = broken_repo / fmt.RECOMMEND / "1" / fmt.RETRIEVE_JSON
    doc = json.loads(path.read_text())
    doc["format_version"] = fmt.FORMAT_VERSION + 1
    path.write_text(json.dumps(doc))
    assert main(["serve", "--model-repository", str(broken_repo)]) == 2
    _one_clear_line(capsys, "retrieve.json", f"format {fmt.FORMAT_VERSION + 1}", "newer genre_serve")
    del doc["format_version"]  # format 1: exported before the field existed
    path.write_text(json.dumps(doc))
    assert main(["serve", "--model-repository", str(broken_repo)]) == 2
    _one_clear_line(capsys, "retrieve.json", "format 1", "export the run again")
