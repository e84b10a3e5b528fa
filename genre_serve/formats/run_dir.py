"""A training run on disk: everything evaluate/export need, nothing else.
Written by training, read by evaluation, export, the in-process pipeline and
the load test (one owner of the format, below all of them).

    RUN_DIR/
      model.pt       state dict of the served GENRE model (retrieval + ranker)
      selection.pt   the selection-stage model, where model.pt is a deployment
                     fit on every interaction (meta.json "served_weights": "refit")
      meta.json      format_version, sizes, scenarios, config, text encoder, training history
      items.json     external item ids and titles, in catalog order
      split.npz      the exact train/valid/test/cold split used

Format history (meta.json ``format_version``):

1. no ``format_version``. Runs from before some settings existed: read by
   :func:`_migrate_v1` as they were trained.
2. ``format_version``; the recent-popularity buffer and weight are named
   ``items.recent_popularity`` and ``user.recent_popularity_weight`` (1:
   ``items.trend``, ``user.trend_weight``).
3. the transformer user encoder (``model.encoder``; runs of 1 and 2 had the
   attention encoder) and the deployment fit: ``served_weights`` says whether
   model.pt is the selection model or a refit on every interaction, with
   selection.pt beside it (runs of 1 and 2: the selection model).

A config field a run lacks reads today's default. A new setting that changes
how a model trains therefore comes with a format bump and a migration that
says how older runs were trained (as :func:`_migrate_v1` does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genre_serve.config import TrainConfig
from genre_serve.data.idmap import IdMap
from genre_serve.data.split import Split
from genre_serve.errors import RunDirError
from genre_serve.models.genre import GenreModel

FORMAT_VERSION = 3
WEIGHTS = ("served", "selection")
RUN_FILES = ("model.pt", "meta.json", "items.json", "split.npz")


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
    weights: str = "served"  # which weights `model` holds: "served" (model.pt) or "selection"

    @property
    def served_is_refit(self) -> bool:
        """Whether model.pt was fitted on every interaction, held-out ones included."""
        return self.meta.get("served_weights") == "refit"

    @property
    def model_is_refit(self) -> bool:
        """Whether `model` trained on the split's held-out interactions (it cannot be scored on them)."""
        return self.weights == "served" and self.served_is_refit

    @property
    def gate_rejection(self) -> str | None:
        """Why this run must never be served: `genre-serve update`'s gate
        rejected it (None: it may be)."""
        gate = (self.meta.get("update") or {}).get("gate")
        if not gate or gate.get("promoted", True):
            return None
        return (f"the update gate rejected this candidate (NDCG@10 {gate['candidate_ndcg']:.4f} against its "
                f"parent's {gate['parent_ndcg']:.4f}, {gate['max_regression']:.0%} regression allowed)")

    def popularity(self) -> np.ndarray:
        """Interactions per item in the data `model` was fitted on."""
        return (self.split.all_counts() if self.model_is_refit else self.split.train_counts()).astype(np.float32)


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
        **({} if split.valid_earlier is None else {
            "valid_earlier_lengths": np.array([len(v) for v in split.valid_earlier], np.int64),
            "valid_earlier": cat(split.valid_earlier),
            "valid_earlier_scenarios": cat(split.valid_earlier_scenarios),
            "valid_earlier_times": cat(split.valid_earlier_times),
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
        valid_time=z.get("valid_time"),
        test_time=z.get("test_time"),
        cold_times=np.split(z["cold_times"], cold_bounds) if "cold_times" in z else None,
        **_earlier_validation(z),
    )


def _earlier_validation(z) -> dict:
    """A split saved with several validation targets per user (valid_per_user > 1); {} otherwise."""
    if "valid_earlier_lengths" not in z:
        return {}
    bounds = np.cumsum(z["valid_earlier_lengths"])[:-1]
    return {name: np.split(z[name], bounds)
            for name in ("valid_earlier", "valid_earlier_scenarios", "valid_earlier_times")}


def save_run(path: Path, model: GenreModel, config: TrainConfig, items: IdMap, titles: list[str],
             texts: list[str], scenarios: list[str], split: Split, meta: dict,
             selection_model: GenreModel | None = None) -> None:
    """`model`: the served model; `selection_model`: the selection-stage model
    where `model` is a deployment fit (None: `model` is the selection model)."""
    path.mkdir(parents=True, exist_ok=True)
    for name, m in (("model.pt", model), ("selection.pt", selection_model)):
        if m is None:
            (path / name).unlink(missing_ok=True)
            continue
        tmp = path / f"{name}.tmp"
        torch.save(m.state_dict(), tmp)
        tmp.replace(path / name)
    (path / "items.json").write_text(json.dumps({"ids": items.to_json(), "titles": titles, "texts": texts}))
    save_split(split, path / "split.npz")
    meta = {"served_weights": "refit" if selection_model is not None else "selection"} | meta
    full_meta = dict(meta, format_version=FORMAT_VERSION, num_items=len(items), scenarios=scenarios,
                     config=config.to_dict())
    (path / "meta.json").write_text(json.dumps(full_meta, indent=2))


def _migrate_v1(meta: dict, state: dict) -> None:
    """Format 1 -> 2 in place: a run saved before these fields existed loads as
    it was trained. Config fields it lacks would read today's defaults; the
    ones below record how it was trained, and it trained without them."""
    meta["config"] = {"cf_lr_scale": 1.0, "calibrate_fusion": False} | meta["config"]
    renames = {"items.trend": "items.recent_popularity",
               "user.trend_weight.weight": "user.recent_popularity_weight.weight"}
    for old, new in renames.items():
        if old in state:
            state[new] = state.pop(old)
    model_cfg = meta["config"].setdefault("model", {})
    if "items.recent_popularity" not in state:
        # Trained before recent popularity existed: it had none.
        model_cfg["recent_popularity_days"] = 0.0
    # Served new items without a bias.
    state.setdefault("new_item_bias", torch.zeros(()))


def _migrate_v2(meta: dict) -> None:
    """Format 2 -> 3 in place: runs before format 3 had the attention encoder
    and served their selection model."""
    meta["config"].setdefault("model", {}).setdefault("encoder", "attention")
    meta.setdefault("served_weights", "selection")


def load_run(path: str | Path, weights: str = "served") -> Run:
    """The run at `path` with the served weights (model.pt) or the
    selection-stage ones (`weights="selection"`: selection.pt where the served
    model is a deployment fit, else model.pt): what evaluation scores."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights: one of {WEIGHTS}, got {weights!r}")
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {path}")
    missing = [f for f in RUN_FILES if not (path / f).exists()]
    if missing:
        raise RunDirError(f"{path} is not a complete training run (missing {', '.join(missing)})")
    meta = json.loads((path / "meta.json").read_text())
    refit = meta.get("served_weights") == "refit"
    weights_file = path / ("selection.pt" if weights == "selection" and refit else "model.pt")
    if not weights_file.exists():
        raise RunDirError(f"{path} is not a complete training run (missing {weights_file.name})")
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    version = meta.get("format_version", 1)
    if version == 1:
        _migrate_v1(meta, state)
    if version in (1, 2):
        _migrate_v2(meta)
    elif version != FORMAT_VERSION:
        raise RunDirError(f"{path}: run format {version} is newer than this genre_serve reads "
                          f"({FORMAT_VERSION}): upgrade genre_serve")
    config = TrainConfig.from_dict(meta["config"])
    items_doc = json.loads((path / "items.json").read_text())
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
        weights=weights,
    )
