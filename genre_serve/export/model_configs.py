"""config.pbtxt of every model, written from data through Triton's protobuf
(json_format.ParseDict -> text_format), never from string templates."""

from __future__ import annotations

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from genre_serve.export.serving_config import ServingConfig
from genre_serve.formats import repository as fmt
from genre_serve.formats.repository import (
    ENTRY_MODELS,
    ITEM_TOWER,
    RANKER,
    RECOMMEND,
    RECOMMEND_BATCH,
    RETRIEVE,
    USER_TOWER,
)
from genre_serve.formats.resources import KERNEL_THREADS, ORT_THREADS, check_thread_value


def _tensor(name: str, dtype: str, dims: list[int], **extra) -> dict:
    return {"name": name, "data_type": dtype, "dims": dims, **extra}


def _common(name: str, cfg: ServingConfig, backend: str, max_batch: int, instances: int) -> dict:
    # No model calls another (genre_recommend answers from its own folder), so
    # every model serves the same latest N versions.
    versions = cfg.num_versions
    doc = {
        "name": name,
        "backend": backend,
        "max_batch_size": max_batch,
        "instance_group": [{"kind": cfg.kind, "count": instances}],
        "version_policy": {"latest": {"num_versions": versions}},
    }
    batching = {"max_queue_delay_microseconds": cfg.max_queue_delay_us} if max_batch > 0 else {}
    # The entry models get a bounded queue. The standalone models are called
    # by clients' own pipelines, one step of a request each: a rejection in
    # the middle would waste the steps already done, so they queue unbounded.
    if name in ENTRY_MODELS:
        policy = queue_policy(cfg)
        if policy:
            # With max_batch_size 0 the dynamic batcher forms no batches; it is
            # what carries the queue policy.
            batching["default_queue_policy"] = policy
    if max_batch > 0 or batching:
        doc["dynamic_batching"] = batching
    return doc


def queue_policy(cfg: ServingConfig) -> dict:
    if cfg.max_queue_size < 0 or cfg.queue_timeout_us < 0:
        raise ValueError("max_queue_size and queue_timeout_us must be >= 0")
    policy: dict = {}
    if cfg.max_queue_size > 0:
        policy["max_queue_size"] = cfg.max_queue_size
    if cfg.queue_timeout_us > 0:
        policy |= {"timeout_action": "REJECT", "default_timeout_microseconds": cfg.queue_timeout_us,
                   "allow_timeout_override": True}
    return policy


def _recommend_tensors(batched: bool) -> dict:
    # With a batch dimension, HISTORY rows of any length batch together (ragged).
    ragged = {"allow_ragged_batch": True} if batched else {}
    return {
        "input": [
            _tensor(fmt.HISTORY, "TYPE_STRING", [-1], **ragged),
            _tensor(fmt.K, "TYPE_INT32", [1]),
            _tensor(fmt.SCENARIO, "TYPE_STRING", [1], optional=True),
            _tensor(fmt.ALPHA, "TYPE_FP32", [1], optional=True),
            _tensor(fmt.EXPLAIN, "TYPE_BOOL", [1], optional=True),
        ],
        "output": [_tensor(fmt.ITEM_IDS, "TYPE_STRING", [-1]), _tensor(fmt.SCORES, "TYPE_FP32", [-1]),
                   _tensor(fmt.BECAUSE, "TYPE_STRING", [-1])],
    }


def _thread_parameters(cfg: ServingConfig) -> dict:
    return {"parameters": {ORT_THREADS: {"string_value": check_thread_value(cfg.ort_threads, ORT_THREADS)},
                           KERNEL_THREADS: {"string_value": check_thread_value(cfg.kernel_threads,
                                                                               KERNEL_THREADS)}}}


def config_dicts(cfg: ServingConfig, cf_dim: int, ct_dim: int, max_history: int,
                 models: tuple[str, ...] = fmt.DEFAULT_MODELS) -> dict[str, dict]:
    """config.pbtxt of each of `models` as a dict."""
    features = 4 * (cf_dim + ct_dim) + 1
    mb = cfg.max_batch_size
    if mb < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {mb}")
    recommend_instances, batch_instances = cfg.instance_counts()
    docs = {}
    docs[ITEM_TOWER] = _common(ITEM_TOWER, cfg, "onnxruntime", mb, cfg.instances) | {
        "input": [_tensor(fmt.INPUT_IDS, "TYPE_INT64", [-1]), _tensor(fmt.ATTENTION_MASK, "TYPE_INT64", [-1])],
        "output": [_tensor(fmt.ITEM_CT, "TYPE_FP32", [ct_dim])],
    }
    docs[USER_TOWER] = _common(USER_TOWER, cfg, "onnxruntime", mb, cfg.instances) | {
        "input": [
            _tensor(fmt.HISTORY, "TYPE_INT64", [max_history]),
            _tensor(fmt.LENGTHS, "TYPE_INT64", [1]),
            _tensor(fmt.SCENARIO, "TYPE_INT64", [1]),
        ],
        "output": [
            _tensor(fmt.U_CF, "TYPE_FP32", [cf_dim]),
            _tensor(fmt.U_CT, "TYPE_FP32", [ct_dim]),
            _tensor(fmt.ALPHA, "TYPE_FP32", [1]),
        ],
    }
    docs[RETRIEVE] = _common(RETRIEVE, cfg, "python", mb, cfg.instances) | {
        "input": [
            _tensor(fmt.U_CF, "TYPE_FP32", [cf_dim]),
            _tensor(fmt.U_CT, "TYPE_FP32", [ct_dim]),
            _tensor(fmt.ALPHA, "TYPE_FP32", [1]),
            # Seen items: one list per request, any length (batched without padding).
            _tensor(fmt.EXCLUDE, "TYPE_INT64", [-1], allow_ragged_batch=True),
            _tensor(fmt.K, "TYPE_INT32", [1]),
        ],
        "output": [
            _tensor(fmt.CANDIDATES, "TYPE_INT64", [-1]),
            _tensor(fmt.SCORES, "TYPE_FP32", [-1]),
            _tensor(fmt.FEATURES, "TYPE_FP32", [-1, features]),
        ],
    }
    docs[RANKER] = _common(RANKER, cfg, "onnxruntime", mb, cfg.instances) | {
        "input": [_tensor(fmt.FEATURES, "TYPE_FP32", [-1, features])],
        "output": [_tensor(fmt.LOGITS, "TYPE_FP32", [-1])],
    }
    docs[RECOMMEND] = (_common(RECOMMEND, cfg, "python", 0, recommend_instances) | _recommend_tensors(False)
                       | _thread_parameters(cfg))
    docs[RECOMMEND_BATCH] = (_common(RECOMMEND_BATCH, cfg, "python", mb, batch_instances)
                             | _recommend_tensors(True) | _thread_parameters(cfg))
    return {m: docs[m] for m in fmt.MODELS if m in models}


def to_pbtxt(doc: dict) -> str:
    message = json_format.ParseDict(doc, model_config_pb2.ModelConfig())
    return text_format.MessageToString(message)
