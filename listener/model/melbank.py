"""The mel filter bank and STFT window of ClapFeatureExtractor, and applying the filters cheaply.

``mel_filter_bank`` and ``hann_window`` re-implement transformers' ``audio_utils``
functions because the daemon must not import transformers; tests/test_logmel.py
compares both with the reference. ``MelProjection`` turns a complex spectrum into
mel energies the way :class:`listener.model.logmel.LogMel` needs it: exactly the
reference's arithmetic (complex64 spectrum, |X|^2, filters) but only over the bins
and filter groups that carry weight.
"""

from __future__ import annotations

import numpy as np

#: mel filters per projection matmul (see MelProjection)
FILTER_GROUP = 8


def _hz_to_mel(freq: np.ndarray, scale: str) -> np.ndarray:
    freq = np.asarray(freq, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + freq / 700.0)
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    safe = np.where(log_region, freq, 1000.0)
    return np.where(log_region, 15.0 + np.log(safe / 1000.0) * (27.0 / np.log(6.4)), mels)


def _mel_to_hz(mels: np.ndarray, scale: str) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (np.power(10, mels / 2595.0) - 1.0)
    freq = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    return np.where(log_region, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels - 15.0)), freq)


def mel_filter_bank(
    n_freqs: int, n_mels: int, fmin: float, fmax: float, sample_rate: int, slaney: bool
) -> np.ndarray:
    """Triangular filters [n_freqs, n_mels] float64; ``slaney`` selects scale + area norm."""
    scale = "slaney" if slaney else "htk"
    mel_min, mel_max = _hz_to_mel(np.array(fmin), scale), _hz_to_mel(np.array(fmax), scale)
    filter_freqs = _mel_to_hz(np.linspace(mel_min, mel_max, n_mels + 2), scale)
    fft_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    filter_diff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / filter_diff[:-1]
    up = slopes[:, 2:] / filter_diff[1:]
    filters = np.maximum(np.zeros(1), np.minimum(down, up))
    if slaney:
        filters *= (2.0 / (filter_freqs[2 : n_mels + 2] - filter_freqs[:n_mels]))[None, :]
    return filters


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window (the reference's ``window_function(n, "hann")``)."""
    return np.hanning(n + 1)[:-1]


class MelProjection:
    """Complex spectrum [m, n_freqs] -> mel energies float32 [m, n_mels].

    The power ``re^2 + im^2`` is folded into the projection: the complex64 spectrum is
    viewed as interleaved float32 ``[re, im, ...]``, squared in place and multiplied by
    the filters repeated once per pair. Only bins ``[bin_lo, bin_hi)`` carry filter
    weight (50 Hz..14 kHz: 300 of 513 bins), so the others are never converted.

    The filters are banded: a group of ``group`` adjacent filters only touches a short
    run of bins, so the projection is one small matmul per group over just those rows.
    Small matmuls also stay below OpenBLAS's multi-threading threshold (m*n*k <= 262144
    for a 128-frame batch): on a busy machine a threaded sgemm waits for its threads,
    and threaded BLAS made the whole extraction slower than the reference's.
    """

    def __init__(self, filters: np.ndarray, group: int = FILTER_GROUP) -> None:
        n_mels = filters.shape[1]
        self.n_mels = n_mels
        nonzero = np.flatnonzero(filters.any(axis=1))
        self.bin_lo = int(nonzero[0]) if nonzero.size else 0
        self.bin_hi = int(nonzero[-1]) + 1 if nonzero.size else 1
        pairs = np.repeat(filters[self.bin_lo : self.bin_hi], 2, axis=0)
        pairs = np.ascontiguousarray(pairs, dtype=np.float32)
        #: (first filter, end filter, first row, end row, the filters' rows) per group
        self.groups: list[tuple[int, int, int, int, np.ndarray]] = []
        for m0 in range(0, n_mels, group):
            m1 = min(n_mels, m0 + group)
            rows = np.flatnonzero(pairs[:, m0:m1].any(axis=1))
            lo, hi = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
            self.groups.append((m0, m1, lo, hi, np.ascontiguousarray(pairs[lo:hi, m0:m1])))

    def __call__(self, spectrum: np.ndarray) -> np.ndarray:
        # complex64 as in the reference, viewed as float32 pairs and squared in place
        used = spectrum[:, self.bin_lo : self.bin_hi].astype(np.complex64)
        parts = used.view(np.float32)
        np.multiply(parts, parts, out=parts)
        mel = np.zeros((parts.shape[0], self.n_mels), dtype=np.float32)
        for m0, m1, lo, hi, block in self.groups:
            if hi > lo:
                np.matmul(parts[:, lo:hi], block, out=mel[:, m0:m1])
        return mel
