"""Reading a feedback log (genre_serve/formats/feedback.py) as training-format
interactions, with what `genre-serve update` records about it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from genre_serve.data.loaders import read_table
from genre_serve.errors import DataError
from genre_serve.formats import feedback as fmt


@dataclass(frozen=True)
class LogFiles:
    """The files a log consisted of when read, and what was in them."""

    files: tuple[str, ...]
    rows: tuple[int, ...]
    malformed: tuple[int, ...] = ()  # lines with the wrong number of fields, skipped and counted

    def as_dict(self) -> dict:
        return {"files": list(self.files), "rows": list(self.rows), "total_rows": sum(self.rows),
                "malformed_lines": list(self.malformed)}


def log_files(path: str | Path) -> list[Path]:
    """A log's files: `path` itself, or the CSV/Parquet files of the directory, in name order."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"feedback log: not found: {path}")
    if path.is_file():
        return [path]
    files = sorted({f for pattern in fmt.FILE_PATTERNS for f in path.glob(pattern) if f.is_file()})
    if not files:
        raise DataError(f"feedback log: no {', '.join(fmt.FILE_PATTERNS)} files in {path}")
    return files


def read_feedback(path: str | Path) -> tuple[pd.DataFrame, LogFiles]:
    """Every event of the log (not cleaned: the caller cleans it as training
    data is), the files in name order, with the rows each held."""
    frames, names, rows, malformed = [], [], [], []
    for f in log_files(path):
        try:
            df = read_table(f, "feedback log")
        except DataError as e:
            if "file is empty" in str(e):
                df = pd.DataFrame(columns=list(fmt.COLUMNS))
            else:
                raise
        missing = [c for c in ("user_id", "item_id", "timestamp") if c not in df.columns]
        if missing:
            raise DataError(f"feedback log: {f}: missing column(s) {', '.join(missing)}")
        frames.append(df)
        names.append(str(f))
        rows.append(len(df))
        malformed.append(int(df.attrs.get("malformed_lines", 0)))
    events = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(fmt.COLUMNS))
    return events, LogFiles(tuple(names), tuple(rows), tuple(malformed))
