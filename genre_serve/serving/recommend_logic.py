"""The request logic of genre_recommend, independent of Triton: parsing and
validating one request, id mapping, the cold-user answer, and the final
ordering. The python-backend model (recommend_model.py) and the in-process
pipeline (pipeline.py) both use it, so they cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_SCENARIO = "default"


class RequestError(ValueError):
    """A request the server answers with an error naming the field."""


@dataclass(frozen=True)
class Catalog:
    """What genre_recommend needs from an exported version directory."""

    ids: list[str]
    index: dict[str, int]
    popularity: np.ndarray
    scenarios: list[str]
    max_history: int
    depth: int
    max_k: int

    @classmethod
    def load(cls, version_dir: Path) -> "Catalog":
        catalog = json.loads((version_dir / "catalog.json").read_text())
        meta = json.loads((version_dir / "recommend.json").read_text())
        ids = catalog["ids"]
        return cls(
            ids=ids,
            index={item: i for i, item in enumerate(ids)},
            popularity=np.load(version_dir / "popularity.npy"),
            scenarios=meta["scenarios"],
            max_history=int(meta["max_history"]),
            depth=int(meta["depth"]),
            max_k=int(meta["max_k"]),
        )

    @property
    def popular_order(self) -> np.ndarray:
        return np.argsort(-self.popularity, kind="stable")


@dataclass(frozen=True)
class Request:
    known: np.ndarray  # catalog indices of the known history items, oldest first
    k: int
    scenario: int
    alpha: float | None


def _decode(values, field: str) -> list[str]:
    out = []
    for v in np.asarray(values, dtype=object).reshape(-1):
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(f"{field}: must be UTF-8 text") from None
        out.append(str(v))
    return out


def parse_request(catalog: Catalog, history, k, scenario=None, alpha=None) -> Request:
    """Validates one request. Unknown history ids are skipped (documented);
    K beyond the catalog is answered with what exists."""
    if history is None:
        raise RequestError("HISTORY: missing (send an empty list for a cold user)")
    if np.asarray(history).dtype.kind not in ("O", "S", "U"):
        raise RequestError("HISTORY: must be TYPE_STRING (BYTES) item ids")
    ids = _decode(history, "HISTORY")
    if k is None:
        raise RequestError("K: missing")
    k_arr = np.asarray(k).reshape(-1)
    if k_arr.size != 1 or k_arr.dtype.kind not in "iu":
        raise RequestError("K: must be one TYPE_INT32 value")
    k_val = int(k_arr[0])
    if k_val <= 0:
        raise RequestError(f"K: must be positive, got {k_val}")
    scen_index = 0
    if scenario is not None:
        names = _decode(scenario, "SCENARIO")
        if len(names) != 1:
            raise RequestError("SCENARIO: must be one string")
        if names[0] not in catalog.scenarios:
            raise RequestError(f"SCENARIO: unknown scenario {names[0]!r}; known: {', '.join(catalog.scenarios)}")
        scen_index = catalog.scenarios.index(names[0])
    alpha_val = None
    if alpha is not None:
        a = np.asarray(alpha).reshape(-1)
        if a.size != 1 or a.dtype.kind != "f":
            raise RequestError("ALPHA: must be one TYPE_FP32 value")
        alpha_val = float(a[0])
        if not np.isfinite(alpha_val) or not 0.0 <= alpha_val <= 1.0:
            raise RequestError(f"ALPHA: must be a number in [0, 1], got {alpha_val}")
    known = np.array([catalog.index[i] for i in ids if i in catalog.index], dtype=np.int64)
    k_val = min(k_val, catalog.max_k, len(catalog.ids))
    return Request(known=known, k=k_val, scenario=scen_index, alpha=alpha_val)


def parse_python_request(catalog: Catalog, history, k, scenario=None, alpha=None) -> Request:
    """parse_request for Python values (the in-process and client-side paths),
    encoded as the server receives them."""
    return parse_request(
        catalog,
        np.array([str(h).encode() for h in history], dtype=object),
        np.array([k], np.int32),
        None if scenario is None else np.array([scenario.encode()], dtype=object),
        None if alpha is None else np.array([alpha], np.float32),
    )


def answer(catalog: Catalog, req: Request, user_vectors, candidates, rank):
    """The flow every recommend path shares; the steps are the path's own:

    user_vectors(req) -> (u_cf [1, Dc], u_ct [1, Dt], alpha);
    candidates(u_cf, u_ct, alpha [1, 1], exclude, depth) -> (indices [n], features [1, n, F]);
    rank(features) -> logits [n].
    """
    if req.known.size == 0:
        return cold_answer(catalog, req.k)
    u_cf, u_ct, alpha = user_vectors(req)
    alpha = np.asarray([[req.alpha]] if req.alpha is not None else alpha, np.float32).reshape(1, 1)
    found, features = candidates(u_cf, u_ct, alpha, np.unique(req.known), retrieval_depth(catalog, req))
    if found.size == 0:  # the history covers the whole catalog
        return [], np.zeros(0, np.float32)
    return final_order(catalog, found, np.asarray(rank(features)).reshape(-1), req.k)


def cold_answer(catalog: Catalog, k: int) -> tuple[list[str], np.ndarray]:
    """A user with no known history gets the most popular items (training counts)."""
    top = catalog.popular_order[:k]
    return [catalog.ids[i] for i in top], catalog.popularity[top].astype(np.float32)


def tower_inputs(catalog: Catalog, req: Request) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HISTORY [1, max_history] right-aligned, LENGTHS [1, 1], SCENARIO [1, 1]."""
    recent = req.known[-catalog.max_history :]
    history = np.zeros((1, catalog.max_history), np.int64)
    if recent.size:
        history[0, -recent.size :] = recent
    return history, np.array([[recent.size]], np.int64), np.array([[req.scenario]], np.int64)


def retrieval_depth(catalog: Catalog, req: Request) -> int:
    return min(max(req.k, catalog.depth), catalog.max_k, len(catalog.ids))


class ItemTables:
    """The two item tables of a version and their concatenation (the ranker's item side)."""

    def __init__(self, item_cf: np.ndarray, item_ct: np.ndarray, new_items: str = "content",
                 new_item_bias: float = 0.0):
        from genre_serve.retrieval import NewItems, check_new_item_rule

        self.item_cf = np.ascontiguousarray(item_cf, dtype=np.float32)
        self.item_ct = np.ascontiguousarray(item_ct, dtype=np.float32)
        self.items_cat = np.ascontiguousarray(np.concatenate([self.item_cf, self.item_ct], 1))
        by_content = check_new_item_rule(new_items) == "content"
        self.new_items = NewItems(self.item_cf, self.item_ct, new_item_bias) if by_content else None

    @classmethod
    def load(cls, version_dir: Path) -> "ItemTables":
        """The tables of an exported genre_retrieve version, with the new-item
        rule and bias it was exported with (retrieve.json; exports before
        them: content, no bias)."""
        meta = json.loads((version_dir / "retrieve.json").read_text())
        return cls(np.load(version_dir / "item_cf.npy"), np.load(version_dir / "item_ct.npy"),
                   meta.get("new_items", "content"), meta.get("new_item_bias", 0.0))

    def candidates(self, u_cf, u_ct, alpha, exclude: np.ndarray, depth: int):
        """One user's fused top-`depth` (excluded items never in it; items
        without CF signal by content alone, plus the bias) and the ranker's cross features:
        (indices [n], features [1, n, F]), n <= depth."""
        from genre_serve.kernels import cross_features
        from genre_serve.retrieval import fused_topk_with_new_items

        idx, scores = fused_topk_with_new_items(u_cf, u_ct, np.asarray(alpha, np.float32).reshape(-1),
                                                self.item_cf, self.item_ct, depth, [exclude], self.new_items)
        n = int((idx[0] >= 0).sum())
        idx, scores = idx[:, :n], scores[:, :n]
        feats = cross_features(np.concatenate([u_cf, u_ct], 1), self.items_cat, idx, scores=scores)
        return idx[0], feats


def final_order(catalog: Catalog, candidates: np.ndarray, logits: np.ndarray, k: int):
    """Candidates sorted by ranker logit (ties: retrieval order), the best k."""
    order = np.argsort(-logits, kind="stable")[:k]
    return [catalog.ids[i] for i in candidates[order]], logits[order].astype(np.float32)
