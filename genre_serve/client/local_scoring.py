"""Client-side scoring: the user tower and the ranker stay on the server; the
fused top-K and the cross features run here, with the genre_serve extension,
against the item tables of an exported version directory.

For a catalog the client holds anyway (edge caches, batch jobs), this moves
the whole-catalog pass off the server. The answers equal genre_recommend's:
the same request logic (serving.recommend_logic) and the same kernels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genre_serve.client.client import GenreClient
from genre_serve.export import model_configs as mc
from genre_serve.export.repository import versions_of
from genre_serve.serving.recommend_logic import Catalog, ItemTables, answer, parse_python_request, tower_inputs


class LocalScorer:
    def __init__(self, client: GenreClient, repository: str | Path, version: int | None = None):
        repo = Path(repository)
        self.version = version or max(versions_of(repo, mc.RECOMMEND), default=0)
        if not self.version:
            raise FileNotFoundError(f"{repo}: no exported version of {mc.RECOMMEND}")
        self.client = client
        self.catalog = Catalog.load(repo / mc.RECOMMEND / str(self.version))
        self.tables = ItemTables.load(repo / mc.RETRIEVE / str(self.version))

    def _infer(self, model: str, arrays: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        module = self.client._module
        inputs = []
        for name, value in arrays.items():
            dtype = {np.dtype(np.int64): "INT64", np.dtype(np.float32): "FP32"}[value.dtype]
            tensor = module.InferInput(name, list(value.shape), dtype)
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        requested = [module.InferRequestedOutput(n) for n in outputs]
        kwargs = {"client_timeout": self.client.timeout_s} if self.client.protocol == "grpc" else {}
        result = self.client._with_retries(
            lambda: self.client._client.infer(model, inputs, outputs=requested, model_version=str(self.version),
                                              **kwargs)
        )
        return [result.as_numpy(n) for n in outputs]

    def recommend(self, history, k: int = 10, scenario: str | None = None, alpha: float | None = None):
        """(item ids, scores), equal to GenreClient.recommend for the same version."""
        req = parse_python_request(self.catalog, history, k, scenario, alpha)
        return answer(self.catalog, req, self._user_vectors, self.tables.candidates,
                      lambda feats: self._infer(mc.RANKER, {"FEATURES": feats}, ["LOGITS"])[0])

    def _user_vectors(self, req):
        hist, lengths, scen = tower_inputs(self.catalog, req)
        return self._infer(mc.USER_TOWER, {"HISTORY": hist, "LENGTHS": lengths, "SCENARIO": scen},
                           ["U_CF", "U_CT", "ALPHA"])
