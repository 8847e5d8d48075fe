"""Pipeline: one stream's loop: source -> ring buffer -> hop scheduler -> detector ->
clips -> sink.

`listener scan`, `listener run` (daemon), `listener top` and `listener calibrate` all
drive audio through this class (built by listener/service/assemble.py), so a scan of
a file behaves exactly like the daemon listening to the same sound. It owns only the
stream: the source, the ring, the scheduler and the clock that maps stream time to
wall time. Trigger state is the detector's; the model is shared (listener/model/
stack.py).

Two loops, one detector:

- batch (files and stdin, as fast as they come): read a block, write it to the ring,
  score every window that became due, in order. Nothing is skipped.
- live (microphone, ``realtime`` stdin and files): a reader thread fills the ring;
  this thread wakes at least every half hop, takes the NEWEST due window and
  counts the older due ones as skipped. Nothing queues, so memory stays flat
  when the tower is slower than real time, and the newest audio always wins.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from listener.audio.decode import SAMPLE_RATE
from listener.audio.ringbuffer import RingBuffer
from listener.audio.scheduler import HopScheduler
from listener.audio.sources import Source
from listener.config.schema import AudioConfig
from listener.detect.detector import Detector, DetectorResult
from listener.detect.events import DEFAULT_STREAM
from listener.detect.triggers import TriggerSet
from listener.logs import get_logger
from listener.service.clips import ClipRecorder
from listener.service.sinks import Sink

log = get_logger("listener.pipeline")

#: a live source silent this long has lost its audio: connectivity goes off and active
#: triggers end (reason ``no_audio``) rather than staying on until the audio returns
NO_AUDIO_SECONDS = 5.0


class LagWarning:
    """Says in the log when the live loop skips windows because scoring is slower than
    real time: at once, then at most every ``every`` seconds, with what to change."""

    def __init__(self, hop_seconds: float, every: float = 60.0) -> None:
        self.hop_seconds = hop_seconds
        self.every = every
        self._warned_at: float | None = None
        self._skipped = 0  # the count at the last warning

    def check(self, skipped: int, inference_ms: float) -> None:
        if skipped <= self._skipped:
            return
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < self.every:
            return
        log.warning(
            "falling behind real time: windows skipped (scoring one window takes longer "
            "than the hop); raise audio.hop_seconds, set model.threads to use more cores, "
            "or use the int8 model",
            skipped=skipped - self._skipped, skipped_total=skipped,
            real_time_factor=round(inference_ms / 1000.0 / self.hop_seconds, 2),
            hop_seconds=self.hop_seconds,
        )
        self._warned_at, self._skipped = now, skipped


class Pipeline:
    """One stream. ``open()`` opens the source, ``run(stop)`` processes it until it ends or
    ``stop`` is set (every active trigger then gets its end), and between windows
    ``apply_switches()``, ``reload(...)`` and ``set_clips(...)`` change what it does."""

    def __init__(self, audio: AudioConfig, source: Source, detector: Detector, sink: Sink,
                 *, clips: ClipRecorder | None = None,
                 heartbeat: Callable[[], None] | None = None, rate: int = SAMPLE_RATE,
                 stream: str = DEFAULT_STREAM) -> None:
        self.stream = stream  # stamped on every result and event (config/streams.py)
        self.audio = audio
        self.source = source
        self.detector = detector
        self.sink = sink
        self.clips = clips
        self.heartbeat = heartbeat
        self.rate = rate
        self.hop = round(audio.hop_seconds * rate)
        self.window = round(audio.window_seconds * rate)
        self.ring = RingBuffer(self._ring_capacity())
        self.scheduler = HopScheduler(self.hop)
        self.lag = LagWarning(audio.hop_seconds)
        self._lock = threading.RLock()  # one step at a time: windows, switches, reloads
        self._t0 = time.time()
        self._anchor = (0, self._t0)  # (absolute sample, wall clock) of the newest write
        self._started = time.monotonic()
        self._live = False
        self._running = False  # between run()'s start and end: audio may arrive
        self._audio_at: float | None = None  # monotonic time the newest audio arrived
        self._ended_for: float | None = None  # the outage whose open events were ended

    def _ring_capacity(self) -> int:
        """The window plus what a start may reach back to (pre-roll, onset, clip pre)."""
        a = self.audio
        on_windows = max([1] + [t.settings.on_windows for t in self.detector.triggers.specs])
        pre = self.clips.cfg.pre_seconds if self.clips is not None else 0.0
        back = (on_windows + 1) * a.hop_seconds + pre
        return round((a.window_seconds + max(a.pre_roll_seconds, back) + 2 * a.hop_seconds)
                     * self.rate)

    @property
    def model_id(self) -> str:
        return self.detector.model_id

    @property
    def trigger_names(self) -> list[str]:
        return self.detector.triggers.names

    # --- running ----------------------------------------------------------------------------

    def open(self) -> None:
        """Open the source (mic/file/stdin); AudioError/UserError when it cannot be."""
        self.source.open()
        known = None if self.source.realtime else self.source.start_time
        self._t0 = time.time() if known is None else known  # a recording: its own clock
        self._anchor = (0, self._t0)
        self._started = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        """Process until the source ends or ``stop`` is set. However it stops (an error
        in the source included), every active trigger gets its end event first."""
        self._live = bool(self.source.realtime)
        self._running = True
        try:
            if self._live:
                self._run_live(stop)
            else:
                self._run_batch(stop)
        finally:
            self._running = False
            self.source.close()
            self._finish()

    def _beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat()

    def _run_batch(self, stop: threading.Event) -> None:
        self._beat()
        for block in self.source.blocks():
            if not block.size:  # a quiet stdin writer: alive, waiting for audio
                self._beat()
            self.ring.write(block)
            while (end := self.scheduler.take_next(self.ring.total)) is not None:
                self._window(end)
                self._beat()
            if stop.is_set():
                return
        end = self.scheduler.final(self.ring.total)
        if end is not None:
            self._window(end)

    def _run_live(self, stop: threading.Event) -> None:
        cond = threading.Condition()
        done = threading.Event()
        failure: list[BaseException] = []
        reader = threading.Thread(target=self._read, args=(stop, cond, done, failure),
                                  name="listener-reader", daemon=True)
        reader.start()
        wait = max(0.01, min(self.audio.hop_seconds, 1.0) / 2)
        try:
            while not stop.is_set():
                self._beat()
                with cond:
                    cond.wait_for(lambda: self.scheduler.due(self.ring.total) or done.is_set()
                                  or stop.is_set(), timeout=wait)
                if stop.is_set():
                    break
                end = self.scheduler.take_newest(self.ring.total)
                if end is not None:
                    self._window(end)
                    self.lag.check(self.scheduler.skipped, self.detector.inference_ms())
                elif not done.is_set():
                    self._end_if_silent_source()
                else:
                    end = self.scheduler.final(self.ring.total)
                    if end is not None:
                        self._window(end)
                    break
        finally:
            self.source.close()
            reader.join(timeout=5.0)
        if failure:
            raise failure[0]

    def _end_if_silent_source(self) -> None:
        """A live source that has delivered nothing for ``NO_AUDIO_SECONDS`` (a camera
        that dropped, a stalled pipe): the sound cannot be said to go on, so the active
        triggers end now, at the last audio heard (reason ``no_audio``), instead of
        staying on until the stream returns. Once per outage."""
        heard = self._audio_at
        if heard is None or time.monotonic() - heard <= NO_AUDIO_SECONDS:
            return
        if self._ended_for != heard:
            self._ended_for = heard
            with self._lock:
                self._emit(self.detector.finish(self._now(), self._utc_of, "no_audio"))

    def _read(self, stop: threading.Event, cond: threading.Condition, done: threading.Event,
              failure: list[BaseException]) -> None:
        """The reader thread of the live loop: source blocks into the ring, nothing else."""
        try:
            for block in self.source.blocks():
                self.ring.write(block)
                self._anchor = (self.ring.total, time.time())
                if block.size:
                    self._audio_at = time.monotonic()
                with cond:
                    cond.notify()
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the processing thread
            failure.append(exc)
        finally:
            done.set()
            with cond:
                cond.notify()

    def _utc_of(self, t: float) -> float:
        """Stream seconds -> UNIX seconds (live: from the newest write; batch: from open)."""
        if not self._live:
            return self._t0 + t
        total, wall = self._anchor
        return wall - (total - t * self.rate) / self.rate

    def wall_time(self, t: float) -> float:
        """Stream seconds -> UNIX seconds, the clock events are stamped with."""
        return self._utc_of(t)

    def _now(self) -> float:
        return self.ring.total / self.rate

    def _window(self, end: int) -> None:
        audio = self.ring.read(end - self.window, end)
        with self._lock:
            self._emit(self.detector.process(audio, end, self._utc_of))

    def _emit(self, result: DetectorResult) -> None:
        events = result.events
        if self.clips is not None:
            events = self.clips.on_events(events, self.ring)
        if self.stream != DEFAULT_STREAM:
            events = tuple(replace(e, stream=self.stream) for e in events)
        self.sink.on_result(replace(result, events=events, stream=self.stream))

    def _finish(self) -> None:
        with self._lock:
            self._emit(self.detector.finish(self._now(), self._utc_of))
            if self.clips is not None:
                self.clips.flush()

    # --- control (any thread; applied between windows) ----------------------------------

    @contextlib.contextmanager
    def between_windows(self) -> Iterator[None]:
        """Hold the processing loop between two windows (several changes become one)."""
        with self._lock:
            yield

    def apply_switches(self) -> None:
        """The switch store changed: a trigger switched off while on ends now."""
        with self._lock:
            self._emit(self.detector.apply_switches(self._now(), self._utc_of))

    def reload(self, triggers: TriggerSet, gate_dbfs: float) -> None:
        """New triggers (unchanged ones keep their state) and level gate."""
        with self._lock:
            self.detector.gate_dbfs = gate_dbfs
            self._emit(self.detector.set_triggers(triggers, self._now(), self._utc_of))

    def set_clips(self, clips: ClipRecorder | None) -> None:
        """New clip settings: clips in progress are written with what they have."""
        with self._lock:
            if self.clips is not None:
                self.clips.flush()
            self.clips = clips

    def audio_arriving(self, within: float = NO_AUDIO_SECONDS) -> bool:
        """Audio reached the ring in the last ``within`` seconds (a live source), or the
        source is being read (a file as fast as it comes): the stream's connectivity."""
        if not self._running:
            return False
        heard = self._audio_at
        return not self._live or (heard is not None and time.monotonic() - heard <= within)

    def stats(self) -> dict[str, Any]:
        ms = self.detector.inference_ms()
        src = self.source
        return {
            "inference_ms": round(ms, 2),
            "real_time_factor": round(ms / 1000.0 / self.audio.hop_seconds, 4),
            "windows": self.detector.stats.windows,
            "skipped_windows": self.scheduler.skipped,
            "gated_windows": self.detector.stats.gated,  # below the level gate
            "novelty_gated_windows": self.detector.stats.novelty_gated,  # nothing new
            "scored_windows": self.detector.stats.scored,  # the tower ran
            "overflows": src.overflows,
            "connected": bool(src.connected),  # audio arriving (a network stream may drop)
            "reconnects": src.reconnects,
            "bad_samples": src.bad_samples,
            "clipped_samples": src.clipped_samples,
            "uptime_s": round(time.monotonic() - self._started, 3),
            "audio_seconds": round(self.ring.total / self.rate, 3),
            "model": self.model_id,
            "stream": self.stream,
            "audio_arriving": self.audio_arriving(),
            **({"clip_failures": self.clips.failures} if self.clips is not None else {}),
        }
