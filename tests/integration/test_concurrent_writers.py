"""Two commands writing one repository at once: both complete, one version each."""

import threading

import pandas as pd

from genre_serve.export.add_items import add_items
from genre_serve.export.repository import export_run
from genre_serve.formats import repository as fmt


def test_simultaneous_add_items_each_write_one_complete_version(trained_run, tmp_path):
    repo = tmp_path / "repo"
    export_run(trained_run, repo)
    results, errors = {}, []

    def add(name: str) -> None:
        items = tmp_path / f"{name}.csv"
        pd.DataFrame({"item_id": [f"{name}-1", f"{name}-2"], "title": [f"{name} one", f"{name} two"]}).to_csv(
            items, index=False)
        try:
            results[name] = add_items(repo, items)[1]
        except Exception as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    threads = [threading.Thread(target=add, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results.values()) == [2, 3]  # never the same number, none skipped
    assert fmt.check_repository(repo) == [1, 2, 3]
    ids = fmt.ItemIds.load(repo / fmt.RECOMMEND / "3").tolist()
    assert {"a-1", "a-2", "b-1", "b-2"} <= set(ids)  # the second writer derived from the first's version
