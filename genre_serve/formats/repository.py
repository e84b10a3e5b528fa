"""The model repository format: every model, tensor and file name of an
exported version, and one writer and one reader per artifact.

    REPO/<model>/config.pbtxt               written by export (export/model_configs.py)
    REPO/genre_item_tower/<v>/model.onnx    + tokenizer/ (tokenizer files, genre_serve.json: max_length)
    REPO/genre_recommend/<v>/model.py       + everything one request needs (RECOMMEND_FILES):
        recommend.json, catalog.json (titles), popularity.npy, item_ids*.npy (ids, sorted ids, their order),
        item_cf.npy, item_ct.npy, retrieve.json, user_encoder.onnx, ranker.onnx
    REPO/genre_recommend_batch/<v>/model.py + the same files, hard links of genre_recommend's
  with `export --standalone-models` also (for clients that run their own pipeline):
    REPO/genre_user_tower/<v>/model.onnx    item indices in, the item tables frozen into the graph
    REPO/genre_ranker/<v>/model.onnx
    REPO/genre_retrieve/<v>/model.py        + item_cf.npy, item_ct.npy, retrieve.json

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
   genre_serve.json; entry points in ``genre_serve.serving.stubs``;
   genre_recommend called the user tower, genre_retrieve and the ranker (BLS).
   Refused: re-export.
3. genre_recommend answers from its own version folder (no BLS call): the
   user encoder reads item vectors, not indices; ids in .npy arrays (opened
   memory-mapped, looked up by binary search, no per-process dict);
   genre_recommend_batch; the three inner models only with
   ``--standalone-models``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genre_serve.errors import ExportError, RepositoryBusyError

FORMAT_VERSION = 3

# -- models ------------------------------------------------------------------
ITEM_TOWER = "genre_item_tower"
USER_TOWER = "genre_user_tower"
RETRIEVE = "genre_retrieve"
RANKER = "genre_ranker"
RECOMMEND = "genre_recommend"
RECOMMEND_BATCH = "genre_recommend_batch"
# Every model a repository may hold, in the order versions are published and
# loaded in (the entry points last: a client that sees a new genre_recommend
# version finds the item tower of that version already there).
MODELS = (ITEM_TOWER, USER_TOWER, RETRIEVE, RANKER, RECOMMEND, RECOMMEND_BATCH)
# What every export writes; the standalone models only with --standalone-models.
DEFAULT_MODELS = (ITEM_TOWER, RECOMMEND, RECOMMEND_BATCH)
STANDALONE_MODELS = (USER_TOWER, RETRIEVE, RANKER)
PYTHON_MODELS = (RETRIEVE, RECOMMEND, RECOMMEND_BATCH)
# The models clients call; all of them have a bounded queue.
ENTRY_MODELS = (RECOMMEND, RECOMMEND_BATCH, ITEM_TOWER)
RECOMMEND_MODELS = (RECOMMEND, RECOMMEND_BATCH)  # the two entry points of one recommender
# The ONNX graphs inside genre_recommend's version folder (not Triton models).
USER_ENCODER = "user_encoder"

# -- tensors (UPPER_SNAKE, identical in ONNX, config.pbtxt and every caller) ---
HISTORY, K, SCENARIO, ALPHA = "HISTORY", "K", "SCENARIO", "ALPHA"
ITEM_IDS, SCORES = "ITEM_IDS", "SCORES"
# Optional: EXPLAIN true asks for BECAUSE, per recommended item the history
# item it is closest to (serving/recommend_logic.py:because_you_watched).
EXPLAIN, BECAUSE = "EXPLAIN", "BECAUSE"
LENGTHS, U_CF, U_CT = "LENGTHS", "U_CF", "U_CT"
EXCLUDE, CANDIDATES, FEATURES, LOGITS = "EXCLUDE", "CANDIDATES", "FEATURES", "LOGITS"
INPUT_IDS, ATTENTION_MASK, ITEM_CT = "INPUT_IDS", "ATTENTION_MASK", "ITEM_CT"
HISTORY_CF, HISTORY_CT = "HISTORY_CF", "HISTORY_CT"


@dataclass(frozen=True)
class ModelTensors:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


TENSORS = {
    ITEM_TOWER: ModelTensors((INPUT_IDS, ATTENTION_MASK), (ITEM_CT,)),
    USER_TOWER: ModelTensors((HISTORY, LENGTHS, SCENARIO), (U_CF, U_CT, ALPHA)),
    RETRIEVE: ModelTensors((U_CF, U_CT, ALPHA, EXCLUDE, K), (CANDIDATES, SCORES, FEATURES)),
    RANKER: ModelTensors((FEATURES,), (LOGITS,)),
    # SCENARIO, ALPHA and EXPLAIN are optional inputs of genre_recommend;
    # BECAUSE is answered only to a request with EXPLAIN true.
    RECOMMEND: ModelTensors((HISTORY, K, SCENARIO, ALPHA, EXPLAIN), (ITEM_IDS, SCORES, BECAUSE)),
    RECOMMEND_BATCH: ModelTensors((HISTORY, K, SCENARIO, ALPHA, EXPLAIN), (ITEM_IDS, SCORES, BECAUSE)),
    # The history's item vectors (right-aligned, the last LENGTHS rows valid) -> the user.
    USER_ENCODER: ModelTensors((HISTORY_CF, HISTORY_CT, LENGTHS, SCENARIO), (U_CF, U_CT, ALPHA)),
}

# -- files --------------------------------------------------------------------
CONFIG_PBTXT = "config.pbtxt"
MODEL_ONNX = "model.onnx"
MODEL_PY = "model.py"
TOKENIZER_DIR = "tokenizer"
TOKENIZER_SETTINGS = "genre_serve.json"
ITEM_CF_NPY, ITEM_CT_NPY, RETRIEVE_JSON = "item_cf.npy", "item_ct.npy", "retrieve.json"
CATALOG_JSON, POPULARITY_NPY, RECOMMEND_JSON = "catalog.json", "popularity.npy", "recommend.json"
ITEM_IDS_NPY, ITEM_IDS_SORTED_NPY, ITEM_IDS_ORDER_NPY = "item_ids.npy", "item_ids_sorted.npy", "item_ids_order.npy"
USER_ENCODER_ONNX, RANKER_ONNX = "user_encoder.onnx", "ranker.onnx"
CATALOG_FILES = (CATALOG_JSON, POPULARITY_NPY, RECOMMEND_JSON, ITEM_IDS_NPY, ITEM_IDS_SORTED_NPY, ITEM_IDS_ORDER_NPY)
TABLE_FILES = (ITEM_CF_NPY, ITEM_CT_NPY, RETRIEVE_JSON)
RECOMMEND_FILES = (MODEL_PY, *CATALOG_FILES, *TABLE_FILES, USER_ENCODER_ONNX, RANKER_ONNX)

# The files each model's version folder must hold (besides folders such as tokenizer/).
VERSION_FILES = {
    ITEM_TOWER: (MODEL_ONNX,),
    USER_TOWER: (MODEL_ONNX,),
    RANKER: (MODEL_ONNX,),
    RETRIEVE: (MODEL_PY, *TABLE_FILES),
    RECOMMEND: RECOMMEND_FILES,
    RECOMMEND_BATCH: RECOMMEND_FILES,
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
    RECOMMEND_BATCH: "genre_serve.serving.stubs.recommend",  # one module serves both entry points
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


# -- writing files -------------------------------------------------------------
def replace_file(path: Path, write: Callable[[Path], None]) -> None:
    """Writes `path` through a temporary file renamed over it: a reader sees the
    old file or the new one, never half of one, and a hard link to the old file
    (a version derived from another shares its unchanged files) keeps the old
    contents."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object: np.save would append .npy to the temporary name
            np.save(f, array)

    replace_file(path, write)


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    """An array artifact; memory-mapped (read-only, shared by every process
    that maps the same file) where `mmap`."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise ExportError(f"{path}: missing") from None
    except ValueError as e:
        raise ExportError(f"{path}: not a readable .npy array ({e})") from None


# -- JSON documents with a format version ------------------------------------
def _write_json(path: Path, doc: dict[str, Any], indent: int | None = None) -> None:
    text = json.dumps({"format_version": FORMAT_VERSION, **doc}, indent=indent)
    def write(tmp: Path) -> None:
        tmp.write_text(text)

    replace_file(path, write)


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
    raise ExportError(f"{path}: repository format {version}, exported by an older genre_serve (this one serves "
                      f"format {FORMAT_VERSION}); export the run again into a new repository")


# -- item ids: item_ids.npy, item_ids_sorted.npy, item_ids_order.npy ------------
class ItemIds:
    """The external item ids of a catalog, in catalog order, and their lookup.

    Stored as fixed-width UTF-8 byte arrays (numpy ``S``), with a sorted copy
    and its order: an id is found by binary search, so a serving process opens
    three memory-mapped files instead of building a Python dict (at 1M items a
    dict of str costs each process well over 100 MB; the mapped files are one
    copy in the page cache for every instance). Ids are non-empty and have no
    NUL byte (numpy strips trailing NULs): the empty id is the batched entry
    point's padding.
    """

    def __init__(self, ids: np.ndarray, sorted_ids: np.ndarray, order: np.ndarray):
        self.array, self.sorted, self.order = ids, sorted_ids, order
        self.width = int(ids.dtype.itemsize)

    @classmethod
    def of(cls, ids: Sequence[str]) -> ItemIds:
        encoded = [str(i).encode("utf-8") for i in ids]
        bad = next((i for i in encoded if not i or b"\0" in i), None)
        if bad is not None:
            raise ExportError(f"item id {bad!r}: item ids must be non-empty and contain no NUL byte")
        array = np.array(encoded, dtype=f"S{max((len(i) for i in encoded), default=1)}")
        order = np.argsort(array, kind="stable").astype(np.int64)
        sorted_ids = array[order]
        if sorted_ids.size > 1 and (dup := np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])).size:
            raise ExportError(f"item id {sorted_ids[dup[0]].decode()!r} appears twice in the catalog")
        return cls(array, sorted_ids, order)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def tolist(self) -> list[str]:
        return [i.decode("utf-8") for i in self.array.tolist()]

    def lookup(self, ids: Sequence[bytes]) -> np.ndarray:
        """Catalog indices of the ids the catalog knows, in the given order
        (unknown ids skipped)."""
        queries = [i for i in ids if 0 < len(i) <= self.width and not i.endswith(b"\0")]
        if not queries or not len(self):
            return np.zeros(0, np.int64)
        q = np.array(queries, dtype=self.sorted.dtype)
        pos = np.minimum(np.searchsorted(self.sorted, q), len(self) - 1)
        return np.asarray(self.order[pos[self.sorted[pos] == q]], np.int64)

    def index_of(self, item_id: str) -> int | None:
        found = self.lookup([item_id.encode("utf-8")])
        return int(found[0]) if found.size else None

    def external(self, indices: np.ndarray) -> list[str]:
        return [i.decode("utf-8") for i in self.array[np.asarray(indices, np.int64)].tolist()]

    def encoded(self, indices: np.ndarray) -> np.ndarray:
        """The ids at `indices` as a BYTES tensor (object array of bytes)."""
        return self.array[np.asarray(indices, np.int64)].astype(object)

    def appended(self, ids: Sequence[str]) -> ItemIds:
        return ItemIds.of(self.tolist() + list(ids))

    def save(self, version_dir: Path) -> None:
        _save_npy(version_dir / ITEM_IDS_NPY, self.array)
        _save_npy(version_dir / ITEM_IDS_SORTED_NPY, self.sorted)
        _save_npy(version_dir / ITEM_IDS_ORDER_NPY, self.order)

    @classmethod
    def load(cls, version_dir: Path, mmap: bool = True) -> ItemIds:
        return cls(*(_load_npy(version_dir / name, mmap)
                     for name in (ITEM_IDS_NPY, ITEM_IDS_SORTED_NPY, ITEM_IDS_ORDER_NPY)))


# -- genre_recommend: recommend.json, catalog.json, popularity.npy, item ids ----
@dataclass(frozen=True, eq=False)  # eq=False: numpy fields have no single truth value
class Catalog:
    """What genre_recommend serves from: the external ids (catalog order), the
    training popularity (the cold-user answer), the request settings of the
    version, and the titles (read only where asked for: serving never needs them)."""

    ids: ItemIds
    popularity: np.ndarray
    scenarios: list[str]
    max_history: int
    depth: int  # candidates retrieved for the ranker
    max_k: int
    cf_dim: int
    ct_dim: int
    recent_popularity_days: float
    dataset: str | None = None
    titles: list[str] | None = None
    # Indices of retired items (`genre-serve retire-items`): in the catalog, so
    # that histories naming them still read, but never recommended.
    retired: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def of(cls, ids: Sequence[str], popularity: np.ndarray, **settings: Any) -> Catalog:
        return cls(ItemIds.of(ids), np.asarray(popularity, np.float32), **settings)

    def exclusions(self, history: np.ndarray) -> np.ndarray:
        """What one request must never be answered with: its history and the retired items, sorted."""
        return np.unique(np.concatenate([np.asarray(history, np.int64), self.retired]))

    def with_retired(self, indices: Sequence[int]) -> Catalog:
        return dataclasses.replace(self, retired=np.unique(np.concatenate([self.retired, np.asarray(
            indices, np.int64)])))

    @functools.cached_property
    def popular_order(self) -> np.ndarray:
        """The max_k most popular items, most popular first (ties: catalog order), none retired."""
        pop = np.asarray(self.popularity, np.float64).copy()
        pop[self.retired] = -np.inf
        n = min(self.max_k, pop.size - self.retired.size)
        if n <= 0:
            return np.zeros(0, np.int64)
        if n < pop.size:
            top = np.argpartition(-pop, n - 1)[:n]
            threshold = pop[top].min()
            top = np.flatnonzero(pop >= threshold)  # every tie at the threshold, then a stable sort
        else:
            top = np.arange(pop.size)
        return top[np.argsort(-pop[top], kind="stable")][:n]

    def with_items(self, ids: list[str], titles: list[str]) -> Catalog:
        """The catalog with new items appended (no interactions: popularity 0)."""
        if self.titles is None:
            raise ValueError("with_items needs the titles: Catalog.load(..., titles=True)")
        popularity = np.concatenate([self.popularity, np.zeros(len(ids), np.float32)])
        return dataclasses.replace(self, ids=self.ids.appended(ids), titles=self.titles + list(titles),
                                   popularity=popularity)

    def save(self, version_dir: Path) -> None:
        if self.titles is None:
            raise ValueError("a catalog is saved with its titles")
        self.ids.save(version_dir)
        _write_json(version_dir / CATALOG_JSON, {"titles": self.titles})
        _save_npy(version_dir / POPULARITY_NPY, np.asarray(self.popularity, np.float32))
        _write_json(version_dir / RECOMMEND_JSON, {
            "scenarios": self.scenarios, "max_history": self.max_history, "depth": self.depth,
            "max_k": self.max_k, "cf_dim": self.cf_dim, "ct_dim": self.ct_dim,
            "recent_popularity_days": self.recent_popularity_days, "dataset": self.dataset,
            "num_items": len(self.ids), "retired": [int(i) for i in self.retired],
        }, indent=2)

    @classmethod
    def load(cls, version_dir: Path, titles: bool = False, mmap: bool = True) -> Catalog:
        meta = _read_json(version_dir / RECOMMEND_JSON)
        return cls(
            ids=ItemIds.load(version_dir, mmap), popularity=_load_npy(version_dir / POPULARITY_NPY, mmap),
            scenarios=meta["scenarios"], max_history=int(meta["max_history"]), depth=int(meta["depth"]),
            max_k=int(meta["max_k"]), cf_dim=int(meta["cf_dim"]), ct_dim=int(meta["ct_dim"]),
            recent_popularity_days=float(meta["recent_popularity_days"]), dataset=meta.get("dataset"),
            titles=_read_json(version_dir / CATALOG_JSON)["titles"] if titles else None,
            retired=np.asarray(meta.get("retired", []), np.int64),
        )


# -- item tables: item_cf.npy, item_ct.npy, retrieve.json (genre_recommend, genre_retrieve)
@dataclass(frozen=True, eq=False)
class ItemTableFiles:
    """The item tables a version scores (catalog order) and how it treats
    items without CF signal (a zero CF row apart from the recent-popularity column)."""

    item_cf: np.ndarray  # float32 [N, cf_dim]; the last column is recent popularity where the model has it
    item_ct: np.ndarray  # float32 [N, ct_dim]
    max_k: int
    new_items: str = DEFAULT_NEW_ITEMS
    new_item_bias: float = 0.0

    def __post_init__(self) -> None:
        check_new_item_rule(self.new_items)

    def save(self, version_dir: Path, content_table: bool = True) -> None:
        """`content_table` False: item_ct.npy is left as it is (a version that
        changes only the CF table shares the content table with its parent)."""
        _save_npy(version_dir / ITEM_CF_NPY, np.asarray(self.item_cf, np.float32))
        if content_table:
            _save_npy(version_dir / ITEM_CT_NPY, np.asarray(self.item_ct, np.float32))
        _write_json(version_dir / RETRIEVE_JSON, {"max_k": self.max_k, "new_items": self.new_items,
                                                  "new_item_bias": float(self.new_item_bias)})

    @classmethod
    def load(cls, version_dir: Path, mmap: bool = True) -> ItemTableFiles:
        """The tables memory-mapped (read-only) unless `mmap` is False."""
        meta = _read_json(version_dir / RETRIEVE_JSON)
        return cls(_load_npy(version_dir / ITEM_CF_NPY, mmap), _load_npy(version_dir / ITEM_CT_NPY, mmap),
                   int(meta["max_k"]), meta["new_items"], float(meta["new_item_bias"]))

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


# -- one writer at a time ---------------------------------------------------------
LOCK_FILE = ".genre_serve.lock"  # in the repository's root: Triton only reads its folders
DEFAULT_LOCK_TIMEOUT_S = 120.0


@contextlib.contextmanager
def writer_lock(repository: Path, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Holds the repository's writer lock (an flock on LOCK_FILE, released by
    the kernel if the holder dies): every command that writes a version takes
    it, so two writers never pick the same version number or stage into the
    same folders. A second writer waits up to `timeout_s` (0: not at all),
    then raises RepositoryBusyError naming the holder."""
    import fcntl
    import time

    repository = Path(repository)
    repository.mkdir(parents=True, exist_ok=True)
    with open(repository / LOCK_FILE, "a+") as f:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    f.seek(0)
                    holder = f.read().strip() or "another process"
                    raise RepositoryBusyError(
                        f"{repository} is being written by {holder}; waited {timeout_s:g} s "
                        "(retry when it is done, or pass a longer --lock-timeout-s)") from None
                time.sleep(0.05)
        try:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} ({' '.join(_command_line())}, since {time.strftime('%H:%M:%S')})")
            f.flush()
            yield
        finally:
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def remove_stale_staging(repository: Path) -> list[Path]:
    """Staging folders a killed writer left (never served: Triton reads only
    numbered version folders). Call with the writer lock held: then no other
    writer can be using one."""
    stale = [p for m in MODELS for p in (Path(repository) / m).glob(".*.staging") if p.is_dir()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def _command_line() -> list[str]:
    import sys

    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    return argv[:6] + (["..."] if len(argv) > 6 else [])


# -- the model-control key -----------------------------------------------------------
# Triton's model-repository API (load, unload, index) answers only requests
# with this header and the server's key (--http-restricted-api /
# --grpc-restricted-protocol); inference, health and metadata stay open.
CONTROL_HEADER = "genre-serve-control-key"
CONTROL_KEY_FILE = ".genre_serve.control_key"  # in the repository's root, readable by its owner only
CONTROL_KEY_ENV = "GENRE_SERVE_CONTROL_KEY"


def control_headers(key: str | None, protocol: str) -> dict[str, str] | None:
    """The request headers (HTTP) or metadata (gRPC: Triton expects the
    `triton-grpc-protocol-` prefix there) that carry the key."""
    if not key:
        return None
    name = CONTROL_HEADER if protocol == "http" else f"triton-grpc-protocol-{CONTROL_HEADER}"
    return {name: key}


def serving_control_key(repository: Path) -> str:
    """The key of the repository's key file, or a fresh random one written
    there (mode 0600) where the repository is writable: the commands that
    write versions into it read it from there to load them, and every server
    of one repository shares it (delete the file to rotate it)."""
    import secrets

    path = Path(repository) / CONTROL_KEY_FILE
    existing = _key_in_file(path)
    if existing:
        return existing
    key = secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        os.chmod(path, 0o600)
    except OSError:
        pass  # a read-only repository: the key stays with the process that started the server
    return key


def control_key_of(repository: Path | None) -> str | None:
    """The key for a server of `repository`: GENRE_SERVE_CONTROL_KEY, else the repository's key file."""
    if os.environ.get(CONTROL_KEY_ENV):
        return os.environ[CONTROL_KEY_ENV]
    return None if repository is None else _key_in_file(Path(repository) / CONTROL_KEY_FILE)


def _key_in_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


# -- versions -----------------------------------------------------------------
def models_of(repository: Path) -> tuple[str, ...]:
    """The models a repository serves (those with a config.pbtxt), in MODELS order."""
    return tuple(m for m in MODELS if (Path(repository) / m / CONFIG_PBTXT).is_file())


def has_standalone_models(repository: Path) -> bool:
    return any(m in STANDALONE_MODELS for m in models_of(repository))


def models_to_serve(standalone: bool) -> tuple[str, ...]:
    """The models of a repository with or without the standalone ones, in MODELS order."""
    chosen = DEFAULT_MODELS + (STANDALONE_MODELS if standalone else ())
    return tuple(m for m in MODELS if m in chosen)


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


def version_dirs(repository: Path, version: int, models: Sequence[str] | None = None) -> dict[str, Path]:
    """Each model's folder of `version` (default: the models the repository serves)."""
    models = models_of(repository) if models is None else models
    return {m: Path(repository) / m / str(version) for m in models}


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the filesystem allows one (one inode: one copy on disk
    and in the page cache for every process that maps it), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def link_tree(source: Path, target: Path) -> None:
    """`target` with the files of `source`, hard-linked (never written in
    place: every writer here replaces files, see replace_file)."""
    shutil.copytree(source, target, copy_function=lambda s, t: link_or_copy(Path(s), Path(t)),
                    ignore=shutil.ignore_patterns("__pycache__", ".*.tmp"))


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # a filesystem that cannot fsync a directory (some network mounts): nothing more to do
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Every file and folder under `folder` flushed to the device: after a
    power loss a published version is whole, never a name over empty files."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            _fsync_path(Path(root) / name)
        _fsync_path(Path(root))


@contextlib.contextmanager
def staged_version(repository: Path, version: int, copy_from: int | None = None,
                   models: Sequence[str] | None = None) -> Iterator[dict[str, Path]]:
    """Folders to write `version` of every model into (empty, or hard-linked
    copies of version `copy_from`). On a clean exit they are renamed into
    place in MODELS order, so a server polling the repository never sees half
    a version; on any error nothing is published and the staging folders go.
    `models`: default, the models the repository serves."""
    repository = Path(repository)
    models = models_of(repository) if models is None else tuple(models)
    staging = {m: repository / m / f".{version}.staging" for m in models}
    try:
        for m, folder in staging.items():
            shutil.rmtree(folder, ignore_errors=True)
            if copy_from is None:
                folder.mkdir(parents=True)
            else:
                link_tree(repository / m / str(copy_from), folder)
        yield staging
        for folder in staging.values():
            fsync_tree(folder)  # the data on disk before the name that publishes it
        for m in models:
            staging[m].rename(repository / m / str(version))
            _fsync_path(repository / m)  # and the rename itself
    except OSError as e:
        if e.filename is None and e.strerror:
            # A write deep in numpy/onnx names no file (a full disk): name the repository.
            raise OSError(e.errno, e.strerror, str(repository)) from e
        raise
    finally:
        for folder in staging.values():
            shutil.rmtree(folder, ignore_errors=True)


def share_recommend_files(staging: dict[str, Path]) -> None:
    """After genre_recommend's folder is written: genre_recommend_batch's folder
    gets the same files, hard-linked (the two entry points read one copy), and
    its own model.py; genre_retrieve's (where the repository has the
    standalone models) the item tables."""
    source = staging[RECOMMEND]
    shared = {RECOMMEND_BATCH: [n for n in RECOMMEND_FILES if n != MODEL_PY], RETRIEVE: list(TABLE_FILES)}
    for model, names in shared.items():
        if model not in staging:
            continue
        for name in names:
            (staging[model] / name).unlink(missing_ok=True)
            link_or_copy(source / name, staging[model] / name)
        write_shim(staging[model], model)


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
    genre_recommend version needs the same version of the other models), a
    missing file, an artifact of another format, or an ONNX file that does
    not parse."""
    import onnx

    repo = Path(repository)
    if not repo.is_dir():
        raise ExportError(f"model repository not found: {repo}")
    present = models_of(repo)
    if not present:
        raise ExportError(f"{repo} holds no genre_serve model: run `genre-serve export` first")
    required = models_to_serve(has_standalone_models(repo))
    missing = [m for m in required if m not in present]
    if RECOMMEND in present and RECOMMEND_BATCH in missing:  # format 1 and 2 had no batched entry point
        raise ExportError(f"{repo}: exported by an older genre_serve (before repository format {FORMAT_VERSION}, "
                          f"no {RECOMMEND_BATCH}); export the run again into a new repository")
    if missing:
        raise ExportError(f"{repo}: model(s) {', '.join(missing)} missing (no <model>/{CONFIG_PBTXT})")
    versions = versions_of(repo, RECOMMEND)
    if not versions:
        raise ExportError(f"{repo}/{RECOMMEND} has no version folder: run `genre-serve export` first")
    # ONNX files checked, by (device, inode): genre_recommend_batch's are hard links of genre_recommend's.
    checked: set[tuple[int, int]] = set()
    for v in versions:
        for m, folder in version_dirs(repo, v, required).items():
            if not folder.is_dir():
                raise ExportError(f"{repo}: {RECOMMEND} version {v} needs {m}/{v}, which is missing")
            for name in VERSION_FILES[m]:
                if name.endswith(".json"):
                    _read_json(folder / name)  # the format first: it says what to do about the rest
            for name in VERSION_FILES[m]:
                if not (folder / name).is_file():
                    raise ExportError(f"{folder / name}: missing")
            for name in VERSION_FILES[m]:
                stat = (folder / name).stat()
                if not name.endswith(".onnx") or (stat.st_dev, stat.st_ino) in checked:
                    continue
                checked.add((stat.st_dev, stat.st_ino))
                try:
                    onnx.checker.check_model(str(folder / name))
                except Exception as e:  # noqa: BLE001 - any parse/check failure means the same to the user
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise ExportError(f"{folder / name}: not a valid ONNX model ({first})") from None
    return versions
