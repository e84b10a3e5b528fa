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

from genre_serve.export.model_configs import RANKER, RETRIEVE, USER_TOWER
from genre_serve.serving.recommend_logic import Catalog, RequestError, answer, parse_request, tower_inputs
from genre_serve.serving.triton_utils import error_response, optional_input


class TritonPythonModel:
    def initialize(self, args):
        self.version = int(args["model_version"])
        self.catalog = Catalog.load(Path(args["model_repository"]) / args["model_version"])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                ids, scores = self._recommend(request)
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("ITEM_IDS", np.array([i.encode() for i in ids], dtype=np.object_)),
                    pb_utils.Tensor("SCORES", scores.astype(np.float32)),
                ]))
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
        req = parse_request(
            self.catalog,
            optional_input(request, "HISTORY"),
            optional_input(request, "K"),
            optional_input(request, "SCENARIO"),
            optional_input(request, "ALPHA"),
        )
        return answer(self.catalog, req, self._user_vectors, self._candidates, self._rank)

    def _user_vectors(self, req):
        history, lengths, scenario = tower_inputs(self.catalog, req)
        return self._call(
            USER_TOWER, {"HISTORY": history, "LENGTHS": lengths, "SCENARIO": scenario}, ["U_CF", "U_CT", "ALPHA"]
        )

    def _candidates(self, u_cf, u_ct, alpha, exclude, depth):
        candidates, _, features = self._call(
            RETRIEVE,
            {"U_CF": u_cf, "U_CT": u_ct, "ALPHA": alpha, "EXCLUDE": exclude[None, :],
             "K": np.array([[depth]], np.int32)},
            ["CANDIDATES", "SCORES", "FEATURES"],
        )
        return candidates[0], features

    def _rank(self, features):
        return self._call(RANKER, {"FEATURES": features}, ["LOGITS"])[0]
