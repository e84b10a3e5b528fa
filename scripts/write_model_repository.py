"""Regenerates the tracked model_repository/ template: each model's
config.pbtxt for the default model and serving configuration, and the thin
python-backend entry points. `genre-serve export` writes the same files (a
test keeps the two identical)."""

from pathlib import Path

from genre_serve.export import model_configs as mc
from genre_serve.export.repository import write_configs
from genre_serve.formats import repository as fmt
from genre_serve.models.genre import ModelConfig

TEMPLATE = Path(__file__).resolve().parent.parent / "model_repository"


def main(repo: Path = TEMPLATE) -> None:
    cfg = ModelConfig()
    write_configs(repo, mc.ServingConfig(), cfg.cf_dim, cfg.dim, cfg.max_history)
    for model in fmt.PYTHON_MODELS:
        (repo / model / "1").mkdir(parents=True, exist_ok=True)
        fmt.write_shim(repo / model / "1", model)
    print(f"wrote {repo}")


if __name__ == "__main__":
    main()
