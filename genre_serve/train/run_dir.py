"""A training run on disk: everything evaluate/export need, nothing else.

    RUN_DIR/
      model.pt       state dict of the GENRE model (retrieval + ranker)
      meta.json      sizes, scenarios, config, text encoder, training history
      items.json     external item ids and titles, in catalog order
      split.npz      the exact train/valid/test/cold split used
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genre_serve.config import TrainConfig
from genre_serve.data.idmap import IdMap
from genre_serve.data.split import Split
from genre_serve.errors import GenreServeError
from genre_serve.models.genre import GenreModel


class RunDirError(GenreServeError, ValueError):
    """A run directory is missing or incomplete."""


@dataclass
class Run:
    path: Path
    model: GenreModel
    config: TrainConfig
    items: IdMap
    titles: list[str]
    texts: list[str]
    scenarios: list[str]
    split: Split
    meta: dict


def save_split(split: Split, path: Path) -> None:
    lengths = np.array([len(t) for t in split.train_items], np.int64)
    cold_lengths = np.array([len(c) for c in split.cold_targets], np.int64)
    cat = lambda xs: np.concatenate(xs).astype(np.int64) if xs else np.zeros(0, np.int64)  # noqa: E731
    np.savez_compressed(
        path,
        num_items=split.num_items,
        train_lengths=lengths,
        train_items=cat(split.train_items),
        train_scenarios=cat(split.train_scenarios),
        valid_item=split.valid_item,
        valid_scenario=split.valid_scenario,
        test_item=split.test_item,
        test_scenario=split.test_scenario,
        cold_items=split.cold_items,
        cold_lengths=cold_lengths,
        cold_targets=cat(split.cold_targets),
        **({} if not split.has_times else {
            "train_times": cat(split.train_times),
            "valid_time": split.valid_time,
            "test_time": split.test_time,
            "cold_times": cat(split.cold_times),
        }),
    )


def load_split(path: Path) -> Split:
    z = np.load(path)
    bounds = np.cumsum(z["train_lengths"])[:-1]
    cold_bounds = np.cumsum(z["cold_lengths"])[:-1]
    return Split(
        num_items=int(z["num_items"]),
        train_items=np.split(z["train_items"], bounds),
        train_scenarios=np.split(z["train_scenarios"], bounds),
        valid_item=z["valid_item"],
        valid_scenario=z["valid_scenario"],
        test_item=z["test_item"],
        test_scenario=z["test_scenario"],
        cold_items=z["cold_items"],
        cold_targets=np.split(z["cold_targets"], cold_bounds),
        # Runs saved before timestamps were kept have none (no recent popularity).
        train_times=np.split(z["train_times"], bounds) if "train_times" in z else None,
        valid_time=z["valid_time"] if "valid_time" in z else None,
        test_time=z["test_time"] if "test_time" in z else None,
        cold_times=np.split(z["cold_times"], cold_bounds) if "cold_times" in z else None,
    )


def save_run(path: Path, model: GenreModel, config: TrainConfig, items: IdMap, titles: list[str],
             texts: list[str], scenarios: list[str], split: Split, meta: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "model.pt.tmp"
    torch.save(model.state_dict(), tmp)
    tmp.replace(path / "model.pt")
    (path / "items.json").write_text(json.dumps({"ids": items.to_json(), "titles": titles, "texts": texts}))
    save_split(split, path / "split.npz")
    full_meta = dict(meta, num_items=len(items), scenarios=scenarios, config=config.to_dict())
    (path / "meta.json").write_text(json.dumps(full_meta, indent=2))


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {path}")
    missing = [f for f in ("model.pt", "meta.json", "items.json", "split.npz") if not (path / f).exists()]
    if missing:
        raise RunDirError(f"{path} is not a complete training run (missing {', '.join(missing)})")
    meta = json.loads((path / "meta.json").read_text())
    # Fields a run's config lacks read today's defaults; these two record how
    # the run was trained, and runs from before them trained without either.
    config = TrainConfig.from_dict({"cf_lr_scale": 1.0, "calibrate_fusion": False} | meta["config"])
    items_doc = json.loads((path / "items.json").read_text())
    state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    if config.model.recent_popularity and "items.trend" not in state:
        # A run trained before recent popularity existed (its config has no
        # recent_popularity_days, so it reads the new default): it had none.
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, recent_popularity_days=0.0))
    # Runs saved before the new-item bias existed served new items without one.
    state.setdefault("new_item_bias", torch.zeros(()))
    text = state["items.text"][1:]
    model = GenreModel(meta["num_items"], len(meta["scenarios"]), text, config.model)
    model.load_state_dict(state)
    model.eval()
    return Run(
        path=path,
        model=model,
        config=config,
        items=IdMap.from_json(items_doc["ids"]),
        titles=items_doc["titles"],
        texts=items_doc["texts"],
        scenarios=meta["scenarios"],
        split=load_split(path / "split.npz"),
        meta=meta,
    )
