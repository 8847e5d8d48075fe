"""Log-mel front end in numpy, identical to transformers' ClapFeatureExtractor.

STUB: contract only, to be implemented (issue 2).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class LogMel:
    """Deterministic CLAP features: always exactly ``n_samples`` (the newest 10 s)."""

    sample_rate: int
    n_samples: int  # 480000
    n_frames: int  # 1001
    n_mels: int  # 64
    hop_length: int  # 480
    truncation: str  # "rand_trunc" | "fusion"
    padding: str  # "repeatpad" | "repeat" | "pad"

    @classmethod
    def from_config(cls, preprocessor_config: dict[str, Any]) -> LogMel:
        raise NotImplementedError

    def prepare(self, audio: np.ndarray) -> np.ndarray:
        """Exactly n_samples: shorter audio padded per ``padding``, longer keeps the newest."""
        raise NotImplementedError

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Model input for one clip: float32 [C, n_frames, n_mels] (C=1, or 4 for fusion)."""
        raise NotImplementedError


class StreamingLogMel:
    """Features of a sliding window, computing only the STFT frames that are new.

    ``features(window, end_sample)``: ``window`` is exactly n_samples ending at absolute
    sample index ``end_sample``. When the previous call's window ended ``k * hop_length``
    samples earlier, interior frames are reused and only new + edge frames computed; the
    result equals ``LogMel.__call__(window)``.
    """

    def __init__(self, logmel: LogMel) -> None:
        raise NotImplementedError

    def features(self, window: np.ndarray, end_sample: int) -> np.ndarray:
        raise NotImplementedError
