"""Audio sources: microphone, file and stdin, all yielding float32 mono 48 kHz blocks.

One small interface (:class:`Source`): ``open()``, ``blocks()`` (an iterator that
ends at end of stream or after ``close()``), ``close()``, plus counters
``overflows`` (audio lost before it reached us) and ``bad_samples`` (NaN/inf
replaced by 0, never seen by the model). Each source converts its native rate
and channel count itself: channels are averaged, then a streaming soxr
resampler (kept per source, so block edges are seamless) converts to 48 kHz.

The microphone (listener/audio/mic.py) is one more Source; sounddevice is imported
only there, so machines without PortAudio can still scan files.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from listener.audio.decode import SAMPLE_RATE, open_audio_file, sanitize, to_mono
from listener.errors import AudioError

PCM_FORMATS: dict[str, tuple[str, float]] = {
    "s16le": ("<i2", 32768.0),
    "s32le": ("<i4", 2147483648.0),
    "f32le": ("<f4", 1.0),
}


class Converter:
    """Native block [n] or [n, ch] -> sanitised 48 kHz mono float32 (streaming soxr)."""

    def __init__(self, rate: int) -> None:
        self.rate = int(rate)
        self.bad_samples = 0
        self._rs: Any = None
        if self.rate != SAMPLE_RATE:
            import soxr

            self._rs = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32",
                                           quality="HQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        clean, bad = sanitize(np.array(block, dtype=np.float32))  # per channel, then downmix
        self.bad_samples += bad
        mono = to_mono(clean)
        if self._rs is None:
            return mono
        return np.asarray(self._rs.resample_chunk(mono, last=last), dtype=np.float32)


class Source:
    """Base: float32 mono 48 kHz blocks. ``realtime`` sources need a reader thread."""

    realtime = False
    description = "source"

    def __init__(self) -> None:
        self.overflows = 0
        self._conv: Converter | None = None
        self._closed = threading.Event()

    @property
    def bad_samples(self) -> int:
        return self._conv.bad_samples if self._conv else 0

    def open(self) -> None:  # pragma: no cover - overridden
        pass

    def blocks(self) -> Iterator[np.ndarray]:  # pragma: no cover - overridden
        return iter(())

    def close(self) -> None:
        self._closed.set()


class ArraySource(Source):
    """In-memory samples (any rate, mono or [n, ch]); optional real-time pacing."""

    def __init__(self, samples: np.ndarray, rate: int = SAMPLE_RATE, block_seconds: float = 0.1,
                 realtime: bool = False) -> None:
        super().__init__()
        self.samples = samples
        self.rate = rate
        self.block = max(1, round(block_seconds * rate))
        self.realtime = realtime
        self.description = f"array ({len(samples) / rate:.1f} s)"

    def open(self) -> None:
        self._conv = Converter(self.rate)

    def blocks(self) -> Iterator[np.ndarray]:
        if self._conv is None:
            self.open()
        conv = self._conv
        assert conv is not None
        t0 = time.monotonic()
        n = len(self.samples)
        for i in range(0, n, self.block):
            if self._closed.is_set():
                return
            if self.realtime:
                _pace(t0, i / self.rate, self._closed)
            out = conv(self.samples[i : i + self.block], last=i + self.block >= n)
            if out.size:
                yield out


def _pace(t0: float, at: float, closed: threading.Event) -> None:
    """Real-time pacing: wait until ``at`` seconds after ``t0`` (interruptible by close)."""
    delay = t0 + at - time.monotonic()
    if delay > 0:
        closed.wait(delay)


class FileSource(Source):
    """wav/flac/ogg via soundfile, read in blocks; as fast as possible unless ``realtime``."""

    def __init__(
        self, path: str | Path, block_seconds: float = 0.1, realtime: bool = False
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.block_seconds = block_seconds
        self.realtime = realtime
        self.description = f"file {self.path}"
        self._sf: Any = None

    def open(self) -> None:
        if self._sf is not None:
            return
        self._sf = open_audio_file(self.path)
        self.rate = int(self._sf.samplerate)
        self.channels = int(self._sf.channels)
        self._conv = Converter(self.rate)

    def blocks(self) -> Iterator[np.ndarray]:
        if self._sf is None:
            self.open()
        conv = self._conv
        assert conv is not None
        frames = max(1, round(self.block_seconds * self.rate))
        t0 = time.monotonic()
        done = 0
        try:
            while not self._closed.is_set():
                try:
                    data = self._sf.read(frames, dtype="float32", always_2d=True)
                except Exception as exc:  # libsndfile: truncated/corrupt data mid-file
                    raise AudioError(f"{self.path}: decoding failed after "
                                     f"{done / self.rate:.2f} s ({exc})") from None
                last = len(data) < frames
                if self.realtime and len(data):
                    _pace(t0, done / self.rate, self._closed)
                done += len(data)
                out = conv(data, last=last)
                if out.size:
                    yield out
                if last:
                    return
        finally:
            self._sf.close()


class StdinSource(Source):
    """Raw little-endian PCM (s16le, s32le or f32le) on a byte stream (stdin by default).

    The stream carries no header, so rate, channels and format come from the config
    (``source.sample_rate`` default 48000, ``source.channels`` default 1).
    """

    realtime = True

    def __init__(self, fmt: str = "s16le", rate: int | None = None, channels: int | None = None,
                 block_seconds: float = 0.1, stream: BinaryIO | None = None) -> None:
        super().__init__()
        if fmt not in PCM_FORMATS:
            raise AudioError(
                f"unknown PCM format {fmt!r} for stdin: use one of {', '.join(PCM_FORMATS)} "
                "(source.format in the config)"
            )
        self.fmt = fmt
        self.rate = int(rate or SAMPLE_RATE)
        self.channels = int(channels or 1)
        self.block_seconds = block_seconds
        self.stream = stream
        self.description = f"stdin ({fmt}, {self.rate} Hz, {self.channels} ch)"

    def open(self) -> None:
        if self.stream is None:
            self.stream = sys.stdin.buffer
        self._conv = Converter(self.rate)

    def blocks(self) -> Iterator[np.ndarray]:
        if self._conv is None:
            self.open()
        conv = self._conv
        assert conv is not None and self.stream is not None
        dtype, scale = PCM_FORMATS[self.fmt]
        width = np.dtype(dtype).itemsize * self.channels
        nbytes = max(1, round(self.block_seconds * self.rate)) * width
        seen = 0
        while not self._closed.is_set():
            raw = self.stream.read(nbytes)
            if not raw:
                break
            whole = len(raw) - len(raw) % width
            if whole != len(raw):
                raise AudioError(
                    f"stdin ended with {len(raw) - whole} bytes that are not a whole frame of "
                    f"{self.fmt} x {self.channels} channel(s) ({width} bytes per frame): check "
                    "source.format and source.channels"
                )
            x = np.frombuffer(raw, dtype=dtype).astype(np.float32)
            if scale != 1.0:
                x /= scale
            else:
                finite = x[np.isfinite(x)]
                if finite.size and float(np.max(np.abs(finite))) > 16.0:
                    raise AudioError(
                        f"stdin data does not look like f32le float PCM (sample values up to "
                        f"{float(np.max(np.abs(finite))):.3g} at byte {seen}; float audio lies "
                        "within [-1, 1]): set source.format to s16le or s32le to match the writer"
                    )
            seen += len(raw)
            out = conv(x.reshape(-1, self.channels), last=False)
            if out.size:
                yield out
            if len(raw) < nbytes:
                break
        tail = conv(np.zeros((0, self.channels), np.float32), last=True)
        if tail.size:
            yield tail
