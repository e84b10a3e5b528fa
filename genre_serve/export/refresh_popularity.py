"""`genre-serve refresh-popularity`: a new version whose recent-popularity
column counts the interactions of a newer log, without retraining.

The exported CF item table carries, as its last column, log1p of each item's
interactions in the `recent_popularity_days` before the newest training
interaction (see models/recent_popularity.py). That snapshot ages; this
recomputes it from an interaction log (the same CSV/Parquet layout as
training: user_id,item_id,timestamp) at a given time, by default just after
the log's newest interaction. Only that column changes: the user encoder never
reads it, and every other file of the version is linked as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genre_serve.data.dataset import parse_timestamps
from genre_serve.data.loaders import read_table
from genre_serve.errors import DataError, ExportError
from genre_serve.export.repository import derive_version
from genre_serve.formats import repository as fmt
from genre_serve.models.recent_popularity import RecentPopularity


@dataclass
class RefreshResult:
    repository: Path
    version: int
    at: int  # the request time the snapshot is for (seconds since the epoch)
    counted: int  # interactions inside the window with an item of the catalog
    unknown_items: int  # rows whose item is not in the catalog (skipped)
    malformed: int  # rows without an item id or a readable timestamp (skipped)


def read_log(path: str | Path, catalog_ids: fmt.ItemIds) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(catalog indices, timestamps, unknown-item rows, malformed rows) of an interaction log."""
    df = read_table(path, "interactions")
    for col in ("item_id", "timestamp"):
        if col not in df.columns:
            raise DataError(f"interactions: missing column {col}; found {', '.join(df.columns)}")
    times = parse_timestamps(df["timestamp"])
    ids = df["item_id"].fillna("").astype(str).str.strip()
    ok = times.notna() & (ids != "")
    index = {item: i for i, item in enumerate(catalog_ids.tolist())}  # an offline command: a dict is fine
    items = ids[ok].map(index)
    known = items.notna()
    return (items[known].to_numpy(np.int64), times[ok][known].to_numpy(np.int64),
            int((~known).sum()), int((~ok).sum()))


def refresh_popularity(target: str | Path, interactions: str | Path, at: int | None = None,
                       keep_versions: int = fmt.DEFAULT_KEEP_VERSIONS,
                       lock_timeout_s: float = fmt.DEFAULT_LOCK_TIMEOUT_S) -> RefreshResult:
    repo = fmt.resolve_repository(target)
    result: dict = {}

    def edit(src: dict[str, Path], staging: dict[str, Path]) -> None:
        catalog = fmt.Catalog.load(src[fmt.RECOMMEND])
        if catalog.recent_popularity_days <= 0:
            raise ExportError(f"{repo}: this model has no recent-popularity column (trained with "
                              "recent_popularity_days = 0)")
        items, times, unknown, malformed = read_log(interactions, catalog.ids)
        if items.size == 0:
            raise DataError("interactions: no row with a catalog item and a readable timestamp")
        recent_counter = RecentPopularity(items, times, len(catalog.ids), catalog.recent_popularity_days)
        when = int(at) if at is not None else int(recent_counter.times[-1]) + 1
        tables = fmt.ItemTableFiles.load(src[fmt.RECOMMEND])
        item_cf = np.array(tables.item_cf)
        item_cf[:, -1] = recent_counter.at(np.array([when]))[0]
        tables.with_tables(item_cf, tables.item_ct).save(staging[fmt.RECOMMEND], content_table=False)
        (lo,), (hi,) = recent_counter.window_bounds(np.array([when]))
        result.update(at=when, counted=int(hi - lo), unknown_items=unknown, malformed=malformed)

    version = derive_version(repo, edit, keep_versions, lock_timeout_s)
    return RefreshResult(repo, version, **result)
