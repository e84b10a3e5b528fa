"""The repository format's artifacts: each read back as written, stamped with
the format version, and published whole or not at all."""

import json

import numpy as np
import pytest

from genre_serve.errors import ExportError
from genre_serve.formats import repository as fmt


def catalog(n: int = 4) -> fmt.Catalog:
    return fmt.Catalog.of([f"i{j}" for j in range(n)], np.arange(n, dtype=np.float32),
                          titles=[f"t{j}" for j in range(n)], scenarios=["default", "home"], max_history=5,
                          depth=3, max_k=10, cf_dim=4, ct_dim=3, recent_popularity_days=14.0, dataset="x")


def test_a_catalog_reads_back_as_written_with_its_lookup(tmp_path):
    catalog().save(tmp_path)
    back, want = fmt.Catalog.load(tmp_path, titles=True), catalog()
    for name in ("titles", "scenarios", "max_history", "depth", "max_k", "cf_dim", "ct_dim",
                 "recent_popularity_days", "dataset"):
        assert getattr(back, name) == getattr(want, name), name
    assert back.ids.tolist() == ["i0", "i1", "i2", "i3"]
    assert isinstance(back.ids.array, np.memmap) and isinstance(back.popularity, np.memmap)  # shared, not copied
    assert [back.ids.index_of(i) for i in ("i0", "i3", "i9")] == [0, 3, None]
    assert fmt.Catalog.load(tmp_path).titles is None  # serving never reads the titles
    np.testing.assert_array_equal(back.popularity, want.popularity)
    for name in (fmt.CATALOG_JSON, fmt.RECOMMEND_JSON):
        assert json.loads((tmp_path / name).read_text())["format_version"] == fmt.FORMAT_VERSION


def test_item_ids_are_found_by_binary_search_exactly():
    rng = np.random.default_rng(0)
    ids = [f"{rng.integers(0, 10**9)}x{j}" for j in range(500)] + ["é", "ab", "abc"]
    table = fmt.ItemIds.of(ids)
    queries = [ids[7], "nope", ids[3], "", "ab\x00", "abcd", "a", "é", "a\x00b", "x" * 10_000, ids[7]]
    want = [7, 3, ids.index("é"), 7]  # "ab\x00" is not "ab", nor "a" a prefix match
    np.testing.assert_array_equal(table.lookup([q.encode() for q in queries]), want)
    assert table.external(np.array([0, 3])) == [ids[0], ids[3]]
    for bad in ([""], ["a\x00"], ["a\x00b"], ["x", "x"]):
        with pytest.raises(ExportError):
            fmt.ItemIds.of(bad)


def test_new_items_join_the_catalog_without_popularity():
    grown = catalog().with_items(["n0"], ["new"])
    assert grown.ids.tolist()[-1] == "n0" and grown.ids.index_of("n0") == 4 and grown.popularity[-1] == 0
    assert grown.popular_order[0] == 3


def test_the_popular_order_is_the_top_max_k_with_ties_in_catalog_order():
    pop = np.array([1, 5, 5, 0, 5, 2], np.float32)
    top = fmt.Catalog.of([f"i{j}" for j in range(6)], pop, titles=[""] * 6, scenarios=["d"], max_history=2,
                         depth=2, max_k=4, cf_dim=1, ct_dim=1, recent_popularity_days=0.0).popular_order
    np.testing.assert_array_equal(top, [1, 2, 4, 5])


def test_item_tables_read_back_as_written(tmp_path):
    rng = np.random.default_rng(0)
    files = fmt.ItemTableFiles(rng.standard_normal((4, 5)).astype(np.float32),
                               rng.standard_normal((4, 3)).astype(np.float32), 7, "discounted", 0.25)
    files.save(tmp_path)
    back = fmt.ItemTableFiles.load(tmp_path)
    np.testing.assert_array_equal(back.item_cf, files.item_cf)
    np.testing.assert_array_equal(back.item_ct, files.item_ct)
    assert (back.max_k, back.new_items, back.new_item_bias) == (7, "discounted", 0.25)
    with pytest.raises(ValueError, match="new_items"):
        fmt.ItemTableFiles(files.item_cf, files.item_ct, 7, "sometimes")


def test_an_artifact_of_another_format_is_refused_with_what_to_do(tmp_path):
    catalog().save(tmp_path)
    path = tmp_path / fmt.RECOMMEND_JSON
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in doc.items() if k != "format_version"}))
    with pytest.raises(ExportError, match="format 1, .*export the run again"):
        fmt.Catalog.load(tmp_path)
    path.write_text(json.dumps(doc | {"format_version": fmt.FORMAT_VERSION + 1}))
    with pytest.raises(ExportError, match="newer genre_serve"):
        fmt.Catalog.load(tmp_path)
    path.write_text("[1, 2]")
    with pytest.raises(ExportError, match="JSON object"):
        fmt.Catalog.load(tmp_path)
    path.write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        fmt.Catalog.load(tmp_path)


def test_a_staged_version_is_published_whole_or_not_at_all(tmp_path):
    with fmt.staged_version(tmp_path, 1, models=fmt.MODELS) as staging:
        assert set(staging) == set(fmt.MODELS)
        for folder in staging.values():
            (folder / "f").write_text("x")
    assert all((tmp_path / m / "1" / "f").is_file() for m in fmt.MODELS)
    with pytest.raises(RuntimeError), fmt.staged_version(tmp_path, 2, copy_from=1, models=fmt.MODELS) as staging:
        assert (staging[fmt.RANKER] / "f").is_file()
        raise RuntimeError("a failure mid-write")
    assert [fmt.versions_of(tmp_path, m) for m in fmt.MODELS] == [[1]] * len(fmt.MODELS)
    assert not [p for m in fmt.MODELS for p in (tmp_path / m).iterdir() if p.name.startswith(".")]
    assert fmt.next_version(tmp_path) == 2 and fmt.latest_version(tmp_path) == 1


def test_the_entry_points_import_the_stub_modules():
    for model in fmt.PYTHON_MODELS:
        assert f"from {fmt.STUB_MODULES[model]} import TritonPythonModel" in fmt.shim_text(model)


def test_a_derived_version_shares_unchanged_files_and_never_writes_the_old_ones(tmp_path):
    rng = np.random.default_rng(0)
    tables = fmt.ItemTableFiles(rng.standard_normal((4, 5)).astype(np.float32),
                                rng.standard_normal((4, 3)).astype(np.float32), 7)
    with fmt.staged_version(tmp_path, 1, models=fmt.DEFAULT_MODELS) as staging:
        tables.save(staging[fmt.RECOMMEND])
    old = tmp_path / fmt.RECOMMEND / "1"
    with fmt.staged_version(tmp_path, 2, copy_from=1, models=fmt.DEFAULT_MODELS) as staging:
        new = staging[fmt.RECOMMEND]
        assert (new / fmt.ITEM_CT_NPY).stat().st_ino == (old / fmt.ITEM_CT_NPY).stat().st_ino  # a hard link
        tables.with_tables(tables.item_cf * 0, tables.item_ct).save(new)  # replaced, not written in place
    np.testing.assert_array_equal(np.load(old / fmt.ITEM_CF_NPY), tables.item_cf)
    np.testing.assert_array_equal(np.load(tmp_path / fmt.RECOMMEND / "2" / fmt.ITEM_CF_NPY), tables.item_cf * 0)
