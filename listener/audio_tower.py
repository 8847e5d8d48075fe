"""The CLAP audio tower as an onnxruntime session.

STUB: contract only, to be implemented (issue 2).
"""

from __future__ import annotations

import numpy as np

from listener.modeldir import ModelDir


class AudioTower:
    """features [B, C, 1001, 64] float32 -> L2-normalised embeddings [B, D] float32."""

    model_id: str
    dim: int

    def __init__(
        self, model: ModelDir, precision: str = "int8", provider: str = "cpu", threads: int = 0
    ) -> None:
        raise NotImplementedError

    def embed(self, features: np.ndarray) -> np.ndarray:
        raise NotImplementedError
