"""Each exported ONNX model passes onnx.checker and matches PyTorch on inputs
of several shapes (dynamic axes really dynamic); versions and configs."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from genre_serve.export import model_configs as mc
from genre_serve.export.onnx_models import (
    ITEM_TOWER_SPEC,
    RANKER_SPEC,
    USER_TOWER_SPEC,
    ItemTowerExport,
    RankerExport,
    UserTowerExport,
    check_against_torch,
    export_module,
    item_tower_examples,
    ranker_examples,
    user_tower_examples,
)
from genre_serve.formats import repository as fmt
from genre_serve.models.genre import GenreModel, ModelConfig
from genre_serve.models.text_encoder import TextEncoder

CFG = ModelConfig(dim=8, hidden=16, max_history=10, short_len=3, ranker_hidden=(8,))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = GenreModel(30, 3, torch.randn(30, 384), CFG).eval()
    with torch.no_grad():  # a served recent-popularity snapshot and per-scenario weights, not zeros
        m.items.recent_popularity[1:] = torch.rand(30) * 3
        m.user.recent_popularity_weight.weight.copy_(torch.tensor([[0.5], [1.0], [-0.25]]))
    return m


def test_user_encoder_onnx_matches_pytorch_and_the_index_tower(model, tmp_path):
    from genre_serve.export.onnx_models import USER_ENCODER_SPEC, UserEncoderExport, user_encoder_examples

    encoder = UserEncoderExport(model)
    examples = user_encoder_examples(CFG.cf_dim, CFG.dim, 3, CFG.max_history)
    export_module(encoder, examples[1], USER_ENCODER_SPEC, tmp_path / "e.onnx")
    assert check_against_torch(encoder, tmp_path / "e.onnx", USER_ENCODER_SPEC, examples) < 1e-4
    # The served tables' rows of a history give what the index tower gives for its indices.
    rng = np.random.default_rng(0)
    history = rng.integers(0, 30, (4, CFG.max_history))
    lengths = np.array([[CFG.max_history], [3], [1], [7]])
    scenario = np.array([[0], [1], [2], [1]])
    with torch.no_grad():
        cf, ct = (t.numpy() for t in model.items.tables())
    got = ort.InferenceSession(str(tmp_path / "e.onnx")).run(None, {
        "HISTORY_CF": cf[history], "HISTORY_CT": ct[history], "LENGTHS": lengths, "SCENARIO": scenario})
    tower = UserTowerExport(model)
    with torch.no_grad():
        want = tower(torch.from_numpy(history), torch.from_numpy(lengths), torch.from_numpy(scenario))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)


def test_user_tower_onnx_matches_pytorch_on_several_shapes(model, tmp_path):
    module = UserTowerExport(model)
    examples = user_tower_examples(30, 3, CFG.max_history)
    export_module(module, examples[1], USER_TOWER_SPEC, tmp_path / "u.onnx")
    assert check_against_torch(module, tmp_path / "u.onnx", USER_TOWER_SPEC, examples) < 1e-4
    # Another batch size and history length than the export example.
    sess = ort.InferenceSession(str(tmp_path / "u.onnx"))
    out = sess.run(None, {"HISTORY": np.zeros((7, 23), np.int64), "LENGTHS": np.ones((7, 1), np.int64),
                          "SCENARIO": np.zeros((7, 1), np.int64)})
    assert out[0].shape == (7, CFG.cf_dim) and out[1].shape == (7, CFG.dim) and out[2].shape == (7, 1)


def test_user_tower_equals_the_model_encoder(model):
    from genre_serve.models.genre import right_align

    tower = UserTowerExport(model)
    with torch.no_grad():
        got = tower(torch.tensor([[9, 9, 3, 4, 5]]), torch.tensor([[3]]), torch.tensor([[1]]))
        want = model.encode_users(right_align([[3, 4, 5]], 5), torch.tensor([1]))
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


def test_ranker_onnx_matches_pytorch(model, tmp_path):
    module = RankerExport(model)
    examples = ranker_examples(4 * (CFG.cf_dim + CFG.dim) + 1)
    export_module(module, examples[1], RANKER_SPEC, tmp_path / "r.onnx")
    assert check_against_torch(module, tmp_path / "r.onnx", RANKER_SPEC, examples) < 1e-4


def test_item_tower_onnx_matches_pytorch_with_any_token_count(model, tmp_path):
    module = ItemTowerExport(TextEncoder(), model)
    examples = item_tower_examples(30000)
    export_module(module, examples[1], ITEM_TOWER_SPEC, tmp_path / "i.onnx")
    assert check_against_torch(module, tmp_path / "i.onnx", ITEM_TOWER_SPEC, examples) < 1e-4


def test_config_pbtxt_is_valid_protobuf_with_dynamic_batching():
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    serving = mc.ServingConfig(max_batch_size=32, instances=2, max_queue_size=100, queue_timeout_us=250_000,
                               cpus=3, batch_instances=5)
    docs = mc.config_dicts(serving, 9, 8, 10, fmt.MODELS)
    for name, doc in docs.items():
        msg = text_format.Parse(mc.to_pbtxt(doc), model_config_pb2.ModelConfig())
        assert msg.name == name
        policy = msg.dynamic_batching.default_queue_policy
        if name in fmt.ENTRY_MODELS:  # bounded queue, rejection after the timeout
            assert policy.max_queue_size == 100 and policy.default_timeout_microseconds == 250_000
            assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
        else:  # the standalone models: steps of a client's own pipeline, never rejected midway
            assert not msg.dynamic_batching.HasField("default_queue_policy")
        if name != fmt.RECOMMEND:
            assert msg.max_batch_size == 32 and msg.dynamic_batching.max_queue_delay_microseconds == 500
        want_instances = {fmt.RECOMMEND: 4, fmt.RECOMMEND_BATCH: 5}.get(name, 2)  # the rule (CPUs + 1), or as given
        assert msg.instance_group[0].count == want_instances, name
        assert msg.version_policy.latest.num_versions == 1
    assert docs[fmt.RECOMMEND]["max_batch_size"] == 0
    assert set(mc.config_dicts(serving, 9, 8, 10)) == set(fmt.DEFAULT_MODELS)
    assert docs[fmt.RANKER]["input"][0]["dims"] == [-1, 4 * 17 + 1]


def test_an_unbounded_queue_leaves_genre_recommend_without_a_batcher():
    docs = mc.config_dicts(mc.ServingConfig(max_queue_size=0), 9, 8, 10)
    assert "dynamic_batching" not in docs[fmt.RECOMMEND]
    with pytest.raises(ValueError, match="max_queue_size"):
        mc.config_dicts(mc.ServingConfig(max_queue_size=-1), 9, 8, 10)
