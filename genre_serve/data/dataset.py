"""Cleaning raw interactions and items into a :class:`Dataset` with dense ids.

Every dropped row is counted in a :class:`CleaningReport` under the reason it
was dropped; nothing is discarded silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from genre_serve.data.idmap import IdMap
from genre_serve.errors import DataError

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
OPTIONAL_INTERACTION_COLUMNS = ("rating", "event", "scenario")
ITEM_COLUMNS = ("item_id", "title")
OPTIONAL_ITEM_COLUMNS = ("text", "tags")
DEFAULT_SCENARIO = "default"


@dataclass(frozen=True)
class DataConfig:
    """How raw interactions become implicit feedback."""

    min_rating: float | None = None  # keep rows with rating >= this (None: all rows are positive)
    min_user_interactions: int = 5
    min_item_interactions: int = 1


@dataclass
class CleaningReport:
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    rows_kept: int = 0
    items_without_text: int = 0

    def drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"{self.rows_read} rows read", f"{self.rows_kept} kept"]
        parts += [f"{n} dropped ({reason})" for reason, n in self.dropped.items()]
        return ", ".join(parts)


@dataclass
class Dataset:
    """Cleaned implicit feedback.

    ``interactions`` has integer columns ``user``, ``item``, ``timestamp``
    (seconds) and ``scenario``, sorted by user, then time, then input order.
    """

    name: str
    interactions: pd.DataFrame
    item_texts: list[str]
    item_titles: list[str]
    users: IdMap
    items: IdMap
    scenarios: list[str]
    report: CleaningReport

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_users(self) -> int:
        return len(self.users)

    def sequences(self) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Per user: items, scenarios and timestamps in time order."""
        df = self.interactions
        bounds = np.flatnonzero(np.diff(df["user"].to_numpy())) + 1
        items = np.split(df["item"].to_numpy(), bounds)
        scen = np.split(df["scenario"].to_numpy(), bounds)
        ts = np.split(df["timestamp"].to_numpy(), bounds)
        if len(df) == 0:
            return [], [], []
        return items, scen, ts


def require_columns(df: pd.DataFrame, required: tuple[str, ...], what: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{what}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns)) or 'none'}"
        )


def _blank(series: pd.Series) -> pd.Series:
    return series.isna() | (series.astype(str).str.strip() == "")


def parse_timestamps(series: pd.Series) -> pd.Series:
    """Seconds since the epoch from numbers or date strings; NaN where unparseable."""
    numeric = pd.to_numeric(series, errors="coerce")
    if numeric.notna().sum() >= series.notna().sum() * 0.5:
        return numeric.where(np.isfinite(numeric))
    dates = pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
    return (dates - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds()


def clean_interactions(raw: pd.DataFrame, config: DataConfig, report: CleaningReport) -> pd.DataFrame:
    require_columns(raw, INTERACTION_COLUMNS, "interactions")
    df = raw.copy()
    report.rows_read = len(df) + raw.attrs.get("malformed_lines", 0)
    report.drop("malformed line", raw.attrs.get("malformed_lines", 0))
    df["_order"] = np.arange(len(df))
    for col, reason in (("user_id", "missing user_id"), ("item_id", "missing item_id")):
        bad = _blank(df[col])
        report.drop(reason, bad.sum())
        df = df[~bad]
    df["user_id"] = df["user_id"].astype(str).str.strip()
    df["item_id"] = df["item_id"].astype(str).str.strip()
    ts = parse_timestamps(df["timestamp"])
    report.drop("malformed timestamp", ts.isna().sum())
    df = df[ts.notna()].assign(timestamp=ts[ts.notna()].astype(np.int64))
    if "rating" in df.columns:
        rating = pd.to_numeric(df["rating"], errors="coerce")
        bad = rating.isna() & ~_blank(df["rating"])
        report.drop("malformed rating", bad.sum())
        df = df[~bad].assign(rating=rating[~bad])
        if config.min_rating is not None:
            low = df["rating"].isna() | (df["rating"] < config.min_rating)
            report.drop(f"rating below {config.min_rating}", low.sum())
            df = df[~low]
    elif config.min_rating is not None:
        raise DataError("interactions: min_rating is set but there is no rating column")
    if "scenario" in df.columns:
        df["scenario"] = df["scenario"].where(~_blank(df["scenario"]), DEFAULT_SCENARIO).astype(str)
    else:
        df["scenario"] = DEFAULT_SCENARIO
    # Implicit feedback: the first interaction of a user with an item counts.
    df = df.sort_values(["user_id", "timestamp", "_order"], kind="stable")
    dup = df.duplicated(["user_id", "item_id"], keep="first")
    report.drop("duplicate user-item pair", dup.sum())
    df = df[~dup]
    # Iterate: removing rare items can push users below the minimum and back.
    while True:
        before = len(df)
        item_counts = df["item_id"].map(df["item_id"].value_counts())
        rare = item_counts < config.min_item_interactions
        report.drop(f"item with < {config.min_item_interactions} interactions", rare.sum())
        df = df[~rare]
        user_counts = df["user_id"].map(df["user_id"].value_counts())
        few = user_counts < config.min_user_interactions
        report.drop(f"user with < {config.min_user_interactions} interactions", few.sum())
        df = df[~few]
        if len(df) == before:
            break
    report.rows_kept = len(df)
    return df


def clean_items(raw: pd.DataFrame | None) -> pd.DataFrame:
    if raw is None:
        return pd.DataFrame(columns=["item_id", "title", "text", "tags"])
    require_columns(raw, ITEM_COLUMNS, "items")
    df = raw.copy()
    df = df[~_blank(df["item_id"])]
    df["item_id"] = df["item_id"].astype(str).str.strip()
    df = df.drop_duplicates("item_id", keep="first")
    for col in ("title", *OPTIONAL_ITEM_COLUMNS):
        df[col] = df[col].fillna("").astype(str) if col in df.columns else ""
    return df


def item_text(title: str, tags: str, text: str) -> str:
    """The string the text encoder sees for one item."""
    parts = [title.strip()]
    if tags.strip():
        parts.append("Tags: " + ", ".join(t.strip() for t in tags.replace("|", ",").split(",") if t.strip()))
    if text.strip():
        parts.append(text.strip())
    return ". ".join(p for p in parts if p)


def build_dataset(
    raw_interactions: pd.DataFrame,
    raw_items: pd.DataFrame | None,
    config: DataConfig = DataConfig(),
    name: str = "custom",
) -> Dataset:
    """Cleans, maps ids to dense indices and attaches item texts.

    The catalog is every item of the items table plus any item that only
    appears in the interactions (with empty text): items without interactions
    stay recommendable through their content.
    """
    report = CleaningReport()
    df = clean_interactions(raw_interactions, config, report)
    if df.empty:
        raise DataError(f"interactions: no rows left after cleaning ({report.summary()})")
    items_df = clean_items(raw_items)
    known = set(items_df["item_id"])
    extra = sorted(set(df["item_id"]) - known)
    item_ids = list(items_df["item_id"]) + extra
    items = IdMap(item_ids)
    texts = [
        item_text(t, g, x) for t, g, x in zip(items_df["title"], items_df["tags"], items_df["text"])
    ] + [""] * len(extra)
    report.items_without_text = sum(1 for t in texts if not t)
    users = IdMap(sorted(df["user_id"].unique(), key=_natural_key))
    scenarios = sorted(df["scenario"].unique())
    if DEFAULT_SCENARIO in scenarios:  # the default scenario always has index 0
        scenarios.remove(DEFAULT_SCENARIO)
    scenarios = [DEFAULT_SCENARIO] + scenarios
    scen_index = {s: i for i, s in enumerate(scenarios)}
    inter = pd.DataFrame(
        {
            "user": users.indices(df["user_id"].tolist()),
            "item": items.indices(df["item_id"].tolist()),
            "timestamp": df["timestamp"].to_numpy(np.int64),
            "scenario": df["scenario"].map(scen_index).to_numpy(np.int64),
            "_order": df["_order"].to_numpy(),
        }
    )
    inter = inter.sort_values(["user", "timestamp", "_order"], kind="stable").drop(columns="_order")
    titles = [t.strip() for t in items_df["title"]] + extra
    return Dataset(name, inter.reset_index(drop=True), texts, titles, users, items, scenarios, report)


def _natural_key(s: str):
    return (0, int(s), "") if s.isdigit() else (1, 0, s)
