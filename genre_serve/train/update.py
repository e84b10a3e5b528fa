"""`genre-serve update`: a trained run, plus a log of new interactions, becomes
a candidate run fine-tuned from the run's weights, gated against the run on
the log's newest events before anything is served (issue 16).

The log is split by time: the newest `holdout_fraction` of its events are the
gate slice, never trained on; the rest trains the candidate. The gate scores
every event of the slice as a next-item prediction from everything the user
did before it (the run's data, the log, earlier slice events), through the
served pipeline (retrieval, then the ranker over its top candidates), for the
parent and the candidate alike: thousands of events, not one per user.

Fine-tuning starts from the parent's served weights; new items get rows
(their content vector from the text encoder, zero CF vector and bias: what
add-items gives them) that their interactions then train.

The CF rows first get `als_iterations` of ALS over all the data so far,
started from the parent's rows (refine_cf_rows). `train` starts its CF rows
from ALS factors and moves them slowly (cf_lr_scale), so most of what a full
retrain knows that its parent did not is in those factors: every item's row
refitted on the new interactions, and real rows for the items that had none.
A fresh ALS fit would be an unrelated rotation of the space the user encoder
reads; warm-started, the rows stay in it, and the fine-tuning below adapts
the encoder to where they moved (without it, the refined rows alone score
far below the parent: benchmarks/RESULTS.md). Training on the new
interactions alone forgets: a model fine-tuned only on the users who came
back drifts away from everyone else's tastes (catastrophic forgetting). So
each epoch replays older data beside them: `replay` users without new events
(default: as many as there are users with new events), each with a window of
their history, and every updated user's window reaches back into their own
older history. CF rows change only for the items those windows hold (the
rows touched); the rest of the catalog keeps the parent's vectors. The
fusion (alpha per scenario, recent-popularity weight, new-item bias) stays
the parent's calibrated one: it is fitted on held-out interactions, and the
ones an update holds out are the gate's. The ranker stays the parent's by
default: fine-tuned on the updated and replayed users' most recent positions
(`ranker_epochs`), it scored lower on the gate slice (benchmarks/RESULTS.md).

The candidate is then not the fine-tuned model itself but the parent moved
`interpolation` (default half) of the way to it, every parameter alike
(WiSE-FT). Each update fits the newest events, whose items the gate slice
right after them favours; chained, round after round, the fine-tuned models
traded the older items' hits for the new ones' and fell below their own
parents on the next window while passing the gate. Halfway, the gate slices
of rounds 2 and 3 of the replay benchmark scored higher than with the
fine-tuned weights (round 1's lower; benchmarks/RESULTS.md). The price,
measured there by group: halfway, the older items' hits come back and the
items first seen in the logs are hardly recommended on the next window,
which is where a full retrain still leads. Part of that was the mix itself:
the rows of items the parent had no CF row for were halved towards zero, so
they now stay as fine-tuned (`interpolate_weights` says why).

Distillation (`distill`, off by default) is the other known guard: on the
replayed users' positions, the fine-tuned model's softmax is pulled towards
the parent's (trainer.Teacher). Beside the interpolation it only lowered the
gate slice; instead of it (interpolation 1), chained over the replay's three
rounds, it scored above the defaults in half of the rounds and below in the
others (benchmarks/RESULTS.md, 2026-12-06): an option, not the default.

Items gaining their first interactions in the log (zero CF row until then)
start from their neighbours' CF rows (fold_in_new_rows), which ALS then
refines: fine-tuning moves CF rows at the slow CF rate, and a row left near
zero takes such an item off the content rule that served it without lending
it any CF signal.

Once promoted, the candidate is fine-tuned again from the parent with the
gate's slice in (`refit_on_slice`, on by default), as `train`'s deployment
fit refits on the interactions its selection held out: the slice is the
newest data, the one most like what comes next, and the gate has already
judged the recipe. The settings (ALS iterations, learning rate, replay,
epochs) were chosen on the gate's slice of the replay benchmark's first
round, never on the windows it scores (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from genre_serve.config import TrainConfig
from genre_serve.data.dataset import DEFAULT_SCENARIO, parse_timestamps
from genre_serve.data.feedback import read_feedback
from genre_serve.data.idmap import IdMap
from genre_serve.data.loaders import read_new_items
from genre_serve.data.split import Split, sequences_split
from genre_serve.errors import DataError, RunDirError
from genre_serve.evaluation.genre_eval import ranked_pipeline_ranks
from genre_serve.evaluation.metrics import bootstrap_ci, ndcg_gains
from genre_serve.formats.run_dir import Run, load_run, save_run
from genre_serve.formats.update_report import REPORT_FILE, UpdateSettings
from genre_serve.models.genre import GenreModel
from genre_serve.models.recent_popularity import RecentPopularity
from genre_serve.models.sequence import training_windows
from genre_serve.train.trainer import (
    SequenceTargets,
    Teacher,
    make_batch,
    retrieval_loss,
    seed_everything,
    sequence_retrieval_loss,
    set_served_recent_popularity,
    softmax_catalog,
    train_ranker,
    training_positions,
    zero_cf_of_unseen_items,
)


@dataclass
class LogReport:
    """What the log held and what became of each row."""

    files: dict
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    events: int = 0
    late_events: int = 0  # older than the run's newest interaction: accepted, counted
    new_users: int = 0
    new_items: int = 0
    time_range: tuple[int, int] | None = None

    def drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Gate:
    events: int
    parent_ndcg: float
    candidate_ndcg: float
    parent_interval: tuple[float, float]
    candidate_interval: tuple[float, float]
    ratio_interval: tuple[float, float]  # paired bootstrap of candidate / parent
    max_regression: float
    promoted: bool

    @property
    def relative_change(self) -> float:
        return self.candidate_ndcg / self.parent_ndcg - 1 if self.parent_ndcg > 0 else float("inf")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self) | {"relative_change": self.relative_change,
                                           "verdict": "promoted" if self.promoted else "rejected"}

    def table(self) -> str:
        rows = [("parent", self.parent_ndcg, self.parent_interval), ("candidate", self.candidate_ndcg,
                                                                    self.candidate_interval)]
        lines = [f"gate: {self.events} held-out events, NDCG@10 (95% bootstrap interval)",
                 f"  {'model':<10} {'NDCG@10':>8}  interval"]
        lines += [f"  {name:<10} {v:>8.4f}  [{lo:.4f}, {hi:.4f}]" for name, v, (lo, hi) in rows]
        lo, hi = self.ratio_interval
        lines.append(f"  candidate / parent: {1 + self.relative_change:.3f} (paired interval [{lo:.3f}, {hi:.3f}]); "
                     f"allowed: >= {1 - self.max_regression:.3f}: "
                     f"{'PROMOTED' if self.promoted else 'REJECTED'}")
        return "\n".join(lines)


@dataclass
class UpdateResult:
    out: Path
    report: dict
    gate: Gate
    promoted: bool


# --- the data ------------------------------------------------------------------------------------


def run_events(run: Run) -> pd.DataFrame:
    """Every interaction of a run's data, external ids: user_id, item_id, timestamp, scenario."""
    split = run.split
    if not split.has_times:
        raise RunDirError(f"{run.path}: this run keeps no timestamps (saved by an older genre_serve), so new "
                          "events cannot be placed after its data: train it again with this genre_serve")
    users = run.meta.get("users")
    if users is None:
        raise RunDirError(f"{run.path}: this run keeps no user ids (saved by an older genre_serve): train it again")
    parts = []
    for u, (items, scens, times) in enumerate(zip(split.train_items, split.train_scenarios, split.train_times)):
        parts.append((np.full(len(items), u), items, scens, times))
    for item, scen, when in ((split.valid_item, split.valid_scenario, split.valid_time),
                             (split.test_item, split.test_scenario, split.test_time)):
        has = np.flatnonzero(item >= 0)
        parts.append((has, item[has], scen[has], when[has]))
    for u, (items, times) in enumerate(zip(split.cold_targets, split.cold_times)):
        parts.append((np.full(len(items), u), items, np.zeros(len(items), np.int64), times))
    for u, items in enumerate(split.valid_earlier or []):
        parts.append((np.full(len(items), u), items, split.valid_earlier_scenarios[u], split.valid_earlier_times[u]))
    u, i, s, t = (np.concatenate([p[k] for p in parts]).astype(np.int64) for k in range(4))
    return pd.DataFrame({"user_id": np.asarray(users, dtype=object)[u], "item_id": np.asarray(run.items.ids,
                                                                                             dtype=object)[i],
                         "timestamp": t, "scenario": np.asarray(run.scenarios, dtype=object)[s]})


def clean_log(raw: pd.DataFrame, report: LogReport, run: Run, known: pd.DataFrame, new_item_ids: set[str],
              settings: UpdateSettings) -> pd.DataFrame:
    """The log's events as training data is cleaned (ids, timestamps, the
    run's rating threshold, first interaction of a user with an item),
    every dropped row counted; unknown items are an error."""
    df = raw.copy()
    df["_order"] = np.arange(len(df))
    for col in ("user_id", "item_id"):
        blank = df[col].isna() | (df[col].astype(str).str.strip() == "")
        report.drop(f"missing {col}", blank.sum())
        df = df[~blank]
        df[col] = df[col].astype(str).str.strip()
    ts = parse_timestamps(df["timestamp"]) if len(df) else pd.Series([], dtype=float)
    report.drop("malformed timestamp", ts.isna().sum())
    df = df[ts.notna()].assign(timestamp=ts[ts.notna()].astype(np.int64))
    if "event" in df.columns:
        event = df["event"].fillna("").astype(str).str.strip().str.lower()
        for name in settings.ignore_events:
            report.drop(f"event {name!r} (not a positive)", (event == name).sum())
        df = df[~event.isin(settings.ignore_events)]
    min_rating = run.config.data.min_rating
    if min_rating is not None and "rating" in df.columns:
        rating = pd.to_numeric(df["rating"], errors="coerce")
        low = rating.notna() & (rating < min_rating)
        report.drop(f"rating below {min_rating}", low.sum())
        df = df[~low]
    scen = df["scenario"].fillna("").astype(str).str.strip() if "scenario" in df.columns else \
        pd.Series(DEFAULT_SCENARIO, index=df.index)
    scen = scen.where(scen != "", DEFAULT_SCENARIO)
    unknown_scenario = ~scen.isin(run.scenarios)
    report.drop(f"scenario unknown to the run (read as {DEFAULT_SCENARIO!r}; not dropped)", unknown_scenario.sum())
    df = df.assign(scenario=scen.where(~unknown_scenario, DEFAULT_SCENARIO))
    catalog = set(run.items.ids) | new_item_ids
    unknown = sorted(set(df["item_id"]) - catalog)
    if unknown:
        where = "nor in --items" if new_item_ids else "(give their titles and texts with --items FILE)"
        raise DataError(f"feedback log: {len(unknown)} item id(s) are not in the run's catalog {where}, "
                        f"e.g. {unknown[0]!r}; {int(df['item_id'].isin(unknown).sum())} event(s) name them")
    # Implicit feedback, as in training: a user's first interaction with an item counts.
    seen = pd.MultiIndex.from_frame(known[["user_id", "item_id"]])
    again = pd.MultiIndex.from_frame(df[["user_id", "item_id"]]).isin(seen)
    report.drop("user-item pair already in the run's data", again.sum())
    df = df[~again].sort_values(["timestamp", "_order"], kind="stable")
    dup = df.duplicated(["user_id", "item_id"], keep="first")
    report.drop("repeated user-item pair in the log", dup.sum())
    return df[~dup][["user_id", "item_id", "timestamp", "scenario"]].reset_index(drop=True)


def read_log(log: str | Path, run: Run, known: pd.DataFrame, new_item_ids: set[str],
             settings: UpdateSettings) -> tuple[pd.DataFrame, LogReport]:
    raw, files = read_feedback(log)
    report = LogReport(files=files.as_dict(), rows_read=sum(files.rows) + sum(files.malformed))
    report.drop("malformed line", sum(files.malformed))
    if report.rows_read == 0:
        raise DataError(f"feedback log {log}: empty (no events); nothing to update with")
    events = clean_log(raw, report, run, known, new_item_ids, settings)
    if events.empty:
        raise DataError(f"feedback log {log}: no usable event after cleaning "
                        f"({', '.join(f'{n} {r}' for r, n in report.dropped.items())})")
    newest = int(known["timestamp"].max())
    late = events["timestamp"].to_numpy() <= newest
    if late.all():
        raise DataError(f"feedback log {log}: every event is older than the run's newest interaction "
                        f"({pd.Timestamp(newest, unit='s', tz='UTC')}): a log the run already covers, "
                        "or the wrong run")
    report.events, report.late_events = len(events), int(late.sum())
    report.new_users = int((~events["user_id"].drop_duplicates().isin(set(known["user_id"]))).sum())
    report.time_range = (int(events["timestamp"].min()), int(events["timestamp"].max()))
    return events, report


@dataclass
class Sequences:
    """Every user's interactions (the run's, then the log's), by time, as indices."""

    users: IdMap
    items: IdMap
    scenarios: list[str]
    item: list[np.ndarray]
    scenario: list[np.ndarray]
    time: list[np.ndarray]
    part: list[np.ndarray]  # 0: the run's data, 1: log (training), 2: log (gate slice)

    def split(self, parts: tuple[int, ...], shuffled: np.random.Generator | None = None) -> Split:
        """A training split of the interactions of `parts` (nothing held out).
        `shuffled`: the log's events name random items instead (a model made
        worse on purpose, for the gate to reject)."""
        items = self.item
        if shuffled is not None:
            items = [np.where(p >= 1, shuffled.integers(0, len(self.items), p.size), i)
                     for i, p in zip(self.item, self.part)]
        keep = [np.isin(p, parts) for p in self.part]
        return sequences_split([i[k] for i, k in zip(items, keep)], [s[k] for s, k in zip(self.scenario, keep)],
                               [t[k] for t, k in zip(self.time, keep)], len(self.items))


def build_sequences(run: Run, known: pd.DataFrame, events: pd.DataFrame, new_item_ids: list[str],
                    holdout_fraction: float) -> Sequences:
    """Sequences of the run's users (first, in the run's order) and the log's new ones."""
    n_gate = max(1, int(round(holdout_fraction * len(events))))
    part = np.ones(len(events), np.int64)
    part[len(events) - n_gate:] = 2  # events are sorted by time: the newest are the slice
    frame = pd.concat([known.assign(part=0), events.assign(part=part)], ignore_index=True)
    run_users = list(run.meta["users"])
    new_users = sorted(set(events["user_id"]) - set(run_users))
    users = IdMap(run_users + new_users)
    items = run.items.extended(new_item_ids)
    scen_index = {s: i for i, s in enumerate(run.scenarios)}
    frame = pd.DataFrame({"user": users.indices(frame["user_id"].tolist()),
                          "item": items.indices(frame["item_id"].tolist()),
                          "timestamp": frame["timestamp"].to_numpy(np.int64),
                          "scenario": frame["scenario"].map(scen_index).fillna(0).to_numpy(np.int64),
                          "part": frame["part"].to_numpy(), "order": np.arange(len(frame))})
    frame = frame.sort_values(["user", "timestamp", "part", "order"], kind="stable")
    bounds = np.searchsorted(frame["user"].to_numpy(), np.arange(1, len(users)))
    cols = {c: np.split(frame[c].to_numpy(), bounds) for c in ("item", "scenario", "timestamp", "part")}
    return Sequences(users, items, list(run.scenarios), cols["item"], cols["scenario"], cols["timestamp"],
                     cols["part"])


@dataclass
class Requests:
    """Next-item requests: per event, the user's items before it, its scenario, the item, its time."""

    histories: list[np.ndarray]
    scenarios: np.ndarray
    targets: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def within_catalog(self, num_items: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """The requests whose target a model of `num_items` items knows, and
        their histories without the items it does not: an item added after a
        model is one it could never recommend."""
        known = np.flatnonzero(self.targets < num_items)
        return known, [self.histories[i][self.histories[i] < num_items] for i in known]


def gate_requests(seqs: Sequences) -> Requests:
    """Every slice event as a request."""
    hist, scen, target, when = [], [], [], []
    for items, scens, times, parts in zip(seqs.item, seqs.scenario, seqs.time, seqs.part):
        for t in np.flatnonzero(parts == 2):
            hist.append(items[:t])
            scen.append(scens[t])
            target.append(items[t])
            when.append(times[t])
    return Requests(hist, np.array(scen, np.int64), np.array(target, np.int64), np.array(when, np.int64))


def past_popularity(seqs: Sequences, days: float) -> RecentPopularity | None:
    """Recent popularity at any time from every interaction before it (run, log and slice)."""
    if days <= 0:
        return None
    return RecentPopularity(np.concatenate(seqs.item), np.concatenate(seqs.time), len(seqs.items), days)


# --- the model -----------------------------------------------------------------------------------


def grown_model(parent: GenreModel, new_text: np.ndarray) -> GenreModel:
    """`parent` with rows for new items: their text vectors, zero CF vector,
    bias and recent popularity (no interactions yet)."""
    state = parent.state_dict()
    text = torch.cat([state["items.text"][1:], torch.from_numpy(new_text.astype(np.float32))])
    model = GenreModel(text.shape[0], parent.num_scenarios, text, parent.cfg)
    n_new = len(new_text)
    for name, value in state.items():
        if name == "items.text":
            continue
        if name.startswith("items.") and value.shape[:1] == (parent.items.num_items + 1,):
            value = torch.cat([value, torch.zeros((n_new, *value.shape[1:]), dtype=value.dtype)])
        state[name] = value
    model.load_state_dict({**state, "items.text": model.items.text})
    model.eval()
    return model


@torch.no_grad()
def fold_in_new_rows(model: GenreModel, split: Split, context: int = 10) -> int:
    """Items without CF signal (zero CF row: unseen by the parent, or new)
    that the update's data has interactions with start from the average CF
    row (and bias) of the items their users had just before choosing them.
    Fine-tuning moves CF rows slowly (cf_lr_scale): started at zero, such
    rows stay near zero, which scores them below the content rule they were
    served by until then. Returns how many rows were folded in."""
    cf = model.items.cf.weight
    bias = model.items.bias.weight if model.items.bias is not None else None
    has_cf = cf[1:].abs().sum(1) > 0
    sums = torch.zeros_like(cf[1:])
    bias_sums = torch.zeros(cf.shape[0] - 1)
    counts = torch.zeros(cf.shape[0] - 1)
    for items in split.train_items:
        if len(items) < 2:
            continue
        seq = torch.from_numpy(np.asarray(items, np.int64))
        for t in torch.nonzero(~has_cf[seq[1:]]).flatten().tolist():
            before = seq[max(0, t + 1 - context) : t + 1]
            before = before[has_cf[before]]
            if before.numel() == 0:
                continue
            target = int(seq[t + 1])
            sums[target] += cf[1:][before].mean(0)
            if bias is not None:
                bias_sums[target] += bias[1:][before, 0].mean()
            counts[target] += 1
    folded = torch.nonzero(counts > 0).flatten()
    cf[folded + 1] = sums[folded] / counts[folded, None]
    if bias is not None:
        bias[folded + 1, 0] = bias_sums[folded] / counts[folded]
    return int(folded.numel())


@torch.no_grad()
def refine_cf_rows(model: GenreModel, split: Split, iterations: int, seed: int) -> None:
    """`iterations` of ALS over all of `split`, started from the model's CF
    rows: what `train` gets by fitting ALS afresh (every row, and the new
    items' first real ones, from all the data so far), kept in the basis the
    user encoder reads, since a fresh fit would be an unrelated rotation of
    it. Its bias rows are left as they are."""
    from genre_serve.evaluation.baselines import ImplicitMF

    cf = model.items.cf.weight
    fitted = ImplicitMF("als", factors=cf.shape[1], iterations=iterations, seed=seed).fit(
        split, item_init=cf[1:].numpy())
    cf[1:] = torch.from_numpy(fitted.item_factors.astype(np.float32))


def fine_tune_retrieval(model: GenreModel, split: Split, updated: np.ndarray, replayed: np.ndarray,
                        cfg: TrainConfig, settings: UpdateSettings, progress: bool,
                        teacher: Teacher | None = None) -> list[dict]:
    """Fine-tunes the user encoder, the content tower and the CF rows of the
    items the windows hold, on the updated users' latest windows (their new
    events, and their older ones before them) and the replayed users'; with
    a `teacher` (settings.distill), pulled towards its softmax on the
    replayed users' positions (or every position: settings.distill_users)."""
    rng = np.random.default_rng(settings.seed)
    frozen = ("ranker.", "user.recent_popularity_weight", "alpha_logit")
    named = [(n, p) for n, p in model.named_parameters() if not n.startswith(frozen)]
    item_rows = [p for n, p in named if n.startswith(("items.cf.", "items.bias."))]
    rest = [p for n, p in named if not n.startswith(("items.cf.", "items.bias."))]
    lr = cfg.lr * settings.lr_scale
    opt = torch.optim.Adam([{"params": rest}, {"params": item_rows, "lr": lr * cfg.cf_lr_scale}], lr=lr,
                           weight_decay=cfg.weight_decay, betas=(0.9, cfg.adam_beta2))
    users = np.concatenate([updated, replayed]).astype(np.int64)
    touched = np.unique(np.concatenate([split.train_items[u] for u in users] or [np.zeros(0, np.int64)])) + 1
    keep = torch.ones(model.items.num_items + 1, dtype=torch.bool)
    keep[torch.from_numpy(touched)] = False
    kept = {id(p): p.detach()[keep].clone() for p in item_rows}
    sequential = model.cfg.sequential
    if teacher is not None and sequential:
        raise ValueError(f"distill: supported for the attention encoder only, not {model.cfg.encoder!r}")
    if sequential:
        targets = SequenceTargets(split, cfg.target_window)
    if settings.softmax_items is not None:
        cfg = dataclasses.replace(cfg, softmax_items=settings.softmax_items)
    catalog = softmax_catalog(split, cfg)
    history = []
    for epoch in range(1, settings.epochs + 1):
        model.train()
        t0 = time.time()
        if sequential:
            length = model.cfg.max_history + 1
            # The updated users' windows end at their newest event; the replayed ones' anywhere.
            w_new, e_new = training_windows([split.train_items[u] for u in updated], length)
            w_old, e_old = training_windows([split.train_items[u] for u in replayed], length, rng)
            windows, ends = np.concatenate([w_new, w_old]), np.concatenate([e_new, e_old])
            rows = np.flatnonzero(ends >= 2)
            batch = cfg.sequence_batch_size
        else:
            pos_users, positions = training_positions(split, cfg.max_positions_per_user, only=users)
            rows = np.arange(pos_users.size)
            batch = cfg.batch_size
        order = rng.permutation(rows)
        total, steps = 0.0, 0
        bar = tqdm(range(0, order.size, batch), desc=f"update epoch {epoch}", unit="batch", disable=not progress,
                   leave=False)
        for s in bar:
            pick = order[s : s + batch]
            if sequential:
                loss = sequence_retrieval_loss(model, targets, users[pick], windows[pick], ends[pick], cfg, rng,
                                               catalog)
            else:
                hist_lists, hist, scen, target = make_batch(split, pos_users[pick], positions[pick],
                                                            model.cfg.max_history, cfg.target_window, rng)
                distilled = None if settings.distill_users == "all" else torch.from_numpy(
                    np.isin(pos_users[pick], replayed))
                loss = retrieval_loss(model, hist, scen, target, hist_lists, cfg, rng, catalog, teacher, distilled)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():  # the rows no window held keep the parent's vectors
                for p in item_rows:
                    p[keep] = kept[id(p)]
            total, steps = total + loss.item(), steps + 1
            bar.set_postfix(loss=f"{total / steps:.3f}")
        history.append({"epoch": epoch, "loss": total / max(steps, 1), "seconds": time.time() - t0})
        if progress:
            tqdm.write(f"update epoch {epoch}/{settings.epochs}: loss {total / max(steps, 1):.4f}")
    model.eval()
    return history


# The item rows that interpolate_weights keeps fine-tuned where the parent had no CF row.
ITEM_ROWS = ("items.cf.weight", "items.bias.weight")


@torch.no_grad()
def interpolate_weights(model: GenreModel, start: dict[str, torch.Tensor], beta: float) -> None:
    """Every parameter becomes start + beta x (its value - start): the
    parent's weights moved only part of the way to the fine-tuned ones
    (WiSE-FT, Wortsman et al., CVPR 2022). Except the CF rows (and item
    bias) of items the parent had no CF row for (new items, or items it
    never saw): their start is a zero row the parent never learned, and a
    mix with it only shrinks them. Shrunk, they stayed shrunk along a chain
    of updates (half, then three quarters of the scale of older items as
    popular), and the next window's hits on items first seen in the logs
    went to a few per thousand; kept whole, the candidates scored higher on
    their gate slices (validation) in 11 of the replay's 12 chained rounds
    (two chains, two seeds; +0.1% to +6%), 2% lower in one
    (benchmarks/RESULTS.md).
    Buffers (the served recent-popularity snapshot) stay the candidate's."""
    if beta == 1:
        return
    fresh = (start["items.cf.weight"].abs().sum(1) == 0)[:, None]
    for name, p in model.named_parameters():
        mixed = start[name] + beta * (p - start[name])
        p.copy_(torch.where(fresh, p, mixed) if name in ITEM_ROWS else mixed)


def fine_tune(parent: Run, seqs: Sequences, new_text: np.ndarray, parts: tuple[int, ...],
              settings: UpdateSettings, progress: bool, shuffled: bool = False) -> tuple[GenreModel, Split, dict]:
    """The candidate: the parent grown by the new items, fine-tuned on the log events of `parts`."""
    seed_everything(settings.seed)
    cfg = parent.config
    model = grown_model(parent.model, new_text)
    split = seqs.split((0, *parts), np.random.default_rng(settings.seed + 7) if shuffled else None)
    fresh = [np.isin(p, parts).any() for p in seqs.part]
    updated = np.array([u for u, f in enumerate(fresh) if f and len(split.train_items[u]) >= 2], np.int64)
    others = np.array([u for u, f in enumerate(fresh) if not f and len(split.train_items[u]) >= 2], np.int64)
    rng = np.random.default_rng(settings.seed)
    n_replay = others.size if settings.replay_all else min(others.size, int(round(settings.replay * updated.size)))
    replayed = np.sort(rng.choice(others, n_replay, replace=False)) if n_replay else np.zeros(0, np.int64)
    t0 = time.time()
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    teacher = Teacher(model, settings.distill) if settings.distill else None
    folded = fold_in_new_rows(model, split) if settings.fold_in else 0
    if settings.als_iterations:
        refine_cf_rows(model, split, settings.als_iterations, settings.seed)
    retrieval = fine_tune_retrieval(model, split, updated, replayed, cfg, settings, progress, teacher)
    zero_cf_of_unseen_items(model, split)
    set_served_recent_popularity(model, split)
    ranker = []
    if settings.ranker_epochs and updated.size:
        chosen = np.concatenate([updated, replayed])
        subset = sequences_split([split.train_items[u] for u in chosen], [split.train_scenarios[u] for u in chosen],
                                 [split.train_times[u] for u in chosen], split.num_items)
        ranker = train_ranker(model, subset, dataclasses.replace(cfg, seed=settings.seed), progress,
                              fixed_epochs=settings.ranker_epochs)
    interpolate_weights(model, start, settings.interpolation)
    model.eval()
    return model, split, {"updated_users": int(updated.size), "replayed_users": int(replayed.size),
                          "folded_in_items": folded,
                          "retrieval_history": retrieval, "ranker_history": ranker, "seconds": time.time() - t0}


# --- the gate ------------------------------------------------------------------------------------


@torch.no_grad()
def event_gains(model: GenreModel, requests: Requests, depth: int, popularity: RecentPopularity | None = None,
                batch: int = 1024) -> np.ndarray:
    """NDCG@10 of each request under the served pipeline, with recent
    popularity as of the request's time from `popularity` (what
    refresh-popularity keeps a served snapshot at; None: the model's own
    snapshot). Items beyond the model's catalog (added after it) are dropped
    from histories and count as misses as targets: that model could never
    recommend them."""
    n = model.items.num_items
    gains = np.zeros(len(requests))
    known, histories = requests.within_catalog(n)
    use_popularity = popularity is not None and model.cfg.recent_popularity
    for s in range(0, known.size, batch):
        rows, hist = known[s : s + batch], histories[s : s + batch]
        recent = popularity.at(requests.times[rows])[:, :n] if use_popularity else None
        ranks, _ = ranked_pipeline_ranks(model, hist, requests.scenarios[rows], requests.targets[rows], depth,
                                         recent_popularity=recent)
        gains[rows] = ndcg_gains(ranks, 10)
    return gains


def judge(parent: GenreModel, candidate: GenreModel, seqs: Sequences, depth: int,
          settings: UpdateSettings) -> Gate:
    """Both models on every slice event, recent popularity read at each
    event's time for both (the snapshot a model was exported with is a
    matter of when popularity was last refreshed, not of the model)."""
    requests = gate_requests(seqs)
    popularity = past_popularity(seqs, max(parent.cfg.recent_popularity_days, candidate.cfg.recent_popularity_days))
    before = event_gains(parent, requests, depth, popularity)
    after = event_gains(candidate, requests, depth, popularity)
    reps, seed = settings.bootstrap_reps, settings.seed
    p, c = float(before.mean()), float(after.mean())
    return Gate(events=len(requests), parent_ndcg=p, candidate_ndcg=c,
                parent_interval=bootstrap_ci(before, reps=reps, seed=seed),
                candidate_interval=bootstrap_ci(after, reps=reps, seed=seed),
                ratio_interval=bootstrap_ci(after, before, reps=reps, seed=seed),
                max_regression=settings.max_regression, promoted=c >= p * (1 - settings.max_regression))


# --- the command ---------------------------------------------------------------------------------


def read_new_item_file(items: str | Path | None, run: Run) -> tuple[list[str], list[str], list[str]]:
    """The items of `items` the run's catalog lacks (ids, titles, texts); none without a file."""
    if items is None:
        return [], [], []
    return read_new_items(items, set(run.items.ids), skip_known=True)


def update(run_dir: str | Path, log: str | Path, out: str | Path, items: str | Path | None = None,
           settings: UpdateSettings | None = None, progress: bool = True,
           make_worse: bool = False) -> UpdateResult:
    """Reads the log, fine-tunes the candidate, gates it against the run and
    writes the candidate's run directory (promoted or not) with its report.
    `make_worse`: the candidate's encoder and ranker train on the log with
    random items in place of the real ones (what the gate must reject; for
    tests)."""
    settings = settings or UpdateSettings()
    if make_worse:
        settings = dataclasses.replace(settings, ranker_epochs=max(1, settings.ranker_epochs))
    settings.check()
    t0 = time.time()
    parent = load_run(run_dir)
    out = Path(out)
    if out.resolve() == parent.path.resolve():
        raise DataError("--out: give a new run directory; the parent run stays as it is")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"--out {out}: not empty (an earlier run or update?); give a new run directory, "
                        "or remove this one first")
    known = run_events(parent)
    new_ids, new_titles, new_texts = read_new_item_file(items, parent)
    events, log_report = read_log(log, parent, known, set(new_ids), settings)
    log_report.new_items = len(new_ids)  # every item of --items joins the catalog, with events or not
    seqs = build_sequences(parent, known, events, new_ids, settings.holdout_fraction)
    new_text = _embed(new_texts, parent, progress)
    candidate, split, tuning = fine_tune(parent, seqs, new_text, (1,), settings, progress, shuffled=make_worse)
    gate = judge(parent.model, candidate, seqs, parent.config.ranker_depth, settings)
    refit = None
    if gate.promoted and settings.refit_on_slice:
        candidate, split, refit = fine_tune(parent, seqs, new_text, (1, 2), settings, progress)
    meta = copy.deepcopy({k: v for k, v in parent.meta.items()
                          if k not in ("format_version", "num_items", "scenarios", "config", "served_weights")})
    report = {
        "parent": str(parent.path.resolve()),
        "log": log_report.as_dict(),
        "settings": dataclasses.asdict(settings),
        "changes": {"new_items": new_ids, "new_users": log_report.new_users,
                    "trained_events": int(sum((p == 1).sum() for p in seqs.part)),
                    "gate_events": gate.events, **{k: v for k, v in tuning.items() if not k.endswith("history")}},
        "fine_tuning": {"retrieval_history": tuning["retrieval_history"],
                        "ranker_history": tuning["ranker_history"]},
        "gate": gate.as_dict(),
        "refit_on_slice": None if refit is None else {k: v for k, v in refit.items() if not k.endswith("history")},
        "shuffled_targets": make_worse,
        "seconds": time.time() - t0,
    }
    meta.update({"users": seqs.users.to_json(), "update": report,
                 "retrieval_history": [], "ranker_history": [], "deployment_fit": {"skipped": "an update"}})
    titles = list(parent.titles) + new_titles
    texts = list(parent.texts) + new_texts
    save_run(out, candidate, parent.config, seqs.items, titles, texts, parent.scenarios, split, meta)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2))
    return UpdateResult(out, report, gate, gate.promoted)


def _embed(texts: list[str], run: Run, progress: bool) -> np.ndarray:
    """Text vectors of new items, by the encoder the run's items were embedded with."""
    from genre_serve.models.text_encoder import encode_texts

    if not texts:
        return np.zeros((0, run.model.items.text.shape[1]), np.float32)
    cfg = run.config
    return encode_texts(texts, cfg.text_encoder, max_length=cfg.max_text_length, progress=progress)
