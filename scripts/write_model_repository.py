"""Regenerates the tracked model_repository/ template: each default model's
config.pbtxt for the default model and serving configuration (instance
counts for a 2-CPU server), and the thin python-backend entry points.
`genre-serve export` writes the same files (a test keeps the two identical)."""

import shutil
from pathlib import Path

from genre_serve.export.repository import write_configs
from genre_serve.export.serving_config import TEMPLATE_SERVING
from genre_serve.formats import repository as fmt
from genre_serve.models.genre import ModelConfig

TEMPLATE = Path(__file__).resolve().parent.parent / "model_repository"


def main(repo: Path = TEMPLATE) -> None:
    cfg = ModelConfig()
    for model in fmt.STANDALONE_MODELS:  # written only by export --standalone-models
        shutil.rmtree(repo / model, ignore_errors=True)
    write_configs(repo, TEMPLATE_SERVING, cfg.cf_dim, cfg.dim, cfg.max_history)
    for model in fmt.RECOMMEND_MODELS:
        (repo / model / "1").mkdir(parents=True, exist_ok=True)
        fmt.write_shim(repo / model / "1", model)
    print(f"wrote {repo}")


if __name__ == "__main__":
    main()
