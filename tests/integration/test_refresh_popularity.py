"""refresh-popularity: a new version whose recent-popularity column counts a
newer interaction log; nothing else changes."""

import json

import numpy as np
import pandas as pd

from genre_serve.cli import main
from genre_serve.export.repository import export_run
from genre_serve.formats import repository as fmt
from genre_serve.models.recent_popularity import DAY


def test_refresh_rewrites_only_the_recent_popularity_column(trained_run, tmp_path, capsys):
    repo = tmp_path / "repo"
    export_run(trained_run, repo)
    days = json.loads((repo / "genre_recommend" / "1" / "recommend.json").read_text())["recent_popularity_days"]
    assert days > 0
    ids = fmt.ItemIds.load(repo / "genre_recommend" / "1").tolist()
    at = 1_800_000_000
    inside = at - int(days * DAY) + 10
    log = pd.DataFrame({
        "user_id": ["a", "b", "c", "d", "e", "f", "g"],
        "item_id": [ids[5], ids[5], ids[5], ids[7], ids[7], "not-in-catalog", ids[9]],
        "timestamp": [str(inside), str(at - 1), str(at - 5), str(at - 3), str(at - int(days * DAY) - 1),
                      str(at - 2), "yesterday-ish"],
    })
    log.to_csv(tmp_path / "log.csv", index=False)
    assert main(["refresh-popularity", str(repo), "--interactions", str(tmp_path / "log.csv"),
                 "--at", str(at)]) == 0
    out = capsys.readouterr().out
    assert "4 interaction(s) in the window" in out and "version 2" in out
    assert "1 row(s) with an item outside the catalog, 1 malformed" in out

    old = np.load(repo / "genre_recommend" / "1" / "item_cf.npy")
    new = np.load(repo / "genre_recommend" / "2" / "item_cf.npy")
    expected = np.zeros(len(ids), np.float32)
    expected[5], expected[7] = np.log1p(3), np.log1p(1)  # item 7's second row is older than the window
    np.testing.assert_allclose(new[:, -1], expected, rtol=1e-6)
    np.testing.assert_array_equal(new[:, :-1], old[:, :-1])
    for name in ("item_ct.npy", "user_encoder.onnx", "ranker.onnx", "catalog.json", "item_ids.npy"):
        old_file, new_file = repo / "genre_recommend" / "1" / name, repo / "genre_recommend" / "2" / name
        assert new_file.stat().st_ino == old_file.stat().st_ino  # unchanged: the same file, linked
    np.testing.assert_array_equal(np.load(repo / "genre_recommend_batch" / "2" / "item_cf.npy"), new)

    # Default time: just after the newest row of the log.
    assert main(["refresh-popularity", str(repo), "--interactions", str(tmp_path / "log.csv")]) == 0
    newest = np.load(repo / "genre_recommend" / "3" / "item_cf.npy")
    np.testing.assert_allclose(newest[:, -1], expected, rtol=1e-6)


def test_refresh_refuses_bad_input_in_one_line(trained_run, tmp_path, capsys):
    repo = tmp_path / "repo"
    export_run(trained_run, repo)
    pd.DataFrame({"user_id": ["a"], "item_id": ["nope"], "timestamp": ["5"]}).to_csv(tmp_path / "log.csv", index=False)
    assert main(["refresh-popularity", str(repo), "--interactions", str(tmp_path / "log.csv")]) == 2
    assert "no row with a catalog item" in capsys.readouterr().err
    assert main(["refresh-popularity", str(repo), "--interactions", str(tmp_path / "log.csv"), "--at", "soon"]) == 2
    assert "--at" in capsys.readouterr().err
    assert main(["refresh-popularity", str(repo), "--interactions", str(tmp_path / "missing.csv")]) == 2
    assert "not found" in capsys.readouterr().err
    # Nothing was published by the refused calls.
    assert sorted(p.name for p in (repo / "genre_recommend").iterdir() if p.name.isdigit()) == ["1"]


def test_items_added_without_interactions_are_scored_by_their_content(trained_run, tmp_path):
    """add-items gives new items zero CF rows; retrieval finds them as items
    without CF signal and scores them by content alone (the default), or
    discounted like every item (export --new-items discounted)."""
    import torch

    from genre_serve.export.add_items import add_items
    from genre_serve.formats.run_dir import load_run
    from genre_serve.models.genre import right_align
    from genre_serve.serving.recommend_logic import ItemTables

    run = load_run(trained_run)
    repo = tmp_path / "repo"
    export_run(trained_run, repo)
    pd.DataFrame({"item_id": [f"new{i}" for i in range(20)], "title": run.titles[:20],
                  "text": run.texts[:20]}).to_csv(tmp_path / "new.csv", index=False)
    _, version, _ = add_items(repo, tmp_path / "new.csv")
    folder = repo / "genre_recommend" / str(version)
    item_cf, item_ct = np.load(folder / "item_cf.npy"), np.load(folder / "item_ct.npy")
    new = np.arange(len(run.items), item_cf.shape[0])
    test = run.split.stage("test")
    hist, scen = test.histories, test.scenarios
    with torch.no_grad():
        u_cf, u_ct = run.model.encode_users(right_align(hist[:3], run.model.cfg.max_history),
                                            torch.as_tensor(scen[:3]))
        alpha = run.model.alpha(torch.as_tensor(scen[:3])).numpy()
    u_cf, u_ct = u_cf.numpy(), u_ct.numpy()
    for rule, weight in (("content", 1.0), ("discounted", 1 - alpha[0])):
        tables = ItemTables(item_cf, item_ct, rule)
        if rule == "content":
            assert set(new) <= set(tables.new_items.index)
        found, features = tables.candidates(u_cf[:1], u_ct[:1], alpha[:1], np.asarray(hist[0]), item_cf.shape[0])
        scores = features[0, :, -1]  # the retrieval score, the ranker's last feature
        is_new = np.isin(found, new)
        assert is_new.sum() == new.size
        np.testing.assert_allclose(scores[is_new], weight * (u_ct[0] @ item_ct[found[is_new]].T), rtol=1e-4, atol=1e-5)


def test_refresh_refuses_a_model_without_recent_popularity(tmp_path, capsys):
    from tests_support import train_synthetic

    run = tmp_path / "run"
    train_synthetic(run, num_users=40, num_items=60, seed=3, epochs=1,
                    model={"recent_popularity_days": 0.0, "dim": 8, "hidden": 16, "max_history": 10,
                           "ranker_hidden": [8]})
    repo = tmp_path / "repo"
    export_run(run, repo)
    pd.DataFrame({"user_id": ["a"], "item_id": ["i1"], "timestamp": ["5"]}).to_csv(tmp_path / "log.csv", index=False)
    assert main(["refresh-popularity", str(repo), "--interactions", str(tmp_path / "log.csv")]) == 2
    assert "no recent-popularity column" in capsys.readouterr().err
