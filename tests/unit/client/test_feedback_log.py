"""The feedback log: several processes append at once and nothing is torn;
what is written reads back as training-format interactions."""

import subprocess
import sys
import time

import pandas as pd
import pytest

from genre_serve.client import GenreClient
from genre_serve.client.feedback import FeedbackLog
from genre_serve.data.feedback import read_feedback
from genre_serve.errors import DataError
from genre_serve.formats import feedback as fmt
from genre_serve.serving.launcher import free_port

T0 = 1_700_000_000.0  # 2023-11-14, one UTC day for every event below


WRITER = """
import sys
from genre_serve.client.feedback import FeedbackLog
directory, worker, count, t0 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
log = FeedbackLog(directory)
for i in range(count):
    # Long ids: a torn or interleaved write would show as a malformed row.
    log.log(f"user-{worker}-" + "u" * 200, f"item-{i}-" + "i" * 300, "click", "home", t0 + i, 3)
"""


def test_several_processes_append_to_one_log_and_no_line_is_torn(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w), "300", str(T0)], cwd="/")
             for w in range(4)]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["events-20231114.csv"]
    text = files[0].read_text()
    assert text.count("user_id,item_id") == 1 and text.startswith(",".join(fmt.COLUMNS))
    events, info = read_feedback(tmp_path)
    assert len(events) == 1200 and info.rows == (1200,)
    assert events.attrs.get("malformed_lines", 0) == 0
    assert set(events["event"]) == {"click"} and set(events["version"]) == {"3"}
    for w in range(4):
        mine = events[events["user_id"].str.startswith(f"user-{w}-")]
        assert len(mine) == 300 and mine["item_id"].str.len().min() > 300


def test_a_pipelines_part_files_read_beside_the_sdks(tmp_path):
    FeedbackLog(tmp_path).log("u1", "i1", "watch", None, T0, None)
    pd.DataFrame({"user_id": ["u2"], "item_id": ["i2"], "timestamp": [T0 + 5], "event": ["click"]}).to_parquet(
        tmp_path / "part-0000.parquet")
    (tmp_path / "notes.txt").write_text("not part of the log")
    events, info = read_feedback(tmp_path)
    assert sorted(events["user_id"]) == ["u1", "u2"] and len(info.files) == 2
    assert info.as_dict()["total_rows"] == 2


def test_a_log_without_the_training_columns_is_refused(tmp_path):
    pd.DataFrame({"user": ["u"], "item": ["i"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="missing column"):
        read_feedback(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no .* files"):
        read_feedback(empty)
    with pytest.raises(DataError, match="not found"):
        read_feedback(tmp_path / "missing")


@pytest.mark.parametrize("bad", [
    {"user_id": ""}, {"user_id": "a\nb"}, {"item_id": 7}, {"event": ""}, {"event": "x" * 65},
    {"timestamp": float("nan")}, {"timestamp": -1}, {"timestamp": True}, {"version": 0}, {"scenario": "a\nb"},
])
def test_bad_events_are_refused_before_anything_is_written(tmp_path, bad):
    event = {"user_id": "u", "item_id": "i", "event": "click", "scenario": None, "timestamp": T0, "version": None}
    with pytest.raises(ValueError, match="feedback log"):
        FeedbackLog(tmp_path).log(**(event | bad))
    assert not list(tmp_path.iterdir())


def test_the_client_records_feedback_only_where_it_was_given_a_log(tmp_path):
    url = f"127.0.0.1:{free_port()}"  # nothing is sent: no server needed
    with GenreClient(url, feedback_log=tmp_path / "log") as client:
        before = time.time()
        client.log_feedback("u1", "i9", "watch", scenario="home", version=2)
    events, _ = read_feedback(tmp_path / "log")
    row = events.iloc[0]
    assert (row["user_id"], row["item_id"], row["event"], row["scenario"], row["version"]) == (
        "u1", "i9", "watch", "home", "2")
    assert before - 1 <= float(row["timestamp"]) <= time.time() + 1
    with GenreClient(url) as client, pytest.raises(ValueError, match="no feedback log"):
        client.log_feedback("u1", "i9")
