"""Log-mel front end in numpy, identical to transformers' ClapFeatureExtractor.

Why this exists: the daemon must not import torch/transformers, must be deterministic (the
reference random-crops long clips; we always use the newest ``n_samples``), and must be cheap
on a Raspberry Pi (the reference loops over 1001 frames in Python; we batch rfft over a
strided frame view, and the streaming path only computes the frames that are new).

The algorithm (transformers ``audio_utils.spectrogram`` as called by ClapFeatureExtractor):
periodic Hann window of ``fft_window_size``; reflect padding of ``n_fft // 2`` on both
sides; a frame every ``hop_length``; rfft; power |X|^2 (the reference rounds the spectrum to
complex64 first, we do the same); mel filters (``rand_trunc``: Slaney scale + Slaney area
norm, ``fusion``: HTK scale, no norm); ``10 * log10(max(1e-10, mel))``. ``top_db`` is read
and stored but, exactly like the reference, not applied.

Precision, measured on a 10-s chirp against the float64 path: a float32 FFT is off by
0.09 dB (low-power bins drown in float32 rounding), so the FFT runs in float64. After the
complex64 rounding the power and the mel projection run in float32 (relative error about
1e-7, i.e. well under 1e-5 dB) which halves the cost of that step.

Frame geometry: frame ``i`` covers original samples ``[i*hop - n_fft//2, i*hop - n_fft//2 +
n_fft)``; ``n_samples + 2*(n_fft//2)`` padded samples give ``1 + n_samples // hop`` frames
(480000 -> 1001). Frames that reach into the reflect padding (0, 1 and 999, 1000 for the
default config) depend on the window edges and are recomputed on every slide.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from listener.errors import ModelError

TRUNCATIONS = ("rand_trunc", "fusion")
PADDINGS = ("repeatpad", "repeat", "pad")
MEL_FLOOR = 1e-10
#: frames per rfft batch: keeps the working set in cache (measured: 128 is the sweet spot)
BATCH_FRAMES = 128
#: mel filters per projection matmul (see LogMel.__init__)
FILTER_GROUP = 8

# ClapFeatureExtractor's __init__ defaults: a key absent from preprocessor_config.json
# means the reference uses these, so we do too.
_DEFAULTS: dict[str, Any] = {
    "feature_size": 64,
    "sampling_rate": 48_000,
    "hop_length": 480,
    "max_length_s": 10,
    "fft_window_size": 1024,
    "frequency_min": 0.0,
    "frequency_max": 14_000.0,
    "top_db": None,
    "truncation": "fusion",
    "padding": "repeatpad",
}


# --- mel filter bank (transformers.audio_utils.mel_filter_bank, re-implemented) ---------


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


# --- the front end ---------------------------------------------------------------------


class LogMel:
    """Deterministic CLAP features: always exactly ``n_samples`` (the newest 10 s).

    Build with :meth:`from_config` (a parsed preprocessor_config.json) or :meth:`from_file`.
    Window and filter bank are computed once here; ``__call__`` only does the per-clip work.
    """

    sample_rate: int
    n_samples: int  # 480000
    n_frames: int  # 1001
    n_mels: int  # 64
    hop_length: int  # 480
    truncation: str  # "rand_trunc" | "fusion"
    padding: str  # "repeatpad" | "repeat" | "pad"

    def __init__(
        self,
        *,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        n_mels: int,
        fmin: float,
        fmax: float,
        max_length_s: float,
        truncation: str,
        padding: str,
        top_db: float | None = None,
        source: str = "preprocessor_config.json",
    ) -> None:
        def bad(key: str, why: str) -> ModelError:
            return ModelError(f"{source}: key '{key}' {why}")

        if truncation not in TRUNCATIONS:
            raise bad("truncation", f"is {truncation!r}; expected one of {', '.join(TRUNCATIONS)}")
        if padding not in PADDINGS:
            raise bad("padding", f"is {padding!r}; expected one of {', '.join(PADDINGS)}")
        for key, value in (
            ("sampling_rate", sample_rate),
            ("fft_window_size", n_fft),
            ("hop_length", hop_length),
            ("feature_size", n_mels),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad(key, f"is {value!r}; expected a positive integer")
        if not 0 <= fmin < fmax <= sample_rate / 2:
            raise bad(
                "frequency_min/frequency_max",
                f"are {fmin}/{fmax}; need 0 <= frequency_min < frequency_max <= sampling_rate/2",
            )
        n_samples = int(max_length_s * sample_rate)
        if n_samples < n_fft:
            raise bad("max_length_s", f"is {max_length_s}; the window must hold >= one FFT frame")

        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.fmin = float(fmin)
        self.fmax = float(fmax)
        self.max_length_s = max_length_s
        self.truncation = truncation
        self.padding = padding
        self.top_db = top_db  # stored, not applied: the reference does not apply it either
        self.n_samples = n_samples
        self.n_freqs = n_fft // 2 + 1
        self.pad = n_fft // 2  # reflect padding on each side (centre=True)
        self.n_frames = 1 + (n_samples + 2 * self.pad - n_fft) // hop_length
        self.n_channels = 4 if truncation == "fusion" else 1
        #: what the fusion model's ``is_longer`` input must be for one clip: the reference
        #: forces one item per batch to True when no clip is longer than the window.
        self.is_longer = truncation == "fusion"

        # Frames [interior_lo, interior_hi) read only real samples; the rest touch padding.
        self.interior_lo = -(-self.pad // hop_length)
        self.interior_hi = (n_samples - (n_fft - self.pad)) // hop_length + 1

        self.window = hann_window(n_fft)  # float64: the FFT runs in float64 (see docstring)
        self.filters = mel_filter_bank(
            self.n_freqs, n_mels, fmin, fmax, sample_rate, slaney=truncation == "rand_trunc"
        )
        # Power = re^2 + im^2 folded into the projection: the complex64 spectrum viewed as
        # interleaved float32 [re, im, ...], squared, times the filters repeated per pair.
        # Only bins [_bin_lo, _bin_hi) carry filter weight (50 Hz..14 kHz: 300 of 513 bins).
        nonzero = np.flatnonzero(self.filters.any(axis=1))
        self._bin_lo = int(nonzero[0]) if nonzero.size else 0
        self._bin_hi = int(nonzero[-1]) + 1 if nonzero.size else 1
        pairs = np.repeat(self.filters[self._bin_lo : self._bin_hi], 2, axis=0)
        self._filters_pairs = np.ascontiguousarray(pairs, dtype=np.float32)
        # The filters are banded: a group of FILTER_GROUP adjacent filters only touches a
        # short run of bins, so the projection is one small matmul per group over just those
        # rows (about 1/8 of the dense work). It also keeps each call below OpenBLAS's
        # multi-threading threshold (m*n*k <= 262144 for a 128-frame batch): measured on a
        # busy 2-core machine, one dense threaded [128, 594] x [594, 64] sgemm took 15 ms
        # instead of 30 us, and threaded BLAS made the full extraction slower than the
        # reference.
        self._groups: list[tuple[int, int, int, int, np.ndarray]] = []
        for m0 in range(0, n_mels, FILTER_GROUP):
            m1 = min(n_mels, m0 + FILTER_GROUP)
            rows = np.flatnonzero(self._filters_pairs[:, m0:m1].any(axis=1))
            lo, hi = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
            block = np.ascontiguousarray(self._filters_pairs[lo:hi, m0:m1])
            self._groups.append((m0, m1, lo, hi, block))

    # -- construction --------------------------------------------------------------

    @classmethod
    def from_config(
        cls, preprocessor_config: dict[str, Any], source: str = "preprocessor_config.json"
    ) -> LogMel:
        """Every parameter from the config; absent keys take ClapFeatureExtractor's defaults."""
        cfg = {**_DEFAULTS, **{k: v for k, v in preprocessor_config.items() if v is not None}}
        cfg["top_db"] = preprocessor_config.get("top_db")
        n_fft = cfg["fft_window_size"]
        for key, expected in (
            ("n_fft", n_fft),
            ("nb_frequency_bins", n_fft // 2 + 1 if isinstance(n_fft, int) else None),
            ("nb_max_samples", int(cfg["max_length_s"] * cfg["sampling_rate"])),
        ):
            if key in preprocessor_config and preprocessor_config[key] != expected:
                raise ModelError(
                    f"{source}: key '{key}' is {preprocessor_config[key]!r} but the other keys "
                    f"imply {expected!r} (fft_window_size={n_fft}, max_length_s="
                    f"{cfg['max_length_s']}, sampling_rate={cfg['sampling_rate']}); "
                    "fix the file or re-export the model"
                )
        try:
            return cls(
                sample_rate=cfg["sampling_rate"],
                n_fft=n_fft,
                hop_length=cfg["hop_length"],
                n_mels=cfg["feature_size"],
                fmin=float(cfg["frequency_min"]),
                fmax=float(cfg["frequency_max"]),
                max_length_s=cfg["max_length_s"],
                truncation=cfg["truncation"],
                padding=cfg["padding"],
                top_db=cfg["top_db"],
                source=source,
            )
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: invalid value ({exc}); fix the file") from exc

    @classmethod
    def from_file(cls, path: str | Path) -> LogMel:
        """Read a preprocessor_config.json (path to the file or to a model directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / "preprocessor_config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"{path}: file not found; a model directory needs it") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: cannot read as JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ModelError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return cls.from_config(data, source=str(path))

    # -- per clip ------------------------------------------------------------------

    def prepare(self, audio: np.ndarray) -> np.ndarray:
        """Exactly n_samples: shorter audio padded per ``padding``, longer keeps the newest."""
        x = np.asarray(audio)
        if x.ndim != 1:
            raise ValueError(f"audio must be mono 1-D samples, got shape {x.shape}")
        if x.size == 0:
            raise ValueError("audio is empty: need at least one sample")
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
        n, target = x.shape[0], self.n_samples
        if n >= target:
            return x[n - target :]
        if self.padding == "repeat":
            x = np.tile(x, int(target / n) + 1)[:target]
        elif self.padding == "repeatpad":
            x = np.tile(x, int(target / n))
        if x.shape[0] < target:
            x = np.pad(x, (0, target - x.shape[0]))
        return x

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Model input for one clip: float32 [C, n_frames, n_mels] (C=1, or 4 for fusion)."""
        return self.expand(self.mel(self.prepare(audio)))

    def mel(self, window: np.ndarray) -> np.ndarray:
        """Log-mel rows float32 [n_frames, n_mels] of exactly n_samples samples."""
        out = np.empty((self.n_frames, self.n_mels), dtype=np.float32)
        self.frames_into(window, [(0, self.n_frames)], out)
        return out

    def expand(self, mel: np.ndarray) -> np.ndarray:
        """[n_frames, n_mels] -> [C, n_frames, n_mels]: fusion repeats the one mel 4 times."""
        if self.n_channels == 1:
            return mel[None].copy()
        return np.repeat(mel[None], self.n_channels, axis=0)

    def frames_into(
        self, window: np.ndarray, ranges: list[tuple[int, int]], out: np.ndarray
    ) -> None:
        """Compute the frames of each ``[lo, hi)`` in ``ranges`` into ``out[lo:hi]``.

        ``window`` is exactly n_samples. Ranges are cut at the padding boundaries (so a
        reflect-padded segment is at most a few frames long) and packed into batches of
        BATCH_FRAMES windowed frames, one rfft call per batch.
        """
        if window.shape != (self.n_samples,):
            raise ValueError(f"window must be {self.n_samples} samples, got {window.shape}")
        pieces: list[tuple[int, int]] = []
        for lo, hi in ranges:
            cuts = sorted(
                {lo, hi, *(c for c in (self.interior_lo, self.interior_hi) if lo < c < hi)}
            )
            for a, b in itertools.pairwise(cuts):
                pieces.extend((s, min(b, s + BATCH_FRAMES)) for s in range(a, b, BATCH_FRAMES))
        batch: list[tuple[int, int]] = []
        size = 0
        for a, b in pieces:
            if size + (b - a) > BATCH_FRAMES and batch:
                self._run_batch(window, batch, size, out)
                batch, size = [], 0
            batch.append((a, b))
            size += b - a
        if batch:
            self._run_batch(window, batch, size, out)

    def _frame_view(self, window: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Frames [lo, hi) as a strided view [hi-lo, n_fft] (a small copy at the padding)."""
        n, hop = self.n_samples, self.hop_length
        first = lo * hop - self.pad  # first original sample of frame lo
        last = (hi - 1) * hop - self.pad + self.n_fft  # one past the end of frame hi-1
        if first >= 0 and last <= n:
            segment = window[first:last]
        else:  # reaches into the reflect padding: mirror the samples (edge not repeated)
            parts = []
            if first < 0:
                parts.append(window[1 : 1 - first][::-1])
            parts.append(window[max(first, 0) : min(last, n)])
            if last > n:
                parts.append(window[n - 1 - (last - n) : n - 1][::-1])
            segment = np.concatenate(parts)
        return sliding_window_view(segment, self.n_fft)[::hop]

    def _run_batch(
        self, window: np.ndarray, batch: list[tuple[int, int]], size: int, out: np.ndarray
    ) -> None:
        windowed = np.empty((size, self.n_fft), dtype=np.float64)
        row = 0
        for a, b in batch:
            np.multiply(
                self._frame_view(window, a, b), self.window, out=windowed[row : row + b - a]
            )
            row += b - a
        rows = self._log_mel_rows(windowed)
        row = 0
        for a, b in batch:
            out[a:b] = rows[row : row + b - a]
            row += b - a

    def _log_mel_rows(self, windowed: np.ndarray) -> np.ndarray:
        """Windowed float64 frames [m, n_fft] -> log-mel rows float64 [m, n_mels]."""
        spectrum = np.fft.rfft(windowed, axis=-1)
        # only the bins some filter uses; complex64 as in the reference, viewed as
        # interleaved float32 [re, im, ...] and squared in place
        used = spectrum[:, self._bin_lo : self._bin_hi].astype(np.complex64)
        parts = used.view(np.float32)
        np.multiply(parts, parts, out=parts)
        mel32 = np.zeros((parts.shape[0], self.n_mels), dtype=np.float32)
        for m0, m1, lo, hi, block in self._groups:
            if hi > lo:
                np.matmul(parts[:, lo:hi], block, out=mel32[:, m0:m1])
        mel = mel32.astype(np.float64)
        np.maximum(mel, MEL_FLOOR, out=mel)
        np.log10(mel, out=mel)
        mel *= 10.0
        return mel


class StreamingLogMel:
    """Features of a sliding window, computing only the STFT frames that are new.

    ``features(window, end_sample)``: ``window`` is exactly n_samples ending at absolute
    sample index ``end_sample``. When the previous call's window ended ``k * hop_length``
    samples earlier, interior frames are reused and only new + edge frames computed; the
    result equals ``LogMel.__call__(window)``.

    Memory: one [n_frames, n_mels] float32 cache, shifted in place. Counters:
    ``frames_computed`` (total), ``last_frames_computed``, ``full_computes``,
    ``incremental_computes``.
    """

    def __init__(self, logmel: LogMel) -> None:
        self.logmel = logmel
        self._cache = np.empty((logmel.n_frames, logmel.n_mels), dtype=np.float32)
        self._end: int | None = None
        self.frames_computed = 0
        self.last_frames_computed = 0
        self.full_computes = 0
        self.incremental_computes = 0

    def reset(self) -> None:
        """Forget the cache (a new source, a seek): the next call computes every frame."""
        self._end = None

    def features(self, window: np.ndarray, end_sample: int) -> np.ndarray:
        """float32 [C, n_frames, n_mels] of the window ending at absolute ``end_sample``.

        Samples are trusted to come from one continuous stream: call :meth:`reset` when
        the source changes or sample numbering restarts. A window shorter than n_samples
        (start-up) is padded like ``LogMel.__call__`` and not cached; a longer one is cut
        to its newest n_samples. The returned array is a fresh copy.
        """
        lm = self.logmel
        x = np.asarray(window)
        if x.ndim != 1:
            raise ValueError(f"window must be mono 1-D samples, got shape {x.shape}")
        if x.shape[0] < lm.n_samples:  # start-up: not yet a full window -> padded, uncached
            self._end = None
            out = lm(x)
            self._count(lm.n_frames, full=True)
            return out
        x = lm.prepare(x)  # the newest n_samples, float dtype
        shift = end_sample - self._end if self._end is not None else -1
        k, rem = divmod(shift, lm.hop_length) if shift >= 0 else (-1, 1)
        reuse_hi = lm.interior_hi - k  # new frames [interior_lo, reuse_hi) come from the cache
        cache = self._cache
        self._end = None  # an exception below must not leave a half-updated cache "valid"
        if rem or k < 0 or reuse_hi <= lm.interior_lo:
            lm.frames_into(x, [(0, lm.n_frames)], cache)
            self._count(lm.n_frames, full=True)
        else:
            lo = lm.interior_lo
            if k:
                cache[lo:reuse_hi] = cache[lo + k : reuse_hi + k]
            lm.frames_into(x, [(0, lo), (reuse_hi, lm.n_frames)], cache)
            self._count(lo + lm.n_frames - reuse_hi, full=False)
        self._end = end_sample
        return lm.expand(cache)

    def _count(self, frames: int, full: bool) -> None:
        self.frames_computed += frames
        self.last_frames_computed = frames
        if full:
            self.full_computes += 1
        else:
            self.incremental_computes += 1


__all__ = ["LogMel", "StreamingLogMel", "hann_window", "mel_filter_bank"]
