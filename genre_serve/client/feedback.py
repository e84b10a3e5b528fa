"""Recording what users did with what was recommended (the feedback log of
genre_serve/formats/feedback.py), from any number of processes at once.

Each event is one CSV line, written with a single ``write`` to a file opened
with O_APPEND while holding an exclusive flock on it: lines from several
processes never interleave, and the header is written once, by whoever
finds the file empty. Serving stays stateless: the log is a file for
`genre-serve update`, never read back by the server.
"""

from __future__ import annotations

import csv
import fcntl
import io
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from genre_serve.formats import feedback as fmt

EVENT_MAX = 64


class FeedbackLog:
    """Appends events to ``DIRECTORY/events-YYYYMMDD.csv`` (created as needed)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"feedback log: {self.directory} is a file; give a directory")

    def path_for(self, timestamp: float) -> Path:
        day = time.strftime("%Y%m%d", time.gmtime(timestamp))
        return self.directory / fmt.DAILY_FILE.format(day=day)

    def log(self, user_id: str, item_id: str, event: str = "click", scenario: str | None = None,
            timestamp: float | None = None, version: int | None = None) -> Path:
        """One event; returns the file it went to. `timestamp`: Unix seconds (default: now)."""
        return self.log_many([(user_id, item_id, event, scenario, timestamp, version)])

    def log_many(self, events: Iterable[tuple]) -> Path:
        """Several events (tuples as :meth:`log`'s arguments) in one write,
        all into the file of the first event's day."""
        rows = [self._row(*e) for e in events]
        if not rows:
            raise ValueError("feedback log: no events")
        path = self.path_for(float(rows[0][2]))
        self.directory.mkdir(parents=True, exist_ok=True)
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                header = "" if os.fstat(fd).st_size else ",".join(fmt.COLUMNS) + "\n"
                os.write(fd, (header + buffer.getvalue()).encode("utf-8"))
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return path

    @staticmethod
    def _row(user_id: Any, item_id: Any, event: Any = "click", scenario: Any = None, timestamp: Any = None,
             version: Any = None) -> list[str]:
        for name, value in (("user_id", user_id), ("item_id", item_id)):
            if not isinstance(value, str) or not value or "\n" in value or "\r" in value:
                raise ValueError(f"feedback log: {name} must be a non-empty one-line string, got {value!r}")
        if not isinstance(event, str) or not event or len(event) > EVENT_MAX or not event.isprintable():
            raise ValueError(f"feedback log: event must be a short printable word, got {event!r}")
        if scenario is not None and (not isinstance(scenario, str) or "\n" in scenario or "\r" in scenario):
            raise ValueError(f"feedback log: scenario must be a one-line string, got {scenario!r}")
        ts = time.time() if timestamp is None else timestamp
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts < 0:
            raise ValueError(f"feedback log: timestamp must be Unix seconds, got {timestamp!r}")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise ValueError(f"feedback log: version must be a positive integer, got {version!r}")
        return [user_id, item_id, f"{float(ts):.3f}", event, scenario or "", "" if version is None else str(version)]
