"""Fitting the fusion on held-out interactions, after retrieval training.

Three numbers decide how the channels are mixed at serving time: the fusion
weight alpha (per scenario), the weight of recent popularity, and the bias of
items without CF signal (scored by content alone, plus this bias). Learned
with the rest on the training positions, the first two come out biased
towards what the CF vectors have memorised (alpha too high, the
recent-popularity weight even negative), while on the validation
interactions the content channel and recent popularity carry much more
(benchmarks/RESULTS.md has the values). And how often users pick an item
the CF tables have never seen is something only held-out interactions show.

So all three are fitted together on the validation targets, by their
likelihood (with `cold`, also on validation's held-out items: each user's
interactions with them, weighted to their share of all interactions, so the
new-item bias is fitted on what it is for, not only pushed down by warm
targets that never name a new item): the cross-entropy of the fused scores
over the whole catalog (the history excluded), the loss retrieval trains
with. The parameters are a shift of every scenario's alpha logit (the
differences between scenarios stay as trained), the recent-popularity
weight, the new-item bias and a temperature that only the fit uses (no
ranking depends on it). Four numbers from a few hundred users: a likelihood
is smooth in them, where validation NDCG@10 over a few hundred users jumps
between neighbouring values by more than their true difference, and a grid
search on it chased that noise.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from genre_serve.data.split import Split
from genre_serve.evaluation.genre_eval import (
    item_tables,
    recent_popularity_counter,
    user_vectors,
)
from genre_serve.evaluation.metrics import exclude_histories, history_cells, ndcg_at, ranks_of_targets
from genre_serve.models.genre import GenreModel
from genre_serve.retrieval import items_without_cf

# Validation users x catalog cells held in memory at once by the fit (three
# float32 matrices of this size): larger validation sets are subsampled.
MAX_FIT_CELLS = 20_000_000


class FusionScores:
    """The score matrices of a stage's requests (validation: the fit) that the
    fusion is a function of: CF without recent popularity, content, recent
    popularity at each request's time."""

    def __init__(self, model: GenreModel, split: Split, seed: int = 0, stage: str = "valid", cold: bool = False):
        requests = split.stage(stage)
        hist, targets, scen = list(requests.histories), np.asarray(requests.targets), np.asarray(requests.scenarios)
        times = split.stage_times(stage) if split.has_times else np.zeros(targets.size, np.int64)
        warm = targets.size
        weights = np.ones(warm)
        if cold:
            _, c_hist, c_targets, c_times = split.cold_stage(stage)
            if c_targets.size:
                # The cold rows weigh, all together, what their interactions weigh among all of them.
                share = c_targets.size / max(int(split.all_counts().sum()), 1)
                each = share / (1 - share) * warm / c_targets.size
                weights = np.concatenate([weights, np.full(c_targets.size, each)])
                hist += c_hist
                targets = np.concatenate([targets, c_targets])
                scen = np.concatenate([scen, np.zeros(c_targets.size, np.int64)])
                times = np.concatenate([times, c_times if c_times is not None else np.zeros(c_targets.size, np.int64)])
        keep = np.arange(len(targets))
        limit = max(1, MAX_FIT_CELLS // max(split.num_items, 1))
        if keep.size > limit:
            # The same share of warm and of cold rows, so their weights keep their balance.
            rng = np.random.default_rng(seed)
            groups = (keep[:warm], keep[warm:])
            keep = np.sort(np.concatenate([rng.choice(g, max(1, round(g.size * limit / keep.size)), replace=False)
                                           for g in groups if g.size]))
        self.histories = [hist[i] for i in keep]
        self.targets = targets[keep]
        self.scenarios = scen[keep]
        self.warm = keep < warm  # the rows of the stage's own targets (NDCG@10 is reported on these)
        self.weights = torch.from_numpy(weights[keep].astype(np.float32))
        item_cf, item_ct = item_tables(model)
        u_cf, u_ct, _ = user_vectors(model, self.histories, self.scenarios)
        recent_counter = recent_popularity_counter(model, split)
        if recent_counter is not None:
            self.cf = torch.from_numpy(u_cf[:, :-1] @ item_cf[:, :-1].T)
            popularity = recent_counter.at(times[keep])
            self.recent_popularity = torch.from_numpy(np.ascontiguousarray(popularity, dtype=np.float32))
        else:
            self.cf, self.recent_popularity = torch.from_numpy(u_cf @ item_cf.T), None
        self.ct = torch.from_numpy(u_ct @ item_ct.T)
        self.new = torch.zeros(split.num_items, dtype=torch.bool)
        self.new[torch.from_numpy(items_without_cf(item_cf))] = True
        rows, cols = history_cells(self.histories)
        self.seen = torch.zeros_like(self.ct, dtype=torch.bool)
        self.seen[torch.as_tensor(rows), torch.as_tensor(cols)] = True

    @property
    def has_recent_popularity(self) -> bool:
        return self.recent_popularity is not None

    def fused(self, alpha_logit: torch.Tensor, recent_popularity_weight: torch.Tensor, new_item_bias: torch.Tensor,
              temperature: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Served scores [B, N] (history cells -inf-like) under these parameters."""
        a = torch.sigmoid(alpha_logit[torch.from_numpy(self.scenarios)]).unsqueeze(1)
        cf = self.cf if self.recent_popularity is None else self.cf + recent_popularity_weight * self.recent_popularity
        scores = torch.where(self.new, self.ct + new_item_bias, a * cf + (1 - a) * self.ct)
        return (scores * temperature).masked_fill(self.seen, -1e9)

    def cross_entropy(self, *params) -> torch.Tensor:
        per_row = F.cross_entropy(self.fused(*params), torch.from_numpy(self.targets), reduction="none")
        return (per_row * self.weights).sum() / self.weights.sum()

    def ndcg10(self, *params) -> float:
        """NDCG@10 of the stage's own (warm) targets."""
        warm = np.flatnonzero(self.warm)
        hist = [self.histories[i] for i in warm]
        with torch.no_grad():
            scores = exclude_histories(self.fused(*params)[torch.from_numpy(warm)].numpy(), hist)
        return ndcg_at(ranks_of_targets(scores, hist, self.targets[warm])[0], 10)

    def cold_recall20(self, *params) -> float | None:
        """Recall@20 of the cold rows' items over the whole catalog (None: no cold row)."""
        cold = np.flatnonzero(~self.warm)
        if not cold.size:
            return None
        hist = [self.histories[i] for i in cold]
        with torch.no_grad():
            scores = exclude_histories(self.fused(*params)[torch.from_numpy(cold)].numpy(), hist)
        return float((ranks_of_targets(scores, hist, self.targets[cold])[0] < 20).mean())


def fusion_parameters(model: GenreModel) -> dict:
    """The served fusion of a model: alpha per scenario, recent-popularity
    weight per scenario (None without it), new-item bias."""
    return {
        "alpha": torch.sigmoid(model.alpha_logit.detach()).tolist(),
        "recent_popularity_weight": (model.user.recent_popularity_weight.weight[:, 0].tolist()
                                     if model.cfg.recent_popularity else None),
        "new_item_bias": float(model.new_item_bias),
    }


def calibrate_fusion(model: GenreModel, split: Split, seed: int = 0, progress: bool = True,
                     cold: bool = False) -> dict:
    """Fits alpha (a shift of every scenario's logit), the recent-popularity
    weight (one for all scenarios) and the new-item bias on the validation
    likelihood (with `cold`, validation's held-out items' interactions in it),
    and sets them in `model`. Keeps the trained values if the fit does not
    lower the cross-entropy. Returns the parameters and validation figures
    before and after."""
    valid_users = np.unique(split.stage("valid").users)
    if not valid_users.size:
        return {"skipped": "no validation targets"}
    data = FusionScores(model, split, seed, cold=cold)
    logits0 = model.alpha_logit.detach().clone()
    w0 = float(model.user.recent_popularity_weight.weight[0, 0].detach()) if data.has_recent_popularity else 0.0
    start = (logits0, torch.tensor(w0), model.new_item_bias.detach().clone())
    shift = torch.zeros((), requires_grad=True)
    w = torch.tensor(w0, requires_grad=data.has_recent_popularity)
    bias = model.new_item_bias.detach().clone().requires_grad_(True)
    log_temperature = torch.zeros((), requires_grad=True)
    free = [shift, bias, log_temperature] + ([w] if data.has_recent_popularity else [])
    ce_before = _best_temperature_cross_entropy(data, start)
    _minimise(free, lambda: data.cross_entropy(logits0 + shift, w, bias, log_temperature.exp()), max_iter=200)
    fitted = (logits0 + shift.detach(), w.detach(), bias.detach())
    with torch.no_grad():
        ce_after = float(data.cross_entropy(*fitted, log_temperature.detach().exp()))
    report = {"valid_users": int(valid_users.size), "valid_events": int(data.warm.sum()),
              "valid_cold_pairs": int((~data.warm).sum()),
              "valid_cold_recall@20_before": data.cold_recall20(*start), "before": fusion_parameters(model),
              "valid_cross_entropy_before": ce_before, "valid_ndcg@10_before": data.ndcg10(*start)}
    accepted = bool(np.isfinite(ce_after) and ce_after < ce_before)
    if accepted:
        with torch.no_grad():
            model.alpha_logit.copy_(fitted[0])
            if data.has_recent_popularity:
                model.user.recent_popularity_weight.weight.fill_(float(fitted[1]))
            model.new_item_bias.fill_(float(fitted[2]))
    report.update({"accepted": accepted, "after": fusion_parameters(model),
                   "temperature": float(log_temperature.detach().exp()),
                   "valid_cross_entropy_after": ce_after if accepted else ce_before,
                   "valid_ndcg@10_after": data.ndcg10(*fitted) if accepted else report["valid_ndcg@10_before"],
                   "valid_cold_recall@20_after": data.cold_recall20(*fitted) if accepted
                   else report["valid_cold_recall@20_before"]})
    if model.cfg.tied:
        report["alpha_by_ndcg"] = _alpha_by_ndcg(model, data)
        report["after"] = fusion_parameters(model)
        report["valid_ndcg@10_after"] = max(report["alpha_by_ndcg"]["valid_ndcg@10"].values())
    if progress:
        tqdm.write(f"fusion calibrated on validation: alpha {_fmt(report['before']['alpha'])} -> "
                   f"{_fmt(report['after']['alpha'])}, recent-popularity weight "
                   f"{_fmt(report['before']['recent_popularity_weight'])} -> "
                   f"{_fmt(report['after']['recent_popularity_weight'])}, new-item bias "
                   f"{report['after']['new_item_bias']:.3f}; valid NDCG@10 {report['valid_ndcg@10_before']:.4f} -> "
                   f"{report['valid_ndcg@10_after']:.4f}")
    return report


ALPHA_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.97)


def _alpha_by_ndcg(model: GenreModel, data: FusionScores) -> dict:
    """The tied ("sasrec") encoder's alpha, chosen on validation NDCG@10 from
    the likelihood's fit and ALPHA_GRID (one shift of every scenario's logit).
    Its channels train apart, each as a retriever of its own, so nothing
    ties their scales to the fused likelihood; on ml-latest-small the
    likelihood's alpha (about 0.5) cost validation NDCG@10 against a CF-heavier
    mix (benchmarks/RESULTS.md). One number on a grid of six: little room to
    chase noise."""
    logits = model.alpha_logit.detach().clone()
    w = (model.user.recent_popularity_weight.weight[0, 0].detach() if data.has_recent_popularity
         else torch.tensor(0.0))
    bias = model.new_item_bias.detach().clone()
    mean_logit = float(logits.mean())
    tried = {"fitted": data.ndcg10(logits, w, bias)}
    best_shift, best = 0.0, tried["fitted"]
    for alpha in ALPHA_GRID:
        shift = float(np.log(alpha / (1 - alpha))) - mean_logit
        tried[f"{alpha:g}"] = ndcg = data.ndcg10(logits + shift, w, bias)
        if ndcg > best:
            best_shift, best = shift, ndcg
    with torch.no_grad():
        model.alpha_logit.add_(best_shift)
    return {"valid_ndcg@10": tried, "alpha": torch.sigmoid(model.alpha_logit.detach()).tolist()}


def _best_temperature_cross_entropy(data: FusionScores, params) -> float:
    """The cross-entropy at `params` with the temperature fitted too, so that
    before and after are compared on equal terms."""
    log_temperature = torch.zeros((), requires_grad=True)
    _minimise([log_temperature], lambda: data.cross_entropy(*params, log_temperature.exp()), max_iter=50)
    with torch.no_grad():
        return float(data.cross_entropy(*params, log_temperature.exp()))


def _minimise(free: list[torch.Tensor], loss, max_iter: int) -> None:
    """Minimises `loss()` over the tensors `free` in place (LBFGS, strong Wolfe line search)."""
    opt = torch.optim.LBFGS(free, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = loss()
        value.backward()
        return value

    opt.step(closure)


def _fmt(values) -> str:
    if values is None:
        return "-"
    values = sorted(set(round(v, 3) for v in values))
    return str(values[0]) if len(values) == 1 else f"{values[0]}..{values[-1]}"
