"""Request and response helpers of the python-backend models (inside tritonserver)."""

from __future__ import annotations

import triton_python_backend_utils as pb_utils


def error_response(message: str, invalid_argument: bool = True):
    """A failed response for one request; the other requests of the batch are
    unaffected. Invalid arguments carry Triton's INVALID_ARG code (HTTP 400)
    where the python backend supports error codes."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None) if invalid_argument else None
    error = pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


def optional_input(request, name: str):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def required_input(request, name: str):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"missing input {name}")
    return tensor.as_numpy()


def tensor_response(outputs: dict):
    """A response of named numpy outputs."""
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, v) for n, v in outputs.items()])
