"""`genre-serve export`: a training run -> a new version in a Triton model repository.

    REPO/<model>/config.pbtxt               written from data (model_configs.py)
    REPO/genre_item_tower/<v>/model.onnx    + tokenizer/ for clients that embed texts
    REPO/genre_user_tower/<v>/model.onnx
    REPO/genre_ranker/<v>/model.onnx
    REPO/genre_retrieve/<v>/model.py        + item_cf.npy, item_ct.npy, retrieve.json
    REPO/genre_recommend/<v>/model.py       + catalog.json, popularity.npy, recommend.json

Every model of one export gets the same version number; genre_recommend
calls the others at its own version. A version is written into a temporary
directory and renamed into place, so a server polling the repository never
sees half a version. The repository keeps the newest `keep_versions`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genre_serve.errors import GenreServeError
from genre_serve.export import model_configs as mc
from genre_serve.export.onnx_models import (
    ITEM_TOWER,
    RANKER,
    USER_TOWER,
    ItemTowerExport,
    RankerExport,
    UserTowerExport,
    check_against_torch,
    export_module,
    item_tower_examples,
    ranker_examples,
    user_tower_examples,
)
from genre_serve.models.text_encoder import TextEncoder, load_tokenizer
from genre_serve.retrieval import check_new_item_rule
from genre_serve.train.run_dir import Run, load_run

PYTHON_MODEL_SHIMS = {
    mc.RETRIEVE: "from genre_serve.serving.retrieve_model import TritonPythonModel  # noqa: F401\n",
    mc.RECOMMEND: "from genre_serve.serving.recommend_model import TritonPythonModel  # noqa: F401\n",
}
SHIM_HEADER = "# Thin python-backend entry point; the logic lives in the genre_serve package.\n"


class ExportError(GenreServeError, ValueError):
    """The repository or the export request is invalid."""


@dataclass
class ExportResult:
    repository: Path
    version: int
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    removed_versions: list[int] = field(default_factory=list)


def versions_of(repository: Path, model: str) -> list[int]:
    folder = repository / model
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(repository: Path) -> int:
    return max((v for m in mc.MODELS for v in versions_of(repository, m)), default=0) + 1


def write_configs(repository: Path, serving: mc.ServingConfig, cf_dim: int, ct_dim: int, max_history: int) -> None:
    for name, doc in mc.config_dicts(serving, cf_dim, ct_dim, max_history).items():
        folder = repository / name
        folder.mkdir(parents=True, exist_ok=True)
        text = mc.to_pbtxt(doc)
        existing = folder / "config.pbtxt"
        if existing.exists() and versions_of(repository, name) and existing.read_text() != text:
            old = existing.read_text()
            if _shape_lines(old) != _shape_lines(text):
                raise ExportError(
                    f"{name}: the repository's versions have other tensor shapes than this run "
                    "(all versions of a model share one config.pbtxt): export into a new repository"
                )
        existing.write_text(text)


def reconfigure(repository: str | Path, serving: mc.ServingConfig) -> None:
    """Rewrites every config.pbtxt of an exported repository for other serving
    settings (queue, batching, instances); the model files stay as they are."""
    repo = Path(repository)
    versions = versions_of(repo, mc.RECOMMEND)
    if not versions:
        raise ExportError(f"{repo}: no exported version to reconfigure")
    meta = json.loads((repo / mc.RECOMMEND / str(versions[-1]) / "recommend.json").read_text())
    write_configs(repo, serving, int(meta["cf_dim"]), int(meta["ct_dim"]), int(meta["max_history"]))


def _shape_lines(pbtxt: str) -> list[str]:
    return [line.strip() for line in pbtxt.splitlines() if line.strip().startswith(("name:", "dims:", "data_type:"))]


def write_shims(version_dir: Path, model: str) -> None:
    (version_dir / "model.py").write_text(SHIM_HEADER + PYTHON_MODEL_SHIMS[model])


def catalog_documents(run: Run, depth: int, max_k: int) -> tuple[dict, dict, np.ndarray]:
    """catalog.json, recommend.json and popularity of a run (also used in-process)."""
    popularity = run.split.train_counts().astype(np.float32)
    catalog = {"ids": run.items.ids, "titles": run.titles}
    meta = {
        "scenarios": run.scenarios,
        "max_history": run.config.model.max_history,
        "depth": depth,
        "max_k": max_k,
        "cf_dim": run.config.model.cf_dim,
        "ct_dim": run.config.model.dim,
        "recent_popularity_days": run.config.model.recent_popularity_days,
        "dataset": run.meta.get("dataset"),
    }
    return catalog, meta, popularity


def export_run(
    run_dir: str | Path,
    repository: str | Path,
    version: int | None = None,
    serving: mc.ServingConfig = mc.ServingConfig(),
    keep_versions: int = 3,
    depth: int | None = None,
    max_k: int = 1000,
    new_items: str = "content",
    new_item_bias: float | None = None,
) -> ExportResult:
    """`new_item_bias`: added to the content score of items without CF
    signal (None: the one the run fitted on validation)."""
    try:
        check_new_item_rule(new_items)
    except ValueError as e:
        raise ExportError(str(e)) from None
    if new_item_bias is not None and not np.isfinite(new_item_bias):
        raise ExportError(f"--new-item-bias must be a finite number, got {new_item_bias}")
    run = load_run(run_dir)
    repo = Path(repository)
    repo.mkdir(parents=True, exist_ok=True)
    version = next_version(repo) if version is None else version
    if version <= 0:
        raise ExportError(f"--version must be positive, got {version}")
    taken = [m for m in mc.MODELS if version in versions_of(repo, m)]
    if taken:
        raise ExportError(f"version {version} already exists for {', '.join(taken)}")
    if keep_versions < 1:
        raise ExportError("keep_versions must be at least 1")
    model, cfg = run.model.eval(), run.config
    depth = depth or cfg.ranker_depth
    write_configs(repo, serving, cfg.model.cf_dim, cfg.model.dim, cfg.model.max_history)
    result = ExportResult(repo, version)
    staging = {m: repo / m / f".{version}.staging" for m in mc.MODELS}
    try:
        for folder in staging.values():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        _export_user_tower(run, staging[mc.USER_TOWER], result)
        _export_ranker(run, staging[mc.RANKER], result)
        _export_item_tower(run, staging[mc.ITEM_TOWER], result)
        with torch.no_grad():
            item_cf, item_ct = (t.numpy().astype(np.float32) for t in model.items.tables())
        np.save(staging[mc.RETRIEVE] / "item_cf.npy", item_cf)
        np.save(staging[mc.RETRIEVE] / "item_ct.npy", item_ct)
        (staging[mc.RETRIEVE] / "retrieve.json").write_text(json.dumps({
            "max_k": max_k, "new_items": new_items,
            "new_item_bias": float(run.model.new_item_bias if new_item_bias is None else new_item_bias)}))
        catalog, meta, popularity = catalog_documents(run, depth, max_k)
        (staging[mc.RECOMMEND] / "catalog.json").write_text(json.dumps(catalog))
        (staging[mc.RECOMMEND] / "recommend.json").write_text(json.dumps(meta, indent=2))
        np.save(staging[mc.RECOMMEND] / "popularity.npy", popularity)
        for m in mc.PYTHON_MODELS:
            write_shims(staging[m], m)
        # Dependencies first: a server loading versions as they appear finds
        # the models genre_recommend calls before genre_recommend itself.
        for m in (mc.ITEM_TOWER, mc.USER_TOWER, mc.RETRIEVE, mc.RANKER, mc.RECOMMEND):
            staging[m].rename(repo / m / str(version))
    finally:
        for folder in staging.values():
            shutil.rmtree(folder, ignore_errors=True)
    result.removed_versions = prune_versions(repo, keep_versions)
    return result


def derive_version(repository: Path, edit: Callable[[dict[str, Path], dict[str, Path]], None],
                   keep_versions: int = 3) -> int:
    """A new version of every model from the latest one, changed by
    `edit(latest folders, new folders)` before anything is published. The new
    folders are staged beside the old ones and renamed into place,
    dependencies first, so a server polling the repository never sees half a
    version; on any error nothing is published. Returns the new version."""
    latest = max(versions_of(repository, mc.RECOMMEND), default=None)
    if latest is None:
        raise ExportError(f"{repository}: genre_recommend has no version to derive a new one from")
    missing = [m for m in mc.MODELS if latest not in versions_of(repository, m)]
    if missing:
        raise ExportError(f"{repository}: version {latest} is missing for {', '.join(missing)}")
    check_repository(repository)  # every file present, every ONNX file valid: one clear error, not a traceback
    if keep_versions < 1:
        raise ExportError("keep_versions must be at least 1")
    src = {m: repository / m / str(latest) for m in mc.MODELS}
    version = next_version(repository)
    staging = {m: repository / m / f".{version}.staging" for m in mc.MODELS}
    try:
        for m in mc.MODELS:
            shutil.rmtree(staging[m], ignore_errors=True)
            shutil.copytree(src[m], staging[m])
        edit(src, staging)
        for m in (mc.ITEM_TOWER, mc.USER_TOWER, mc.RETRIEVE, mc.RANKER, mc.RECOMMEND):
            staging[m].rename(repository / m / str(version))
    finally:
        for folder in staging.values():
            shutil.rmtree(folder, ignore_errors=True)
    prune_versions(repository, keep_versions)
    return version


# The files each model's version folder must hold (besides folders such as tokenizer/).
VERSION_FILES = {
    mc.ITEM_TOWER: ("model.onnx",),
    mc.USER_TOWER: ("model.onnx",),
    mc.RANKER: ("model.onnx",),
    mc.RETRIEVE: ("model.py", "item_cf.npy", "item_ct.npy", "retrieve.json"),
    mc.RECOMMEND: ("model.py", "catalog.json", "popularity.npy", "recommend.json"),
}


def check_repository(repository: str | Path) -> list[int]:
    """The versions a model repository can serve, or an ExportError naming the
    first thing wrong: a missing model, config.pbtxt or version folder (every
    genre_recommend version needs the same version of the models it calls),
    a missing file, or an ONNX file that does not parse."""
    import onnx

    repo = Path(repository)
    if not repo.is_dir():
        raise ExportError(f"model repository not found: {repo}")
    missing = [m for m in mc.MODELS if not (repo / m / "config.pbtxt").is_file()]
    if len(missing) == len(mc.MODELS):
        raise ExportError(f"{repo} holds no genre_serve model: run `genre-serve export` first")
    if missing:
        raise ExportError(f"{repo}: model(s) {', '.join(missing)} missing (no <model>/config.pbtxt)")
    versions = versions_of(repo, mc.RECOMMEND)
    if not versions:
        raise ExportError(f"{repo}/{mc.RECOMMEND} has no version folder: run `genre-serve export` first")
    for v in versions:
        for m in mc.MODELS:
            folder = repo / m / str(v)
            if not folder.is_dir():
                raise ExportError(f"{repo}: {mc.RECOMMEND} version {v} needs {m}/{v}, which is missing")
            for name in VERSION_FILES[m]:
                if not (folder / name).is_file():
                    raise ExportError(f"{folder / name}: missing")
            if (folder / "model.onnx").is_file():
                try:
                    onnx.checker.check_model(str(folder / "model.onnx"))
                except Exception as e:  # noqa: BLE001 - any parse/check failure means the same to the user
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise ExportError(f"{folder / 'model.onnx'}: not a valid ONNX model ({first})") from None
    return versions


def prune_versions(repo: Path, keep: int) -> list[int]:
    removed = set()
    for m in mc.MODELS:
        for v in versions_of(repo, m)[:-keep]:
            shutil.rmtree(repo / m / str(v))
            removed.add(v)
    return sorted(removed)


def _export_user_tower(run: Run, folder: Path, result: ExportResult) -> None:
    module = UserTowerExport(run.model).eval()
    examples = user_tower_examples(len(run.items), len(run.scenarios), run.config.model.max_history)
    export_module(module, examples[1], USER_TOWER, folder / "model.onnx")
    result.max_abs_diff[mc.USER_TOWER] = check_against_torch(module, folder / "model.onnx", USER_TOWER, examples)


def _export_ranker(run: Run, folder: Path, result: ExportResult) -> None:
    module = RankerExport(run.model).eval()
    examples = ranker_examples(4 * (run.config.model.cf_dim + run.config.model.dim) + 1)
    export_module(module, examples[1], RANKER, folder / "model.onnx")
    result.max_abs_diff[mc.RANKER] = check_against_torch(module, folder / "model.onnx", RANKER, examples)


def _export_item_tower(run: Run, folder: Path, result: ExportResult) -> None:
    encoder = TextEncoder(run.config.text_encoder)
    module = ItemTowerExport(encoder, run.model).eval()
    tokenizer = load_tokenizer(run.config.text_encoder)
    tokenizer.save_pretrained(str(folder / "tokenizer"))
    (folder / "tokenizer" / "genre_serve.json").write_text(json.dumps({"max_length": run.config.max_text_length}))
    examples = item_tower_examples(tokenizer.vocab_size)
    export_module(module, examples[1], ITEM_TOWER, folder / "model.onnx")
    result.max_abs_diff[mc.ITEM_TOWER] = check_against_torch(module, folder / "model.onnx", ITEM_TOWER, examples)
