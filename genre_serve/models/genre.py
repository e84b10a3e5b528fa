"""The GENRE model family: item towers, the scenario-conditioned user encoder,
per-scenario fusion and the ranker.

Item indices inside the model are shifted by one: 0 is the padding of a
history. Histories are right-aligned ``[B, L]`` (most recent item last).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genre_serve.models.sequence import CausalTransformer, attend, attention_mask

ENCODERS = ("sasrec", "transformer", "attention")


@dataclass(frozen=True)
class ModelConfig:
    dim: int = 64  # item/user vector size in each space (CF and content)
    hidden: int = 128  # user encoder width
    # "attention": UserEncoder (attention pooling); "transformer":
    # SequenceUserEncoder (causal self-attention, trained at every position;
    # configs/transformer.toml); "sasrec": TiedSequenceUserEncoder (the CF
    # channel is SASRec+ itself: the CF table is the transformer's input and
    # output; configs/sasrec.toml). The sasrec recipe measures best on
    # validation but trains about 4x longer (the quickstart's budget) and its
    # cold start is under the floor on most seeds, so the default stays
    # attention (README, benchmarks/RESULTS.md, issue 14).
    encoder: str = "attention"
    blocks: int = 2  # transformer blocks
    heads: int = 1  # attention heads per block
    max_history: int = 50  # most recent items the user encoder reads
    short_len: int = 8  # items of the short-term window
    content_window: int = 20  # "sasrec": the recent items whose mean content vector joins the content channel
    # "sasrec": the content head reads the transformer's state without sending
    # its loss's gradient back into it, so the CF channel trains as SASRec+ alone.
    detach_content: bool = False
    dropout: float = 0.2
    ranker_hidden: tuple[int, ...] = (128, 64)
    item_bias: bool = True  # a learned popularity bias per item, folded into the CF space
    # > 0: the CF score adds w_scenario * log1p(interactions of the item in the
    # last `recent_popularity_days` days), see models/recent_popularity.py. 0: off.
    recent_popularity_days: float = 14.0

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder: one of {', '.join(ENCODERS)}, got {self.encoder!r}")

    @property
    def recent_popularity(self) -> bool:
        return self.recent_popularity_days > 0

    @property
    def sequential(self) -> bool:
        """Whether the user encoder trains at every position of a sequence at once."""
        return self.encoder in ("transformer", "sasrec")

    @property
    def tied(self) -> bool:
        """Whether the CF item table is also the user encoder's input (SASRec+'s tied embeddings)."""
        return self.encoder == "sasrec"

    @property
    def cf_dim(self) -> int:
        """Width of CF vectors: dim, plus one column carrying the item bias
        (item side) against a constant 1 (user side), plus one carrying the
        item's recent popularity against the scenario's weight for it, so that
        the CF score is still one dot product for fused_topk."""
        return self.dim + (1 if self.item_bias else 0) + (1 if self.recent_popularity else 0)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # A finite fill keeps an all-padding row (a cold user) finite: uniform weights.
    return torch.softmax(scores.masked_fill(~mask, -1e9), dim=-1)


class ItemTowers(nn.Module):
    """CF embeddings and the trainable projection of the frozen text vectors.

    With recent popularity on, `recent_popularity` [N + 1] holds the snapshot that the
    served tables carry as the last CF column (set when training ends).
    """

    def __init__(self, num_items: int, text_vectors: torch.Tensor, dim: int, item_bias: bool = True,
                 recent_popularity: bool = False):
        super().__init__()
        if recent_popularity:
            self.register_buffer("recent_popularity", torch.zeros(num_items + 1), persistent=True)
        else:
            self.recent_popularity = None
        self.cf = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.bias = nn.Embedding(num_items + 1, 1, padding_idx=0) if item_bias else None
        if self.bias is not None:
            nn.init.zeros_(self.bias.weight)
        nn.init.normal_(self.cf.weight, std=0.02)
        with torch.no_grad():
            self.cf.weight[0].zero_()
        padded = torch.cat([torch.zeros(1, text_vectors.shape[1]), text_vectors.float()])
        self.register_buffer("text", padded, persistent=True)
        self.proj = nn.Sequential(nn.Linear(text_vectors.shape[1], dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))

    @property
    def num_items(self) -> int:
        return self.cf.num_embeddings - 1

    def content(self, text_vectors: torch.Tensor) -> torch.Tensor:
        """Content vectors of raw text vectors (also the cold-start path)."""
        return self.proj(text_vectors)

    def padded_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Item tables [N + 1, dim] of both spaces indexed by shifted indices (row 0: zeros).

        The content table is projected once for the whole catalog: cheaper than
        projecting every history position of a batch separately.
        """
        ct = self.proj(self.text[1:])
        columns = [self.cf.weight]
        if self.bias is not None:
            columns.append(self.bias.weight)
        if self.recent_popularity is not None:
            columns.append(self.recent_popularity.unsqueeze(1))
        cf = columns[0] if len(columns) == 1 else torch.cat(columns, 1)
        return cf, torch.cat([torch.zeros_like(ct[:1]), ct])

    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Item tables [N, dim] of both spaces, in catalog order."""
        cf, ct = self.padded_tables()
        return cf[1:], ct[1:]


def recent_popularity_weight(num_scenarios: int) -> nn.Embedding:
    """Per scenario: how much recent popularity counts (starts at 0; calibrated, train/calibration.py)."""
    weight = nn.Embedding(num_scenarios, 1)
    nn.init.zeros_(weight.weight)
    return weight


def user_vectors_of(encoder: nn.Module, u: torch.Tensor, scenario: torch.Tensor,
                    content_state: torch.Tensor | None = None):
    """A user encoder's state u [..., hidden] -> (u_cf, u_ct): the CF head plus
    the constant 1 against the item bias and the scenario's recent-popularity
    weight against that column (one dot product for fused_topk), the content
    head (of `content_state` where given, else of u)."""
    cfg = encoder.cfg
    u_cf = encoder.out_cf(u)
    if cfg.item_bias:
        u_cf = torch.cat([u_cf, torch.ones_like(u_cf[..., :1])], -1)
    if cfg.recent_popularity:
        u_cf = torch.cat([u_cf, encoder.recent_popularity_weight(scenario)], -1)
    return u_cf, encoder.out_ct(u if content_state is None else content_state)


def add_short_term_and_heads(encoder: nn.Module, cfg: ModelConfig, num_scenarios: int) -> None:
    """The layers both untied user encoders end with, in this order (the order
    parameters are created in is the order a seed initialises them): the
    short-term attention, the gate mixing long and short term, and the two
    output heads (plus the recent-popularity weight)."""
    h = cfg.hidden
    encoder.short_key = nn.Linear(h, h)
    encoder.short_query = nn.Linear(2 * h, h)
    encoder.gate = nn.Linear(3 * h, h)
    encoder.norm = nn.LayerNorm(h)
    encoder.drop = nn.Dropout(cfg.dropout)
    encoder.out_cf = nn.Linear(h, cfg.dim)
    encoder.out_ct = nn.Linear(h, cfg.dim)
    if cfg.recent_popularity:
        encoder.recent_popularity_weight = recent_popularity_weight(num_scenarios)


def gated_state(encoder: nn.Module, long: torch.Tensor, short: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Long and short term mixed by the scenario-conditioned gate, plus the scenario embedding `s`."""
    g = torch.sigmoid(encoder.gate(torch.cat([long, short, s], -1)))
    return encoder.drop(encoder.norm(g * long + (1 - g) * short + s))


def short_term(encoder: nn.Module, long: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               mask: torch.Tensor, scenario: torch.Tensor, last_only: bool):
    """The sequential encoders' short term: attention over the last `short_len`
    items (keys/values [B, L, h]), queried by the long-term state and the
    scenario's embedding. Returns (long, scenario, scenario embedding, short),
    the first two cut to the last position with `last_only`."""
    allowed = attention_mask(mask, encoder.cfg.short_len)
    if last_only:
        long, scenario, allowed = long[:, -1:], scenario[:, -1:], allowed[:, -1:]
    s = encoder.scenario(scenario)
    q = encoder.short_query(torch.cat([long, s], -1))
    return long, scenario, s, attend(q, encoder.short_key(keys), values, allowed)


class UserEncoder(nn.Module):
    """Long-term attention pooling + short-term attention over the last items,
    mixed by a learned gate; everything conditioned on the scenario."""

    def __init__(self, cfg: ModelConfig, num_scenarios: int):
        super().__init__()
        h = cfg.hidden
        self.cfg = cfg
        self.history_cf_dim = cfg.cf_dim - (1 if cfg.recent_popularity else 0)
        self.inp = nn.Linear(self.history_cf_dim + cfg.dim, h)
        self.recency = nn.Embedding(cfg.max_history, h)  # position counted from the most recent
        self.scenario = nn.Embedding(num_scenarios, h)
        self.long_key = nn.Linear(h, h)
        self.long_query = nn.Linear(h, h)
        add_short_term_and_heads(self, cfg, num_scenarios)

    def forward(self, hist_cf, hist_ct, mask, scenario):
        # The history is read without the recent-popularity column: a snapshot
        # at serve time, unset in training, it says nothing about the user.
        hist_cf = hist_cf[..., : self.history_cf_dim]
        L = mask.shape[1]
        pos = torch.arange(L - 1, -1, -1, device=mask.device).clamp(max=self.cfg.max_history - 1)
        x = self.drop(torch.relu(self.inp(torch.cat([hist_cf, hist_ct], -1))) + self.recency(pos))
        s = self.scenario(scenario)
        scale = x.shape[-1] ** -0.5
        # Long term: the whole history, weighted by a scenario-specific query.
        long_scores = (torch.tanh(self.long_key(x)) @ self.long_query(s).unsqueeze(-1)).squeeze(-1)
        w_long = masked_softmax(long_scores * scale, mask)
        long = (w_long.unsqueeze(-1) * x).sum(1)
        # Short term: the last items, queried by the most recent one and the scenario.
        short_len = min(self.cfg.short_len, L)
        xs, ms = x[:, -short_len:], mask[:, -short_len:]
        q = self.short_query(torch.cat([x[:, -1], s], -1))
        w_short = masked_softmax((self.short_key(xs) @ q.unsqueeze(-1)).squeeze(-1) * scale, ms)
        short = (w_short.unsqueeze(-1) * xs).sum(1)
        return user_vectors_of(self, gated_state(self, long, short, s), scenario)


class SequenceUserEncoder(nn.Module):
    """The long/short-term user encoder on a causal transformer, conditioned on
    the scenario, and trained at every position of a history at once.

    Long term: the transformer's state at a position (causal self-attention
    over the whole history up to it, up to max_history items). Short term:
    attention over the last `short_len` items, queried by that state and the
    scenario. A gate, also conditioned on the scenario, mixes the two; the
    scenario's embedding is added, and two heads give the user's vector in
    each space (CF, content). Items enter as their CF and content rows, so a
    new item in a history is read by its content from the first request.

    `scenario` is per position in `sequence` (the scenario of the request each
    position answers) and per user in `forward` (the request's).
    """

    def __init__(self, cfg: ModelConfig, num_scenarios: int):
        super().__init__()
        h = cfg.hidden
        self.cfg = cfg
        self.history_cf_dim = cfg.cf_dim - (1 if cfg.recent_popularity else 0)
        self.inp = nn.Linear(self.history_cf_dim + cfg.dim, h)
        self.transformer = CausalTransformer(h, cfg.blocks, cfg.heads, cfg.dropout, cfg.max_history)
        self.scenario = nn.Embedding(num_scenarios, h)
        add_short_term_and_heads(self, cfg, num_scenarios)

    def sequence(self, hist_cf, hist_ct, mask, scenario, last_only: bool = False):
        """User vectors at every position [B, L, d] (`last_only`: the last, [B, 1, d])."""
        # The history is read without the recent-popularity column (see UserEncoder).
        hist_cf = hist_cf[..., : self.history_cf_dim]
        x = self.inp(torch.cat([hist_cf, hist_ct], -1))
        long, scenario, s, short = short_term(self, self.transformer(x, mask), x, x, mask, scenario, last_only)
        return user_vectors_of(self, gated_state(self, long, short, s), scenario)

    def forward(self, hist_cf, hist_ct, mask, scenario):
        u_cf, u_ct = self.sequence(hist_cf, hist_ct, mask, scenario.unsqueeze(1), last_only=True)
        return u_cf[:, 0], u_ct[:, 0]


class TiedSequenceUserEncoder(nn.Module):
    """GENRE's user encoder built around SASRec+ (issue 14): the CF channel is
    the causal transformer over the history's CF rows, and its state is the
    user's CF vector, scored against the same CF table (input and output
    tied, the recipe that makes SASRec+ the sequential model to beat). What
    GENRE adds enters as zero-initialised residuals, so that an untrained
    addition leaves SASRec+ exactly and training keeps what helps:

    * content: each history item's content vector, projected, added to its CF row;
    * scenario: an embedding added to the state, and the gate's and the
      short-term query's input (conditioning);
    * short term: attention over the last `short_len` items, queried by the
      long-term state (the transformer's), mixed in by a scenario-conditioned gate;
    * the content channel: a head from the same state to the content space,
      plus the mean content vector of the last `content_window` items,
      scored against the item content vectors (cold items are served by it).

    Width: the transformer runs at `dim` (the CF table's width), not `hidden`.
    """

    def __init__(self, cfg: ModelConfig, num_scenarios: int):
        super().__init__()
        d = cfg.dim
        self.cfg = cfg
        self.content_in = nn.Linear(d, d)
        self.scenario = nn.Embedding(num_scenarios, d)
        self.short_key = nn.Linear(d, d)
        self.short_value = nn.Linear(d, d)
        self.short_query = nn.Linear(2 * d, d)
        self.gate = nn.Linear(2 * d, d)
        for layer in (self.content_in, self.short_value):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.scenario.weight)
        self.transformer = CausalTransformer(d, cfg.blocks, cfg.heads, cfg.dropout, cfg.max_history)
        self.out_ct = nn.Linear(d, d)
        if cfg.recent_popularity:
            self.recent_popularity_weight = recent_popularity_weight(num_scenarios)

    def out_cf(self, u: torch.Tensor) -> torch.Tensor:
        return u  # tied: the state is the CF vector

    def sequence(self, hist_cf, hist_ct, mask, scenario, last_only: bool = False):
        """User vectors at every position [B, L, d] (`last_only`: the last, [B, 1, d]).
        `scenario` [B, L]: the scenario each position answers."""
        d = self.cfg.dim
        # The CF row without its bias and recent-popularity columns: the tied part.
        x = hist_cf[..., :d] + self.content_in(hist_ct)
        # The scenario enters after the transformer, as in SequenceUserEncoder: in
        # training each position answers a request of its own scenario.
        long, scenario, s, short = short_term(self, self.transformer(x, mask), x, self.short_value(x), mask,
                                              scenario, last_only)
        g = torch.sigmoid(self.gate(torch.cat([long, s], -1)))
        u = long + g * short + s
        u_cf, u_ct = user_vectors_of(self, u, scenario, u.detach() if self.cfg.detach_content else None)
        # Short-term content interest: the mean content vector of the last
        # `content_window` items, what "more like what you just watched" means.
        window = attention_mask(mask, self.cfg.content_window).to(hist_ct.dtype)
        if last_only:
            window = window[:, -1:]
        return u_cf, u_ct + (window @ hist_ct) / window.sum(-1, keepdim=True)

    def forward(self, hist_cf, hist_ct, mask, scenario):
        u_cf, u_ct = self.sequence(hist_cf, hist_ct, mask, scenario.unsqueeze(1), last_only=True)
        return u_cf[:, 0], u_ct[:, 0]


class Ranker(nn.Module):
    """MLP over cross features [u, v, u*v, |u-v|, retrieval score] -> logit.

    The retrieval score also enters through a learned skip weight (starting at
    1), so an untrained ranker keeps the retrieval order and training refines it.
    """

    def __init__(self, vec_dim: int, hidden: tuple[int, ...], dropout: float):
        super().__init__()
        layers, width = [], 4 * vec_dim + 1
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        final = nn.Linear(width, 1)
        nn.init.zeros_(final.weight)
        nn.init.zeros_(final.bias)
        self.mlp = nn.Sequential(*layers, final)
        self.skip = nn.Parameter(torch.ones(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features).squeeze(-1) + self.skip * features[..., -1]


def cross_features_torch(user: torch.Tensor, items: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """[u, v, u*v, |u-v|, score] for user [B, D] and candidate vectors [B, K, D]:
    the same layout as genre_serve.kernels.cross_features (a test checks it)."""
    u = user.unsqueeze(1).expand_as(items)
    return torch.cat([u, items, u * items, (u - items).abs(), scores.unsqueeze(-1)], -1)


class GenreModel(nn.Module):
    def __init__(self, num_items: int, num_scenarios: int, text_vectors: torch.Tensor, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.items = ItemTowers(num_items, text_vectors, cfg.dim, cfg.item_bias, cfg.recent_popularity)
        encoders = {"sasrec": TiedSequenceUserEncoder, "transformer": SequenceUserEncoder, "attention": UserEncoder}
        self.user = encoders[cfg.encoder](cfg, num_scenarios)
        self.alpha_logit = nn.Parameter(torch.zeros(num_scenarios))
        # Added to the content score of items without CF signal, which are
        # scored by content alone (retrieval.py); fitted on validation
        # (train/calibration.py), 0 until then.
        self.register_buffer("new_item_bias", torch.zeros(()))
        self.ranker = Ranker(cfg.cf_dim + cfg.dim, cfg.ranker_hidden, cfg.dropout)

    @property
    def num_scenarios(self) -> int:
        return self.alpha_logit.shape[0]

    def alpha(self, scenario: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.alpha_logit[scenario])

    def encode_users(self, history: torch.Tensor, scenario: torch.Tensor, padded_tables=None):
        """history: shifted item indices [B, L], right-aligned, 0 = padding.

        `padded_tables` (from items.padded_tables()) saves recomputing them when
        the caller has them already.
        """
        history = history[:, -self.cfg.max_history :]
        cf_table, ct_table = padded_tables if padded_tables is not None else self.items.padded_tables()
        return self.user(cf_table[history], ct_table[history], history > 0, scenario)

    def scores(self, u_cf, u_ct, alpha, item_cf, item_ct, recent_popularity=None):
        """Fused, CF and content scores of users against item tables [N, d]."""
        s_cf, s_ct = cf_scores(u_cf, item_cf, recent_popularity), u_ct @ item_ct.T
        a = alpha.unsqueeze(-1)
        return a * s_cf + (1 - a) * s_ct, s_cf, s_ct

    def rank_logits(self, u_cf, u_ct, cand_cf, cand_ct, retrieval_scores):
        """Ranker logits of candidates [B, K] given their vectors [B, K, d]."""
        feats = cross_features_torch(torch.cat([u_cf, u_ct], -1), torch.cat([cand_cf, cand_ct], -1), retrieval_scores)
        return self.ranker(feats)


def cf_scores(u_cf, item_cf, recent_popularity=None):
    """u_cf @ item_cf.T ([B, N]; torch or numpy). With `recent_popularity` [B, N], the
    recent-popularity column (the last) is read per request from it instead of
    from the table's snapshot: what training and evaluation use, where every
    request has its own time."""
    if recent_popularity is None:
        return u_cf @ item_cf.T
    return u_cf[:, :-1] @ item_cf[:, :-1].T + u_cf[:, -1:] * recent_popularity


def candidate_cf(item_cf, candidates, recent_popularity=None):
    """CF vectors of candidates [B, K] -> [B, K, d], with the recent-popularity
    column taken from `recent_popularity` [B, N] where given (torch)."""
    vectors = item_cf[candidates]
    if recent_popularity is None:
        return vectors
    return torch.cat([vectors[..., :-1], recent_popularity.gather(1, candidates).unsqueeze(-1)], -1)


def right_align(histories: list, max_len: int) -> torch.Tensor:
    """Shifted, right-aligned, zero-padded [B, max_len] from lists of item indices."""
    out = torch.zeros(len(histories), max_len, dtype=torch.long)
    for b, h in enumerate(histories):
        h = list(h)[-max_len:]
        if h:
            out[b, max_len - len(h) :] = torch.as_tensor(h, dtype=torch.long) + 1
    return out

