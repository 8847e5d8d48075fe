"""The microphone source: a PortAudio input stream (sounddevice) as float32 mono 48 kHz.

The callback runs on PortAudio's thread: it only copies the block into a bounded
queue and counts overflows; downmixing, resampling and sanitising happen in
``blocks()`` on the reader thread. sounddevice is imported lazily, when a microphone
is opened or listed, so machines without PortAudio can still scan files.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import numpy as np

from listener.audio.sources import Converter, Source
from listener.errors import AudioError


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
        self._conv = Converter(self.rate)

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
            "or use a file/stdin source (`listener demo` runs without a microphone)"
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
            "add the user to the 'audio' group); use a file or stdin source instead, or "
            "run `listener demo` to see listener work without a microphone"
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


