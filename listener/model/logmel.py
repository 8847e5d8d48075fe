"""Log-mel front end in numpy, identical to transformers' ClapFeatureExtractor.

Why this exists: the daemon must not import torch/transformers, must be deterministic (the
reference random-crops long clips; we always use the newest ``n_samples``), and must be cheap
on a Raspberry Pi (the reference loops over 1001 frames in Python; we batch rfft over a
strided frame view, and :mod:`listener.model.streaming_logmel` only computes the frames
that are new).

The algorithm (transformers ``audio_utils.spectrogram`` as called by ClapFeatureExtractor):
periodic Hann window of ``fft_window_size``; reflect padding of ``n_fft // 2`` on both
sides; a frame every ``hop_length``; rfft; power |X|^2 (the reference rounds the spectrum to
complex64 first, we do the same); mel filters (``rand_trunc``: Slaney scale + Slaney area
norm, ``fusion``: HTK scale, no norm); ``10 * log10(max(1e-10, mel))``. ``top_db`` is ignored,
exactly as the reference ignores it.

Precision: the FFT runs in float64, because in float32 the low-power bins drown in
rounding and miss the 1e-3 dB parity with the reference. After the complex64 rounding
the power and the mel projection run in float32 (:class:`listener.model.melbank.MelProjection`):
their relative error is far below that tolerance, and float32 is cheaper.

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
from listener.model.melbank import MelProjection, hann_window, mel_filter_bank

TRUNCATIONS = ("rand_trunc", "fusion")
PADDINGS = ("repeatpad", "repeat", "pad")
MEL_FLOOR = 1e-10
#: frames per rfft batch: keeps the working set in cache and each projection matmul
#: below OpenBLAS's threading threshold (see MelProjection)
BATCH_FRAMES = 128

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
    "truncation": "fusion",
    "padding": "repeatpad",
}


def _check_parameters(source: str, params: dict[str, Any]) -> None:
    """Raise a ModelError naming ``source`` and the key of the first bad parameter.

    ``params`` is keyed by preprocessor_config.json key, so the message names the key
    the user has to fix.
    """

    def bad(key: str, why: str) -> ModelError:
        return ModelError(f"{source}: key '{key}' {why}")

    for key, allowed in (("truncation", TRUNCATIONS), ("padding", PADDINGS)):
        if params[key] not in allowed:
            raise bad(key, f"is {params[key]!r}; expected one of {', '.join(allowed)}")
    for key in ("sampling_rate", "fft_window_size", "hop_length", "feature_size"):
        value = params[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise bad(key, f"is {value!r}; expected a positive integer")
    fmin, fmax, rate = params["frequency_min"], params["frequency_max"], params["sampling_rate"]
    if not 0 <= fmin < fmax <= rate / 2:
        raise bad(
            "frequency_min/frequency_max",
            f"are {fmin}/{fmax}; need 0 <= frequency_min < frequency_max <= sampling_rate/2",
        )
    if int(params["max_length_s"] * rate) < params["fft_window_size"]:
        raise bad(
            "max_length_s",
            f"is {params['max_length_s']}; the window must hold >= one FFT frame",
        )


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
        source: str = "preprocessor_config.json",
    ) -> None:
        _check_parameters(
            source,
            {
                "sampling_rate": sample_rate,
                "fft_window_size": n_fft,
                "hop_length": hop_length,
                "feature_size": n_mels,
                "frequency_min": fmin,
                "frequency_max": fmax,
                "max_length_s": max_length_s,
                "truncation": truncation,
                "padding": padding,
            },
        )
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.truncation = truncation
        self.padding = padding
        self.n_samples = int(max_length_s * sample_rate)
        self.pad = n_fft // 2  # reflect padding on each side (centre=True)
        self.n_frames = 1 + (self.n_samples + 2 * self.pad - n_fft) // hop_length
        self.n_channels = 4 if truncation == "fusion" else 1

        # Frames [interior_lo, interior_hi) read only real samples; the rest touch padding.
        self.interior_lo = -(-self.pad // hop_length)
        self.interior_hi = (self.n_samples - (n_fft - self.pad)) // hop_length + 1

        self.window = hann_window(n_fft)  # float64: the FFT runs in float64 (see docstring)
        self.projection = MelProjection(
            mel_filter_bank(
                n_fft // 2 + 1, n_mels, fmin, fmax, sample_rate, slaney=truncation == "rand_trunc"
            )
        )

    # -- construction --------------------------------------------------------------

    @classmethod
    def from_config(
        cls, preprocessor_config: dict[str, Any], source: str = "preprocessor_config.json"
    ) -> LogMel:
        """Every parameter from the config; absent keys take ClapFeatureExtractor's defaults."""
        cfg = {**_DEFAULTS, **{k: v for k, v in preprocessor_config.items() if v is not None}}
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

    def clip_features(self, audio: np.ndarray) -> np.ndarray:
        """``self(audio)`` for a short clip (a window's tail), computed cheaply.

        A clip repeated to the model's length (``repeat``/``repeatpad``) is periodic, so
        when its length is whole hops an interior frame equals the frame one period
        earlier: only the first period, the frames at the padding and any frame in
        ``repeatpad``'s zero tail are computed, the rest are copies (about 1/5 of the
        work for a 2-s clip). Equal to ``self(audio)``; other clips take that path.
        """
        n, hop = int(np.asarray(audio).shape[0]), self.hop_length
        x = self.prepare(audio)
        if self.padding == "pad" or n >= self.n_samples or n % hop:
            return self.expand(self.mel(x))
        period = n // hop
        periodic_end = n * (self.n_samples // n) if self.padding == "repeatpad" else self.n_samples
        first_copy = self.interior_lo + period
        # one past the last frame that reads only real samples of the periodic part
        last_copy = min(self.interior_hi, (periodic_end - (self.n_fft - self.pad)) // hop + 1)
        if last_copy <= first_copy:
            return self.expand(self.mel(x))
        out = np.empty((self.n_frames, self.n_mels), dtype=np.float32)
        self.frames_into(x, [(0, first_copy), (last_copy, self.n_frames)], out)
        for i in range(first_copy, last_copy, period):
            j = min(last_copy, i + period)
            out[i:j] = out[i - period:j - period]
        return self.expand(out)

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
        mel = self.projection(spectrum).astype(np.float64)
        np.maximum(mel, MEL_FLOOR, out=mel)
        np.log10(mel, out=mel)
        mel *= 10.0
        return mel
