"""Sound level in dBFS: what the level gate, the MQTT level sensor and `top` show."""

from __future__ import annotations

import numpy as np


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dBFS (full-scale sine = -3 dB); silence floors at -120."""
    if samples.size == 0:
        return -120.0
    return _db(float(np.mean(np.square(samples, dtype=np.float64))))


def _db(mean_square: float) -> float:
    return max(-120.0, 20.0 * float(np.log10(np.sqrt(mean_square) + 1e-12)))


def levels_dbfs(window: np.ndarray, hop_samples: int) -> tuple[float, float]:
    """(whole window, newest hop) levels in dBFS from one pass of squares.

    The window level drives the gate; the hop level is what changed since the last
    window (the MQTT level sensor, `top`'s meter). Same values as :func:`level_dbfs`
    of ``window`` and of ``window[-hop_samples:]``.
    """
    if window.size == 0:
        return -120.0, -120.0
    squares = np.square(window, dtype=np.float64)
    hop = squares[-hop_samples:] if hop_samples > 0 else squares
    return _db(float(squares.mean())), _db(float(hop.mean()))
