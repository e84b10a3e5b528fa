"""External string ids <-> dense indices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


class IdMap:
    """A fixed, ordered mapping of external string ids to 0..n-1."""

    def __init__(self, ids: Iterable[str]):
        self._ids: list[str] = [str(i) for i in ids]
        self._index: dict[str, int] = {}
        for i, ext in enumerate(self._ids):
            if ext in self._index:
                raise ValueError(f"IdMap: duplicate id {ext!r}")
            self._index[ext] = i

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, ext: object) -> bool:
        return ext in self._index

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def index(self, ext: str) -> int:
        return self._index[ext]

    def get(self, ext: str, default: int = -1) -> int:
        return self._index.get(ext, default)

    def indices(self, exts: Sequence[str], missing: int = -1) -> np.ndarray:
        """Dense indices of `exts`; unknown ids map to `missing`."""
        return np.fromiter((self._index.get(str(e), missing) for e in exts), np.int64, len(exts))

    def external(self, indices: Iterable[int]) -> list[str]:
        return [self._ids[int(i)] for i in indices]

    def extended(self, new_ids: Iterable[str]) -> IdMap:
        """A map with `new_ids` appended (existing ids keep their indices)."""
        return IdMap(self._ids + [str(i) for i in new_ids])

    def to_json(self) -> list[str]:
        return list(self._ids)

    @classmethod
    def from_json(cls, ids: list[str]) -> IdMap:
        return cls(ids)
