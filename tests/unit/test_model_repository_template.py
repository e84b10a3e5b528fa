"""The tracked model_repository/ is exactly what export writes for the defaults."""

from pathlib import Path

from genre_serve.export import model_configs as mc
from genre_serve.export.repository import write_configs, write_shims
from genre_serve.models.genre import ModelConfig

TRACKED = Path(__file__).resolve().parents[2] / "model_repository"


def test_tracked_template_equals_what_export_writes(tmp_path):
    cfg = ModelConfig()
    write_configs(tmp_path, mc.ServingConfig(), cfg.cf_dim, cfg.dim, cfg.max_history)
    for model in mc.MODELS:
        assert (TRACKED / model / "config.pbtxt").read_text() == (tmp_path / model / "config.pbtxt").read_text()
    for model in mc.PYTHON_MODELS:
        (tmp_path / model / "1").mkdir(exist_ok=True)
        write_shims(tmp_path / model / "1", model)
        assert (TRACKED / model / "1" / "model.py").read_text() == (tmp_path / model / "1" / "model.py").read_text()


def test_recommend_contract_is_as_documented():
    text = (TRACKED / "genre_recommend" / "config.pbtxt").read_text()
    assert "max_batch_size" not in text or "max_batch_size: 0" in text
    for name, dtype in (("HISTORY", "TYPE_STRING"), ("K", "TYPE_INT32"), ("SCENARIO", "TYPE_STRING"),
                        ("ALPHA", "TYPE_FP32"), ("ITEM_IDS", "TYPE_STRING"), ("SCORES", "TYPE_FP32")):
        block = text.split(f'name: "{name}"')[1].split("}")[0]
        assert f"data_type: {dtype}" in block
