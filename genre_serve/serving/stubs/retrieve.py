"""genre_retrieve: fused two-space top-K over the whole catalog, the user's
seen items excluded (items without CF signal scored by content alone, see
genre_serve/retrieval.py), plus the ranker's cross features of the candidates.

All requests the dynamic batcher hands over are scored in one
`genre_serve.kernels.fused_topk` call (one pass over the item tables for the
whole batch); a malformed request fails alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genre_serve.formats import repository as fmt
from genre_serve.serving.recommend_logic import ItemTables
from genre_serve.serving.stubs.responses import error_response, required_input, tensor_response


@dataclass(frozen=True)
class RetrieveRequest:
    """One validated genre_retrieve request."""

    u_cf: np.ndarray  # float32 [1, cf_dim]
    u_ct: np.ndarray  # float32 [1, ct_dim]
    alpha: np.ndarray  # float32 [1]
    exclude: np.ndarray  # int64 [n]: catalog indices never returned
    k: int  # capped at max_k and the catalog


class TritonPythonModel:
    def initialize(self, args):
        files = fmt.ItemTableFiles.load(Path(args["model_repository"]) / args["model_version"])
        # Items without CF signal scored by content alone, unless exported with --new-items discounted.
        self.tables = ItemTables.of_files(files)
        self.num_items, self.cf_dim = self.tables.item_cf.shape
        self.ct_dim = self.tables.item_ct.shape[1]
        self.max_k = files.max_k

    def execute(self, requests):
        responses = [None] * len(requests)
        parsed: list[tuple[int, RetrieveRequest]] = []
        for r, request in enumerate(requests):
            try:
                parsed.append((r, self._parse(request)))
            except ValueError as e:
                responses[r] = error_response(str(e))
        if parsed:
            reqs = [p for _, p in parsed]
            idx, scores, feats = self.tables.retrieve(
                np.concatenate([p.u_cf for p in reqs]), np.concatenate([p.u_ct for p in reqs]),
                np.concatenate([p.alpha for p in reqs]), [p.exclude for p in reqs], max(p.k for p in reqs),
                num_threads=1)
            for row, (r, p) in enumerate(parsed):
                n = int(min(p.k, (idx[row] >= 0).sum()))
                responses[r] = tensor_response({
                    fmt.CANDIDATES: idx[row : row + 1, :n].copy(),
                    fmt.SCORES: scores[row : row + 1, :n].copy(),
                    fmt.FEATURES: feats[row : row + 1, :n].copy(),
                })
        return responses

    def _parse(self, request) -> RetrieveRequest:
        u_cf = required_input(request, fmt.U_CF).reshape(1, -1).astype(np.float32)
        u_ct = required_input(request, fmt.U_CT).reshape(1, -1).astype(np.float32)
        if u_cf.shape[1] != self.cf_dim or u_ct.shape[1] != self.ct_dim:
            raise ValueError(f"{fmt.U_CF} and {fmt.U_CT} must have {self.cf_dim} and {self.ct_dim} values")
        alpha = required_input(request, fmt.ALPHA).reshape(-1).astype(np.float32)[:1]
        if not np.isfinite(alpha).all() or not 0.0 <= float(alpha[0]) <= 1.0:
            raise ValueError(f"{fmt.ALPHA} must be a number in [0, 1]")
        exclude = required_input(request, fmt.EXCLUDE).reshape(-1).astype(np.int64)
        if exclude.size and (exclude.min() < 0 or exclude.max() >= self.num_items):
            raise ValueError(f"{fmt.EXCLUDE} indices must lie in [0, {self.num_items})")
        k = int(required_input(request, fmt.K).reshape(-1)[0])
        if k <= 0:
            raise ValueError(f"{fmt.K} must be positive, got {k}")
        if not np.isfinite(u_cf).all() or not np.isfinite(u_ct).all():
            raise ValueError(f"{fmt.U_CF} and {fmt.U_CT} must be finite")
        return RetrieveRequest(u_cf, u_ct, alpha, exclude, min(k, self.max_k, self.num_items))
