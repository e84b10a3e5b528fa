"""Model control of a running server (explicit model control mode): loading
the newest version of every model, dependencies first, without dropping
requests. The models behind genre_recommend keep the previous version loaded
(version policy), and Triton serves the old genre_recommend until the new
one is ready."""

from __future__ import annotations

from genre_serve.client.core import classify, protocol_module
from genre_serve.formats.repository import MODELS


def load_latest(url: str, protocol: str = "http") -> None:
    """Loads the repository's newest version into the server at `url`."""
    client = protocol_module(protocol).InferenceServerClient(url)
    try:
        for model in MODELS:  # dependencies first
            try:
                client.load_model(model)
            except Exception as e:  # noqa: BLE001 - classified
                raise classify(e) from e
    finally:
        client.close()
