"""Model control of a running server (explicit model control mode): loading
the newest version of every model the repository holds, without dropping
requests: Triton serves the old version of a model until the new one is
ready, and no model calls another, so each one switches on its own."""

from __future__ import annotations

from typing import Any

from genre_serve.client.core import classify, protocol_module
from genre_serve.formats.repository import CONTROL_KEY_ENV, MODELS, control_headers


def _index_names(index: Any) -> set[str]:
    """Model names of a repository index (HTTP: a list of dicts; gRPC: a protobuf)."""
    entries = index if isinstance(index, list) else getattr(index, "models", [])
    return {e["name"] if isinstance(e, dict) else e.name for e in entries}


def load_latest(url: str, protocol: str = "http", control_key: str | None = None) -> None:
    """Loads the repository's newest version into the server at `url`, in
    MODELS order (the entry points last). `control_key`: the server's
    model-control key (default: GENRE_SERVE_CONTROL_KEY)."""
    import os

    headers = control_headers(control_key or os.environ.get(CONTROL_KEY_ENV), protocol)
    client = protocol_module(protocol).InferenceServerClient(url)
    try:
        try:
            present = _index_names(client.get_model_repository_index(headers=headers))
            for model in MODELS:
                if model in present:
                    client.load_model(model, headers=headers)
        except Exception as e:  # noqa: BLE001 - classified
            raise classify(e) from e
    finally:
        client.close()
