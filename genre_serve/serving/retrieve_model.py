"""genre_retrieve: fused two-space top-K over the whole catalog, the user's
seen items excluded (items without CF signal scored by content alone, see
genre_serve/retrieval.py), plus the ranker's cross features of the candidates.

All requests the dynamic batcher hands over are scored in one
`genre_serve.kernels.fused_topk` call (one pass over the item tables for the
whole batch); a malformed request fails alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from genre_serve.kernels import cross_features
from genre_serve.retrieval import fused_topk_with_new_items
from genre_serve.serving.recommend_logic import ItemTables
from genre_serve.serving.triton_utils import error_response, required_input


class TritonPythonModel:
    def initialize(self, args):
        version_dir = Path(args["model_repository"]) / args["model_version"]
        # Items without CF signal scored by content alone, unless exported with --new-items discounted.
        self.tables = ItemTables.load(version_dir)
        self.num_items, self.cf_dim = self.tables.item_cf.shape
        self.ct_dim = self.tables.item_ct.shape[1]
        meta = json.loads((version_dir / "retrieve.json").read_text())
        self.max_k = int(meta.get("max_k", 1000))

    def execute(self, requests):
        responses = [None] * len(requests)
        parsed = []
        for r, request in enumerate(requests):
            try:
                parsed.append((r, self._parse(request)))
            except ValueError as e:
                responses[r] = error_response(str(e))
        if parsed:
            u_cf = np.concatenate([p[1][0] for p in parsed])
            u_ct = np.concatenate([p[1][1] for p in parsed])
            alpha = np.concatenate([p[1][2] for p in parsed])
            exclude = [p[1][3] for p in parsed]
            k = max(p[1][4] for p in parsed)
            t = self.tables
            idx, scores = fused_topk_with_new_items(u_cf, u_ct, alpha, t.item_cf, t.item_ct, k, exclude,
                                                    t.new_items, num_threads=1)
            user_cat = np.concatenate([u_cf, u_ct], 1)
            safe = np.where(idx >= 0, scores, 0).astype(np.float32)
            feats = cross_features(user_cat, t.items_cat, idx, scores=safe, num_threads=1)
            for row, (r, p) in enumerate(parsed):
                n = int(min(p[4], (idx[row] >= 0).sum()))
                responses[r] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("CANDIDATES", idx[row : row + 1, :n].copy()),
                    pb_utils.Tensor("SCORES", scores[row : row + 1, :n].copy()),
                    pb_utils.Tensor("FEATURES", feats[row : row + 1, :n].copy()),
                ])
        return responses

    def _parse(self, request):
        u_cf = required_input(request, "U_CF").reshape(1, -1).astype(np.float32)
        u_ct = required_input(request, "U_CT").reshape(1, -1).astype(np.float32)
        if u_cf.shape[1] != self.cf_dim or u_ct.shape[1] != self.ct_dim:
            raise ValueError(f"U_CF and U_CT must have {self.cf_dim} and {self.ct_dim} values")
        alpha = required_input(request, "ALPHA").reshape(-1).astype(np.float32)[:1]
        if not np.isfinite(alpha).all() or not 0.0 <= float(alpha[0]) <= 1.0:
            raise ValueError("ALPHA must be a number in [0, 1]")
        exclude = required_input(request, "EXCLUDE").reshape(-1).astype(np.int64)
        if exclude.size and (exclude.min() < 0 or exclude.max() >= self.num_items):
            raise ValueError(f"EXCLUDE indices must lie in [0, {self.num_items})")
        k = int(required_input(request, "K").reshape(-1)[0])
        if k <= 0:
            raise ValueError(f"K must be positive, got {k}")
        if not np.isfinite(u_cf).all() or not np.isfinite(u_ct).all():
            raise ValueError("U_CF and U_CT must be finite")
        return u_cf, u_ct, alpha, exclude, min(k, self.max_k, self.num_items)
