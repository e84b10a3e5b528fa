"""`genre-serve update`'s settings and its report (RUN_DIR/update_report.json):
the log it read (files, rows, what was dropped and why, time range), the
settings, what changed, both models' gate metrics with bootstrap intervals
and the verdict, and, after a rollout, the version served. The same
document is meta.json's ``update`` entry of the candidate run."""

from __future__ import annotations

from dataclasses import dataclass

REPORT_FILE = "update_report.json"

# Events that say a user did *not* want an item: never training positives.
IGNORED_EVENTS = ("impression", "skip", "dismiss", "dislike", "hide")


@dataclass(frozen=True)
class UpdateSettings:
    """How `genre-serve update` fine-tunes and gates a candidate (train/update.py says why)."""

    holdout_fraction: float = 0.2  # the newest share of the log's events: the gate slice
    max_regression: float = 0.02  # relative NDCG@10 the candidate may lose against its parent
    epochs: int = 2  # fine-tuning epochs over the updated and replayed users
    lr_scale: float = 1.0  # of the run's learning rates
    replay: float = 1.0  # users without new events replayed per user with new events
    ranker_epochs: int = 0  # 0: the parent's ranker (fine-tuning it measured worse on the gate, RESULTS.md)
    ignore_events: tuple[str, ...] = IGNORED_EVENTS
    refit_on_slice: bool = True  # after promotion, fine-tune once more with the slice in (train's deployment fit)
    fold_in: bool = True  # items gaining their first interactions start from their neighbours' CF rows
    replay_all: bool = False  # replay every user without new events (`replay` is then ignored)
    als_iterations: int = 15  # ALS iterations refining every CF row on all data, from the parent's rows (0: none)
    softmax_items: str | None = None  # the retrieval softmax's items, "all" or "trained" (None: as the parent trained)
    interpolation: float = 0.5  # the candidate: parent + this x (fine-tuned - parent) (1: the fine-tuned weights)
    distill: float = 0.0  # weight of the pull towards the parent's softmax (distillation; 0: off; attention encoder)
    distill_users: str = "replayed"  # whose positions are distilled: "replayed" or "all" (the updated ones too)
    bootstrap_reps: int = 1000
    seed: int = 0

    def check(self) -> None:
        if not 0 < self.holdout_fraction < 1:
            raise ValueError(f"holdout fraction: in (0, 1), got {self.holdout_fraction}")
        if not 0 <= self.max_regression < 1:
            raise ValueError(f"max regression: in [0, 1), got {self.max_regression}")
        if self.epochs < 1 or self.ranker_epochs < 0:
            raise ValueError("epochs: at least 1; ranker epochs: at least 0")
        if not 0 < self.interpolation <= 1:
            raise ValueError(f"interpolation: in (0, 1], got {self.interpolation}")
        if self.distill < 0 or self.distill_users not in ("replayed", "all"):
            raise ValueError(f"distill: at least 0, got {self.distill}; distill users: 'replayed' or 'all', "
                             f"got {self.distill_users!r}")
        # The values of config.CHOICES["softmax_items"], written out: formats/ sits below config (torch).
        if self.softmax_items not in (None, "all", "trained"):
            raise ValueError(f"softmax items: 'all' or 'trained', got {self.softmax_items!r}")
        if self.replay < 0 or self.lr_scale <= 0 or self.als_iterations < 0:
            raise ValueError("replay: at least 0; lr scale: above 0; ALS iterations: at least 0")
