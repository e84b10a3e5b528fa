"""A Python-based Triton backend named ``onnxruntime``: runs
``<model>/<version>/model.onnx`` with onnxruntime.

The pytriton build of tritonserver has no native onnxruntime backend; this one
stands in for it locally, so that the same repository (``backend:
"onnxruntime"``) runs in the NGC container with the native backend unchanged.
Requests gathered by the dynamic batcher are concatenated into one session
run when their shapes agree; a malformed request fails alone: should a
concatenated run fail, each of its requests is run on its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from genre_serve.formats.repository import MODEL_ONNX
from genre_serve.serving.stubs.responses import error_response, required_input, tensor_response


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        self.batched = config.get("max_batch_size", 0) > 0
        path = Path(args["model_repository"]) / args["model_version"] / MODEL_ONNX
        options = ort.SessionOptions()
        # Parallelism comes from instances and batching; one thread per session
        # keeps instances from fighting over the cores.
        options.intra_op_num_threads = int(os.environ.get("GENRE_SERVE_ORT_THREADS", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.dtypes = {i.name: _numpy_dtype(i.type) for i in self.session.get_inputs()}

    def execute(self, requests):
        arrays, responses = [], [None] * len(requests)
        for r, request in enumerate(requests):
            try:
                arrays.append((r, self._inputs_of(request)))
            except ValueError as e:
                responses[r] = error_response(str(e))
        # Concatenate requests whose non-batch shapes agree; run each group once.
        groups: dict[tuple, list] = {}
        for r, feed in arrays:
            key = tuple(feed[n].shape[1:] for n in self.inputs) if self.batched else (r,)
            groups.setdefault(key, []).append((r, feed))
        for members in groups.values():
            try:
                if self.batched and len(members) > 1:
                    feed = {n: np.concatenate([m[1][n] for m in members]) for n in self.inputs}
                    sizes = [m[1][self.inputs[0]].shape[0] for m in members]
                else:
                    feed, sizes = members[0][1], None
                out = self.session.run(self.outputs, feed)
                if sizes is None:
                    responses[members[0][0]] = self._response(out)
                    continue
                offsets = np.cumsum([0] + sizes)
                for (r, _), lo, hi in zip(members, offsets[:-1], offsets[1:]):
                    responses[r] = self._response([o[lo:hi] for o in out])
            except Exception as e:  # an onnxruntime failure answers these requests, not the server
                if len(members) == 1:
                    responses[members[0][0]] = error_response(f"onnxruntime: {e}", invalid_argument=False)
                    continue
                for r, feed in members:  # find the request at fault: run each alone
                    try:
                        responses[r] = self._response(self.session.run(self.outputs, feed))
                    except Exception as e1:  # noqa: BLE001
                        responses[r] = error_response(f"onnxruntime: {e1}", invalid_argument=False)
        return responses

    def _inputs_of(self, request) -> dict:
        feed = {}
        for name in self.inputs:
            feed[name] = required_input(request, name).astype(self.dtypes[name], copy=False)
        return feed

    def _response(self, outputs):
        return tensor_response({n: np.ascontiguousarray(o) for n, o in zip(self.outputs, outputs)})


def _numpy_dtype(onnx_type: str):
    return {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
            "tensor(bool)": np.bool_, "tensor(double)": np.float64}.get(onnx_type, np.float32)
