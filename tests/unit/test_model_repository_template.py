"""The tracked model_repository/ is exactly what export writes for the defaults."""

from pathlib import Path

from genre_serve.export import model_configs as mc
from genre_serve.export.repository import write_configs
from genre_serve.export.serving_config import TEMPLATE_SERVING
from genre_serve.formats import repository as fmt
from genre_serve.models.genre import ModelConfig

TRACKED = Path(__file__).resolve().parents[2] / "model_repository"


def test_tracked_template_equals_what_export_writes(tmp_path):
    cfg = ModelConfig()
    write_configs(tmp_path, TEMPLATE_SERVING, cfg.cf_dim, cfg.dim, cfg.max_history)
    assert sorted(p.name for p in TRACKED.iterdir() if p.is_dir()) == sorted(fmt.DEFAULT_MODELS)
    for model in fmt.DEFAULT_MODELS:
        assert (TRACKED / model / "config.pbtxt").read_text() == (tmp_path / model / "config.pbtxt").read_text()
    for model in fmt.RECOMMEND_MODELS:
        (tmp_path / model / "1").mkdir(exist_ok=True)
        fmt.write_shim(tmp_path / model / "1", model)
        assert (TRACKED / model / "1" / "model.py").read_text() == (tmp_path / model / "1" / "model.py").read_text()


def test_recommend_contract_is_as_documented():
    text = (TRACKED / "genre_recommend" / "config.pbtxt").read_text()
    assert "max_batch_size" not in text or "max_batch_size: 0" in text
    for name, dtype in (("HISTORY", "TYPE_STRING"), ("K", "TYPE_INT32"), ("SCENARIO", "TYPE_STRING"),
                        ("ALPHA", "TYPE_FP32"), ("ITEM_IDS", "TYPE_STRING"), ("SCORES", "TYPE_FP32")):
        block = text.split(f'name: "{name}"')[1].split("}")[0]
        assert f"data_type: {dtype}" in block


def test_every_config_names_the_tensors_of_the_repository_format():
    cfg = ModelConfig()
    for name, doc in mc.config_dicts(mc.ServingConfig(), cfg.cf_dim, cfg.dim, cfg.max_history, fmt.MODELS).items():
        assert tuple(t["name"] for t in doc["input"]) == fmt.TENSORS[name].inputs, name
        assert tuple(t["name"] for t in doc["output"]) == fmt.TENSORS[name].outputs, name


def test_the_batched_entry_point_has_the_same_tensors_with_a_batch_dimension():
    text = (TRACKED / "genre_recommend_batch" / "config.pbtxt").read_text()
    assert "max_batch_size: 64" in text and "allow_ragged_batch: true" in text
