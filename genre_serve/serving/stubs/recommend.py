"""genre_recommend: the one entry point (python backend, Business Logic Scripting).

One user per request (max_batch_size 0): external item ids of the history,
K, optional SCENARIO and ALPHA -> ITEM_IDS and SCORES, best first, never an
item of the history. Behind it: genre_user_tower -> genre_retrieve ->
genre_ranker, each called at this model's own version so that a rollout
never mixes the catalog of one version with the tables of another.

A cold user (empty history, or no id the catalog knows) gets the most popular
items. Why BLS and not an ensemble: the id mapping, the cold-user branch and
the per-request K and ALPHA are control flow an ensemble cannot express.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from genre_serve.errors import RequestError
from genre_serve.formats import repository as fmt
from genre_serve.retrieval import UserVectors
from genre_serve.serving.recommend_logic import Candidates, Request, answer, parse_request
from genre_serve.serving.stubs.responses import error_response, optional_input, tensor_response


class TritonPythonModel:
    def initialize(self, args):
        self.version = int(args["model_version"])
        self.catalog = fmt.Catalog.load(Path(args["model_repository"]) / args["model_version"])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                ids, scores = self._recommend(request)
                responses.append(tensor_response({
                    fmt.ITEM_IDS: np.array([i.encode() for i in ids], dtype=np.object_),
                    fmt.SCORES: scores.astype(np.float32),
                }))
            except RequestError as e:
                responses.append(error_response(str(e)))
            except Exception as e:  # noqa: BLE001 - one request's failure must not fail the others
                responses.append(error_response(f"internal error: {type(e).__name__}: {e}", invalid_argument=False))
        return responses

    def _call(self, model: str, inputs: dict, outputs: list[str]) -> list[np.ndarray]:
        request = pb_utils.InferenceRequest(
            model_name=model,
            model_version=self.version,
            requested_output_names=outputs,
            inputs=[pb_utils.Tensor(n, v) for n, v in inputs.items()],
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return [pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in outputs]

    def _recommend(self, request):
        inputs = (optional_input(request, name) for name in fmt.TENSORS[fmt.RECOMMEND].inputs)
        req = parse_request(self.catalog, *inputs)  # HISTORY, K, SCENARIO, ALPHA
        return answer(self.catalog, req, self._user_vectors, self._candidates, self._rank)

    def _user_vectors(self, req: Request) -> UserVectors:
        return UserVectors(*self._call(fmt.USER_TOWER, req.tower_inputs(self.catalog), [fmt.U_CF, fmt.U_CT, fmt.ALPHA]))

    def _candidates(self, u_cf, u_ct, alpha, exclude, depth) -> Candidates:
        candidates, features = self._call(
            fmt.RETRIEVE,
            {fmt.U_CF: u_cf, fmt.U_CT: u_ct, fmt.ALPHA: alpha, fmt.EXCLUDE: exclude[None, :],
             fmt.K: np.array([[depth]], np.int32)},
            [fmt.CANDIDATES, fmt.FEATURES],
        )
        return Candidates(candidates[0], features)

    def _rank(self, features):
        return self._call(fmt.RANKER, {fmt.FEATURES: features}, [fmt.LOGITS])[0]
