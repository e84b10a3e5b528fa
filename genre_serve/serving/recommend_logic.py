"""The request logic of genre_recommend, independent of Triton: parsing and
validating one request, id mapping, the cold-user answer, and the final
ordering. The python-backend model (serving/stubs/recommend.py), the
in-process pipeline (pipeline.py) and client-side scoring
(client/local_scoring.py) all use it, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from genre_serve.errors import RequestError
from genre_serve.formats import repository as fmt
from genre_serve.formats.repository import Catalog
from genre_serve.kernels import cross_features
from genre_serve.retrieval import NewItems, UserVectors, fused_topk_with_new_items


class Candidates(NamedTuple):
    """One user's retrieved candidates, best first, and the ranker's input for them."""

    indices: np.ndarray  # int64 [n], catalog indices, n <= depth
    features: np.ndarray  # float32 [1, n, F], cross features


@dataclass(frozen=True)
class Request:
    known: np.ndarray  # catalog indices of the known history items, oldest first
    k: int
    scenario: int
    alpha: float | None
    explain: bool = False  # answer BECAUSE too

    def tower_inputs(self, catalog: Catalog) -> dict[str, np.ndarray]:
        """genre_user_tower's inputs: HISTORY [1, max_history] right-aligned,
        LENGTHS [1, 1], SCENARIO [1, 1]."""
        recent = self.known[-catalog.max_history :]
        history = np.zeros((1, catalog.max_history), np.int64)
        if recent.size:
            history[0, -recent.size :] = recent
        return {fmt.HISTORY: history, fmt.LENGTHS: np.array([[recent.size]], np.int64),
                fmt.SCENARIO: np.array([[self.scenario]], np.int64)}

    def retrieval_depth(self, catalog: Catalog) -> int:
        return min(max(self.k, catalog.depth), catalog.max_k, len(catalog.ids))


def _utf8(values, field: str) -> list[bytes]:
    """The values as UTF-8 bytes, each checked to be valid UTF-8."""
    out = []
    for v in np.asarray(values, dtype=object).reshape(-1):
        if isinstance(v, bytes):
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(f"{field}: must be UTF-8 text") from None
            out.append(v)
        else:
            out.append(str(v).encode("utf-8"))
    return out


def _decode(values, field: str) -> list[str]:
    return [v.decode("utf-8") for v in _utf8(values, field)]


def _one_value(value, kinds: str, field: str, type_name: str):
    """The single element of a scalar input whose numpy dtype kind is one of `kinds`."""
    flat = np.asarray(value).reshape(-1)
    if flat.size != 1 or flat.dtype.kind not in kinds:
        raise RequestError(f"{field}: must be one {type_name} value")
    return flat[0]


def parse_request(catalog: Catalog, history, k, scenario=None, alpha=None, explain=None) -> Request:
    """Validates one request. Unknown history ids are skipped (documented);
    K beyond the catalog is answered with what exists."""
    if history is None:
        raise RequestError(f"{fmt.HISTORY}: missing (send an empty list for a cold user)")
    if np.asarray(history).dtype.kind not in ("O", "S", "U"):
        raise RequestError(f"{fmt.HISTORY}: must be TYPE_STRING (BYTES) item ids")
    ids = _utf8(history, fmt.HISTORY)
    if k is None:
        raise RequestError(f"{fmt.K}: missing")
    k_val = int(_one_value(k, "iu", fmt.K, "TYPE_INT32"))
    if k_val <= 0:
        raise RequestError(f"{fmt.K}: must be positive, got {k_val}")
    scen_index = 0
    if scenario is not None:
        names = _decode(scenario, fmt.SCENARIO)
        if len(names) != 1:
            raise RequestError(f"{fmt.SCENARIO}: must be one string")
        if names[0] not in catalog.scenarios:
            raise RequestError(f"{fmt.SCENARIO}: unknown scenario {names[0]!r}; "
                               f"known: {', '.join(catalog.scenarios)}")
        scen_index = catalog.scenarios.index(names[0])
    alpha_val = None
    if alpha is not None:
        alpha_val = float(_one_value(alpha, "f", fmt.ALPHA, "TYPE_FP32"))
        if not np.isfinite(alpha_val) or not 0.0 <= alpha_val <= 1.0:
            raise RequestError(f"{fmt.ALPHA}: must be a number in [0, 1], got {alpha_val}")
    explain_val = explain is not None and bool(_one_value(explain, "b", fmt.EXPLAIN, "TYPE_BOOL"))
    known = catalog.ids.lookup(ids)
    k_val = min(k_val, catalog.max_k, len(catalog.ids))
    return Request(known=known, k=k_val, scenario=scen_index, alpha=alpha_val, explain=explain_val)


def because_you_watched(item_cf: np.ndarray, item_ct: np.ndarray, dim: int, history: np.ndarray,
                        recommended: np.ndarray, alpha: float) -> np.ndarray:
    """For each recommended item, the history item it is closest to: catalog
    indices [k] (-1 for an empty history).

    Closest: the largest alpha * cos(CF vectors) + (1 - alpha) * cos(content
    vectors), with the request's alpha, the mixture its scores use. Cosine,
    not the dot product: item norms carry popularity, and by dot product the
    same most-popular history item would explain everything; cosine asks
    which watched item this one is most like. The CF vectors are read without
    their bias and recent-popularity columns (popularity again), so an item
    without CF signal is matched by content alone. Ties go to the most recent
    history item (the last max_history items are the ones considered, the
    user encoder's window).
    """
    if not history.size or not recommended.size:
        return np.full(recommended.size, -1, np.int64)

    def unit(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.float32)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)

    h_cf, r_cf = unit(item_cf[history, :dim]), unit(item_cf[recommended, :dim])
    h_ct, r_ct = unit(item_ct[history]), unit(item_ct[recommended])
    similarity = alpha * (r_cf @ h_cf.T) + (1.0 - alpha) * (r_ct @ h_ct.T)  # [k, n]
    latest_best = similarity.shape[1] - 1 - np.argmax(similarity[:, ::-1], axis=1)
    return history[latest_best]


def parse_python_request(catalog: Catalog, history, k, scenario=None, alpha=None, explain: bool = False) -> Request:
    """parse_request for Python values (the in-process and client-side paths),
    encoded as the server receives them."""
    return parse_request(
        catalog,
        np.array([str(h).encode() for h in history], dtype=object),
        np.array([k], np.int32),
        None if scenario is None else np.array([scenario.encode()], dtype=object),
        None if alpha is None else np.array([alpha], np.float32),
        np.array([True]) if explain else None,
    )


def answer(catalog: Catalog, req: Request, user_vectors: Callable[[Request], UserVectors],
           candidates: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int], Candidates],
           rank: Callable[[np.ndarray], np.ndarray]) -> tuple[list[str], np.ndarray]:
    """The flow every recommend path shares; the steps are the path's own:

    user_vectors(req) -> UserVectors ([1, Dc], [1, Dt], [1, 1]);
    candidates(u_cf, u_ct, alpha [1, 1], exclude, depth) -> Candidates;
    rank(features) -> logits [n].
    """
    if req.known.size == 0:
        return cold_answer(catalog, req.k)
    users = user_vectors(req)
    alpha = np.asarray([[req.alpha]] if req.alpha is not None else users.alpha, np.float32).reshape(1, 1)
    found = candidates(users.u_cf, users.u_ct, alpha, catalog.exclusions(req.known), req.retrieval_depth(catalog))
    if found.indices.size == 0:  # the history covers the whole catalog
        return [], np.zeros(0, np.float32)
    return final_order(catalog, found.indices, np.asarray(rank(found.features)).reshape(-1), req.k)


def cold_answer(catalog: Catalog, k: int) -> tuple[list[str], np.ndarray]:
    """A user with no known history gets the most popular items (training counts)."""
    top, scores = cold_ranking(catalog, k)
    return catalog.ids.external(top), scores


def cold_ranking(catalog: Catalog, k: int) -> tuple[np.ndarray, np.ndarray]:
    """cold_answer as catalog indices."""
    top = catalog.popular_order[:k]
    return top, np.asarray(catalog.popularity[top], np.float32)


class ItemTables:
    """The two item tables of a version (read-only, typically memory-mapped:
    every process mapping the same files shares one copy) and its new-item rule."""

    def __init__(self, item_cf: np.ndarray, item_ct: np.ndarray, new_items: str = fmt.DEFAULT_NEW_ITEMS,
                 new_item_bias: float = 0.0):
        self.item_cf = _float32_rows(item_cf)
        self.item_ct = _float32_rows(item_ct)
        by_content = fmt.check_new_item_rule(new_items) == "content"
        self.new_items = NewItems(self.item_cf, self.item_ct, new_item_bias) if by_content else None

    @classmethod
    def of_files(cls, files: fmt.ItemTableFiles) -> ItemTables:
        return cls(files.item_cf, files.item_ct, files.new_items, files.new_item_bias)

    @classmethod
    def load(cls, version_dir: Path) -> ItemTables:
        """The tables of an exported version (memory-mapped), with the new-item
        rule and bias it was exported with."""
        return cls.of_files(fmt.ItemTableFiles.load(version_dir))

    def because(self, history: np.ndarray, recommended: np.ndarray, alpha: float) -> np.ndarray:
        """because_you_watched on these tables."""
        return because_you_watched(self.item_cf, self.item_ct, self.item_ct.shape[1], history, recommended, alpha)

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """[CF row, content row] of each index (-1: zeros), shape indices.shape + (Dc + Dt,)."""
        flat = np.asarray(indices, np.int64).reshape(-1)
        safe = np.maximum(flat, 0)
        out = np.concatenate([self.item_cf[safe], self.item_ct[safe]], 1)
        out[flat < 0] = 0.0
        return out.reshape(*np.shape(indices), -1)

    def topk(self, u_cf: np.ndarray, u_ct: np.ndarray, alpha: np.ndarray, excludes: list[np.ndarray], depth: int,
             num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each user's fused top-`depth` (their `excludes` never in it; items
        without CF signal by content alone, plus the bias): indices and scores
        [B, d], -1 / -inf padded, in one pass for the batch."""
        return fused_topk_with_new_items(u_cf, u_ct, np.asarray(alpha, np.float32).reshape(-1), self.item_cf,
                                         self.item_ct, depth, excludes, self.new_items, num_threads=num_threads)

    def features(self, u_cf: np.ndarray, u_ct: np.ndarray, idx: np.ndarray, scores: np.ndarray,
                 num_threads: int | None = None) -> np.ndarray:
        """The ranker's cross features [B, d, F] of candidates idx [B, d] (zero on -1 padding)."""
        b, d = idx.shape
        items = self.rows(idx).reshape(b * d, -1)  # only the candidates' rows, not a concatenated table
        local = np.where(idx >= 0, np.arange(b * d).reshape(b, d), -1)
        safe = np.where(idx >= 0, scores, 0).astype(np.float32)
        return cross_features(np.concatenate([u_cf, u_ct], 1), items, local, scores=safe, num_threads=num_threads)

    def retrieve(self, u_cf: np.ndarray, u_ct: np.ndarray, alpha: np.ndarray, excludes: list[np.ndarray],
                 depth: int, num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """topk() and features(): indices [B, d], scores [B, d], features [B, d, F]."""
        idx, scores = self.topk(u_cf, u_ct, alpha, excludes, depth, num_threads)
        return idx, scores, self.features(u_cf, u_ct, idx, scores, num_threads)

    def candidates(self, u_cf: np.ndarray, u_ct: np.ndarray, alpha: np.ndarray, exclude: np.ndarray,
                   depth: int) -> Candidates:
        """One user's retrieve(), without the padding."""
        idx, _, feats = self.retrieve(u_cf, u_ct, alpha, [exclude], depth)
        n = int((idx[0] >= 0).sum())
        return Candidates(idx[0, :n], np.ascontiguousarray(feats[:, :n]))


def _float32_rows(table: np.ndarray) -> np.ndarray:
    """The table as C-contiguous float32, without a copy where it already is (a memory map stays one)."""
    if isinstance(table, np.ndarray) and table.dtype == np.float32 and table.flags.c_contiguous:
        return table
    return np.ascontiguousarray(table, dtype=np.float32)


def final_order(catalog: Catalog, candidates: np.ndarray, logits: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
    """Candidates sorted by ranker logit (ties: retrieval order), the best k."""
    top, scores = ranked(candidates, logits, k)
    return catalog.ids.external(top), scores


def ranked(candidates: np.ndarray, logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """final_order as catalog indices."""
    order = np.argsort(-logits, kind="stable")[:k]
    return candidates[order], logits[order].astype(np.float32)
