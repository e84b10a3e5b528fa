"""Reading interactions and items from CSV/Parquet, MovieLens and the built-in data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genre_serve.data.dataset import DataConfig, Dataset, build_dataset, item_text
from genre_serve.errors import DataError

BUILTIN_DIR = Path(__file__).parent / "builtin"
BUILTIN_DATASETS = {"movielens-small": BUILTIN_DIR / "ml-latest-small"}


def read_table(path: str | Path, what: str) -> pd.DataFrame:
    """A CSV (optionally compressed) or Parquet file as strings; clear errors."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what}: file not found: {path}")
    if path.is_dir():
        raise DataError(f"{what}: expected a file, got a directory: {path}")
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
            return df.astype({c: str for c in df.columns if c.endswith("_id")})
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        except pd.errors.ParserError:
            # Lines with the wrong number of fields: skip them, but count them
            # so that the cleaning report shows them (python engine: slower).
            bad: list[list[str]] = []
            df = pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""], engine="python",
                on_bad_lines=lambda line: bad.append(line) and None,
            )
            df.attrs["malformed_lines"] = len(bad)
            return df
    except pd.errors.EmptyDataError:
        raise DataError(f"{what}: file is empty: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as e:
        raise DataError(f"{what}: cannot read {path}: {e}") from None


def load_csv_dataset(
    interactions: str | Path, items: str | Path | None = None, config: DataConfig = DataConfig()
) -> Dataset:
    """Generic input: an interactions file and an optional items file."""
    raw = read_table(interactions, "interactions")
    raw_items = read_table(items, "items") if items is not None else None
    return build_dataset(raw, raw_items, config, name=Path(interactions).stem)


def load_movielens(path: str | Path, config: DataConfig = DataConfig()) -> Dataset:
    """ml-latest-small (ratings/movies/tags.csv[.gz]) or ml-100k (u.data/u.item)."""
    path = Path(path)
    if _find(path, "ratings.csv"):
        return _load_ml_latest(path, config)
    if (path / "u.data").exists():
        return _load_ml_100k(path, config)
    raise DataError(f"movielens: {path} has neither ratings.csv (ml-latest) nor u.data (ml-100k)")


def load_builtin(name: str = "movielens-small", config: DataConfig = DataConfig()) -> Dataset:
    if name not in BUILTIN_DATASETS:
        raise DataError(f"unknown built-in dataset {name!r}; available: {', '.join(BUILTIN_DATASETS)}")
    ds = load_movielens(BUILTIN_DATASETS[name], config)
    ds.name = name
    return ds


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.exists():
            return candidate
    return None


def _load_ml_latest(path: Path, config: DataConfig) -> Dataset:
    ratings = read_table(_find(path, "ratings.csv"), "ratings")
    movies = read_table(_find(path, "movies.csv"), "movies")
    raw = ratings.rename(columns={"userId": "user_id", "movieId": "item_id"})
    items = movies.rename(columns={"movieId": "item_id"})
    genres = items["genres"].fillna("").str.replace("(no genres listed)", "", regex=False)
    user_tags = pd.Series(dtype=str)
    tags_file = _find(path, "tags.csv")
    if tags_file is not None:
        tags = read_table(tags_file, "tags").rename(columns={"movieId": "item_id"})
        tags = tags.dropna(subset=["tag"])
        tags["tag"] = tags["tag"].str.strip().str.lower()
        user_tags = tags.drop_duplicates(["item_id", "tag"]).groupby("item_id")["tag"].agg(", ".join)
    extra = items["item_id"].map(user_tags).fillna("")
    items["tags"] = [", ".join(p for p in (g.replace("|", ", "), t) if p) for g, t in zip(genres, extra)]
    return build_dataset(raw, items[["item_id", "title", "tags"]], config, name=path.name)


def _load_ml_100k(path: Path, config: DataConfig) -> Dataset:
    raw = pd.read_csv(
        path / "u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"], dtype=str
    )
    genre_names = []
    genre_file = path / "u.genre"
    if genre_file.exists():
        genre_names = [
            line.split("|")[0] for line in genre_file.read_text(encoding="latin-1").splitlines() if line
        ]
    rows = []
    item_file = path / "u.item"
    if item_file.exists():
        for line in item_file.read_text(encoding="latin-1").splitlines():
            fields = line.split("|")
            if len(fields) < 5:
                continue
            flags = fields[5:]
            genres = [genre_names[i] for i, f in enumerate(flags) if f == "1" and i < len(genre_names)]
            rows.append({"item_id": fields[0], "title": fields[1], "tags": ", ".join(genres)})
    items = pd.DataFrame(rows) if rows else None
    return build_dataset(raw, items, config, name=path.name)


def read_new_items(path: str | Path, known: set[str], skip_known: bool = False,
                   ) -> tuple[list[str], list[str], list[str]]:
    """Items to add to a catalog (add-items, update --items): ids, titles and
    the texts the encoder sees. Ids already in `known` are an error, or
    (`skip_known`: a whole catalog given) left out; then none may be new."""
    df = read_table(path, "items")
    for col in ("item_id", "title"):
        if col not in df.columns:
            raise DataError(f"items: missing column {col}; found {', '.join(df.columns)}")
    df = df.fillna("")
    df["item_id"] = df["item_id"].astype(str).str.strip()
    df = df[df["item_id"] != ""].drop_duplicates("item_id")
    already = sorted(set(df["item_id"]) & known)
    if skip_known:
        df, already = df[~df["item_id"].isin(known)], []
    if already:
        raise DataError(f"items: {len(already)} id(s) already in the catalog, e.g. {already[0]!r}")
    if df.empty and not skip_known:
        raise DataError("items: no new item")
    tags = df["tags"] if "tags" in df.columns else [""] * len(df)
    text = df["text"] if "text" in df.columns else [""] * len(df)
    texts = [item_text(t, g, x) for t, g, x in zip(df["title"], tags, text)]
    return list(df["item_id"]), list(df["title"]), texts
