"""The ONNX models of the serving repository, their export, and the
post-export checks (onnx.checker and onnxruntime == PyTorch on random inputs
of several shapes, so that dynamic axes really are dynamic).

Tensor names are UPPER_SNAKE and identical in ONNX and config.pbtxt.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from genre_serve.errors import ExportCheckError
from genre_serve.formats import repository as fmt
from genre_serve.models.genre import GenreModel
from genre_serve.models.text_encoder import TextEncoder

OPSET = 17
# float32 ONNX vs PyTorch on the same inputs: differences come from operator
# fusion and summation order only.
ATOL, RTOL = 1e-4, 1e-3


class ItemTowerExport(nn.Module):
    """Token ids of item texts -> content vectors (the cold-start path).

    Token ids outside the vocabulary are clamped into it: a dynamically
    batched model cannot fail one request of a batch alone, so no input value
    may make the graph fail (a gather out of range would fail the batch).
    """

    def __init__(self, encoder: TextEncoder, model: GenreModel):
        super().__init__()
        self.encoder, self.proj = encoder, model.items.proj
        self.vocab = int(encoder.transformer.config.vocab_size)

    def forward(self, input_ids, attention_mask):
        ids = input_ids.clamp(0, self.vocab - 1)
        return self.proj(self.encoder(ids, attention_mask.clamp(0, 1)))


class UserTowerExport(nn.Module):
    """History (item indices, right-aligned, the last LENGTHS entries valid) and
    scenario -> U_CF, U_CT and the scenario's fusion weight ALPHA.

    The item vectors are frozen into the graph as two tables [N + 1, d] (row 0:
    padding), so the tower needs nothing but indices at serve time.

    Every input value is answered, none fails the graph (a failure would fail
    every request of the dynamic batch): item indices outside [0, N) count as
    padding, like unknown ids in genre_recommend, and a scenario index outside
    the table is clamped into it.
    """

    def __init__(self, model: GenreModel):
        super().__init__()
        with torch.no_grad():
            cf, ct = model.items.padded_tables()
            cf = cf.clone()
            cf[0] = 0.0  # padding row (the bias column of row 0 is never used either)
        self.register_buffer("cf_table", cf.detach())
        self.register_buffer("ct_table", ct.detach().clone())
        self.user, self.alpha_logit = model.user, model.alpha_logit
        self.max_history = model.cfg.max_history

    def forward(self, history, lengths, scenario):
        L = history.shape[1]
        positions = torch.arange(L, device=history.device).unsqueeze(0)
        num_items = self.cf_table.shape[0] - 1
        mask = (positions >= (L - lengths)) & (history >= 0) & (history < num_items)
        shifted = torch.where(mask, history + 1, torch.zeros_like(history))
        scen = scenario[:, 0].clamp(0, self.alpha_logit.shape[0] - 1)
        u_cf, u_ct = self.user(self.cf_table[shifted], self.ct_table[shifted], mask, scen)
        return u_cf, u_ct, torch.sigmoid(self.alpha_logit[scen]).unsqueeze(1)


class UserEncoderExport(nn.Module):
    """genre_recommend's user encoder: the history's item vectors (rows of the
    served item tables, right-aligned, the last LENGTHS rows valid) and the
    scenario -> U_CF, U_CT and the scenario's ALPHA.

    Unlike UserTowerExport it holds no item table: genre_recommend gathers the
    rows from the memory-mapped tables it scores anyway, so the tables exist
    once per machine however many instances run, and add-items or
    refresh-popularity never touch this graph. Rows outside the valid tail
    are ignored (masked); a scenario index outside the table is clamped.
    """

    def __init__(self, model: GenreModel):
        super().__init__()
        self.user, self.alpha_logit = model.user, model.alpha_logit

    def forward(self, history_cf, history_ct, lengths, scenario):
        L = history_cf.shape[1]
        positions = torch.arange(L, device=history_cf.device).unsqueeze(0)
        mask = positions >= (L - lengths)
        zero = torch.zeros((), dtype=history_cf.dtype)
        # Rows outside the mask are zeroed: what the PyTorch path feeds there (the padding row).
        history_cf = torch.where(mask.unsqueeze(-1), history_cf, zero)
        history_ct = torch.where(mask.unsqueeze(-1), history_ct, zero)
        scen = scenario[:, 0].clamp(0, self.alpha_logit.shape[0] - 1)
        u_cf, u_ct = self.user(history_cf, history_ct, mask, scen)
        return u_cf, u_ct, torch.sigmoid(self.alpha_logit[scen]).unsqueeze(1)


class RankerExport(nn.Module):
    def __init__(self, model: GenreModel):
        super().__init__()
        self.ranker = model.ranker

    def forward(self, features):
        return self.ranker(features)


@dataclass(frozen=True)
class OnnxSpec:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict

    @classmethod
    def of(cls, model: str, dynamic_axes: dict) -> OnnxSpec:
        """The spec of a repository model: its tensor names from the repository format."""
        return cls(fmt.TENSORS[model].inputs, fmt.TENSORS[model].outputs, dynamic_axes)


ITEM_TOWER_SPEC = OnnxSpec.of(fmt.ITEM_TOWER, {fmt.INPUT_IDS: {0: "batch", 1: "tokens"},
                                               fmt.ATTENTION_MASK: {0: "batch", 1: "tokens"},
                                               fmt.ITEM_CT: {0: "batch"}})
USER_TOWER_SPEC = OnnxSpec.of(fmt.USER_TOWER, {fmt.HISTORY: {0: "batch", 1: "history"}, fmt.LENGTHS: {0: "batch"},
                                               fmt.SCENARIO: {0: "batch"}, fmt.U_CF: {0: "batch"},
                                               fmt.U_CT: {0: "batch"}, fmt.ALPHA: {0: "batch"}})
USER_ENCODER_SPEC = OnnxSpec.of(fmt.USER_ENCODER, {fmt.HISTORY_CF: {0: "batch", 1: "history"},
                                                   fmt.HISTORY_CT: {0: "batch", 1: "history"},
                                                   fmt.LENGTHS: {0: "batch"}, fmt.SCENARIO: {0: "batch"},
                                                   fmt.U_CF: {0: "batch"}, fmt.U_CT: {0: "batch"},
                                                   fmt.ALPHA: {0: "batch"}})
RANKER_SPEC = OnnxSpec.of(fmt.RANKER, {fmt.FEATURES: {0: "batch", 1: "candidates"},
                                       fmt.LOGITS: {0: "batch", 1: "candidates"}})


def export_module(module: nn.Module, example: tuple, spec: OnnxSpec, path: Path) -> None:
    module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".onnx.tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, example, str(tmp), input_names=list(spec.inputs), output_names=list(spec.outputs),
            dynamic_axes=spec.dynamic_axes, opset_version=OPSET, dynamo=False,
        )
    tmp.replace(path)


def check_against_torch(module: nn.Module, path: Path, spec: OnnxSpec, examples: list[tuple]) -> float:
    """onnx.checker, then onnxruntime vs PyTorch on each example; the largest
    absolute difference seen. Raises ExportCheckError past ATOL/RTOL."""
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportCheckError(f"{path}: onnx.checker: {e}") from e
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    module.eval()
    for example in examples:
        with torch.no_grad():
            want = module(*example)
        want = want if isinstance(want, tuple) else (want,)
        got = session.run(list(spec.outputs), {n: t.numpy() for n, t in zip(spec.inputs, example)})
        for name, g, w in zip(spec.outputs, got, want):
            w = w.numpy()
            if g.shape != w.shape:
                raise ExportCheckError(f"{path}: {name} has shape {g.shape}, PyTorch gives {w.shape}")
            if not np.allclose(g, w, atol=ATOL, rtol=RTOL):
                raise ExportCheckError(
                    f"{path}: {name} differs from PyTorch by {np.abs(g - w).max():.3g} "
                    f"(inputs of shapes {[tuple(t.shape) for t in example]})"
                )
            worst = max(worst, float(np.abs(g - w).max()) if g.size else 0.0)
    return worst


def user_tower_examples(num_items: int, num_scenarios: int, max_history: int, seed: int = 0) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for batch, length in ((1, max_history), (3, max_history), (5, 7), (2, 1)):
        history = torch.randint(0, num_items, (batch, length), generator=g)
        lengths = torch.randint(0, length + 1, (batch, 1), generator=g)
        scenario = torch.randint(0, num_scenarios, (batch, 1), generator=g)
        out.append((history, lengths, scenario))
    # Out-of-range values (a direct caller's mistake) must be answered, not fail the graph.
    bad = torch.tensor([[-5, num_items, 10**9] + [0] * (max_history - 3)])[:, :max_history]
    out.append((bad, torch.tensor([[max_history + 3]]), torch.tensor([[num_scenarios + 7]])))
    return out


def user_encoder_examples(cf_dim: int, ct_dim: int, num_scenarios: int, max_history: int,
                          seed: int = 0) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for batch, length in ((1, max_history), (4, max_history), (3, 7), (2, 1)):
        lengths = torch.randint(1, length + 1, (batch, 1), generator=g)
        out.append((torch.randn(batch, length, cf_dim, generator=g), torch.randn(batch, length, ct_dim, generator=g),
                    lengths, torch.randint(0, num_scenarios, (batch, 1), generator=g)))
    # Out-of-range values (a direct caller's mistake) must be answered, not fail the graph.
    out.append((torch.randn(1, max_history, cf_dim, generator=g), torch.randn(1, max_history, ct_dim, generator=g),
                torch.tensor([[max_history + 3]]), torch.tensor([[num_scenarios + 7]])))
    return out


def ranker_examples(features: int, seed: int = 0) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, k, features, generator=g),) for b, k in ((1, 100), (4, 100), (2, 7), (1, 1))]


def item_tower_examples(vocab: int, seed: int = 0) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for batch, tokens in ((1, 16), (3, 40), (2, 5)):
        ids = torch.randint(1000, vocab, (batch, tokens), generator=g)
        mask = torch.ones(batch, tokens, dtype=torch.long)
        mask[0, tokens // 2 :] = 0
        out.append((ids, mask))
    return out
