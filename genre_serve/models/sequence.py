"""The causal transformer over a history, and the loss it trains with.

One module serves GENRE's user encoder (models/genre.py) and the SASRec
baselines (evaluation/baselines.py), so the peer table compares the same
sequence model with and without what GENRE adds to it.

Histories are right-aligned ``[B, L]`` (most recent item last, padding
first). Every position may attend to itself and to the valid positions
before it: a padding row attends to itself only (finite, never read), and a
valid row never sees padding, so its output does not depend on how much
padding the batch has (the server pads to max_history, training to the
batch's window). Positions are counted from the first valid item, which is
the same in a training window and in the history the server is sent.

Training scores every position of a sequence at once against the whole
catalog ("SASRec+": Klenitskiy & Vasilev, RecSys 2023; gSASRec, Petrov &
Macdonald 2023): a softmax cross-entropy per position, with the items already
in that position's history excluded (the evaluation never counts them).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

# A finite fill: a row whose every key is masked stays finite.
_MASKED = -1e9


def attention_mask(valid: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """allowed[b, i, j] [B, L, L]: key j is valid, not after i (and, with
    `window`, fewer than `window` positions before i); i always sees itself."""
    idx = torch.arange(valid.shape[1], device=valid.device)
    i, j = idx.unsqueeze(1), idx.unsqueeze(0)
    allowed = j <= i
    if window is not None:
        allowed = allowed & (i - j < window)
    # (i == j), not torch.eye: onnxruntime has no boolean EyeLike.
    return (allowed.unsqueeze(0) & valid.unsqueeze(1)) | (i == j).unsqueeze(0)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, heads: int = 1,
           dropout: nn.Module | None = None) -> torch.Tensor:
    """Scaled dot-product attention [B, L, D] under `allowed` [B, L, L].
    Written out (not F.scaled_dot_product_attention) so that the ONNX export
    is plain MatMul/Softmax on every opset and runtime."""
    B, L, D = q.shape
    split = lambda t: t.reshape(B, t.shape[1], heads, D // heads).transpose(1, 2)  # noqa: E731
    qh, kh, vh = split(q), split(k), split(v)
    scores = (qh @ kh.transpose(-1, -2)) * (D // heads) ** -0.5
    weights = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), _MASKED), -1)
    if dropout is not None:
        weights = dropout(weights)
    return (weights @ vh).transpose(1, 2).reshape(B, L, D)


class CausalBlock(nn.Module):
    """Pre-norm self-attention + point-wise feed-forward, both residual (SASRec's block)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads: must divide the width {dim}, got {heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).chunk(3, -1)
        x = x + self.drop(self.out(attend(q, k, v, allowed, self.heads, self.drop)))
        return x + self.drop(self.ffn(self.norm2(x)))


class CausalTransformer(nn.Module):
    """Learned positions (from the first valid item) + causal blocks + a final norm."""

    def __init__(self, dim: int, blocks: int, heads: int, dropout: float, max_len: int):
        super().__init__()
        self.max_len = max_len
        self.pos = nn.Embedding(max_len, dim)
        # Small, like the item rows it is added to (N(0, 1) would drown them at the start).
        nn.init.normal_(self.pos.weight, std=0.02)
        self.blocks = nn.ModuleList(CausalBlock(dim, heads, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        keep = valid.unsqueeze(-1).to(x.dtype)
        positions = (torch.cumsum(valid.long(), 1) - 1).clamp(0, self.max_len - 1)
        x = self.drop(x + self.pos(positions)) * keep
        allowed = attention_mask(valid)
        for block in self.blocks:
            x = block(x, allowed) * keep
        return self.norm(x) * keep


def prefix_exclusion(inputs: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (scored row, item) cells to leave out of the softmax: each scored
    position's history. `inputs`: shifted item ids [B, L] (0: padding); the P
    scored positions are (rows[p], cols[p]), and position (b, t) has the
    history inputs[b, :t + 1]. Returns (row, item) index pairs sorted by row."""
    B, L = inputs.shape
    slot = torch.full((B, L), -1, dtype=torch.long)
    slot[rows, cols] = torch.arange(rows.numel())
    t, j = torch.tril_indices(L, L)
    p = slot[:, t]  # [B, T]: the scored row of (b, t), -1 if not scored
    item = inputs[:, j]  # [B, T]: the history item at j <= t
    keep = (p >= 0) & (item > 0)
    p, item = p[keep], item[keep] - 1
    order = torch.argsort(p, stable=True)
    return p[order], item[order]


class _CatalogCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy of P queries against N items, computed in
    chunks of rows with the gradient formed in the same pass: the [P, N]
    logits never exist at once. Autograd's version writes and rereads them
    several times (scores, masked copy, log-softmax, its gradient); at 57k
    positions x 9.7k items that memory traffic, not the matrix products,
    was most of an epoch (benchmarks/RESULTS.md)."""

    @staticmethod
    def forward(ctx, queries, items, targets, ex_rows, ex_cols, chunk, bf16):
        P = queries.shape[0]
        grad_q = torch.empty_like(queries)
        grad_i = torch.zeros_like(items)
        total = 0.0
        starts = list(range(0, P, chunk))
        edges = torch.searchsorted(ex_rows, torch.tensor(starts + [P], dtype=ex_rows.dtype)).tolist()
        # bf16: the three products in bfloat16 (float32 accumulation), the softmax in float32.
        mm_items = items.bfloat16() if bf16 else items
        for c, c0 in enumerate(starts):
            c1 = min(P, c0 + chunk)
            q, t = queries[c0:c1], targets[c0:c1]
            mm_q = q.bfloat16() if bf16 else q
            s = (mm_q @ mm_items.T).float()
            e0, e1 = edges[c], edges[c + 1]
            s[ex_rows[e0:e1] - c0, ex_cols[e0:e1]] = float("-inf")
            # Softmax in place, one pass per step (torch.logsumexp makes temporaries).
            s.sub_(s.amax(1, keepdim=True))
            picked = torch.arange(c1 - c0)
            target_logit = s[picked, t]
            s.exp_()
            z = s.sum(1)
            total += float((torch.log(z) - target_logit).sum())
            s.div_(z.unsqueeze(1))
            s[picked, t] -= 1.0  # d(sum of losses) / d(scores)
            if bf16:
                sb = s.bfloat16()
                grad_q[c0:c1] = sb @ mm_items
                grad_i += sb.T @ mm_q
            else:
                grad_q[c0:c1] = s @ items
                grad_i.addmm_(s.T, q)
        ctx.save_for_backward(grad_q, grad_i)
        ctx.rows = P
        return queries.new_tensor(total / max(P, 1))

    @staticmethod
    def backward(ctx, grad):
        grad_q, grad_i = ctx.saved_tensors
        scale = grad / max(ctx.rows, 1)
        return grad_q * scale, grad_i * scale, None, None, None, None, None


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 / AMX):
    there the catalog products run 3-4x faster in bf16; elsewhere bf16 is
    emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def use_bf16(setting: str | bool | None) -> bool:
    """A bf16 setting ("auto", "on", "off"; True, False, None = auto) as a decision."""
    if setting in ("auto", None):
        return native_bf16()
    if setting in ("on", True):
        return True
    if setting in ("off", False):
        return False
    raise ValueError(f"bf16: 'auto', 'on' or 'off', got {setting!r}")


def catalog_cross_entropy(queries: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                          exclude: tuple[torch.Tensor, torch.Tensor] | None = None, chunk: int = 256,
                          bf16: bool = False) -> torch.Tensor:
    """Mean over P queries [P, D] of the softmax cross-entropy of `targets` [P]
    over the scores queries @ items.T ([N, D] items), the `exclude` cells
    (row, item pairs sorted by row, from prefix_exclusion) left out. Equal to
    F.cross_entropy on the dense scores (a test checks value and gradients);
    `bf16`: the products in bfloat16 (see native_bf16), to about 1%."""
    if exclude is None:
        exclude = (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    return _CatalogCrossEntropy.apply(queries, items, targets, exclude[0], exclude[1], chunk, bf16)


LR_SCHEDULES = ("constant", "cosine")


def learning_rate_schedule(opt: torch.optim.Optimizer, name: str, total_steps: int):
    """The rate schedule of GENRE's trainer and the SASRec baselines, one
    function so that the peer table can give both the same: "constant"
    (None: no scheduler) or "cosine", a half cosine from each group's rate
    down to 10% of it over `total_steps`, flat after."""
    if name == "constant":
        return None
    if name not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule: one of {LR_SCHEDULES}, got {name!r}")
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.1 + 0.45 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1))))


def training_windows(sequences: list[np.ndarray], length: int, rng: np.random.Generator | None = None,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per sequence, the window of the last `length` items (right-aligned,
    shifted ids, 0: padding) and the index where it ends. With `rng`, a
    sequence longer than the window ends at a uniformly drawn position instead
    (never before `length`), so that the older part of long histories trains
    too."""
    out = np.zeros((len(sequences), length), np.int64)
    ends = np.zeros(len(sequences), np.int64)
    for i, s in enumerate(sequences):
        end = len(s)
        if rng is not None and end > length:
            end = int(rng.integers(length, end + 1))
        w = np.asarray(s[max(0, end - length) : end])
        out[i, length - w.size :] = w + 1
        ends[i] = end
    return out, ends
