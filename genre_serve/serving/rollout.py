"""Switching a running server (explicit model control) to the newest version
of every model, dependencies first, without dropping requests: the models
behind genre_recommend keep the previous version loaded (version policy), and
Triton serves the old genre_recommend until the new one is ready."""

from __future__ import annotations

from genre_serve.client.client import classify, protocol_module
from genre_serve.export.model_configs import ITEM_TOWER, RANKER, RECOMMEND, RETRIEVE, USER_TOWER

LOAD_ORDER = (ITEM_TOWER, USER_TOWER, RETRIEVE, RANKER, RECOMMEND)


def load_latest(url: str, protocol: str = "http") -> None:
    module = protocol_module(protocol)
    client = module.InferenceServerClient(url)
    try:
        for model in LOAD_ORDER:
            try:
                client.load_model(model)
            except Exception as e:  # noqa: BLE001
                raise classify(e) from e
    finally:
        client.close()
