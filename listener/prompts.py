"""PromptBank: prompt embeddings made once by the text tower, cached on disk.

STUB: contract only, to be implemented (issue 2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from listener.modeldir import ModelDir


class PromptBank:
    """Cache keyed by (text model file sha256, exact prompt text). The text tower is only
    loaded on a cache miss and released right after, so a warm start never runs it."""

    def __init__(
        self,
        model: ModelDir,
        cache_dir: Path,
        precision: str = "int8",
        provider: str = "cpu",
        threads: int = 0,
    ) -> None:
        raise NotImplementedError

    def embed(self, prompts: list[str]) -> np.ndarray:
        """[N, D] L2-normalised, in the order given."""
        raise NotImplementedError
