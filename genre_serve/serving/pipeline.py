"""The recommend pipeline in process, on the PyTorch model of a training run:
what the served genre_recommend must answer (the integration tests and
bench_serving.py compare the two). Same request logic (recommend_logic.py),
same catalog (export.repository.catalog_of_run), same kernels; only the
towers and the ranker run in PyTorch instead of ONNX.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genre_serve.export.repository import catalog_of_run
from genre_serve.formats import repository as fmt
from genre_serve.formats.run_dir import Run, load_run
from genre_serve.models.genre import right_align
from genre_serve.retrieval import UserVectors
from genre_serve.serving.recommend_logic import ItemTables, Request, answer, parse_python_request


class InProcessRecommender:
    def __init__(self, run: Run | str | Path, depth: int | None = None, max_k: int = fmt.DEFAULT_MAX_K,
                 new_items: str = fmt.DEFAULT_NEW_ITEMS):
        self.run = run if isinstance(run, Run) else load_run(run)
        self.model = self.run.model.eval()
        self.catalog = catalog_of_run(self.run, depth or self.run.config.ranker_depth, max_k)
        with torch.no_grad():
            self.padded = self.model.items.padded_tables()
            self.tables = ItemTables(self.padded[0][1:].numpy(), self.padded[1][1:].numpy(), new_items,
                                     float(self.model.new_item_bias))

    @torch.inference_mode()
    def recommend(self, history: list[str], k: int = 10, scenario: str | None = None,
                  alpha: float | None = None) -> tuple[list[str], np.ndarray]:
        req = parse_python_request(self.catalog, history, k, scenario, alpha)
        return answer(self.catalog, req, self._user_vectors, self.tables.candidates,
                      lambda feats: self.model.ranker(torch.from_numpy(feats)).numpy())

    @torch.inference_mode()
    def explain(self, history: list[str], k: int = 10, scenario: str | None = None,
                alpha: float | None = None) -> list[str]:
        """BECAUSE of recommend(...): per recommended item, the history item it is closest to ("": none)."""
        req = parse_python_request(self.catalog, history, k, scenario, alpha)
        ids, _ = self.recommend(history, k, scenario, alpha)
        if not req.known.size:
            return [""] * len(ids)
        used_alpha = alpha if alpha is not None else float(self.model.alpha(torch.tensor([req.scenario]))[0])
        because = self.tables.because(req.known[-self.catalog.max_history :], self.catalog.ids.lookup(
            [i.encode() for i in ids]), used_alpha)
        return self.catalog.ids.external(because)

    def _user_vectors(self, req: Request) -> UserVectors:
        hist = right_align([req.known[-self.catalog.max_history :]], self.catalog.max_history)
        scen = torch.tensor([req.scenario])
        u_cf, u_ct = self.model.encode_users(hist, scen, self.padded)
        return UserVectors(u_cf.numpy(), u_ct.numpy(), self.model.alpha(scen).numpy())
