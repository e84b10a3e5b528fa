"""`genre-serve update` and `rollback` (issue 16): the gate, the log's bad
inputs, and a gated rollout and a rollback against a real tritonserver under
load."""

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genre_serve.client import GenreClient
from genre_serve.config import TrainConfig
from genre_serve.data import build_dataset, synthetic
from genre_serve.errors import DataError, ExportError, RunDirError
from genre_serve.export.repository import export_run, rollback
from genre_serve.formats.run_dir import load_run
from genre_serve.formats.update_report import REPORT_FILE, UpdateSettings
from genre_serve.loadtest.traffic import BackgroundTraffic
from genre_serve.serving.launcher import TritonServer
from genre_serve.serving.pipeline import InProcessRecommender
from genre_serve.train.trainer import train
from genre_serve.train.update import update
from tests_support import SMALL_TRAIN_CONFIG

FAST = UpdateSettings(bootstrap_reps=200)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A run trained on the first 70% of the synthetic interactions (by time), and the rest as a feedback log."""
    root = tmp_path_factory.mktemp("update")
    raw, items = synthetic.generate(num_users=200, num_items=150, seed=3)
    raw = raw.assign(timestamp=pd.to_numeric(raw["timestamp"])).sort_values("timestamp", kind="stable")
    cut = int(len(raw) * 0.7)
    train(build_dataset(raw.iloc[:cut], items, name="synthetic"), TrainConfig.from_dict(SMALL_TRAIN_CONFIG),
          root / "run", progress=False)
    log = root / "log"
    log.mkdir()
    raw.iloc[cut:].assign(event="click", version="").to_csv(log / "events-part-0.csv", index=False)
    return root / "run", log, raw.iloc[cut:]


def _cli(capsys, *args) -> tuple[int, str]:
    """The command in this process (its imports already done): exit status, what it printed."""
    from genre_serve.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().out


def test_an_update_records_its_parent_the_log_and_what_changed_and_can_be_updated_again(history, tmp_path):
    run, log, events = history
    gate_only = dataclasses.replace(FAST, refit_on_slice=False)  # the candidate the gate scored is the one kept
    result = update(run, log, tmp_path / "cand", settings=gate_only, progress=False)
    report = json.loads((tmp_path / "cand" / REPORT_FILE).read_text())
    assert report["parent"] == str(run.resolve())
    assert report["log"]["files"]["files"] == [str(log / "events-part-0.csv")]
    assert report["log"]["rows_read"] == len(events) and report["log"]["events"] == len(events)
    lo, hi = report["log"]["time_range"]
    assert (lo, hi) == (events["timestamp"].min(), events["timestamp"].max())
    gate = report["gate"]
    # The newest 20% of the log: thousands of events in a real log, hundreds here; every one scored.
    assert gate["events"] == round(0.2 * len(events)) and gate["events"] + report["changes"]["trained_events"] == \
        len(events)
    assert gate["parent_interval"][0] <= gate["parent_ndcg"] <= gate["parent_interval"][1]
    assert gate["verdict"] == ("promoted" if result.promoted else "rejected")
    cand = load_run(tmp_path / "cand")
    assert cand.meta["update"]["parent"] == str(run.resolve())
    assert len(cand.meta["users"]) == len(load_run(run).meta["users"]) + report["log"]["new_users"]
    # The candidate's data is the parent's plus the trained events, not the gate's.
    assert sum(map(len, cand.split.train_items)) == sum(len(u) for u in [
        *load_run(run).split.train_items]) + _held_out(load_run(run)) + report["changes"]["trained_events"]
    # An update's run is a run: it updates again. Given the same log, what is new to it is the
    # previous gate's slice (never trained on); the rest is already in its data.
    again = update(tmp_path / "cand", log, tmp_path / "again", settings=gate_only, progress=False).report["log"]
    assert again["events"] == gate["events"]
    assert again["dropped"] == {"user-item pair already in the run's data": len(events) - gate["events"]}


def _held_out(run) -> int:
    s = run.split
    return int((s.valid_item >= 0).sum() + (s.test_item >= 0).sum() + sum(map(len, s.cold_targets)))


def test_the_gate_rejects_a_candidate_trained_on_shuffled_targets_and_it_is_never_exported(history, tmp_path):
    run, log, _ = history
    # Shuffled targets, trained on hard enough (4 epochs at the run's full rate, the ranker too) to do harm.
    harder = UpdateSettings(bootstrap_reps=200, epochs=4, lr_scale=1.0)
    result = update(run, log, tmp_path / "worse", settings=harder, progress=False, make_worse=True)
    assert not result.promoted
    assert result.gate.candidate_ndcg < result.gate.parent_ndcg * 0.98
    assert json.loads((tmp_path / "worse" / REPORT_FILE).read_text())["gate"]["verdict"] == "rejected"
    assert load_run(tmp_path / "worse").gate_rejection  # kept on disk, marked
    with pytest.raises(ExportError, match="gate rejected"):
        export_run(tmp_path / "worse", tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_the_sdk_feedback_log_is_what_update_reads_and_late_events_are_counted(history, tmp_path):
    from genre_serve.client.feedback import FeedbackLog

    run, _, events = history
    newest = int(np.concatenate(load_run(run).split.train_times).max())
    rows = events.iloc[:300]
    feedback = FeedbackLog(tmp_path / "feedback")
    feedback.log_many((r.user_id, r.item_id, "click", r.scenario, int(r.timestamp), 1)
                      for r in rows.iloc[:-1].itertuples())
    last = rows.iloc[-1]
    feedback.log(last.user_id, last.item_id, "click", last.scenario, timestamp=newest - 3600, version=1)  # late
    report = update(run, tmp_path / "feedback", tmp_path / "cand", settings=FAST, progress=False).report["log"]
    assert report["rows_read"] == len(rows) and report["events"] == len(rows) and report["late_events"] >= 1
    assert len(report["files"]["files"]) >= 1 and report["dropped"] == {}


def test_bad_logs_get_clear_errors_and_malformed_rows_are_counted(history, tmp_path):
    run, log, events = history
    rows = events.iloc[:400]
    # Malformed rows: a line with too many fields, a bad timestamp, an empty item id; an ignored event.
    text = rows.assign(event="click", version="").to_csv(index=False).splitlines()
    # (columns: user_id, item_id, timestamp, scenario, event, version)
    text += ["u1,i1,123,home,click,,extra,fields", "u1,i2,not-a-time,home,click,", "u1,,1700000000,home,click,",
             f"u1,i3,{rows['timestamp'].max()},home,impression,"]
    (tmp_path / "bad.csv").write_text("\n".join(text) + "\n")
    update(run, tmp_path / "bad.csv", tmp_path / "c1", settings=FAST, progress=False)
    report = json.loads((tmp_path / "c1" / REPORT_FILE).read_text())["log"]
    assert report["dropped"]["malformed line"] == 1
    assert report["dropped"]["malformed timestamp"] == 1 and report["dropped"]["missing item_id"] == 1
    assert report["dropped"]["event 'impression' (not a positive)"] == 1
    assert report["rows_read"] == len(rows) + 4

    unknown = rows.iloc[:50].assign(item_id="brand-new")
    unknown.to_csv(tmp_path / "unknown.csv", index=False)
    with pytest.raises(DataError, match="not in the run's catalog.*--items"):
        update(run, tmp_path / "unknown.csv", tmp_path / "c2", settings=FAST, progress=False)

    old = events.iloc[:50].assign(timestamp=1)
    old.to_csv(tmp_path / "old.csv", index=False)
    with pytest.raises(DataError, match="older than the run's newest"):
        update(run, tmp_path / "old.csv", tmp_path / "c3", settings=FAST, progress=False)

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "events-20260101.csv").write_text("user_id,item_id,timestamp,event,scenario,version\n")
    with pytest.raises(DataError, match="empty"):
        update(run, tmp_path / "empty", tmp_path / "c4", settings=FAST, progress=False)
    for name in ("c2", "c3", "c4"):
        assert not (tmp_path / name).exists()  # nothing half-written

    # An --out holding an earlier run is not overwritten.
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c1").iterdir()}
    with pytest.raises(DataError, match="not empty"):
        update(run, tmp_path / "bad.csv", tmp_path / "c1", settings=FAST, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c1").iterdir()} == before


def _log_with_new_items(parent, events, where: Path) -> tuple[Path, Path]:
    """The log plus two new items: one the log's training part names often, one no event names."""
    users = events["user_id"].drop_duplicates().iloc[:40]
    early = events["timestamp"].min()
    fresh = pd.DataFrame({"user_id": users, "item_id": "new-dragon", "timestamp": early + 1, "scenario": "home"})
    pd.concat([events, fresh]).to_csv(where / "log.csv", index=False)
    pd.DataFrame({"item_id": ["new-dragon", "new-unseen", parent.items.ids[0]],
                  "title": ["The dragon and the wizard", "The galaxy", "already known"],
                  "text": ["A quest for a sword.", "An astronaut.", ""]}).to_csv(where / "items.csv", index=False)
    return where / "log.csv", where / "items.csv"


def test_new_items_join_with_their_text_and_train_their_cf_rows(history, tmp_path):
    run, log, events = history
    parent = load_run(run)
    log, items = _log_with_new_items(parent, events, tmp_path)
    update(run, log, tmp_path / "cand", items=items, settings=FAST, progress=False)
    cand = load_run(tmp_path / "cand")
    assert cand.items.ids[:len(parent.items)] == parent.items.ids
    assert cand.items.ids[len(parent.items):] == ["new-dragon", "new-unseen"]
    cf = cand.model.items.cf.weight.detach().numpy()
    dragon, unseen = cand.items.index("new-dragon") + 1, cand.items.index("new-unseen") + 1
    assert np.abs(cf[dragon]).sum() > 0 and np.abs(cf[unseen]).sum() == 0  # no event, no CF signal
    text = cand.model.items.text.numpy()
    assert np.abs(text[unseen]).sum() > 0  # found by its content


def test_replaying_everyone_and_refining_the_cf_rows_by_als_reach_the_whole_catalog(history, tmp_path):
    run, log, events = history
    parent = load_run(run)
    narrow = update(run, log, tmp_path / "narrow", settings=UpdateSettings(bootstrap_reps=200, replay=0.0),
                    progress=False).report["changes"]
    wide = update(run, log, tmp_path / "wide", settings=UpdateSettings(bootstrap_reps=200, replay_all=True,
                                                                       als_iterations=3, max_regression=0.9),
                  progress=False)
    changes = wide.report["changes"]
    cand = load_run(tmp_path / "wide")
    trainable = sum(len(t) >= 2 for t in cand.split.train_items)
    refit = wide.report["refit_on_slice"]  # promoted, it was fine-tuned again with the slice in (the default)
    assert narrow["replayed_users"] == 0 and refit is not None
    assert refit["updated_users"] + refit["replayed_users"] == trainable > narrow["updated_users"]
    assert changes["updated_users"] + changes["replayed_users"] < trainable  # the gate's slice was held out first
    assert wide.report["settings"]["als_iterations"] == 3 and wide.report["settings"]["replay_all"]
    # ALS moved every CF row with interactions, in the parent's basis (near it, not a new rotation).
    old = parent.model.items.cf.weight.detach().numpy()[1:]
    new = cand.model.items.cf.weight.detach().numpy()[1 : 1 + len(old)]
    seen = cand.split.train_counts()[: len(old)] > 0
    moved = np.abs(new - old).sum(1) > 1e-6
    assert moved[seen].all() and not moved[~seen & (np.abs(old).sum(1) == 0)].any()
    assert np.linalg.norm(new[seen] - old[seen]) < 0.5 * np.linalg.norm(old[seen])
    # Promoted and refit, its data is the whole log.
    assert wide.promoted
    assert sum(map(len, cand.split.train_items)) == sum(map(len, parent.split.train_items)) + \
        _held_out(parent) + wide.report["log"]["events"]


def test_the_candidate_is_the_parent_moved_part_of_the_way_to_the_fine_tuned_weights(history, tmp_path):
    """--interpolation: the gated (and served) candidate is parent + beta x
    (fine-tuned - parent), every parameter, except the CF rows and biases of
    items the parent had no CF row for (kept fine-tuned, not shrunk towards
    zero); the served recent-popularity snapshot is the candidate's own."""
    run, _, events = history
    log, items = _log_with_new_items(load_run(run), events, tmp_path)
    settings = dataclasses.replace(FAST, refit_on_slice=False, max_regression=0.9)
    full = update(run, log, tmp_path / "full", items=items, settings=dataclasses.replace(settings, interpolation=1.0),
                  progress=False)
    half = update(run, log, tmp_path / "half", items=items, settings=settings, progress=False)
    assert half.report["settings"]["interpolation"] == 0.5 == UpdateSettings().interpolation
    parent = dict(load_run(run).model.named_parameters())
    fine_tuned, full_model = dict(load_run(full.out).model.named_parameters()), load_run(full.out).model
    half_model = load_run(half.out).model
    moved = 0
    grown = half_model.items.cf.weight.shape[0]  # the parent's tables grown by the log's new items (zero rows)
    rows = parent["items.cf.weight"].shape[0]
    fresh = np.ones(grown, bool)
    fresh[:rows] = ~parent["items.cf.weight"].detach().numpy().any(1)
    for name, value in half_model.named_parameters():
        start, end = parent[name].detach().numpy(), fine_tuned[name].detach().numpy()
        if name.startswith("items.") and start.shape[0] == rows < grown:
            start = np.concatenate([start, np.zeros((grown - start.shape[0], *start.shape[1:]), start.dtype)])
        expected = start + 0.5 * (end - start)
        if name in ("items.cf.weight", "items.bias.weight"):
            expected[fresh] = end[fresh]
        np.testing.assert_allclose(value.detach().numpy(), expected, rtol=1e-3, atol=1e-4, err_msg=name)
        moved += not np.array_equal(start, end)
    assert moved >= 3  # the encoder, the CF rows, the content tower moved
    # Items the parent had no CF row for and the log gave one: kept whole, not halved.
    gained = fresh & fine_tuned["items.cf.weight"].detach().numpy().any(1)
    assert gained.any()
    np.testing.assert_allclose(half_model.items.cf.weight.detach().numpy()[gained],
                               fine_tuned["items.cf.weight"].detach().numpy()[gained], rtol=1e-6)
    np.testing.assert_array_equal(half_model.items.recent_popularity.numpy(),
                                  full_model.items.recent_popularity.numpy())
    assert half.gate.candidate_ndcg != full.gate.candidate_ndcg  # the gate scored what is kept


def test_a_run_of_an_older_format_updates_and_one_without_timestamps_is_refused(history, tmp_path):
    run, log, _ = history
    old = tmp_path / "old"
    shutil.copytree(run, old)
    meta = json.loads((old / "meta.json").read_text())
    meta["format_version"] = 2
    for key in ("served_weights", "deployment_fit"):
        meta.pop(key, None)
    (old / "selection.pt").unlink(missing_ok=True)
    (old / "meta.json").write_text(json.dumps(meta))
    update(old, log, tmp_path / "cand", settings=FAST, progress=False)
    assert load_run(tmp_path / "cand").meta["update"]["parent"] == str(old.resolve())

    z = dict(np.load(old / "split.npz"))
    for key in ("train_times", "valid_time", "test_time", "cold_times"):
        z.pop(key)
    np.savez(old / "split.npz", **z)
    with pytest.raises(RunDirError, match="no timestamps"):
        update(old, log, tmp_path / "cand2", settings=FAST, progress=False)


@pytest.mark.triton
def test_a_gated_rollout_and_a_rollback_under_load_fail_no_request(history, tmp_path, capsys):
    run, log, events = history
    repo = tmp_path / "repo"
    export_run(run, repo)
    histories = [list(events["item_id"].iloc[i : i + 8]) for i in range(0, 400, 10)]
    with TritonServer(repo) as server, GenreClient(server.http_url, timeout_s=30) as client:
        before = client.recommend(histories[0], 10)
        with BackgroundTraffic(server.http_url, histories, k=10, concurrency=3, timeout_s=30) as traffic:
            traffic.wait_for_answers(20)
            # The gate is tested above; here a wide --max-regression lets this synthetic candidate through.
            code, out = _cli(capsys, "update", run, "--interactions", log, "--out", tmp_path / "cand",
                             "--max-regression", "0.9", "--model-repository", repo, "--url", server.http_url, "--quiet")
            assert code == 0, out
            switched = time.monotonic()
            traffic.wait_for_answers(20, since=switched)
        summary = traffic.summary()
        assert summary["errors"] == {} and summary["requests"] == summary["ok"], summary
        report = json.loads((tmp_path / "cand" / REPORT_FILE).read_text())
        assert report["rollout"]["version"] == 2 and "now serves version 2" in out
        served, version = client.recommend_versioned(histories[0], 10)
        assert version == 2
        ids, scores = InProcessRecommender(tmp_path / "cand").recommend(histories[0], 10)
        assert [r.item_id for r in served] == list(ids)
        np.testing.assert_allclose([r.score for r in served], scores, rtol=1e-4, atol=1e-4)

        with BackgroundTraffic(server.http_url, histories, k=10, concurrency=3, timeout_s=30) as traffic:
            traffic.wait_for_answers(20)
            code, out = _cli(capsys, "rollback", repo, "--to", "1", "--url", server.http_url)
            assert code == 0 and "version 1 is back as version 3" in out, out
            traffic.wait_for_answers(20, since=time.monotonic())
        summary = traffic.summary()
        assert summary["errors"] == {} and summary["requests"] == summary["ok"], summary
        after, version = client.recommend_versioned(histories[0], 10)
        assert version == 3 and [r.item_id for r in after] == [r.item_id for r in before]
    with pytest.raises(ExportError, match="not on disk"):
        rollback(repo, 99)
    code, out = _cli(capsys, "update", run, "--interactions", log, "--out", tmp_path / "dry", "--max-regression",
                     "0.9", "--model-repository", repo, "--dry-run", "--quiet", "--interpolation", "0.75",
                     "--distill", "0.5")
    assert code == 0 and "--dry-run" in out, out
    settings = json.loads((tmp_path / "dry" / REPORT_FILE).read_text())["settings"]
    assert settings["interpolation"] == 0.75 and settings["distill"] == 0.5 and settings["distill_users"] == "replayed"
    for bad in (["--interpolation", "0"], ["--distill", "-1"]):
        code, _ = _cli(capsys, "update", run, "--interactions", log, "--out", tmp_path / "bad", *bad)
        assert code == 2 and not (tmp_path / "bad").exists()
    assert max(int(p.name) for p in (repo / "genre_recommend").iterdir() if p.name.isdigit()) == 3
