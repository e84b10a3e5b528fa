"""Baselines scored on the same split as the GENRE model.

Each baseline is fitted on the training sequences and returns dense scores
[B, N] for a batch of histories; the evaluator excludes the histories and
ranks the targets identically for every method.
"""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn
from tqdm.auto import tqdm

from genre_serve.data.split import Split
from genre_serve.evaluation.metrics import history_cells, ndcg_at, ranks_of_targets
from genre_serve.models.recent_popularity import RecentPopularity
from genre_serve.models.sequence import (
    LR_SCHEDULES,
    CausalTransformer,
    catalog_cross_entropy,
    learning_rate_schedule,
    prefix_exclusion,
    training_windows,
    use_bf16,
)


def interaction_matrix(split: Split) -> sp.csr_matrix:
    rows = np.repeat(np.arange(split.num_users), [len(t) for t in split.train_items])
    cols = np.concatenate(split.train_items)
    data = np.ones(cols.size, np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(split.num_users, split.num_items))


class MostPopular:
    name = "most-popular"

    def fit(self, split: Split) -> MostPopular:
        self.counts = split.train_counts().astype(np.float32)
        return self

    def score(self, users, histories, scenarios, times=None) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(histories), self.counts.size))


class RecentPopular:
    """Items by their interactions in the `window_days` before each request
    (global popularity breaks ties): the non-personalised signal that GENRE's
    recent-popularity column carries, shown on its own."""

    def __init__(self, window_days: float = 14.0):
        self.window_days = window_days
        self.name = f"recent-popular ({window_days:g} days)"

    def fit(self, split: Split) -> RecentPopular:
        self.recent_counter = RecentPopularity.of_split(split, self.window_days)
        counts = split.train_counts().astype(np.float32)
        self.tiebreak = 1e-3 * counts / max(counts.max(), 1.0)
        return self

    def score(self, users, histories, scenarios, times=None) -> np.ndarray:
        if times is None:
            raise ValueError("recent-popular scores need the request times")
        return self.recent_counter.at(times) + self.tiebreak


class ItemKNN:
    """Item-based kNN: cosine similarity of item columns of the interaction
    matrix, the `neighbours` most similar kept per item; a user's score for an
    item is the sum of its similarities to the history."""

    name = "item-kNN"

    def __init__(self, neighbours: int = 100):
        self.neighbours = neighbours

    def fit(self, split: Split) -> ItemKNN:
        X = interaction_matrix(split).tocsc()
        norms = np.sqrt(np.asarray(X.multiply(X).sum(0))).ravel()
        norms[norms == 0] = 1.0
        Xn = X @ sp.diags(1.0 / norms)
        sim = (Xn.T @ Xn).tocsr().astype(np.float32)
        sim.setdiag(0.0)
        sim.eliminate_zeros()
        self.sim = _keep_top_per_row(sim, self.neighbours)
        return self

    def score(self, users, histories, scenarios, times=None) -> np.ndarray:
        rows, cols = history_cells(histories)
        H = sp.csr_matrix((np.ones(cols.size, np.float32), (rows, cols)), shape=(len(histories), self.sim.shape[0]))
        return np.asarray((H @ self.sim).todense())


def _keep_top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    rows, cols, vals = [], [], []
    for r in range(m.shape[0]):
        start, end = m.indptr[r], m.indptr[r + 1]
        if end - start > k:
            top = np.argpartition(-m.data[start:end], k)[:k] + start
        else:
            top = np.arange(start, end)
        rows.append(np.full(top.size, r))
        cols.append(m.indices[top])
        vals.append(m.data[top])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=m.shape)


class ImplicitMF:
    """Matrix factorisation from the `implicit` library (ALS or BPR). Users are
    scored with the factors learned from their training interactions."""

    def __init__(self, kind: str, factors: int = 64, iterations: int = 30, seed: int = 0, **params):
        self.kind, self.factors, self.iterations, self.seed, self.params = kind, factors, iterations, seed, params
        self.name = f"implicit {kind.upper()}"

    def fit(self, split: Split, item_init: np.ndarray | None = None) -> ImplicitMF:
        """`item_init` (ALS only): start from these item factors instead of
        random ones; the first half-step solves the users for them, so a few
        iterations refine the given factors in their own basis (an update's
        warm start) instead of finding an unrelated rotation."""
        if item_init is not None and self.kind != "als":
            raise ValueError("item_init: ALS only")
        if self.kind == "als":
            from implicit.cpu.als import AlternatingLeastSquares as Model

            params = {"regularization": 0.05, "alpha": 2.0} | self.params
        else:
            from implicit.cpu.bpr import BayesianPersonalizedRanking as Model

            params = {"learning_rate": 0.01, "regularization": 0.01} | self.params
        model = Model(factors=self.factors, iterations=self.iterations, random_state=self.seed, **params)
        if item_init is not None:
            if item_init.shape != (split.num_items, self.factors):
                raise ValueError(f"item_init: shape {(split.num_items, self.factors)}, got {item_init.shape}")
            model.item_factors = np.array(item_init, dtype=np.float32, order="C")  # a copy: ALS works in place
        # implicit parallelises itself; a multi-threaded BLAS underneath it only contends.
        with threadpool_limits(1, "blas"):
            model.fit(interaction_matrix(split), show_progress=False)
        self.user_factors = np.asarray(model.user_factors)
        self.item_factors = np.asarray(model.item_factors)
        return self

    def score(self, users, histories, scenarios, times=None) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T


class EASE:
    """EASE (Steck, WWW 2019): a closed-form item-item model, the strongest
    simple non-sequential baseline. B = I - P / diag(P) with
    P = (X^T X + l2 I)^-1, diag(B) = 0; a user's scores are the history's row
    sum of B. l2 is chosen on the validation NDCG@10 from `l2_grid` (one
    inverse each). Dense in the catalog (N x N floats), so it is only offered
    up to MAX_ITEMS items."""

    name = "EASE"
    MAX_ITEMS = 30_000

    def __init__(self, l2_grid: tuple[float, ...] = (20.0, 50.0, 100.0, 200.0, 500.0)):
        self.l2_grid = tuple(l2_grid)

    @staticmethod
    def weights(gram: torch.Tensor, l2: float) -> torch.Tensor:
        p = torch.linalg.inv(gram + l2 * torch.eye(gram.shape[0], dtype=gram.dtype))
        b = -p / torch.diagonal(p)
        b.fill_diagonal_(0.0)
        return b

    def fit(self, split: Split) -> EASE:
        if split.num_items > self.MAX_ITEMS:
            raise ValueError(f"EASE: {split.num_items} items; dense EASE is offered up to {self.MAX_ITEMS}")
        X = interaction_matrix(split)
        gram = torch.from_numpy((X.T @ X).toarray().astype(np.float32))
        valid = split.stage("valid")
        self.valid_ndcg = {}
        best = -1.0
        for l2 in self.l2_grid:
            self.B = self.weights(gram, l2).numpy()
            ranks, _ = ranks_of_targets(self.score(valid.users, valid.histories, valid.scenarios), valid.histories,
                                        valid.targets)
            self.valid_ndcg[l2] = ndcg_at(ranks, 10)
            if self.valid_ndcg[l2] > best:
                best, self.l2, best_b = self.valid_ndcg[l2], l2, self.B
        self.B = best_b
        return self

    def score(self, users, histories, scenarios, times=None) -> np.ndarray:
        rows, cols = history_cells(histories)
        H = sp.csr_matrix((np.ones(cols.size, np.float32), (rows, cols)), shape=(len(histories), self.B.shape[0]))
        return np.asarray(H @ self.B)


class _SASRecNet(nn.Module):
    def __init__(self, num_items: int, dim: int, max_len: int, blocks: int, heads: int, dropout: float):
        super().__init__()
        self.item = nn.Embedding(num_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.item.weight, std=0.02)
        with torch.no_grad():
            self.item.weight[0].zero_()
        self.transformer = CausalTransformer(dim, blocks, heads, dropout, max_len)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.transformer(self.item(seq), seq > 0)


class SASRec:
    """SASRec (Kang & McAuley 2018): causal self-attention over the history,
    the same transformer as GENRE's user encoder (models/sequence.py), item
    embeddings shared by input and output, early stopping on validation
    NDCG@10.

    loss="ce" ("SASRec+"): softmax cross-entropy over the whole catalog at
    every position, the history excluded, the recipe that made SASRec the
    model to beat (Klenitskiy & Vasilev, RecSys 2023). loss="bce": the
    original's binary cross-entropy with one sampled negative per position,
    kept as its own row: the gap between the two is what the loss alone buys.
    Dropout and learning rate are chosen on validation by
    benchmarks/quality.py; the defaults are its choice on ml-latest-small.
    Patience is 8 validations (16 epochs): with 4, a seed of ml-latest-small
    stopped at epoch 13 on an early plateau (valid NDCG@10 0.021, where the
    same model reaches 0.07). `lr_schedule` is GENRE's (models/sequence.py):
    "cosine" decays over `epochs`, so that when GENRE's recipe uses it the
    peer can be given it too and chosen on validation like the rest.
    """

    def __init__(self, loss: str = "ce", dim: int = 64, max_len: int = 200, blocks: int = 2, heads: int = 1,
                 dropout: float = 0.1, epochs: int = 200, batch_size: int = 64, lr: float = 3e-3,
                 patience: int = 8, eval_every: int = 2, seed: int = 0, progress: bool = False, bf16: str = "auto",
                 lr_schedule: str = "constant"):
        if loss not in ("ce", "bce"):
            raise ValueError(f"loss: 'ce' or 'bce', got {loss!r}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule: one of {LR_SCHEDULES}, got {lr_schedule!r}")
        self.loss, self.dim, self.max_len, self.blocks, self.heads = loss, dim, max_len, blocks, heads
        self.dropout, self.epochs, self.batch_size, self.lr = dropout, epochs, batch_size, lr
        self.patience, self.eval_every, self.seed, self.progress = patience, eval_every, seed, progress
        self.lr_schedule = lr_schedule
        self.name = "SASRec+ (full softmax)" if loss == "ce" else "SASRec (BCE, 1 negative)"
        self.bf16 = use_bf16(bf16)  # the catalog products of the full softmax (models/sequence.py)

    def _loss(self, inp: torch.Tensor, tgt: torch.Tensor, rng: np.random.Generator, n: int) -> torch.Tensor:
        rows, cols = torch.nonzero(inp > 0, as_tuple=True)
        h = self.net(inp)[rows, cols]
        pos = tgt[rows, cols]
        if self.loss == "ce":
            return catalog_cross_entropy(h, self.net.item.weight[1:], pos - 1, prefix_exclusion(inp, rows, cols),
                                         bf16=self.bf16)
        neg = torch.as_tensor(rng.integers(1, n + 1, size=pos.shape))
        pos_logit = (h * self.net.item(pos)).sum(-1)
        neg_logit = (h * self.net.item(neg)).sum(-1)
        return (F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
                + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit)))

    def fit(self, split: Split) -> SASRec:
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        n = split.num_items
        self.net = _SASRecNet(n, self.dim, self.max_len, self.blocks, self.heads, self.dropout)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, betas=(0.9, 0.98))
        sequences = [t for t in split.train_items if len(t) >= 2]
        schedule = learning_rate_schedule(opt, self.lr_schedule, self.epochs * -(-len(sequences) // self.batch_size))
        valid = split.stage("valid")
        best, best_state, stale = -1.0, None, 0
        self.history = []
        bar = tqdm(range(1, self.epochs + 1), desc=self.name, disable=not self.progress, leave=False)
        for epoch in bar:
            self.net.train()
            # max_len + 1: inputs and targets are then max_len long.
            windows, _ = training_windows(sequences, self.max_len + 1, rng)
            windows = torch.from_numpy(windows[rng.permutation(len(sequences))])
            for s in range(0, len(sequences), self.batch_size):
                seq = windows[s : s + self.batch_size]
                loss = self._loss(seq[:, :-1], seq[:, 1:], rng, n)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if schedule is not None:
                    schedule.step()
            if epoch % self.eval_every == 0:
                ranks, _ = ranks_of_targets(self.score(valid.users, valid.histories, valid.scenarios), valid.histories,
                                            valid.targets)
                ndcg = ndcg_at(ranks, 10)
                self.history.append({"epoch": epoch, "valid_ndcg@10": ndcg})
                bar.set_postfix(valid=f"{ndcg:.4f}")
                if ndcg > best:
                    best, best_state, stale = ndcg, copy.deepcopy(self.net.state_dict()), 0
                else:
                    stale += 1
                    if stale >= self.patience:
                        break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.best_valid_ndcg = best
        return self

    @torch.inference_mode()
    def score(self, users, histories, scenarios, times=None) -> np.ndarray:
        self.net.eval()
        out = []
        for s in range(0, len(histories), 256):
            seq, _ = training_windows(histories[s : s + 256], self.max_len)
            h = self.net(torch.from_numpy(seq))[:, -1]
            out.append((h @ self.net.item.weight[1:].T).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.net.item.num_embeddings - 1), np.float32)
