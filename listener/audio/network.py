"""Network audio: any URL FFmpeg opens (RTSP cameras, HTTP/Icecast, RTMP, UDP, SRT, an
RTP ``.sdp`` file), decoded through PyAV, as float32 mono 48 kHz blocks.

A camera's stream drops, stalls and refuses as a matter of course, so the source never
ends by itself: a connector thread opens the URL, decodes audio into a bounded queue and,
when the stream ends, fails, or brings no audio for ``stall_seconds``, waits (capped
exponential backoff, reset once a connection has run well for ``reset_seconds``) and
opens it again. ``blocks()`` (the pipeline's reader thread) only takes from the queue,
so it returns as soon as the source is closed, however long FFmpeg blocks; FFmpeg's
own blocking is bounded by PyAV's ``timeout`` (open and each read: ``stall_seconds``).
The pipeline meanwhile keeps running: no audio, no due window (a gap), and the
heartbeat still beats. ``connected`` and ``reconnects`` say how the stream is doing.

The log says each change of state once (connected, lost, reconnected), never each
retry. Credentials in the URL never reach a log line, an error or the stats:
:func:`mask_url` is applied to every text that could hold the URL.

Resampling: PyAV only turns each frame into planar float32 (an exact conversion);
channels are averaged and the rate converted by the same streaming soxr
:class:`~listener.audio.sources.Converter` as files and microphones use, so a sound
reaches the model the same way whatever the source (swresample's default filter is a
different, shorter one).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from listener.audio.decode import SAMPLE_RATE
from listener.audio.sources import Converter, Source
from listener.audio.urls import mask_url, scheme_of, scrub
from listener.errors import MissingExtraError
from listener.logs import get_logger

log = get_logger("listener.source")

class Backoff:
    """Capped exponential delays: ``low``, 2x ``low``, ... up to ``high``; ``reset()``
    starts again at ``low``."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, max(low, high)
        self._next = low

    def next(self) -> float:
        delay = self._next
        self._next = min(self.high, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.low


class StreamGone(Exception):
    """The stream ended, stalled or failed; the text says how (URL already masked)."""


class UrlSource(Source):
    """A network stream through PyAV, reconnected for as long as the source is open."""

    realtime = True
    #: how often the reader thread looks at close() while no audio arrives
    POLL_SECONDS = 0.2
    #: opening a live stream includes FFmpeg's probe of its first seconds (up to 5 s,
    #: analyzeduration), paced by the stream itself: an open timeout shorter than that
    #: interrupts the probe and leaves the connection failed
    PROBE_SECONDS = 10.0

    def __init__(self, url: str, *, stall_seconds: float = 10.0,
                 reconnect_min_seconds: float = 1.0, reconnect_max_seconds: float = 60.0,
                 rtsp_transport: str | None = "tcp", options: dict[str, str] | None = None,
                 block_seconds: float = 0.1, queue_seconds: float = 5.0,
                 reset_seconds: float = 30.0) -> None:
        super().__init__()
        self.url = url
        self.stall_seconds = stall_seconds
        self.backoff = Backoff(reconnect_min_seconds, reconnect_max_seconds)
        self.reset_seconds = reset_seconds
        self.block = max(1, round(block_seconds * SAMPLE_RATE))
        self.options = self._ffmpeg_options(rtsp_transport, options or {})
        self.description = f"url {mask_url(url)}"
        self.connected = False
        self.reconnects = 0  # connections after the first
        self.connections = 0
        self._queue: queue.Queue[np.ndarray] = queue.Queue(
            maxsize=max(2, round(queue_seconds / block_seconds)))
        self._thread: threading.Thread | None = None
        self._counts = [0, 0]  # bad, clipped samples of converters already retired

    def _ffmpeg_options(self, rtsp_transport: str | None, extra: dict[str, str]) -> dict[str, str]:
        """FFmpeg's options for this URL: the RTSP transport for rtsp(s), the protocols
        an .sdp file may name, then the user's own options (which win)."""
        opts: dict[str, str] = {}
        scheme = scheme_of(self.url)
        if scheme in ("rtsp", "rtsps") and rtsp_transport:
            opts["rtsp_transport"] = rtsp_transport
        if not scheme and self.url.lower().endswith(".sdp"):
            opts["protocol_whitelist"] = "file,udp,rtp,crypto,data"
        return {**opts, **{str(k): str(v) for k, v in extra.items()}}

    @property
    def bad_samples(self) -> int:
        return self._counts[0] + (self._conv.bad_samples if self._conv else 0)

    @property
    def clipped_samples(self) -> int:
        return self._counts[1] + (self._conv.clipped_samples if self._conv else 0)

    def open(self) -> None:
        """Start connecting (in the background: an unreachable stream is retried, never
        an error at start-up)."""
        if self._thread is not None:
            return
        try:  # a missing PyAV fails here, at start-up, not in the connector thread
            import av  # noqa: F401
        except ImportError:
            raise MissingExtraError("a network stream source", "network", "av") from None

        self._conv = Converter(SAMPLE_RATE)
        self._thread = threading.Thread(target=self._connect_loop, name="listener-url",
                                        daemon=True)
        self._thread.start()

    def blocks(self) -> Iterator[np.ndarray]:
        self._opened()
        while not self._closed.is_set():
            try:
                yield self._queue.get(timeout=self.POLL_SECONDS)
            except queue.Empty:
                continue

    # --- the connector thread -------------------------------------------------------------

    def _connect_loop(self) -> None:
        down_since = time.monotonic()
        failures = 0
        while not self._closed.is_set():
            try:
                started = self._session()
                reason = "the stream ended"
            except StreamGone as exc:
                started, reason = exc.args[1], str(exc.args[0])
            except Exception as exc:  # av.FFmpegError and friends: never a traceback
                started, reason = None, self._reason(exc)
            if self._closed.is_set():
                return
            if started is not None:  # it had been connected: a drop
                if time.monotonic() - started >= self.reset_seconds:
                    self.backoff.reset()
                down_since, failures = time.monotonic(), 0
            delay = self.backoff.next()
            failures += 1
            if failures == 1:
                what = "stream lost" if started is not None else "stream unreachable"
                log.warning(f"{what}; reconnecting with backoff", url=mask_url(self.url),
                            reason=reason, retry_in_s=round(delay, 2))
            else:
                log.debug("stream still unreachable", url=mask_url(self.url), reason=reason,
                          retry_in_s=round(delay, 2), attempts=failures,
                          down_s=round(time.monotonic() - down_since, 1))
            self._closed.wait(delay)

    def _session(self) -> float | None:
        """One connection: open, decode until it ends. Returns when it connected (monotonic
        seconds) or raises StreamGone(reason, connected_at)."""
        import av

        container = av.open(self.url, options=self.options,
                            timeout=(self.stall_seconds + self.PROBE_SECONDS, self.stall_seconds))
        try:
            if not container.streams.audio:
                raise StreamGone("the stream has no audio track", None)
            stream = container.streams.audio[0]
            return self._decode(container, stream)
        finally:
            self.connected = False
            container.close()

    def _decode(self, container: Any, stream: Any) -> float:
        import av

        resampler = av.AudioResampler(format="fltp")
        connected_at: float | None = None
        last_audio = time.monotonic()
        pending: list[np.ndarray] = []
        try:
            # every stream's packets, so a camera whose video goes on while its audio
            # stops is a stall too (only audio packets are decoded)
            for packet in container.demux():
                if self._closed.is_set():
                    break
                frames = packet.decode() if packet.stream.index == stream.index else ()
                for frame in frames:
                    for out in resampler.resample(frame):
                        if connected_at is None:
                            connected_at = self._on_connected(out)
                        pending = self._push(self._convert(out), pending)
                        last_audio = time.monotonic()
                if time.monotonic() - last_audio > self.stall_seconds:
                    raise StreamGone(f"no audio for {self.stall_seconds:g} s", connected_at)
        except av.FFmpegError as exc:
            raise StreamGone(self._reason(exc), connected_at) from None
        if connected_at is None:
            raise StreamGone("the stream ended before any audio", None)
        return connected_at

    def _reason(self, exc: BaseException) -> str:
        """Why a connection failed, in words, the URL masked. PyAV's timeout interrupts
        FFmpeg, which then says only "Immediate exit requested": that is a stall."""
        if type(exc).__name__ == "ExitError":
            return f"no data for {self.stall_seconds:g} s (stalled or not answering)"
        return scrub(_describe(exc), self.url)

    def _on_connected(self, frame: Any) -> float:
        self.connections += 1
        self.connected = True
        if self.connections > 1:
            self.reconnects += 1
        log.info("stream connected" if self.connections == 1 else "stream reconnected",
                 url=mask_url(self.url), sample_rate=frame.sample_rate,
                 channels=frame.layout.nb_channels, reconnects=self.reconnects)
        return time.monotonic()

    def _convert(self, frame: Any) -> np.ndarray:
        """A planar float frame -> 48 kHz mono; a new rate gets a new converter."""
        if self._conv is None or self._conv.rate != frame.sample_rate:
            if self._conv is not None:
                self._counts[0] += self._conv.bad_samples
                self._counts[1] += self._conv.clipped_samples
            self._conv = Converter(frame.sample_rate)
        return self._conv(frame.to_ndarray().T)

    def _push(self, out: np.ndarray, pending: list[np.ndarray]) -> list[np.ndarray]:
        """Collect converted audio into blocks of ``block_seconds`` for the queue; a full
        queue (nobody reading) drops the block and counts an overflow."""
        pending.append(out)
        if sum(len(p) for p in pending) < self.block:
            return pending
        try:
            self._queue.put_nowait(np.concatenate(pending))
        except queue.Full:
            self.overflows += 1
        return []

    def close(self) -> None:
        super().close()
        self.connected = False


def _describe(exc: BaseException) -> str:
    """An exception as one short line (FFmpeg's message, without a Python traceback)."""
    return str(getattr(exc, "strerror", None) or exc or type(exc).__name__)
