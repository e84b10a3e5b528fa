"""`genre-serve add-items`: new items with text but no interactions join the
catalog as a new version of every model; `genre-serve retire-items`: items
leave what is recommended, as a new version.

Their content vectors come from the exported item tower (onnxruntime, the
same graph the server runs); their CF vectors are zero (no interactions, no
collaborative signal), so they are found through content until retraining.
genre_recommend reads history items from the same tables, so the new items
also work inside histories (and the standalone user tower, where exported,
gets the rows in its frozen tables).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from genre_serve.data.loaders import read_new_items
from genre_serve.errors import DataError, ExportError
from genre_serve.export.repository import derive_version
from genre_serve.formats import repository as fmt
from genre_serve.text import tokenize


def embed_with_item_tower(version_dir: Path, texts: list[str], batch: int = 64) -> np.ndarray:
    """Content vectors of `texts` from an exported item tower (its own tokenizer and graph)."""
    import onnxruntime as ort

    tokenizer = fmt.TokenizerFiles.load(version_dir)
    ids, mask = tokenize(texts, tokenizer.folder, tokenizer.max_length)
    session = ort.InferenceSession(str(version_dir / fmt.MODEL_ONNX), providers=["CPUExecutionProvider"])
    out = [session.run([fmt.ITEM_CT], {fmt.INPUT_IDS: ids[s : s + batch], fmt.ATTENTION_MASK: mask[s : s + batch]})[0]
           for s in range(0, len(texts), batch)]
    return np.concatenate(out).astype(np.float32)


def _append_rows(onnx_path: Path, rows: dict[str, np.ndarray]) -> None:
    model = onnx.load(str(onnx_path))
    found = set()
    for init in model.graph.initializer:
        if init.name in rows:
            table = numpy_helper.to_array(init)
            grown = np.concatenate([table, rows[init.name]]).astype(table.dtype)
            init.CopyFrom(numpy_helper.from_array(grown, init.name))
            found.add(init.name)
    if found != set(rows):
        raise ExportError(f"{onnx_path}: tables {sorted(set(rows) - found)} not found in the graph")
    fmt.replace_file(onnx_path, lambda tmp: onnx.save(model, str(tmp)))  # never in place: a hard link


def add_items(target: str | Path, items_file: str | Path, keep_versions: int = fmt.DEFAULT_KEEP_VERSIONS,
              lock_timeout_s: float = fmt.DEFAULT_LOCK_TIMEOUT_S) -> tuple[Path, int, int]:
    """Returns (repository, new version, number of items added)."""
    repo = fmt.resolve_repository(target)
    added = []

    def edit(src: dict[str, Path], staging: dict[str, Path]) -> None:
        catalog = fmt.Catalog.load(src[fmt.RECOMMEND], titles=True)
        ids, titles, texts = read_new_items(items_file, set(catalog.ids.tolist()))
        item_ct_new = embed_with_item_tower(src[fmt.ITEM_TOWER], texts)
        tables = fmt.ItemTableFiles.load(src[fmt.RECOMMEND])
        # No interactions: no CF vector, no bias, no recent popularity.
        item_cf_new = np.zeros((len(ids), tables.item_cf.shape[1]), np.float32)
        tables.with_tables(np.concatenate([tables.item_cf, item_cf_new]),
                           np.concatenate([tables.item_ct, item_ct_new])).save(staging[fmt.RECOMMEND])
        if fmt.USER_TOWER in staging:
            _append_rows(staging[fmt.USER_TOWER] / fmt.MODEL_ONNX, {"cf_table": item_cf_new, "ct_table": item_ct_new})
        catalog.with_items(ids, titles).save(staging[fmt.RECOMMEND])
        added.extend(ids)

    version = derive_version(repo, edit, keep_versions, lock_timeout_s)
    return repo, version, len(added)


def retire_items(target: str | Path, item_ids: list[str], keep_versions: int = fmt.DEFAULT_KEEP_VERSIONS,
                 lock_timeout_s: float = fmt.DEFAULT_LOCK_TIMEOUT_S) -> tuple[Path, int, int]:
    """A new version in which `item_ids` are never recommended (to anyone,
    cold users included). They stay in the catalog, so histories naming them
    still count; later exports into the repository keep them retired.
    Returns (repository, new version, items retired)."""
    repo = fmt.resolve_repository(target)
    wanted = sorted({str(i).strip() for i in item_ids if str(i).strip()})
    if not wanted:
        raise DataError("retire-items: no item id given")
    count = []

    def edit(src: dict[str, Path], staging: dict[str, Path]) -> None:
        catalog = fmt.Catalog.load(src[fmt.RECOMMEND], titles=True)
        found = [catalog.ids.index_of(i) for i in wanted]
        unknown = [i for i, f in zip(wanted, found) if f is None]
        if unknown:
            raise DataError(f"retire-items: {len(unknown)} id(s) not in the catalog, e.g. {unknown[0]!r}")
        catalog.with_retired(found).save(staging[fmt.RECOMMEND])
        count.append(len(found))

    version = derive_version(repo, edit, keep_versions, lock_timeout_s)
    return repo, version, count[0]
