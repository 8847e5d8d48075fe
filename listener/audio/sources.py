"""Audio sources: microphone, file and stdin, all yielding float32 mono 48 kHz blocks.

One small interface (:class:`Source`): ``open()``, ``blocks()`` (an iterator that
ends at end of stream or after ``close()``), ``close()``, plus counters
``overflows`` (audio lost before it reached us) and ``bad_samples`` (NaN/inf
replaced by 0, never seen by the model). Each source converts its native rate
and channel count itself: channels are averaged, then a streaming soxr
resampler (kept per source, so block edges are seamless) converts to 48 kHz.

The microphone callback runs on PortAudio's thread: it only copies the block
into a bounded queue and counts overflows; downmixing, resampling and
sanitising happen in ``blocks()`` on the reader thread. sounddevice is imported
lazily so machines without PortAudio can still scan files.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from listener.audio.decode import SAMPLE_RATE, open_audio_file, sanitize, to_mono
from listener.config.schema import SourceConfig
from listener.errors import AudioError

PCM_FORMATS: dict[str, tuple[str, float]] = {
    "s16le": ("<i2", 32768.0),
    "s32le": ("<i4", 2147483648.0),
    "f32le": ("<f4", 1.0),
}


class _Converter:
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
        self._conv: _Converter | None = None
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
        self._conv = _Converter(self.rate)

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
        self._conv = _Converter(self.rate)

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

    def close(self) -> None:
        super().close()


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
        self._conv = _Converter(self.rate)

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


class MicSource(Source):
    """A sounddevice InputStream at the device's native rate and channel count.

    ``callback`` is the PortAudio contract: it copies ``indata`` into a bounded queue
    and counts overflows (``status.input_overflow``, or a full queue); nothing else.
    """

    realtime = True

    def __init__(self, device: str | int | None = None, block_seconds: float = 0.1,
                 sample_rate: int | None = None, channels: int | None = None,
                 queue_seconds: float = 5.0) -> None:
        super().__init__()
        self.device = device
        self.block_seconds = block_seconds
        self.rate = int(sample_rate) if sample_rate else 0
        self.channels = int(channels) if channels else 0
        self._queue: queue.Queue[np.ndarray] = queue.Queue(
            maxsize=max(2, round(queue_seconds / block_seconds))
        )
        self._stream: Any = None
        self.description = f"microphone {device if device is not None else '(default)'}"

    def configure(self, rate: int, channels: int) -> None:
        """Set the native format (done by ``open``; tests call it directly)."""
        self.rate = int(rate)
        self.channels = int(channels)
        self._conv = _Converter(self.rate)

    def callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status is not None and getattr(status, "input_overflow", False):
            self.overflows += 1
        try:
            self._queue.put_nowait(indata.copy())
        except queue.Full:
            self.overflows += 1

    def open(self) -> None:
        sd = import_sounddevice()
        index, info = resolve_device(sd, self.device)
        rate = self.rate or int(info["default_samplerate"])
        channels = self.channels or max(1, min(2, int(info["max_input_channels"])))
        self.configure(rate, channels)
        self.description = f"microphone {info['name']!r} ({rate} Hz, {channels} ch)"
        try:
            self._stream = sd.InputStream(
                device=index, samplerate=rate, channels=channels, dtype="float32",
                blocksize=max(1, round(self.block_seconds * rate)), callback=self.callback,
            )
            self._stream.start()
        except Exception as exc:  # PortAudioError and friends
            raise AudioError(
                f"cannot open input device {info['name']!r} at {rate} Hz x {channels} ch: {exc} "
                "(try source.sample_rate / source.channels, or another device from "
                "'listener devices')"
            ) from None

    def blocks(self) -> Iterator[np.ndarray]:
        if self._conv is None:
            raise AudioError("microphone not opened")
        conv = self._conv
        while True:
            try:
                block = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closed.is_set():
                    return
                continue
            out = conv(block)
            if out.size:
                yield out
            if self._closed.is_set() and self._queue.empty():
                return

    def close(self) -> None:
        super().close()
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:
                pass
            self._stream = None


def import_sounddevice() -> Any:
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        raise AudioError(
            f"the microphone needs PortAudio ({exc}): install it (apt install libportaudio2) "
            "or use a file/stdin source"
        ) from None
    return sd


def input_devices(sd: Any) -> list[tuple[int, dict[str, Any]]]:
    try:
        devices = sd.query_devices()
    except Exception as exc:
        raise AudioError(f"PortAudio cannot list devices: {exc}") from None
    return [(i, dict(d)) for i, d in enumerate(devices) if int(d["max_input_channels"]) > 0]


def resolve_device(sd: Any, device: str | int | None) -> tuple[int | None, dict[str, Any]]:
    """Device by index, exact name, or unique case-insensitive substring of its name."""
    devices = input_devices(sd)
    if not devices:
        raise AudioError(
            "PortAudio finds no input device (no microphone connected, or no permission: "
            "add the user to the 'audio' group); use a file or stdin source instead"
        )
    names = ", ".join(f"{i}: {d['name']}" for i, d in devices)
    if device is None or device == "":
        try:
            info = dict(sd.query_devices(kind="input"))
            return None, info
        except Exception:
            return devices[0]
    if isinstance(device, int) or (isinstance(device, str) and device.isdigit()):
        idx = int(device)
        for i, d in devices:
            if i == idx:
                return i, d
        raise AudioError(f"source.device {idx} is not an input device; inputs are: {names}")
    exact = [(i, d) for i, d in devices if d["name"] == device]
    if exact:
        return exact[0]
    sub = [(i, d) for i, d in devices if str(device).lower() in d["name"].lower()]
    if len(sub) == 1:
        return sub[0]
    if not sub:
        raise AudioError(f"no input device matches source.device {device!r}; inputs are: {names}")
    raise AudioError(f"source.device {device!r} matches several inputs; pick one of: {names}")


def make_source(cfg: SourceConfig, realtime: bool | None = None) -> Source:
    """The source a config describes. ``realtime`` overrides pacing of file sources."""
    if cfg.type == "mic":
        return MicSource(cfg.device, cfg.block_seconds, cfg.sample_rate, cfg.channels)
    if cfg.type == "stdin":
        return StdinSource(cfg.format, cfg.sample_rate, cfg.channels, cfg.block_seconds)
    assert cfg.path is not None
    rt = cfg.realtime if realtime is None else realtime
    return FileSource(cfg.path, cfg.block_seconds, realtime=rt)
