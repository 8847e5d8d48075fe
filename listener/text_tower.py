"""The CLAP text tower (onnxruntime) and its byte-level BPE tokenizer (`tokenizers`).

STUB: contract only, to be implemented (issue 2).
"""

from __future__ import annotations

import numpy as np

from listener.modeldir import ModelDir


class TextTower:
    """texts -> L2-normalised embeddings [N, D]. Without attention_mask input: one at a time."""

    def __init__(
        self, model: ModelDir, precision: str = "int8", provider: str = "cpu", threads: int = 0
    ) -> None:
        raise NotImplementedError

    def embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError
