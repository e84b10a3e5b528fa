"""Client-side scoring: the user tower and the ranker stay on the server (the
standalone models: `export --standalone-models`); the fused top-K and the
cross features run here, with the genre_serve extension, against the item
tables of an exported version directory.

For a catalog the client holds anyway (edge caches, batch jobs), this moves
the whole-catalog pass off the server. The answers equal genre_recommend's:
the same request logic (serving.recommend_logic) and the same kernels.
Imported on demand (it loads the extension): ``genre_serve.client`` itself
stays free of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genre_serve.client.client import GenreClient
from genre_serve.errors import ClientError
from genre_serve.formats import repository as fmt
from genre_serve.retrieval import UserVectors
from genre_serve.serving.recommend_logic import ItemTables, Request, answer, parse_python_request


class LocalScorer:
    def __init__(self, client: GenreClient, repository: str | Path, version: int | None = None):
        repo = Path(repository)
        if not fmt.has_standalone_models(repo):
            raise ClientError(f"{repo}: LocalScorer calls genre_user_tower and genre_ranker, which this repository "
                              "does not serve: export with --standalone-models")
        self.version = version or fmt.latest_version(repo)
        self.client = client
        self.catalog = fmt.Catalog.load(repo / fmt.RECOMMEND / str(self.version))
        self.tables = ItemTables.load(repo / fmt.RECOMMEND / str(self.version))

    def recommend(self, history: Sequence[str], k: int = 10, scenario: str | None = None,
                  alpha: float | None = None) -> tuple[list[str], np.ndarray]:
        """(item ids, scores), equal to GenreClient.recommend for the same version."""
        req = parse_python_request(self.catalog, history, k, scenario, alpha)
        return answer(self.catalog, req, self._user_vectors, self.tables.candidates, self._rank)

    def _user_vectors(self, req: Request) -> UserVectors:
        out = self.client.infer(fmt.USER_TOWER, req.tower_inputs(self.catalog), [fmt.U_CF, fmt.U_CT, fmt.ALPHA],
                                version=self.version)
        return UserVectors(out[fmt.U_CF], out[fmt.U_CT], out[fmt.ALPHA])

    def _rank(self, features: np.ndarray) -> np.ndarray:
        return self.client.infer(fmt.RANKER, {fmt.FEATURES: features}, [fmt.LOGITS], version=self.version)[fmt.LOGITS]
