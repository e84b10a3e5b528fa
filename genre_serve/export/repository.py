"""`genre-serve export`: a training run -> a new version in a Triton model
repository (the layout and every artifact: genre_serve/formats/repository.py).

Every model of one export gets the same version number. genre_recommend's
version folder holds everything a request needs (genre_recommend_batch's
holds hard links of the same files); the standalone user tower, retrieve and
ranker models are written only with `standalone_models`. A version is
written into staging folders and renamed into place, so a server polling the
repository never sees half a version. The repository keeps the newest
`keep_versions`.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genre_serve.errors import ExportError
from genre_serve.export import model_configs as mc
from genre_serve.export.onnx_models import (
    ITEM_TOWER_SPEC,
    RANKER_SPEC,
    USER_ENCODER_SPEC,
    USER_TOWER_SPEC,
    ItemTowerExport,
    RankerExport,
    UserEncoderExport,
    UserTowerExport,
    check_against_torch,
    export_module,
    item_tower_examples,
    ranker_examples,
    user_encoder_examples,
    user_tower_examples,
)
from genre_serve.export.serving_config import ServingConfig
from genre_serve.formats import repository as fmt
from genre_serve.formats.run_dir import Run, load_run
from genre_serve.models.text_encoder import TextEncoder, load_tokenizer

DEFAULT_SERVING = ServingConfig()


@dataclass
class ExportResult:
    repository: Path
    version: int
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    removed_versions: list[int] = field(default_factory=list)


def write_configs(repository: Path, serving: ServingConfig, cf_dim: int, ct_dim: int, max_history: int,
                  models: tuple[str, ...] = fmt.DEFAULT_MODELS) -> None:
    for name, doc in mc.config_dicts(serving, cf_dim, ct_dim, max_history, models).items():
        folder = repository / name
        folder.mkdir(parents=True, exist_ok=True)
        text = mc.to_pbtxt(doc)
        existing = folder / fmt.CONFIG_PBTXT
        if existing.exists() and fmt.versions_of(repository, name) and existing.read_text() != text:
            old = existing.read_text()
            if _shape_lines(old) != _shape_lines(text):
                raise ExportError(
                    f"{name}: the repository's versions have other tensor shapes than this run "
                    "(all versions of a model share one config.pbtxt): export into a new repository"
                )
        existing.write_text(text)


def reconfigure(repository: str | Path, serving: ServingConfig) -> None:
    """Rewrites every config.pbtxt of an exported repository for other serving
    settings (queue, batching, instances); the model files stay as they are."""
    repo = Path(repository)
    catalog = fmt.Catalog.load(repo / fmt.RECOMMEND / str(fmt.latest_version(repo)))
    write_configs(repo, serving, catalog.cf_dim, catalog.ct_dim, catalog.max_history, fmt.models_of(repo))


def _shape_lines(pbtxt: str) -> list[str]:
    return [line.strip() for line in pbtxt.splitlines() if line.strip().startswith(("name:", "dims:", "data_type:"))]


def catalog_of_run(run: Run, depth: int, max_k: int = fmt.DEFAULT_MAX_K) -> fmt.Catalog:
    """The catalog a run is served with (exported, and used in-process)."""
    return fmt.Catalog.of(
        run.items.ids, run.popularity(), titles=list(run.titles),
        scenarios=run.scenarios, max_history=run.config.model.max_history, depth=depth, max_k=max_k,
        cf_dim=run.config.model.cf_dim, ct_dim=run.config.model.dim,
        recent_popularity_days=run.config.model.recent_popularity_days, dataset=run.meta.get("dataset"),
    )


def export_run(
    run_dir: str | Path,
    repository: str | Path,
    version: int | None = None,
    serving: ServingConfig = DEFAULT_SERVING,
    keep_versions: int = fmt.DEFAULT_KEEP_VERSIONS,
    depth: int | None = None,
    max_k: int = fmt.DEFAULT_MAX_K,
    new_items: str = fmt.DEFAULT_NEW_ITEMS,
    new_item_bias: float | None = None,
    standalone_models: bool = False,
    lock_timeout_s: float = fmt.DEFAULT_LOCK_TIMEOUT_S,
) -> ExportResult:
    """`new_item_bias`: added to the content score of items without CF
    signal (None: the one the run fitted on validation). `standalone_models`:
    also write genre_user_tower, genre_retrieve and genre_ranker (for clients
    that orchestrate their own pipeline); a repository that has them keeps
    getting them. The repository's writer lock is held throughout (a second
    writer waits up to `lock_timeout_s`)."""
    try:
        fmt.check_new_item_rule(new_items)
    except ValueError as e:
        raise ExportError(str(e)) from None
    if new_item_bias is not None and not np.isfinite(new_item_bias):
        raise ExportError(f"--new-item-bias must be a finite number, got {new_item_bias}")
    run = load_run(run_dir)
    if run.gate_rejection:
        raise ExportError(f"{run.path}: not exported: {run.gate_rejection}; it stays on disk for inspection")
    repo = Path(repository)
    created = not repo.exists()
    try:
        with fmt.writer_lock(repo, lock_timeout_s):
            fmt.remove_stale_staging(repo)
            fresh = not any(fmt.versions_of(repo, m) for m in fmt.MODELS)
            try:
                return _export_locked(run, repo, version, serving, keep_versions, depth, max_k, new_items,
                                      new_item_bias, standalone_models)
            except BaseException:
                if fresh and not created:
                    _remove_configs(repo)  # a first export that failed leaves the folder as it found it
                raise
    except BaseException:
        if created:
            shutil.rmtree(repo, ignore_errors=True)
        raise


def _remove_configs(repo: Path) -> None:
    for m in fmt.MODELS:
        (repo / m / fmt.CONFIG_PBTXT).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (repo / m).rmdir()  # only if empty


def _export_locked(run: Run, repo: Path, version: int | None, serving: ServingConfig, keep_versions: int,
                   depth: int | None, max_k: int, new_items: str, new_item_bias: float | None,
                   standalone_models: bool) -> ExportResult:
    version = fmt.next_version(repo) if version is None else version
    if version <= 0:
        raise ExportError(f"--version must be positive, got {version}")
    taken = [m for m in fmt.MODELS if version in fmt.versions_of(repo, m)]
    if taken:
        raise ExportError(f"version {version} already exists for {', '.join(taken)}")
    if keep_versions < 1:
        raise ExportError("keep_versions must be at least 1")
    if fmt.versions_of(repo, fmt.RECOMMEND) and fmt.RECOMMEND_BATCH not in fmt.models_of(repo):
        raise ExportError(f"{repo}: exported by an older genre_serve (repository format below "
                          f"{fmt.FORMAT_VERSION}); export into a new repository")
    model, cfg = run.model.eval(), run.config
    models = fmt.models_to_serve(standalone_models or fmt.has_standalone_models(repo))
    write_configs(repo, serving, cfg.model.cf_dim, cfg.model.dim, cfg.model.max_history, models)
    result = ExportResult(repo, version)
    with fmt.staged_version(repo, version, models=models) as staging:
        _export_onnx_models(run, staging, result)
        with torch.no_grad():
            item_cf, item_ct = (t.numpy().astype(np.float32) for t in model.items.tables())
        bias = float(run.model.new_item_bias if new_item_bias is None else new_item_bias)
        fmt.ItemTableFiles(item_cf, item_ct, max_k, new_items, bias).save(staging[fmt.RECOMMEND])
        catalog = catalog_of_run(run, depth or cfg.ranker_depth, max_k)
        catalog.with_retired(retired_in(repo, catalog)).save(staging[fmt.RECOMMEND])
        fmt.write_shim(staging[fmt.RECOMMEND], fmt.RECOMMEND)
        fmt.share_recommend_files(staging)
        if fmt.USER_TOWER in staging:
            _export_standalone(run, staging, result)
    result.removed_versions = fmt.prune_versions(repo, keep_versions)
    return result


def retired_in(repo: Path, catalog: fmt.Catalog) -> list[int]:
    """Indices in `catalog` of the items the repository's latest version has
    retired: retiring outlives the next export into the same repository."""
    versions = fmt.versions_of(repo, fmt.RECOMMEND)
    if not versions:
        return []
    latest = fmt.Catalog.load(repo / fmt.RECOMMEND / str(versions[-1]))
    found = [catalog.ids.index_of(i) for i in latest.ids.external(latest.retired)]
    return [i for i in found if i is not None]


def derive_version(repository: Path, edit: Callable[[dict[str, Path], dict[str, Path]], None],
                   keep_versions: int = fmt.DEFAULT_KEEP_VERSIONS,
                   lock_timeout_s: float = fmt.DEFAULT_LOCK_TIMEOUT_S, source: int | None = None) -> int:
    """A new version of every model from the latest one (or version
    `source`), changed by `edit(source folders, new folders)` before anything is published (staged
    and renamed into place; on any error nothing is published). The edit
    writes genre_recommend's folder (files are replaced, never written in
    place: the new folders start as hard links of the latest ones); the other
    entry point and genre_retrieve get its files after. Returns the new version.
    The repository's writer lock is held throughout."""
    if keep_versions < 1:
        raise ExportError("keep_versions must be at least 1")
    fmt.check_repository(repository)  # before waiting: a wrong target fails at once
    with fmt.writer_lock(repository, lock_timeout_s):
        # Every version complete (all models, all files, valid ONNX, this format):
        # one clear error, not a traceback. Again under the lock: a writer we waited for may have changed it.
        fmt.check_repository(repository)
        fmt.remove_stale_staging(repository)
        latest = fmt.latest_version(repository) if source is None else source
        if latest not in fmt.versions_of(repository, fmt.RECOMMEND):
            raise ExportError(f"{repository}: version {latest} is not on disk (kept: "
                              f"{fmt.versions_of(repository, fmt.RECOMMEND)}; older ones were pruned)")
        version = fmt.next_version(repository)
        with fmt.staged_version(repository, version, copy_from=latest) as staging:
            edit(fmt.version_dirs(repository, latest), staging)
            fmt.share_recommend_files(staging)
        fmt.prune_versions(repository, keep_versions)
    return version


def _export_onnx(module: torch.nn.Module, examples: list[tuple], spec, path: Path, name: str,
                 result: ExportResult) -> None:
    """One ONNX graph at `path`, checked against PyTorch on `examples`."""
    export_module(module, examples[1], spec, path)
    result.max_abs_diff[name] = check_against_torch(module, path, spec, examples)


def _export_checked(module: torch.nn.Module, examples: list[tuple], spec, folder: Path, model: str,
                    result: ExportResult) -> None:
    """One ONNX model as `folder`/model.onnx."""
    _export_onnx(module, examples, spec, folder / fmt.MODEL_ONNX, model, result)


def _export_standalone(run: Run, staging: dict[str, Path], result: ExportResult) -> None:
    """genre_user_tower (item indices in, the tables frozen into its graph),
    genre_ranker and genre_retrieve: the parts of genre_recommend as models of their own."""
    cfg = run.config
    _export_checked(UserTowerExport(run.model), user_tower_examples(len(run.items), len(run.scenarios),
                                                                    cfg.model.max_history),
                    USER_TOWER_SPEC, staging[fmt.USER_TOWER], fmt.USER_TOWER, result)
    fmt.link_or_copy(staging[fmt.RECOMMEND] / fmt.RANKER_ONNX, staging[fmt.RANKER] / fmt.MODEL_ONNX)


def _export_onnx_models(run: Run, staging: dict[str, Path], result: ExportResult) -> None:
    cfg = run.config
    folder = staging[fmt.RECOMMEND]
    cf_dim = cfg.model.cf_dim
    _export_onnx(UserEncoderExport(run.model),
                 user_encoder_examples(cf_dim, cfg.model.dim, len(run.scenarios), cfg.model.max_history),
                 USER_ENCODER_SPEC, folder / fmt.USER_ENCODER_ONNX, fmt.USER_ENCODER, result)
    _export_onnx(RankerExport(run.model), ranker_examples(4 * (cf_dim + cfg.model.dim) + 1),
                 RANKER_SPEC, folder / fmt.RANKER_ONNX, fmt.RANKER, result)
    tokenizer = load_tokenizer(cfg.text_encoder)
    files = fmt.TokenizerFiles(fmt.TokenizerFiles.folder_of(staging[fmt.ITEM_TOWER]), cfg.max_text_length)
    tokenizer.save_pretrained(str(files.folder))
    files.save_settings()
    _export_checked(ItemTowerExport(TextEncoder(cfg.text_encoder), run.model),
                    item_tower_examples(tokenizer.vocab_size), ITEM_TOWER_SPEC, staging[fmt.ITEM_TOWER],
                    fmt.ITEM_TOWER, result)


def rollback(repository: str | Path, to_version: int, keep_versions: int = fmt.DEFAULT_KEEP_VERSIONS,
             lock_timeout_s: float = fmt.DEFAULT_LOCK_TIMEOUT_S) -> int:
    """Puts kept version `to_version` back: a new version, the newest, with
    its files (hard links), so that servers load it as they load any new
    version, without dropping requests. Returns the new version."""
    repo = fmt.resolve_repository(repository)
    return derive_version(repo, lambda source, staging: None, keep_versions, lock_timeout_s, source=to_version)
