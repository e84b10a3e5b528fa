"""Train/validation/test splits as per-user sequences, with no leakage.

Leave-last-out: per user, by time, the last interaction is the test target, the
one before it the validation target, the rest is training. Validation is
scored with the training history; test with training + validation history.
With `valid_per_user` k > 1, the k interactions before the test one are
validation targets, each scored from everything before it: one target per
user leaves a few hundred validation events on a small data set, whose
NDCG@10 moves between neighbouring epochs or settings by more than what
separates them (benchmarks/RESULTS.md), and model selection chases that noise.
Optionally a fraction of items is held out entirely (cold items): none of
their interactions is in any training sequence, and the users who had them
become cold-start targets. Every other held-out item (in id order) belongs
to validation, the rest to test (Split.cold_stage): how high a model should
place items it has never trained on is something only held-out interactions
with such items can fit, and the test's cold items must not be those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from genre_serve.data.dataset import Dataset


class Stage(NamedTuple):
    """The requests of one stage (validation or test): users with a target."""

    users: np.ndarray  # [U'] user indices
    histories: list[np.ndarray]  # per user: the items before the target, oldest first
    history_scenarios: list[np.ndarray]  # the scenarios of those items
    targets: np.ndarray  # [U'] the item to predict
    scenarios: np.ndarray  # [U'] the scenario of the request (the target's)


@dataclass
class Split:
    num_items: int
    train_items: list[np.ndarray]
    train_scenarios: list[np.ndarray]
    valid_item: np.ndarray  # [U], -1: none
    valid_scenario: np.ndarray
    test_item: np.ndarray
    test_scenario: np.ndarray
    cold_items: np.ndarray
    cold_targets: list[np.ndarray]  # per user: held-out items they interacted with
    # Timestamps (seconds) of the same interactions: the time of a request is
    # the time of the interaction it predicts (recent popularity is read then).
    train_times: list[np.ndarray] | None = None
    valid_time: np.ndarray | None = None
    test_time: np.ndarray | None = None
    cold_times: list[np.ndarray] | None = None
    # valid_per_user > 1: per user, the validation targets before valid_item
    # (oldest first), each scored from the history before it. None: none.
    valid_earlier: list[np.ndarray] | None = None
    valid_earlier_scenarios: list[np.ndarray] | None = None
    valid_earlier_times: list[np.ndarray] | None = None

    @property
    def num_users(self) -> int:
        return len(self.train_items)

    @property
    def has_times(self) -> bool:
        return self.train_times is not None

    def stage_times(self, name: str) -> np.ndarray:
        """Timestamps of the targets of stage(name), in the same order."""
        if not self.has_times:
            raise ValueError("this split has no timestamps (a run saved before they were kept)")
        target, times = self._stage_arrays(name)[0], (self.valid_time if name == "valid" else self.test_time)
        if name == "valid" and self.valid_earlier is not None:
            users = np.flatnonzero(target >= 0)
            return np.concatenate([np.append(self.valid_earlier_times[u], times[u]) for u in users]
                                  or [np.zeros(0, np.int64)]).astype(np.int64)
        return times[target >= 0]

    def earlier_validation(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """User u's validation targets before valid_item and their scenarios (empty: none)."""
        if self.valid_earlier is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return self.valid_earlier[u], self.valid_earlier_scenarios[u]

    def _stage_arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name == "valid":
            return self.valid_item, self.valid_scenario
        if name == "test":
            return self.test_item, self.test_scenario
        raise ValueError(f"stage: 'valid' or 'test', got {name!r}")

    def stage(self, name: str) -> Stage:
        """The requests of stage `name` ("valid" or "test"): validation is
        scored with the training history, test with training + validation."""
        target, scen = self._stage_arrays(name)
        users = np.flatnonzero(target >= 0)
        if name == "valid" and self.valid_earlier is not None:
            return self._validation_events(users)
        hist, hist_s = [], []
        for u in users:
            items, scens = self.train_items[u], self.train_scenarios[u]
            if name == "test" and self.valid_item[u] >= 0:
                earlier, earlier_s = self.earlier_validation(u)
                items = np.concatenate([items, earlier, [self.valid_item[u]]]).astype(np.int64)
                scens = np.concatenate([scens, earlier_s, [self.valid_scenario[u]]]).astype(np.int64)
            hist.append(items)
            hist_s.append(scens)
        return Stage(users, hist, hist_s, target[users], scen[users])

    def _validation_events(self, users: np.ndarray) -> Stage:
        """Every validation target of `users`, oldest first per user, each from the history before it."""
        out_users, hist, hist_s, targets, scens = [], [], [], [], []
        for u in users:
            earlier, earlier_s = self.earlier_validation(u)
            items = np.append(earlier, self.valid_item[u])
            item_s = np.append(earlier_s, self.valid_scenario[u])
            before = np.concatenate([self.train_items[u], items]).astype(np.int64)
            before_s = np.concatenate([self.train_scenarios[u], item_s]).astype(np.int64)
            start = len(self.train_items[u])
            for j in range(items.size):
                out_users.append(u)
                hist.append(before[: start + j])
                hist_s.append(before_s[: start + j])
                targets.append(items[j])
                scens.append(item_s[j])
        return Stage(np.array(out_users, np.int64), hist, hist_s, np.array(targets, np.int64),
                     np.array(scens, np.int64))

    def cold_stage_items(self, name: str) -> np.ndarray:
        """The held-out items whose interactions are stage `name`'s cold-start
        targets: every other one of `cold_items` (sorted) for validation, the
        others for test. Both stages' items are in the catalog at both, unseen."""
        self._stage_arrays(name)  # checks the name
        return self.cold_items[0::2] if name == "valid" else self.cold_items[1::2]

    def cold_stage(self, name: str) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray | None]:
        """Stage `name`'s cold-start requests, one per (user, held-out item of
        the stage): users, their training histories, the items, and the times
        of those interactions (None: the split has no times)."""
        ours = np.isin(np.arange(self.num_items), self.cold_stage_items(name))
        users, hist, targets, times = [], [], [], []
        for u, cold in enumerate(self.cold_targets):
            for j in np.flatnonzero(ours[cold]):
                users.append(u)
                hist.append(self.train_items[u])
                targets.append(cold[j])
                times.append(self.cold_times[u][j] if self.has_times else 0)
        return (np.array(users, np.int64), hist, np.array(targets, np.int64),
                np.array(times, np.int64) if self.has_times else None)

    def all_counts(self) -> np.ndarray:
        """Interactions per item in the whole split: training, validation,
        test and cold-start targets (the data of a deployment fit)."""
        parts = [*self.train_items, self.valid_item[self.valid_item >= 0], self.test_item[self.test_item >= 0],
                 *self.cold_targets, *(self.valid_earlier or [])]
        flat = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        return np.bincount(flat, minlength=self.num_items)

    def train_counts(self) -> np.ndarray:
        """Interactions per item in training (popularity)."""
        flat = np.concatenate(self.train_items) if self.train_items else np.zeros(0, np.int64)
        return np.bincount(flat, minlength=self.num_items)


def pick_cold_items(ds: Dataset, fraction: float, seed: int) -> np.ndarray:
    if not 0 <= fraction < 1:
        raise ValueError(f"cold_item_fraction: must be in [0, 1), got {fraction}")
    if fraction == 0:
        return np.zeros(0, np.int64)
    used = np.unique(ds.interactions["item"].to_numpy())
    rng = np.random.default_rng(seed)
    count = max(1, int(round(fraction * used.size)))
    return np.sort(rng.choice(used, size=count, replace=False))


def _empty_split(num_users: int, num_items: int, cold: np.ndarray) -> Split:
    """A split with no targets yet (-1) and empty per-user lists to fill."""
    return Split(
        num_items=num_items,
        train_items=[],
        train_scenarios=[],
        valid_item=np.full(num_users, -1, np.int64),
        valid_scenario=np.zeros(num_users, np.int64),
        test_item=np.full(num_users, -1, np.int64),
        test_scenario=np.zeros(num_users, np.int64),
        cold_items=cold,
        cold_targets=[],
        train_times=[],
        valid_time=np.zeros(num_users, np.int64),
        test_time=np.zeros(num_users, np.int64),
        cold_times=[],
    )


def leave_last_out(ds: Dataset, cold_item_fraction: float = 0.0, seed: int = 0, valid_per_user: int = 1) -> Split:
    """Per user: the last interaction is the test target, up to `valid_per_user`
    before it the validation targets (always leaving one for training)."""
    if valid_per_user < 1:
        raise ValueError(f"valid_per_user: at least 1, got {valid_per_user}")
    cold = pick_cold_items(ds, cold_item_fraction, seed)
    is_cold = np.zeros(ds.num_items, bool)
    is_cold[cold] = True
    items_per_user, scen_per_user, ts_per_user = ds.sequences()
    split = _empty_split(len(items_per_user), ds.num_items, cold)
    if valid_per_user > 1:
        split.valid_earlier, split.valid_earlier_scenarios, split.valid_earlier_times = [], [], []
    for u, (items, scens, ts) in enumerate(zip(items_per_user, scen_per_user, ts_per_user)):
        warm = ~is_cold[items]
        split.cold_targets.append(items[~warm])
        split.cold_times.append(ts[~warm])
        items, scens, ts = items[warm], scens[warm], ts[warm]
        if len(items) >= 2:
            split.test_item[u], split.test_scenario[u], split.test_time[u] = items[-1], scens[-1], ts[-1]
            items, scens, ts = items[:-1], scens[:-1], ts[:-1]
        held = min(valid_per_user, len(items) - 1) if len(items) >= 2 else 0
        if held:
            split.valid_item[u], split.valid_scenario[u], split.valid_time[u] = items[-1], scens[-1], ts[-1]
        if valid_per_user > 1:
            earlier = slice(len(items) - held, len(items) - 1)
            split.valid_earlier.append(items[earlier])
            split.valid_earlier_scenarios.append(scens[earlier])
            split.valid_earlier_times.append(ts[earlier])
        if held:
            items, scens, ts = items[:-held], scens[:-held], ts[:-held]
        split.train_items.append(items)
        split.train_scenarios.append(scens)
        split.train_times.append(ts)
    return split


def time_split(ds: Dataset, test_fraction: float = 0.1) -> Split:
    """Global time split: the first interaction of each user after the cutoff
    (the time below which 1 - test_fraction of all interactions lie) is the test
    target; the user's last interaction before it, the validation target."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: must be in (0, 1), got {test_fraction}")
    cutoff = np.quantile(ds.interactions["timestamp"].to_numpy(), 1 - test_fraction)
    items_per_user, scen_per_user, ts_per_user = ds.sequences()
    split = _empty_split(len(items_per_user), ds.num_items, np.zeros(0, np.int64))
    split.cold_targets = [np.zeros(0, np.int64) for _ in items_per_user]
    split.cold_times = [np.zeros(0, np.int64) for _ in items_per_user]
    for u, (items, scens, ts) in enumerate(zip(items_per_user, scen_per_user, ts_per_user)):
        before = ts < cutoff
        past, past_s, past_t = items[before], scens[before], ts[before]
        if before.sum() < len(items) and len(past) >= 1:
            first_after = np.flatnonzero(~before)[0]
            split.test_item[u], split.test_scenario[u] = items[first_after], scens[first_after]
            split.test_time[u] = ts[first_after]
        if len(past) >= 2:
            split.valid_item[u], split.valid_scenario[u], split.valid_time[u] = past[-1], past_s[-1], past_t[-1]
            past, past_s, past_t = past[:-1], past_s[:-1], past_t[:-1]
        split.train_items.append(past)
        split.train_scenarios.append(past_s)
        split.train_times.append(past_t)
    return split


def sequences_split(items: list[np.ndarray], scenarios: list[np.ndarray], times: list[np.ndarray],
                    num_items: int) -> Split:
    """Per-user sequences as training, nothing held out (no validation or
    test target, no cold item)."""
    split = _empty_split(len(items), num_items, np.zeros(0, np.int64))
    split.train_items, split.train_scenarios, split.train_times = list(items), list(scenarios), list(times)
    split.cold_targets = [np.zeros(0, np.int64) for _ in items]
    split.cold_times = [np.zeros(0, np.int64) for _ in items]
    return split


def all_interactions(ds: Dataset) -> Split:
    """Every interaction as training: the data of the deployment fit."""
    return sequences_split(*ds.sequences(), ds.num_items)
