"""Configuration dataclasses: defaults in code, overridable from a TOML file
and from ``GENRE_SERVE_TRAIN_<FIELD>`` environment variables (one per
top-level scalar field, e.g. ``GENRE_SERVE_TRAIN_EPOCHS=5``).

The training overrides have a prefix of their own: ``GENRE_SERVE_*`` alone
also names run-time settings (``GENRE_SERVE_NUM_THREADS``,
``GENRE_SERVE_CACHE``, ``GENRE_SERVE_CUDA``). The old form
``GENRE_SERVE_<FIELD>`` still works, with a deprecation warning, where no
``GENRE_SERVE_TRAIN_<FIELD>`` is set.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from genre_serve.data.dataset import DataConfig
from genre_serve.errors import ConfigError
from genre_serve.models.genre import ModelConfig
from genre_serve.models.sequence import LR_SCHEDULES

ENV_PREFIX = "GENRE_SERVE_TRAIN_"
# The values a string field of TrainConfig may take (checked when a config is
# built, so a typo fails before text vectors and ALS are computed, not after).
CHOICES = {
    "bf16": ("auto", "on", "off"),
    "lr_schedule": LR_SCHEDULES,
    "softmax_items": ("all", "trained"),
    "cf_init": ("als", "random"),
}
LEGACY_ENV_PREFIX = "GENRE_SERVE_"


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    epochs: int = 15
    batch_size: int = 256  # training positions per step (attention encoder) and ranker lists per step
    sequence_batch_size: int = 16  # users (windows) per step of the transformer encoder
    # The catalog products of the transformer's loss in bfloat16: "auto" where
    # the CPU has native bf16 (models/sequence.py:native_bf16), "on", "off".
    bf16: str = "auto"
    lr: float = 2e-3
    adam_beta2: float = 0.999  # Adam's second-moment decay (SASRec's recipe: 0.98)
    lr_schedule: str = "cosine"  # "constant" or "cosine" (decays to 10% of lr over the epochs)
    weight_decay: float = 0.0
    aux_weight: float = 0.5  # weight of the CF-only and content-only losses
    ema_decay: float = 0.998  # > 0: validate and keep an exponential moving average of the weights (0: off)
    patience: int = 8  # epochs without a better validation NDCG@10 before stopping
    num_negatives: int = 0  # 0: softmax over the whole catalog; > 0: sampled softmax
    max_positions_per_user: int = 100  # training targets drawn per user per epoch (most recent)
    target_window: int = 20  # > 1: the target is drawn from the next `target_window` items
    ranker_epochs: int = 3
    ranker_depth: int = 100  # retrieved candidates the ranker re-ranks
    ranker_positions_per_user: int = 5  # the last training positions of each user train the ranker
    ranker_holdout: bool = False  # hold those positions out of retrieval training
    item_dropout: float = 0.0  # share of items trained as if they had no CF signal (cold-start)
    # The items the retrieval softmax runs over: "all" (the whole catalog) or
    # "trained" (only items with a training interaction; trainer.softmax_catalog says why).
    softmax_items: str = "all"
    # After selection on the split, fit the served model on every interaction
    # with the selected epochs and fusion (train: the deployment fit).
    refit: bool = True
    calibrate_fusion: bool = True  # fit alpha, the recent-popularity weight and the new-item bias on validation
    # The fit above also on validation's held-out items' interactions (Split.cold_stage): the
    # new-item bias then fitted on cold targets, not only pushed down by warm ones
    # (benchmarks/RESULTS.md, 2026-12-05: cold start up on every seed, warm validation within noise).
    cold_calibration: bool = True
    # The CF item vectors' learning rate relative to lr: they start from ALS
    # factors and at the full rate memorise the targets (cf_init "random": use 1).
    cf_lr_scale: float = 0.03
    cf_init: str = "als"  # "als": CF item vectors start from implicit ALS factors; "random": N(0, 0.02)
    cold_item_fraction: float = 0.02  # items held out entirely, for the cold-start evaluation
    valid_per_user: int = 1  # validation targets per user (the interactions before the test one; data/split.py)
    text_encoder: str | None = None  # local checkpoint dir; None: all-MiniLM-L6-v2
    max_text_length: int = 64
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self):
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}: one of {', '.join(map(repr, allowed))}, got {getattr(self, name)!r}")
        if self.valid_per_user < 1:
            raise ConfigError(f"valid_per_user: at least 1, got {self.valid_per_user}")
        if not 0 <= self.cold_item_fraction < 1:
            raise ConfigError(f"cold_item_fraction: in [0, 1), got {self.cold_item_fraction}")
        if self.lr <= 0 or self.epochs < 1 or self.batch_size < 1 or self.sequence_batch_size < 1:
            raise ConfigError(f"lr: above 0, epochs and batch sizes: at least 1; got lr {self.lr}, "
                              f"epochs {self.epochs}, batch sizes {self.batch_size} / {self.sequence_batch_size}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        return _build(cls, raw, "config")

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path}: {e}") from None
        return cls.from_dict(raw)

    def with_env(self, environ: Mapping[str, str] | None = None) -> TrainConfig:
        """Overrides top-level scalar fields from GENRE_SERVE_TRAIN_<FIELD> variables
        (or, deprecated, GENRE_SERVE_<FIELD>)."""
        environ = os.environ if environ is None else environ
        changes = {}
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            if dataclasses.is_dataclass(hints[f.name]):
                continue
            name, legacy = f"{ENV_PREFIX}{f.name.upper()}", f"{LEGACY_ENV_PREFIX}{f.name.upper()}"
            value = environ.get(name)
            if value is None and legacy in environ:
                warnings.warn(f"{legacy} is deprecated: set {name} instead", FutureWarning, stacklevel=2)
                name, value = legacy, environ[legacy]
            if value is not None:
                changes[f.name] = _coerce(hints[f.name], value, name)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls, raw: dict[str, Any], where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    values = {}
    for key, value in raw.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, f"{where}.{key}")
        else:
            values[key] = _coerce(hint, value, f"{where}.{key}")
    return cls(**values)


def _coerce(hint, value, where: str):
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if value is None or (isinstance(value, str) and value.lower() == "none" and type(None) in typing.get_args(hint)):
        if type(None) in typing.get_args(hint):
            return None
        raise ConfigError(f"{where}: must not be empty")
    if origin is tuple:
        return tuple(_coerce(args[0], v, where) for v in (value.split(",") if isinstance(value, str) else value))
    target = args[0] if origin in (typing.Union, types.UnionType) else hint
    try:
        if target is bool and isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        return target(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: cannot read {value!r} as {getattr(target, '__name__', target)}") from None
