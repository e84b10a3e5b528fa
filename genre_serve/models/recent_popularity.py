"""Recent popularity: how often each item was interacted with in the days
before a request, log1p-scaled.

On time-ordered data it is a strong signal the item embeddings cannot carry
(what is popular changes; the embeddings do not; the `recent-popular` row of
`genre-serve evaluate` measures it alone). The GENRE model adds it to the CF
channel as one more column (see ItemTowers.recent_popularity): at serve time
the column holds a snapshot (the days before the newest training
interaction); training and evaluation read it at the time of every request
instead, from past interactions only.
"""

from __future__ import annotations

import numpy as np

DAY = 86_400


class RecentPopularity:
    """Counts over a sliding window of a time-sorted interaction log."""

    def __init__(self, items: np.ndarray, times: np.ndarray, num_items: int, window_days: float):
        if window_days <= 0:
            raise ValueError(f"window_days: must be > 0, got {window_days}")
        order = np.argsort(times, kind="stable")
        self.items = np.asarray(items, np.int64)[order]
        self.times = np.asarray(times, np.int64)[order]
        self.num_items = num_items
        self.window = int(round(window_days * DAY))

    @classmethod
    def of_split(cls, split, window_days: float) -> RecentPopularity:
        """From the training interactions of a split (never validation or test ones)."""
        if not split.has_times:
            raise ValueError("recent popularity needs the split's timestamps")
        items = np.concatenate(split.train_items) if split.train_items else np.zeros(0, np.int64)
        times = np.concatenate(split.train_times) if split.train_times else np.zeros(0, np.int64)
        return cls(items, times, split.num_items, window_days)

    def window_bounds(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per request time t, the slice [lo, hi) of the sorted log inside [t - window, t)."""
        times = np.asarray(times, np.int64)
        return (np.searchsorted(self.times, times - self.window, side="left"),
                np.searchsorted(self.times, times, side="left"))

    def at(self, times: np.ndarray) -> np.ndarray:
        """[B, N] float32: log1p(interactions of each item in [t - window, t)) per request time t."""
        lo, hi = self.window_bounds(times)
        out = np.zeros((times.size, self.num_items), np.float32)
        for row, (a, b) in enumerate(zip(lo, hi)):
            if b > a:
                out[row] = np.bincount(self.items[a:b], minlength=self.num_items)
        return np.log1p(out, out=out)

    def latest(self) -> np.ndarray:
        """[N]: the snapshot served until the next export, just after the newest interaction."""
        newest = self.times[-1] + 1 if self.times.size else 0
        return self.at(np.array([newest]))[0]
