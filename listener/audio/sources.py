"""Audio sources: microphone, file, stdin and network streams (listener/audio/network.py),
all yielding float32 mono 48 kHz blocks.

One small interface (:class:`Source`): ``open()``, ``blocks()`` (an iterator that
ends at end of stream or after ``close()``), ``close()``, plus counters
``overflows`` (audio lost before it reached us), ``bad_samples`` (NaN/inf
replaced by 0, never seen by the model) and ``clipped_samples`` (finite samples
outside [-1, 1], clipped). Each source converts its native rate
and channel count itself: channels are averaged, then a streaming soxr
resampler (kept per source, so block edges are seamless) converts to 48 kHz.

The microphone (listener/audio/mic.py) is one more Source; sounddevice is imported
only there, so machines without PortAudio can still scan files.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from listener.audio.decode import (
    SAMPLE_RATE,
    audio_warning,
    open_audio_file,
    recorded_start,
    sanitize,
    to_mono,
)
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
        self.clipped_samples = 0
        self._rs: Any = None
        if self.rate != SAMPLE_RATE:
            import soxr

            self._rs = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32",
                                           quality="HQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        clean, bad, clipped = sanitize(np.array(block, dtype=np.float32))  # per channel
        self.bad_samples += bad
        self.clipped_samples += clipped
        mono = to_mono(clean)
        if self._rs is None:
            return mono
        return np.asarray(self._rs.resample_chunk(mono, last=last), dtype=np.float32)


class Source:
    """Base: float32 mono 48 kHz blocks. ``realtime`` sources need a reader thread."""

    realtime = False
    description = "source"
    #: UNIX time of the first sample when the source knows it (a file's recorded start,
    #: or `scan --start-time`); None: event times of a batch count from when it was opened
    start_time: float | None = None
    #: whether audio is arriving (a network stream says so per connection) and how often a
    #: dropped stream came back: the stream's connectivity in the stats
    connected = True
    reconnects = 0

    def __init__(self) -> None:
        self.overflows = 0
        self._conv: Converter | None = None
        self._closed = threading.Event()

    @property
    def bad_samples(self) -> int:
        return self._conv.bad_samples if self._conv else 0

    @property
    def clipped_samples(self) -> int:
        return self._conv.clipped_samples if self._conv else 0

    def open(self) -> None:  # pragma: no cover - overridden
        pass

    def _opened(self) -> Converter:
        """The converter of an open source (``open`` first if it is not open yet)."""
        if self._conv is None:
            self.open()
        assert self._conv is not None
        return self._conv

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
        conv = self._opened()
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
        if self.start_time is None:
            self.start_time = recorded_start(self._sf)
        self.rate = int(self._sf.samplerate)
        self.channels = int(self._sf.channels)
        self._conv = Converter(self.rate)

    def blocks(self) -> Iterator[np.ndarray]:
        conv = self._opened()
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

    Not live by default: every window of the stream is scored, like a file, however fast
    the writer is (``cat rec.raw | listener run`` loses nothing). ``realtime=True``
    (``source.realtime``) says the writer is live (a microphone through arecord): then,
    like a microphone, the newest audio wins and windows the model cannot keep up with
    are skipped and counted.
    """

    #: how long a read waits for the writer before looking at close() (and, when not
    #: live, yielding an empty block so the batch loop can look at its stop event)
    POLL_SECONDS = 0.2
    #: f32le values beyond this are not float audio but integer PCM read as float
    INTEGER_PCM_LEVEL = 16.0

    def __init__(self, fmt: str = "s16le", rate: int | None = None, channels: int | None = None,
                 block_seconds: float = 0.1, stream: BinaryIO | None = None,
                 realtime: bool = False) -> None:
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
        self.realtime = realtime
        self.description = f"stdin ({fmt}, {self.rate} Hz, {self.channels} ch)"
        self._format_warned = False

    def open(self) -> None:
        if self.stream is None:
            self.stream = sys.stdin.buffer
        self._conv = Converter(self.rate)

    def blocks(self) -> Iterator[np.ndarray]:
        conv = self._opened()
        dtype, scale = PCM_FORMATS[self.fmt]
        width = np.dtype(dtype).itemsize * self.channels
        pending = b""
        seen = 0
        for raw in self._chunks(max(1, round(self.block_seconds * self.rate)) * width):
            if not raw:
                if not self.realtime:  # quiet writer: the batch loop may look at its stop
                    yield np.zeros(0, np.float32)
                continue
            data = pending + raw
            whole = len(data) - len(data) % width
            pending = data[whole:]
            if not whole:
                continue
            x = np.frombuffer(data[:whole], dtype=dtype).astype(np.float32)
            if scale != 1.0:
                x /= scale
            else:
                self._check_float(x, seen)
            seen += whole
            out = conv(x.reshape(-1, self.channels), last=False)
            if out.size:
                yield out
        if pending:
            raise AudioError(
                f"stdin ended with {len(pending)} bytes that are not a whole frame of "
                f"{self.fmt} x {self.channels} channel(s) ({width} bytes per frame): check "
                "source.format and source.channels"
            )
        tail = conv(np.zeros((0, self.channels), np.float32), last=True)
        if tail.size:
            yield tail

    def _chunks(self, nbytes: int) -> Iterator[bytes]:
        """The stream's bytes in chunks of ``nbytes`` (a block), or what has arrived when
        the writer is quiet for POLL_SECONDS (``b""`` if nothing: a quiet writer never
        hides a stop or close()); ends at end of stream or after close(). A pipe, file
        or terminal is polled with select and read with os.read (a buffered read would
        wait for a whole block); a stream without a descriptor is just read."""
        assert self.stream is not None
        fd = _fileno(self.stream)
        if fd is None:
            while not self._closed.is_set() and (raw := self.stream.read(nbytes)):
                yield raw
            return
        buf = bytearray()
        while not self._closed.is_set():
            ready, _, _ = select.select([fd], [], [], self.POLL_SECONDS)
            if not ready:
                yield bytes(buf)
                buf.clear()
                continue
            raw = os.read(fd, nbytes - len(buf))
            if not raw:
                break
            buf += raw
            if len(buf) >= nbytes:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)

    def _check_float(self, x: np.ndarray, at: int) -> None:
        """f32le values far outside [-1, 1] are almost always integer PCM read as float.
        They are clipped and counted like any out-of-range sample (one bad block must not
        end the stream); the first such block gets a warning with the likely fix."""
        if self._format_warned:
            return
        big = np.abs(x[np.isfinite(x)])
        if not big.size or float(big.max()) <= self.INTEGER_PCM_LEVEL:
            return
        self._format_warned = True
        out_of_range = int(np.count_nonzero(big > 1.0))
        audio_warning(
            f"stdin: {out_of_range} f32le sample(s) in a block at byte {at} lie far outside "
            f"float audio's [-1, 1] (up to {float(big.max()):.3g}) and were clipped; more are "
            "counted as clipped_samples in the stats. If the writer sends integer PCM, set "
            "source.format to s16le or s32le to match it",
            clipped=out_of_range, byte=at, peak=float(big.max()),
        )


def _fileno(stream: BinaryIO) -> int | None:
    """The stream's file descriptor, or None (an in-memory stream)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
