"""config.pbtxt of every model, written from data through Triton's protobuf
(json_format.ParseDict -> text_format), never from string templates."""

from __future__ import annotations

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from genre_serve.export.serving_config import ServingConfig
from genre_serve.formats import repository as fmt
from genre_serve.formats.repository import ENTRY_MODELS, ITEM_TOWER, RANKER, RECOMMEND, RETRIEVE, USER_TOWER


def _tensor(name: str, dtype: str, dims: list[int], **extra) -> dict:
    return {"name": name, "data_type": dtype, "dims": dims, **extra}


def _common(name: str, cfg: ServingConfig, backend: str, max_batch: int, instances: int) -> dict:
    # The models behind genre_recommend keep one version more loaded: during a
    # rollout, requests still running on the old genre_recommend call the old
    # versions of the others, which must not be unloaded under them.
    versions = cfg.num_versions if name == RECOMMEND else cfg.num_versions + 1
    doc = {
        "name": name,
        "backend": backend,
        "max_batch_size": max_batch,
        "instance_group": [{"kind": cfg.kind, "count": instances}],
        "version_policy": {"latest": {"num_versions": versions}},
    }
    batching = {"max_queue_delay_microseconds": cfg.max_queue_delay_us} if max_batch > 0 else {}
    # Only the entry models get a bounded queue: the others are called by
    # genre_recommend, whose instance count already bounds their load, and a
    # rejection inside a request would waste the work already done for it.
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


def config_dicts(cfg: ServingConfig, cf_dim: int, ct_dim: int, max_history: int) -> dict[str, dict]:
    features = 4 * (cf_dim + ct_dim) + 1
    mb = cfg.max_batch_size
    item_tower = _common(ITEM_TOWER, cfg, "onnxruntime", mb, cfg.instances) | {
        "input": [_tensor(fmt.INPUT_IDS, "TYPE_INT64", [-1]), _tensor(fmt.ATTENTION_MASK, "TYPE_INT64", [-1])],
        "output": [_tensor(fmt.ITEM_CT, "TYPE_FP32", [ct_dim])],
    }
    user_tower = _common(USER_TOWER, cfg, "onnxruntime", mb, cfg.instances) | {
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
    ranker = _common(RANKER, cfg, "onnxruntime", mb, cfg.instances) | {
        "input": [_tensor(fmt.FEATURES, "TYPE_FP32", [-1, features])],
        "output": [_tensor(fmt.LOGITS, "TYPE_FP32", [-1])],
    }
    retrieve = _common(RETRIEVE, cfg, "python", mb, cfg.instances) | {
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
    recommend = _common(RECOMMEND, cfg, "python", 0, cfg.recommend_instances) | {
        "input": [
            _tensor(fmt.HISTORY, "TYPE_STRING", [-1]),
            _tensor(fmt.K, "TYPE_INT32", [1]),
            _tensor(fmt.SCENARIO, "TYPE_STRING", [1], optional=True),
            _tensor(fmt.ALPHA, "TYPE_FP32", [1], optional=True),
        ],
        "output": [_tensor(fmt.ITEM_IDS, "TYPE_STRING", [-1]), _tensor(fmt.SCORES, "TYPE_FP32", [-1])],
    }
    return {ITEM_TOWER: item_tower, USER_TOWER: user_tower, RETRIEVE: retrieve, RANKER: ranker, RECOMMEND: recommend}


def to_pbtxt(doc: dict) -> str:
    message = json_format.ParseDict(doc, model_config_pb2.ModelConfig())
    return text_format.MessageToString(message)
