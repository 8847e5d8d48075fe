"""Sound level in dBFS: what the level gate, the MQTT level sensor and `top` show."""

from __future__ import annotations

import numpy as np


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dBFS (full-scale sine = -3 dB); silence floors at -120."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(-120.0, 20.0 * np.log10(rms + 1e-12))
