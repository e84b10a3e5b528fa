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

    def fit(self, split: Split) -> ImplicitMF:
        if self.kind == "als":
            from implicit.cpu.als import AlternatingLeastSquares as Model

            params = {"regularization": 0.05, "alpha": 2.0} | self.params
        else:
            from implicit.cpu.bpr import BayesianPersonalizedRanking as Model

            params = {"learning_rate": 0.01, "regularization": 0.01} | self.params
        model = Model(factors=self.factors, iterations=self.iterations, random_state=self.seed, **params)
        # implicit parallelises itself; a multi-threaded BLAS underneath it only contends.
        with threadpool_limits(1, "blas"):
            model.fit(interaction_matrix(split), show_progress=False)
        self.user_factors = np.asarray(model.user_factors)
        self.item_factors = np.asarray(model.item_factors)
        return self

    def score(self, users, histories, scenarios, times=None) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T


class _SASRecNet(nn.Module):
    def __init__(self, num_items: int, dim: int, max_len: int, blocks: int, heads: int, dropout: float):
        super().__init__()
        self.item = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.pos = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        L = seq.shape[1]
        keep = (seq > 0).unsqueeze(-1).float()
        # As in the reference implementation: padding positions are zeroed
        # instead of key-masked (a left-padded causal row would see only
        # masked keys, and its NaNs would leak through the value products).
        x = (self.item(seq) * self.item.embedding_dim**0.5 + self.pos(torch.arange(L))) * keep
        causal = torch.triu(torch.ones(L, L, dtype=torch.bool), 1)
        h = self.encoder(self.drop(x), mask=causal)
        return self.norm(h) * keep


class SASRec:
    """SASRec-style sequential baseline (Kang & McAuley 2018): causal
    self-attention over the history, next-item BCE with one sampled negative
    per position, early stopping on validation NDCG@10."""

    name = "SASRec"

    def __init__(self, dim: int = 64, max_len: int = 50, blocks: int = 2, heads: int = 1,
                 dropout: float = 0.2, epochs: int = 200, batch_size: int = 32, lr: float = 1e-3,
                 patience: int = 5, eval_every: int = 5, seed: int = 0, progress: bool = False):
        self.dim, self.max_len, self.blocks, self.heads, self.dropout = dim, max_len, blocks, heads, dropout
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.patience, self.eval_every, self.seed, self.progress = patience, eval_every, seed, progress

    def _pad(self, seqs, length: int | None = None) -> torch.Tensor:
        """Shifted ids, right-aligned in `length` (default max_len) positions."""
        length = length or self.max_len
        out = torch.zeros(len(seqs), length, dtype=torch.long)
        for i, s in enumerate(seqs):
            s = np.asarray(s)[-length:]
            if s.size:
                out[i, length - s.size :] = torch.as_tensor(s + 1)
        return out

    def fit(self, split: Split) -> SASRec:
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        n = split.num_items
        self.net = _SASRecNet(n, self.dim, self.max_len, self.blocks, self.heads, self.dropout)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, betas=(0.9, 0.98))
        train_users = [u for u, t in enumerate(split.train_items) if len(t) >= 2]
        # max_len + 1: inputs and targets are then max_len long, so the last
        # input sits at the same (absolute) position as at scoring time.
        seqs = self._pad([split.train_items[u] for u in train_users], self.max_len + 1)
        valid = split.stage("valid")
        best, best_state, stale = -1.0, None, 0
        for epoch in tqdm(range(1, self.epochs + 1), desc="SASRec", disable=not self.progress, leave=False):
            self.net.train()
            perm = torch.as_tensor(rng.permutation(len(train_users)))
            for s in range(0, len(train_users), self.batch_size):
                seq = seqs[perm[s : s + self.batch_size]]
                inp, pos = seq[:, :-1], seq[:, 1:]
                neg = torch.as_tensor(rng.integers(1, n + 1, size=pos.shape)) * (pos > 0)
                h = self.net(inp)
                pos_logit = (h * self.net.item(pos)).sum(-1)
                neg_logit = (h * self.net.item(neg)).sum(-1)
                mask = pos > 0
                loss = (F.binary_cross_entropy_with_logits(pos_logit[mask], torch.ones_like(pos_logit[mask]))
                        + F.binary_cross_entropy_with_logits(neg_logit[mask], torch.zeros_like(neg_logit[mask])))
                opt.zero_grad()
                loss.backward()
                opt.step()
            if epoch % self.eval_every == 0:
                ranks, _ = ranks_of_targets(self.score(valid.users, valid.histories, valid.scenarios), valid.histories,
                                            valid.targets)
                ndcg = ndcg_at(ranks, 10)
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
            h = self.net(self._pad(histories[s : s + 256]))[:, -1]
            out.append((h @ self.net.item.weight[1:].T).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.net.item.num_embeddings - 1), np.float32)
