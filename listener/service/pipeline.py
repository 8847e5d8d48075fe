"""Pipeline: source -> ring buffer -> windows -> engine -> sinks, for scan, run and top.

`listener scan`, `listener run` (daemon) and `listener top` all drive audio through
this one class, so a scan of a file behaves exactly like the daemon listening to
the same sound.

Two loops, one engine:

- batch (files read as fast as possible): read a block, write it to the ring,
  score every window that became due, in order. Nothing is skipped.
- live (microphone, stdin, ``--realtime`` files): a reader thread fills the ring;
  this thread wakes at least every half hop, takes the NEWEST due window and
  counts the older due ones as skipped. Nothing queues, so memory stays flat
  when the tower is slower than real time, and the newest audio always wins.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from listener.audio.decode import SAMPLE_RATE, load_audio
from listener.audio.level import level_dbfs
from listener.audio.ringbuffer import RingBuffer
from listener.audio.scheduler import HopScheduler
from listener.audio.sources import Source, make_source
from listener.config.schema import Config
from listener.detect.detector import Engine
from listener.detect.events import Event, ScoreLine
from listener.detect.triggers import TriggerSet, check_example_length
from listener.service.clips import ClipRecorder
from listener.service.sinks import Sink

log = logging.getLogger("listener.pipeline")


class Pipeline:
    """Owns the source, ring buffer, scheduler, LogMel, AudioTower, PromptBank and triggers.

    - ``Pipeline(config, sinks, realtime=None, heartbeat=None, source=None)``: loads the
      model (AudioTower, PromptBank for prompts/negatives/background, example embeddings)
      and opens nothing yet. ``realtime`` overrides ``config.source.realtime`` for file
      sources. ``heartbeat`` is called from the processing loop at least once per hop.
      ``source`` replaces the configured source (scan passes its file; tests pass
      an ``ArraySource``).
    - ``open()``: opens the source (mic/file/stdin); raises AudioError/UserError on failure.
    - ``run(stop)``: processes audio until the source ends (file/stdin EOF) or ``stop`` is
      set; at end of stream every active trigger gets its end event. Calls
      ``sink.on_scores`` after every hop and ``sink.on_event`` per event. The caller
      closes its sinks.
    - ``reload(config)``: apply a new validated config between windows; triggers whose
      definition did not change keep their hysteresis state. Model, source and window
      changes need a restart (logged, ignored).
    - ``set_enabled(name, enabled)``: runtime switch; a disabled trigger emits no events
      (an active one is ended first) and scores are still computed.
    - ``stats()``: inference_ms, real_time_factor, windows, skipped_windows,
      gated_windows, overflows, bad_samples, uptime_s, model.
    - ``model_id``, ``trigger_names``.
    """

    def __init__(
        self,
        config: Config,
        sinks: list[Sink],
        realtime: bool | None = None,
        heartbeat: Callable[[], None] | None = None,
        source: Source | None = None,
    ) -> None:
        from listener.model.audio_tower import AudioTower
        from listener.model.logmel import LogMel
        from listener.model.modeldir import ModelDir
        from listener.model.prompt_bank import PromptBank

        self.config = config
        self.sinks = list(sinks)
        self.realtime = realtime
        self.heartbeat = heartbeat
        self.rate = SAMPLE_RATE
        m = config.model
        self.model = ModelDir(m.dir)
        self.model_id = self.model.model_id
        self.logmel = LogMel.from_config(self.model.preprocessor_config)
        self.tower = AudioTower(self.model, m.precision, m.provider, m.threads)
        self.bank = PromptBank(self.model, config.resolved_state_dir / "prompt-cache",
                               m.precision, m.provider, m.threads)
        self._examples: dict[tuple[str, int, int], np.ndarray] = {}
        self.engine = Engine(self.logmel, self.tower, self._trigger_set(config), config.audio,
                             self.model_id, self.rate)
        self.hop = round(config.audio.hop_seconds * self.rate)
        self.window = round(config.audio.window_seconds * self.rate)
        self.ring = RingBuffer(self._ring_capacity(config))
        self.scheduler = HopScheduler(self.hop)
        self.clips = self._clip_recorder(config)
        self._source = source
        self.source: Source | None = None
        self._lock = threading.RLock()
        self._t0 = time.time()
        self._anchor = (0, self._t0)  # (absolute sample, wall clock) of the newest write
        self._started = time.monotonic()
        self._live = False

    # --- construction -----------------------------------------------------------------------

    def _trigger_set(self, config: Config) -> TriggerSet:
        return TriggerSet(config.triggers, config.defaults, config.background,
                          self.bank.embed, self._embed_example)

    def _embed_example(self, path: Path) -> np.ndarray:
        """Audio tower embedding of an example file, computed once per file version."""
        try:
            st = path.stat()
            key = (str(path), st.st_mtime_ns, st.st_size)
        except OSError:
            key = (str(path), 0, 0)
        if key not in self._examples:
            audio = load_audio(path)
            check_example_length(path, audio, self.rate)
            feats = self.logmel(self.logmel.prepare(audio))
            self._examples[key] = np.asarray(self.tower.embed(feats[None])[0], np.float32)
        return self._examples[key]

    def _ring_capacity(self, config: Config) -> int:
        a = config.audio
        on_windows = max([config.defaults.on_windows]
                         + [t.settings(config.defaults).on_windows for t in config.triggers])
        clip_back = (on_windows + 1) * a.hop_seconds + config.clips.pre_seconds
        seconds = a.window_seconds + max(a.pre_roll_seconds, clip_back) + 2 * a.hop_seconds
        return round(seconds * self.rate)

    def _clip_recorder(self, config: Config) -> ClipRecorder | None:
        if not config.clips.enabled:
            return None
        directory = config.clips.dir or (config.resolved_state_dir / "clips")
        return ClipRecorder(config.clips, directory, self.rate)

    @property
    def trigger_names(self) -> list[str]:
        return self.engine.triggers.names

    # --- running ----------------------------------------------------------------------------

    def open(self) -> None:
        src = self._source or make_source(self.config.source, self.realtime)
        src.open()
        self.source = src
        self._t0 = time.time()
        self._anchor = (0, self._t0)
        self._started = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        if self.source is None:
            self.open()
        assert self.source is not None
        self._live = bool(self.source.realtime)
        try:
            if self._live:
                self._run_live(stop)
            else:
                self._run_batch(stop)
        finally:
            self.source.close()
        self._finish()

    def _beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat()

    def _run_batch(self, stop: threading.Event) -> None:
        assert self.source is not None
        self._beat()
        for block in self.source.blocks():
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
        assert self.source is not None
        src = self.source
        cond = threading.Condition()
        done = threading.Event()
        failure: list[BaseException] = []

        def reader() -> None:
            try:
                for block in src.blocks():
                    self.ring.write(block)
                    self._anchor = (self.ring.total, time.time())
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

        thread = threading.Thread(target=reader, name="listener-reader", daemon=True)
        thread.start()
        wait = max(0.01, min(self.config.audio.hop_seconds, 1.0) / 2)
        try:
            while not stop.is_set():
                self._beat()
                with cond:
                    cond.wait_for(
                        lambda: self.scheduler.due(self.ring.total) or done.is_set()
                        or stop.is_set(),
                        timeout=wait,
                    )
                if stop.is_set():
                    break
                end = self.scheduler.take_newest(self.ring.total)
                if end is not None:
                    self._window(end)
                elif done.is_set():
                    end = self.scheduler.final(self.ring.total)
                    if end is not None:
                        self._window(end)
                    break
        finally:
            src.close()
            thread.join(timeout=5.0)
        if failure:
            raise failure[0]

    def _utc_of(self, t: float) -> float:
        if not self._live:
            return self._t0 + t
        total, wall = self._anchor
        return wall - (total - t * self.rate) / self.rate

    def _window(self, end: int) -> None:
        audio = self.ring.read(end - self.window, end)
        hop_audio = audio[-self.hop :]
        with self._lock:
            line, events = self.engine.process(audio, end, level_dbfs(hop_audio), self._utc_of)
            self._emit(line, events)

    def _emit(self, line: ScoreLine | None, events: list[Event]) -> None:
        if self.clips is not None:
            for ev in events:
                if ev.type == "start":
                    self.clips.begin(ev.id, int(ev.details["sound_start"] * self.rate), self.ring)
                else:
                    path = self.clips.end(ev.id, int(ev.details["sound_end"] * self.rate),
                                          self.ring)
                    ev.clip = str(path) if path else None
            self.clips.pull(self.ring)
        active = {n: st.hyst.active for n, st in self.engine.states.items()}
        for sink in self.sinks:
            if line is not None:
                sink.on_scores(line, active)
            for ev in events:
                sink.on_event(ev)

    def _finish(self) -> None:
        with self._lock:
            at = self.ring.total / self.rate
            events = self.engine.finish(at, self._utc_of)
            self._emit(None, events)
            if self.clips is not None:
                self.clips.flush()

    # --- control ----------------------------------------------------------------------------

    def reload(self, config: Config) -> None:
        old = self.config
        for section in ("model", "source"):
            if getattr(old, section) != getattr(config, section):
                log.warning("reload: '%s' changed; restart listener to apply it", section)
        if (old.audio.window_seconds, old.audio.hop_seconds) != (
            config.audio.window_seconds, config.audio.hop_seconds
        ):
            log.warning("reload: audio.window_seconds/hop_seconds changed; restart to apply")
        triggers = self._trigger_set(config)  # outside the lock: may run the text tower
        with self._lock:
            at = self.ring.total / self.rate
            events = self.engine.set_triggers(triggers, at, self._utc_of)
            self.engine.audio = self.engine.audio.model_copy(
                update={"min_level_dbfs": config.audio.min_level_dbfs,
                        "pre_roll_seconds": config.audio.pre_roll_seconds}
            )
            if config.clips != old.clips:
                if self.clips is not None:
                    self.clips.flush()
                self.clips = self._clip_recorder(config)
            self.config = config.model_copy(
                update={"model": old.model, "source": old.source, "audio": self.engine.audio}
            )
            self._emit(None, events)

    def set_enabled(self, name: str, enabled: bool) -> None:
        with self._lock:
            if name not in self.engine.states:
                names = ", ".join(self.trigger_names)
                raise KeyError(f"unknown trigger {name!r}; triggers: {names}")
            events = self.engine.set_enabled(name, enabled, self.ring.total / self.rate,
                                             self._utc_of)
            self._emit(None, events)

    def enabled(self, name: str) -> bool:
        return self.engine.states[name].enabled

    def stats(self) -> dict[str, Any]:
        ms = self.engine.inference_ms()
        src = self.source
        return {
            "inference_ms": round(ms, 2),
            "real_time_factor": round(ms / 1000.0 / self.config.audio.hop_seconds, 4),
            "windows": self.engine.windows,
            "skipped_windows": self.scheduler.skipped,
            "gated_windows": self.engine.gated,
            "overflows": src.overflows if src else 0,
            "bad_samples": src.bad_samples if src else 0,
            "uptime_s": round(time.monotonic() - self._started, 3),
            "audio_seconds": round(self.ring.total / self.rate, 3),
            "model": self.model_id,
        }
