"""The model repository format: every model, tensor and file name of an
exported version, and one writer and one reader per artifact.

    REPO/<model>/config.pbtxt               written by export (export/model_configs.py)
    REPO/genre_item_tower/<v>/model.onnx    + tokenizer/ (tokenizer files, genre_serve.json: max_length)
    REPO/genre_user_tower/<v>/model.onnx
    REPO/genre_ranker/<v>/model.onnx
    REPO/genre_retrieve/<v>/model.py        + item_cf.npy, item_ct.npy, retrieve.json
    REPO/genre_recommend/<v>/model.py       + catalog.json, popularity.npy, recommend.json

Export, add-items, refresh-popularity, the python-backend models, the
in-process pipeline, the client-side scorer and the checks all go through
this module, so the layout is written down once. It imports neither torch nor
onnx (the ONNX check imports onnx when it runs): a client or a Triton stub
reads it without model code.

Every JSON artifact carries ``format_version``. Format history:

1. no ``format_version`` field; model.py entry points imported
   ``genre_serve.serving.recommend_model`` / ``retrieve_model``, which no
   longer exist. Refused: re-export the run (a repository is a build output).
2. ``format_version`` in recommend.json, retrieve.json and the tokenizer's
   genre_serve.json; entry points in ``genre_serve.serving.stubs``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genre_serve.errors import ExportError

FORMAT_VERSION = 2

# -- models ------------------------------------------------------------------
ITEM_TOWER = "genre_item_tower"
USER_TOWER = "genre_user_tower"
RETRIEVE = "genre_retrieve"
RANKER = "genre_ranker"
RECOMMEND = "genre_recommend"
# Dependencies first, the order versions are published and loaded in: a
# server loading versions as they appear finds the models genre_recommend
# calls before genre_recommend itself.
MODELS = (ITEM_TOWER, USER_TOWER, RETRIEVE, RANKER, RECOMMEND)
PYTHON_MODELS = (RETRIEVE, RECOMMEND)
# The models clients call (the others are called by genre_recommend).
ENTRY_MODELS = (RECOMMEND, ITEM_TOWER)

# -- tensors (UPPER_SNAKE, identical in ONNX, config.pbtxt and every caller) ---
HISTORY, K, SCENARIO, ALPHA = "HISTORY", "K", "SCENARIO", "ALPHA"
ITEM_IDS, SCORES = "ITEM_IDS", "SCORES"
LENGTHS, U_CF, U_CT = "LENGTHS", "U_CF", "U_CT"
EXCLUDE, CANDIDATES, FEATURES, LOGITS = "EXCLUDE", "CANDIDATES", "FEATURES", "LOGITS"
INPUT_IDS, ATTENTION_MASK, ITEM_CT = "INPUT_IDS", "ATTENTION_MASK", "ITEM_CT"


@dataclass(frozen=True)
class ModelTensors:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


TENSORS = {
    ITEM_TOWER: ModelTensors((INPUT_IDS, ATTENTION_MASK), (ITEM_CT,)),
    USER_TOWER: ModelTensors((HISTORY, LENGTHS, SCENARIO), (U_CF, U_CT, ALPHA)),
    RETRIEVE: ModelTensors((U_CF, U_CT, ALPHA, EXCLUDE, K), (CANDIDATES, SCORES, FEATURES)),
    RANKER: ModelTensors((FEATURES,), (LOGITS,)),
    # SCENARIO and ALPHA are optional inputs of genre_recommend.
    RECOMMEND: ModelTensors((HISTORY, K, SCENARIO, ALPHA), (ITEM_IDS, SCORES)),
}

# -- files --------------------------------------------------------------------
CONFIG_PBTXT = "config.pbtxt"
MODEL_ONNX = "model.onnx"
MODEL_PY = "model.py"
TOKENIZER_DIR = "tokenizer"
TOKENIZER_SETTINGS = "genre_serve.json"
ITEM_CF_NPY, ITEM_CT_NPY, RETRIEVE_JSON = "item_cf.npy", "item_ct.npy", "retrieve.json"
CATALOG_JSON, POPULARITY_NPY, RECOMMEND_JSON = "catalog.json", "popularity.npy", "recommend.json"

# The files each model's version folder must hold (besides folders such as tokenizer/).
VERSION_FILES = {
    ITEM_TOWER: (MODEL_ONNX,),
    USER_TOWER: (MODEL_ONNX,),
    RANKER: (MODEL_ONNX,),
    RETRIEVE: (MODEL_PY, ITEM_CF_NPY, ITEM_CT_NPY, RETRIEVE_JSON),
    RECOMMEND: (MODEL_PY, CATALOG_JSON, POPULARITY_NPY, RECOMMEND_JSON),
}

DEFAULT_KEEP_VERSIONS = 3  # versions a repository keeps on disk
DEFAULT_MAX_K = 1000  # the largest K genre_recommend answers
# How items without CF signal are scored (export --new-items): "content", by
# their content score alone plus a bias; "discounted", like every item (CF score 0).
NEW_ITEM_RULES = ("content", "discounted")
DEFAULT_NEW_ITEMS = "content"

# The python-backend entry points: model.py imports the class from the package.
STUB_MODULES = {
    RETRIEVE: "genre_serve.serving.stubs.retrieve",
    RECOMMEND: "genre_serve.serving.stubs.recommend",
}
_SHIM_HEADER = "# Thin python-backend entry point; the logic lives in the genre_serve package.\n"


def shim_text(model: str) -> str:
    return _SHIM_HEADER + f"from {STUB_MODULES[model]} import TritonPythonModel  # noqa: F401\n"


def write_shim(version_dir: Path, model: str) -> None:
    (version_dir / MODEL_PY).write_text(shim_text(model))


def check_new_item_rule(rule: str) -> str:
    if rule not in NEW_ITEM_RULES:
        raise ValueError(f"new_items: one of {', '.join(NEW_ITEM_RULES)}, got {rule!r}")
    return rule


# -- JSON documents with a format version ------------------------------------
def _write_json(path: Path, doc: dict[str, Any], indent: int | None = None) -> None:
    path.write_text(json.dumps({"format_version": FORMAT_VERSION, **doc}, indent=indent))


def _read_json(path: Path) -> dict[str, Any]:
    """A versioned JSON artifact, or an ExportError saying why it cannot be read."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: missing") from None
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ExportError(f"{path}: not a genre_serve artifact (a JSON object was expected)")
    version = doc.get("format_version", 1)
    if version == FORMAT_VERSION:
        return doc
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ExportError(f"{path}: written in repository format {version} by a newer genre_serve (this one "
                          f"reads format {FORMAT_VERSION}): upgrade genre_serve")
    raise ExportError(f"{path}: repository format {version} (exported by an older genre_serve, whose entry points "
                      f"no longer exist); export the run again into a new repository")


# -- genre_recommend: catalog.json, popularity.npy, recommend.json ------------
@dataclass(frozen=True, eq=False)  # eq=False: numpy fields have no single truth value
class Catalog:
    """What genre_recommend serves from: the external ids (catalog order) and
    titles, the training popularity (the cold-user answer), and the request
    settings of the version."""

    ids: list[str]
    titles: list[str]
    popularity: np.ndarray
    scenarios: list[str]
    max_history: int
    depth: int  # candidates retrieved for the ranker
    max_k: int
    cf_dim: int
    ct_dim: int
    recent_popularity_days: float
    dataset: str | None = None
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {item: i for i, item in enumerate(self.ids)})

    @property
    def popular_order(self) -> np.ndarray:
        return np.argsort(-self.popularity, kind="stable")

    def with_items(self, ids: list[str], titles: list[str]) -> Catalog:
        """The catalog with new items appended (no interactions: popularity 0)."""
        popularity = np.concatenate([self.popularity, np.zeros(len(ids), self.popularity.dtype)])
        return dataclasses.replace(self, ids=self.ids + list(ids), titles=self.titles + list(titles),
                                   popularity=popularity)

    def save(self, version_dir: Path) -> None:
        _write_json(version_dir / CATALOG_JSON, {"ids": self.ids, "titles": self.titles})
        np.save(version_dir / POPULARITY_NPY, np.asarray(self.popularity, np.float32))
        _write_json(version_dir / RECOMMEND_JSON, {
            "scenarios": self.scenarios, "max_history": self.max_history, "depth": self.depth,
            "max_k": self.max_k, "cf_dim": self.cf_dim, "ct_dim": self.ct_dim,
            "recent_popularity_days": self.recent_popularity_days, "dataset": self.dataset,
        }, indent=2)

    @classmethod
    def load(cls, version_dir: Path) -> Catalog:
        items = _read_json(version_dir / CATALOG_JSON)
        meta = _read_json(version_dir / RECOMMEND_JSON)
        return cls(
            ids=items["ids"], titles=items["titles"], popularity=np.load(version_dir / POPULARITY_NPY),
            scenarios=meta["scenarios"], max_history=int(meta["max_history"]), depth=int(meta["depth"]),
            max_k=int(meta["max_k"]), cf_dim=int(meta["cf_dim"]), ct_dim=int(meta["ct_dim"]),
            recent_popularity_days=float(meta["recent_popularity_days"]), dataset=meta.get("dataset"),
        )


# -- genre_retrieve: item_cf.npy, item_ct.npy, retrieve.json ------------------
@dataclass(frozen=True, eq=False)
class ItemTableFiles:
    """The item tables genre_retrieve scores (catalog order) and how it treats
    items without CF signal (a zero CF row apart from the recent-popularity column)."""

    item_cf: np.ndarray  # float32 [N, cf_dim]; the last column is recent popularity where the model has it
    item_ct: np.ndarray  # float32 [N, ct_dim]
    max_k: int
    new_items: str = DEFAULT_NEW_ITEMS
    new_item_bias: float = 0.0

    def __post_init__(self) -> None:
        check_new_item_rule(self.new_items)

    def save(self, version_dir: Path) -> None:
        np.save(version_dir / ITEM_CF_NPY, np.asarray(self.item_cf, np.float32))
        np.save(version_dir / ITEM_CT_NPY, np.asarray(self.item_ct, np.float32))
        _write_json(version_dir / RETRIEVE_JSON, {"max_k": self.max_k, "new_items": self.new_items,
                                                  "new_item_bias": float(self.new_item_bias)})

    @classmethod
    def load(cls, version_dir: Path) -> ItemTableFiles:
        meta = _read_json(version_dir / RETRIEVE_JSON)
        return cls(np.load(version_dir / ITEM_CF_NPY), np.load(version_dir / ITEM_CT_NPY), int(meta["max_k"]),
                   meta["new_items"], float(meta["new_item_bias"]))

    def with_tables(self, item_cf: np.ndarray, item_ct: np.ndarray) -> ItemTableFiles:
        return dataclasses.replace(self, item_cf=item_cf, item_ct=item_ct)


# -- genre_item_tower: tokenizer/ ---------------------------------------------
@dataclass(frozen=True)
class TokenizerFiles:
    """The item tower's tokenizer folder and the token length it was exported for
    (fixed length: requests batch together)."""

    folder: Path
    max_length: int

    def save_settings(self) -> None:
        _write_json(self.folder / TOKENIZER_SETTINGS, {"max_length": self.max_length})

    @staticmethod
    def folder_of(version_dir: Path) -> Path:
        return version_dir / TOKENIZER_DIR

    @classmethod
    def load(cls, version_dir: Path) -> TokenizerFiles:
        folder = cls.folder_of(version_dir)
        return cls(folder, int(_read_json(folder / TOKENIZER_SETTINGS)["max_length"]))


# -- versions -----------------------------------------------------------------
def versions_of(repository: Path, model: str) -> list[int]:
    folder = Path(repository) / model
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(repository: Path) -> int:
    return max((v for m in MODELS for v in versions_of(repository, m)), default=0) + 1


def latest_version(repository: Path) -> int:
    """The newest genre_recommend version (the one a server loads last)."""
    versions = versions_of(repository, RECOMMEND)
    if not versions:
        raise ExportError(f"{repository}: {RECOMMEND} has no version folder: run `genre-serve export` first")
    return versions[-1]


def version_dirs(repository: Path, version: int) -> dict[str, Path]:
    return {m: Path(repository) / m / str(version) for m in MODELS}


@contextlib.contextmanager
def staged_version(repository: Path, version: int, copy_from: int | None = None) -> Iterator[dict[str, Path]]:
    """Folders to write `version` of every model into (empty, or copies of
    version `copy_from`). On a clean exit they are renamed into place,
    dependencies first, so a server polling the repository never sees half a
    version; on any error nothing is published and the staging folders go."""
    repository = Path(repository)
    staging = {m: repository / m / f".{version}.staging" for m in MODELS}
    try:
        for m, folder in staging.items():
            shutil.rmtree(folder, ignore_errors=True)
            if copy_from is None:
                folder.mkdir(parents=True)
            else:
                shutil.copytree(repository / m / str(copy_from), folder)
        yield staging
        for m in MODELS:  # dependencies first
            staging[m].rename(repository / m / str(version))
    finally:
        for folder in staging.values():
            shutil.rmtree(folder, ignore_errors=True)


def prune_versions(repository: Path, keep: int) -> list[int]:
    """Removes all but the newest `keep` versions of every model; the removed versions."""
    removed = set()
    for m in MODELS:
        for v in versions_of(repository, m)[:-keep]:
            shutil.rmtree(Path(repository) / m / str(v))
            removed.add(v)
    return sorted(removed)


def resolve_repository(target: str | Path) -> Path:
    """A model repository, or a run directory holding one in model_repository/."""
    target = Path(target)
    if (target / RECOMMEND).is_dir():
        return target
    if (target / "model_repository" / RECOMMEND).is_dir():
        return target / "model_repository"
    raise ExportError(f"{target} is neither a model repository nor a run directory with model_repository/")


def check_repository(repository: str | Path) -> list[int]:
    """The versions a model repository can serve, or an ExportError naming the
    first thing wrong: a missing model, config.pbtxt or version folder (every
    genre_recommend version needs the same version of the models it calls),
    a missing file, an artifact of another format, or an ONNX file that does
    not parse."""
    import onnx

    repo = Path(repository)
    if not repo.is_dir():
        raise ExportError(f"model repository not found: {repo}")
    missing = [m for m in MODELS if not (repo / m / CONFIG_PBTXT).is_file()]
    if len(missing) == len(MODELS):
        raise ExportError(f"{repo} holds no genre_serve model: run `genre-serve export` first")
    if missing:
        raise ExportError(f"{repo}: model(s) {', '.join(missing)} missing (no <model>/{CONFIG_PBTXT})")
    versions = versions_of(repo, RECOMMEND)
    if not versions:
        raise ExportError(f"{repo}/{RECOMMEND} has no version folder: run `genre-serve export` first")
    for v in versions:
        for m, folder in version_dirs(repo, v).items():
            if not folder.is_dir():
                raise ExportError(f"{repo}: {RECOMMEND} version {v} needs {m}/{v}, which is missing")
            for name in VERSION_FILES[m]:
                if not (folder / name).is_file():
                    raise ExportError(f"{folder / name}: missing")
            for name in VERSION_FILES[m]:
                if name.endswith(".json"):
                    _read_json(folder / name)
            if (folder / MODEL_ONNX).is_file():
                try:
                    onnx.checker.check_model(str(folder / MODEL_ONNX))
                except Exception as e:  # noqa: BLE001 - any parse/check failure means the same to the user
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise ExportError(f"{folder / MODEL_ONNX}: not a valid ONNX model ({first})") from None
    return versions
