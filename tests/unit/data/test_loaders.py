"""Loading and cleaning: every dropped row is counted, bad files fail clearly."""


import pandas as pd
import pytest

from genre_serve.data import DataConfig, build_dataset, load_builtin, load_csv_dataset, load_movielens
from genre_serve.errors import DataError


def write(path, text):
    path.write_text(text)
    return path


def test_csv_dataset_maps_string_ids_to_dense_indices(tmp_path):
    inter = write(tmp_path / "i.csv", "user_id,item_id,timestamp\nalice,x,3\nalice,y,1\nbob,x,2\nbob,z,5\n")
    items = write(tmp_path / "items.csv", "item_id,title,tags\nx,Ex,a|b\ny,Why,\nz,Zed,c\nw,Never seen,\n")
    ds = load_csv_dataset(inter, items, DataConfig(min_user_interactions=1))
    assert ds.items.ids == ["x", "y", "z", "w"]  # cold item w stays in the catalog
    assert ds.users.ids == ["alice", "bob"]
    seqs, _, ts = ds.sequences()
    assert [ds.items.external(s) for s in seqs] == [["y", "x"], ["x", "z"]]  # time order
    assert ds.item_texts[0] == "Ex. Tags: a, b"


def test_malformed_rows_are_dropped_and_counted(tmp_path):
    inter = write(
        tmp_path / "i.csv",
        "user_id,item_id,timestamp,rating\n"
        "u1,a,1,4\n"
        ",a,2,4\n"            # missing user
        "u1,,3,4\n"           # missing item
        "u1,b,yesterday?,4\n"  # bad timestamp
        "u1,c,4,lots\n"       # bad rating
        "u1,a,5,4\n"          # duplicate user-item
        "u1,d,6,2\n"
        "u1,e,7,5,extra\n",   # wrong number of fields
    )
    ds = load_csv_dataset(inter, None, DataConfig(min_user_interactions=1))
    dropped = ds.report.dropped
    assert dropped == {
        "malformed line": 1,
        "missing user_id": 1,
        "missing item_id": 1,
        "malformed timestamp": 1,
        "malformed rating": 1,
        "duplicate user-item pair": 1,
    }
    assert ds.report.rows_kept == 2 and len(ds.interactions) == 2
    assert ds.report.rows_read == 8


def test_rating_threshold_and_minimum_counts_filter_iteratively():
    raw = pd.DataFrame(
        {
            "user_id": ["u1"] * 3 + ["u2"] * 3,
            "item_id": ["a", "b", "c", "a", "b", "d"],
            "timestamp": ["1", "2", "3", "1", "2", "3"],
            "rating": ["5", "5", "1", "5", "5", "5"],
        }
    )
    ds = build_dataset(raw, None, DataConfig(min_rating=3, min_user_interactions=2, min_item_interactions=2))
    assert sorted(ds.items.external(ds.interactions["item"])) == ["a", "a", "b", "b"]
    assert ds.report.dropped["rating below 3"] == 1


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "file not found"),
        ("", "empty"),
        ("user,item,when\n1,2,3\n", "missing column"),
    ],
)
def test_bad_interaction_files_raise_a_clear_data_error(tmp_path, content, message):
    path = tmp_path / "i.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_csv_dataset(path)


def test_dates_are_accepted_as_timestamps(tmp_path):
    inter = write(tmp_path / "i.csv", "user_id,item_id,timestamp\nu,a,2024-01-02\nu,b,2024-01-01T10:00:00\n")
    ds = load_csv_dataset(inter, None, DataConfig(min_user_interactions=1))
    seqs, _, _ = ds.sequences()
    assert ds.items.external(seqs[0]) == ["b", "a"]


def test_parquet_input_is_read(tmp_path):
    pd.DataFrame({"user_id": ["u"] * 5, "item_id": list("abcde"), "timestamp": range(5)}).to_parquet(
        tmp_path / "i.parquet"
    )
    ds = load_csv_dataset(tmp_path / "i.parquet")
    assert ds.num_items == 5


def test_movielens_100k_layout_is_read(tmp_path):
    (tmp_path / "u.data").write_text("".join(f"1\t{i}\t4\t{100 + i}\n" for i in range(1, 7)))
    (tmp_path / "u.genre").write_text("unknown|0\nAction|1\n")
    (tmp_path / "u.item").write_text("".join(f"{i}|Film {i}|01-Jan-1995||url|0|1\n" for i in range(1, 7)))
    ds = load_movielens(tmp_path)
    assert ds.num_items == 6 and ds.item_texts[0] == "Film 1. Tags: Action"


def test_builtin_movielens_small_is_vendored_with_its_licence():
    ds = load_builtin("movielens-small")
    assert ds.num_users == 610 and ds.num_items == 9742
    assert len(ds.interactions) == 100836
    assert "Toy Story (1995)" in ds.item_texts[0] and "Animation" in ds.item_texts[0]
    from genre_serve.data.loaders import BUILTIN_DATASETS

    readme = (BUILTIN_DATASETS["movielens-small"] / "README.txt").read_text()
    assert "GroupLens" in readme and "license" in readme.lower()
