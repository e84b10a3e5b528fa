"""`genre-serve add-items`: new items with text but no interactions join the
catalog as a new version of every model.

Their content vectors come from the exported item tower (onnxruntime, the
same graph the server runs); their CF vectors are zero (no interactions, no
collaborative signal), so they are found through content until retraining.
The user tower's frozen item tables get the new rows too, so the new items
also work inside histories.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from genre_serve.client.client import tokenize
from genre_serve.data.dataset import item_text
from genre_serve.data.loaders import read_table
from genre_serve.errors import DataError
from genre_serve.export import model_configs as mc
from genre_serve.export.repository import ExportError, derive_version


def resolve_repository(target: str | Path) -> Path:
    """A model repository, or a run directory holding one in model_repository/."""
    target = Path(target)
    if (target / mc.RECOMMEND).is_dir():
        return target
    if (target / "model_repository" / mc.RECOMMEND).is_dir():
        return target / "model_repository"
    raise ExportError(f"{target} is neither a model repository nor a run directory with model_repository/")


def read_new_items(path: str | Path, known: set[str]) -> tuple[list[str], list[str], list[str]]:
    df = read_table(path, "items")
    for col in ("item_id", "title"):
        if col not in df.columns:
            raise DataError(f"items: missing column {col}; found {', '.join(df.columns)}")
    df = df.fillna("")
    df["item_id"] = df["item_id"].astype(str).str.strip()
    df = df[df["item_id"] != ""].drop_duplicates("item_id")
    already = sorted(set(df["item_id"]) & known)
    if already:
        raise DataError(f"items: {len(already)} id(s) already in the catalog, e.g. {already[0]!r}")
    if df.empty:
        raise DataError("items: no new item")
    tags = df["tags"] if "tags" in df.columns else [""] * len(df)
    text = df["text"] if "text" in df.columns else [""] * len(df)
    texts = [item_text(t, g, x) for t, g, x in zip(df["title"], tags, text)]
    return list(df["item_id"]), list(df["title"]), texts


def embed_with_item_tower(version_dir: Path, texts: list[str]) -> np.ndarray:
    import onnxruntime as ort

    tok_dir = version_dir / "tokenizer"
    max_length = json.loads((tok_dir / "genre_serve.json").read_text())["max_length"]
    ids, mask = tokenize(texts, str(tok_dir), max_length)
    session = ort.InferenceSession(str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    out = []
    for s in range(0, len(texts), 64):
        out.append(session.run(["ITEM_CT"], {"INPUT_IDS": ids[s : s + 64], "ATTENTION_MASK": mask[s : s + 64]})[0])
    return np.concatenate(out).astype(np.float32)


def _append_rows(onnx_path: Path, rows: dict[str, np.ndarray]) -> None:
    model = onnx.load(str(onnx_path))
    found = set()
    for init in model.graph.initializer:
        if init.name in rows:
            table = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array(np.concatenate([table, rows[init.name]]).astype(table.dtype), init.name))
            found.add(init.name)
    if found != set(rows):
        raise ExportError(f"{onnx_path}: tables {sorted(set(rows) - found)} not found in the graph")
    onnx.save(model, str(onnx_path))


def add_items(target: str | Path, items_file: str | Path, keep_versions: int = 3) -> tuple[Path, int, int]:
    """Returns (repository, new version, number of items added)."""
    repo = resolve_repository(target)
    added = []

    def edit(src: dict[str, Path], staging: dict[str, Path]) -> None:
        catalog = json.loads((src[mc.RECOMMEND] / "catalog.json").read_text())
        ids, titles, texts = read_new_items(items_file, set(catalog["ids"]))
        item_ct_new = embed_with_item_tower(src[mc.ITEM_TOWER], texts)
        cf_dim = np.load(src[mc.RETRIEVE] / "item_cf.npy", mmap_mode="r").shape[1]
        # No interactions: no CF vector, no bias, no recent popularity.
        item_cf_new = np.zeros((len(ids), cf_dim), np.float32)
        for name, new in (("item_cf", item_cf_new), ("item_ct", item_ct_new)):
            path = staging[mc.RETRIEVE] / f"{name}.npy"
            np.save(path, np.concatenate([np.load(path), new]))
        _append_rows(staging[mc.USER_TOWER] / "model.onnx", {"cf_table": item_cf_new, "ct_table": item_ct_new})
        catalog["ids"] += ids
        catalog["titles"] += titles
        (staging[mc.RECOMMEND] / "catalog.json").write_text(json.dumps(catalog))
        pop_path = staging[mc.RECOMMEND] / "popularity.npy"
        np.save(pop_path, np.concatenate([np.load(pop_path), np.zeros(len(ids), np.float32)]))
        added.extend(ids)

    version = derive_version(repo, edit, keep_versions)
    return repo, version, len(added)
