"""The CLI against a real server: recommend (human and JSON), and clear failures."""

import json

import pytest

from genre_serve.cli import main
from genre_serve.client import GenreClient
from genre_serve.formats.run_dir import load_run
from genre_serve.serving.recommend_logic import ItemTables

pytestmark = pytest.mark.triton


def test_cli_recommend_returns_the_sdk_answer(server, capsys):
    with GenreClient(server.http_url) as client:
        expected = [r.item_id for r in client.recommend(["i1", "i2", "i3"], 5)]
    assert main(["recommend", "--url", server.http_url, "--history", "i1,i2,i3", "--k", "5", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [r["item_id"] for r in got] == expected
    assert main(["recommend", "--url", server.grpc_url, "--protocol", "grpc", "--history", "i1,i2,i3",
                 "--k", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[1] for line in lines] == expected
    assert main(["recommend", "--url", server.http_url, "--history", "i1,i2,i3", "--k", "5", "--json",
                 "--explain"]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert [r["item_id"] for r in explained] == expected and all(r["because"] in ("i1", "i2", "i3")
                                                                  for r in explained)


def test_cli_recommend_reports_an_invalid_request_in_one_line(server, capsys):
    assert main(["recommend", "--url", server.http_url, "--history", "i1", "--k", "0"]) == 2
    err = capsys.readouterr().err
    assert "K" in err and "Traceback" not in err


def test_cli_recommend_against_no_server_fails_clearly(capsys):
    from genre_serve.serving.launcher import free_port

    url = f"127.0.0.1:{free_port()}"
    assert main(["recommend", "--url", url, "--history", "i1", "--timeout-s", "2"]) == 1
    assert "error" in capsys.readouterr().err


def test_cli_serve_refuses_a_taken_port_and_a_missing_repository(repository, server, tmp_path, capsys):
    port = int(server.http_url.rsplit(":", 1)[1])
    assert main(["serve", "--model-repository", str(repository), "--http-port", str(port)]) == 1
    assert "already in use" in capsys.readouterr().err
    assert main(["serve", "--model-repository", str(tmp_path / "nothing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_export_and_add_items_write_new_versions(trained_run, tmp_path, capsys):
    import pandas as pd

    repo = tmp_path / "repo"
    assert main(["export", str(trained_run), "--model-repository", str(repo), "--keep-versions", "2"]) == 0
    # New items' bias: the one the run fitted on validation, unless given.
    fitted = float(load_run(trained_run).model.new_item_bias)
    assert ItemTables.load(repo / "genre_recommend" / "1").new_items.bias == pytest.approx(fitted)
    assert main(["export", str(trained_run), "--model-repository", str(repo), "--keep-versions", "2",
                 "--new-item-bias", "1.25"]) == 0
    assert ItemTables.load(repo / "genre_recommend" / "2").new_items.bias == 1.25
    assert main(["export", str(trained_run), "--model-repository", str(repo), "--new-item-bias", "nan"]) == 2
    assert "finite" in capsys.readouterr().err
    assert main(["export", str(trained_run), "--model-repository", str(repo), "--keep-versions", "2",
                 "--max-k", "50", "--max-queue-size", "0", "--new-items", "discounted"]) == 0
    assert "exported version 3" in capsys.readouterr().out
    assert json.loads((repo / "genre_recommend" / "3" / "recommend.json").read_text())["max_k"] == 50
    assert json.loads((repo / "genre_recommend" / "3" / "retrieve.json").read_text())["new_items"] == "discounted"
    assert ItemTables.load(repo / "genre_recommend" / "3").new_items is None
    assert "dynamic_batching" not in (repo / "genre_recommend" / "config.pbtxt").read_text()
    pd.DataFrame({"item_id": ["x1"], "title": ["A castle quest"]}).to_csv(tmp_path / "new.csv", index=False)
    assert main(["add-items", str(repo), "--items", str(tmp_path / "new.csv"), "--keep-versions", "2"]) == 0
    assert "added 1 item(s) as version 4" in capsys.readouterr().out
    assert sorted(p.name for p in (repo / "genre_recommend").iterdir() if p.name.isdigit()) == ["3", "4"]
    # The derived version keeps the new-item rule and bias.
    retrieve_json = [(repo / "genre_recommend" / v / "retrieve.json").read_text() for v in ("3", "4")]
    assert retrieve_json[0] == retrieve_json[1]
    # The batched entry point reads the same files: hard links, one copy on disk and in memory.
    for name in ("item_cf.npy", "item_ids.npy", "ranker.onnx"):
        assert (repo / "genre_recommend_batch" / "4" / name).stat().st_ino == \
            (repo / "genre_recommend" / "4" / name).stat().st_ino
    # The same ids again: refused, one line, nothing written.
    assert main(["add-items", str(repo), "--items", str(tmp_path / "new.csv")]) == 2
    assert "already in the catalog" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "no-run"), "--model-repository", str(repo)]) == 2


def test_cli_export_resource_flags_reach_config_pbtxt(trained_run, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["export", str(trained_run), "--model-repository", str(repo), "--recommend-instances", "3",
                 "--cpus", "5", "--ort-threads", "2"]) == 0
    recommend = (repo / "genre_recommend" / "config.pbtxt").read_text()
    batch = (repo / "genre_recommend_batch" / "config.pbtxt").read_text()
    assert "count: 3" in recommend and "count: 5" in batch  # as given; the rule: one per CPU for the batch
    assert 'string_value: "2"' in recommend and 'string_value: "auto"' in recommend
    assert not (repo / "genre_retrieve").exists()  # the standalone models only on request
    for flags in (["--ort-threads", "zero"], ["--cpus", "0"], ["--batch-instances", "-1"]):
        assert main(["export", str(trained_run), "--model-repository", str(repo), *flags]) == 2
        err = capsys.readouterr().err
        assert flags[0] in err or "ort_threads" in err, err
        assert "Traceback" not in err
