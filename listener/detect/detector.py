"""Engine: one window -> log-mel -> audio tower (once) -> every trigger's score -> events.

The tower runs exactly once per window, whatever the number of triggers: all
prompt, example, negative and background vectors are scored against that one
embedding (:class:`TriggerSet`). Windows quieter than ``min_level_dbfs`` skip
the tower and score as silence (0). Each trigger's :class:`Hysteresis` turns
scores into start/end transitions, which become :class:`Event` objects with
every choice behind them in ``details``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from listener.audio.decode import SAMPLE_RATE
from listener.audio.level import level_dbfs
from listener.config.schema import AudioConfig
from listener.detect.events import Event, ScoreLine, new_event_id, utc_iso
from listener.detect.hysteresis import Hysteresis, Transition
from listener.detect.triggers import Trigger, TriggerScore, TriggerSet


@dataclass
class _State:
    trigger: Trigger
    hyst: Hysteresis
    enabled: bool = True
    event_id: str | None = None
    onset: Transition | None = None
    peak_match: str = ""
    peak: float = 0.0
    last: dict[str, Any] = field(default_factory=dict)


class Engine:
    def __init__(self, logmel: Any, tower: Any, triggers: TriggerSet, audio: AudioConfig,
                 model_id: str, rate: int = SAMPLE_RATE) -> None:
        from listener.model.streaming_logmel import StreamingLogMel

        self.logmel = logmel
        self.streaming = StreamingLogMel(logmel)
        self.tower = tower
        self.audio = audio
        self.model_id = model_id
        self.rate = rate
        self.hop_seconds = audio.hop_seconds
        self.window_samples = round(audio.window_seconds * rate)
        self.triggers = triggers
        self.states: dict[str, _State] = {}
        self._set(triggers, {})
        self.windows = 0
        self.gated = 0
        self.infer_ms: deque[float] = deque(maxlen=20)
        self.last_scores: dict[str, float] = {}

    # --- triggers ---------------------------------------------------------------------------

    def _set(self, triggers: TriggerSet, old: dict[str, _State]) -> None:
        states = {}
        for t in triggers.triggers:
            prev = old.get(t.name)
            if prev is not None and prev.trigger.signature() == t.signature():
                if prev.trigger.config.enabled != t.config.enabled:
                    prev.enabled = t.config.enabled  # the config's switch changed
                prev.trigger = t
                states[t.name] = prev
            else:
                states[t.name] = _State(t, Hysteresis(t.settings), enabled=t.config.enabled)
        self.triggers = triggers
        self.states = states

    def set_triggers(self, triggers: TriggerSet, at: float, utc_of: Callable[[float], float]
                     ) -> list[Event]:
        """Swap in new triggers; unchanged ones keep state, changed/removed active ones end."""
        old = self.states
        self._set(triggers, old)
        events = []
        for name, st in old.items():
            if self.states.get(name) is not st:
                ev = self._close(st, at, utc_of, "reloaded")
                if ev:
                    events.append(ev)
        for st in self.states.values():
            if not st.enabled:
                ev = self._close(st, at, utc_of, "disabled")
                if ev:
                    events.append(ev)
        return events

    def set_enabled(self, name: str, enabled: bool, at: float, utc_of: Callable[[float], float]
                    ) -> list[Event]:
        st = self.states.get(name)
        if st is None:
            raise KeyError(name)
        st.enabled = enabled
        if not enabled:
            ev = self._close(st, at, utc_of, "disabled")
            return [ev] if ev else []
        return []

    # --- windows ----------------------------------------------------------------------------

    def features(self, audio: np.ndarray, end_sample: int) -> np.ndarray:
        if audio.size == self.logmel.n_samples:
            return self.streaming.features(audio, end_sample)
        return self.logmel(self.logmel.prepare(audio))

    def process(self, audio: np.ndarray, end_sample: int, hop_level: float,
                utc_of: Callable[[float], float]) -> tuple[ScoreLine, list[Event]]:
        """Score one window (the newest audio ending at absolute sample ``end_sample``)."""
        t_end = end_sample / self.rate
        t_start = max(0.0, t_end - audio.size / self.rate)
        self.windows += 1
        level = level_dbfs(audio)
        if level < self.audio.min_level_dbfs:
            self.gated += 1
            scores = self.triggers.silence()
        else:
            t0 = time.perf_counter()
            feats = self.features(audio, end_sample)
            emb = self.tower.embed(feats[None])[0]
            self.infer_ms.append((time.perf_counter() - t0) * 1000.0)
            scores = self.triggers.score(emb)
        line = ScoreLine(t_start, t_end, hop_level, {k: v.score for k, v in scores.items()})
        self.last_scores = dict(line.scores)
        events = []
        for name, st in self.states.items():
            sc = scores[name]
            st.last = {"score": sc.score, "level_dbfs": round(level, 2), **sc.details()}
            if not st.enabled:
                continue
            if st.hyst.active and sc.score >= st.peak:
                st.peak, st.peak_match = sc.score, sc.match
            tr = st.hyst.update(t_start, t_end, sc.score, sc.qualifies)
            if tr is None:
                continue
            if tr.kind == "start":
                st.event_id = new_event_id()
                st.onset = tr
                st.peak, st.peak_match = tr.peak, sc.match
                events.append(self._event(st, tr, sc, level, utc_of))
            else:
                events.append(self._event(st, tr, sc, level, utc_of))
                st.event_id = None
                st.onset = None
        return line, events

    def finish(self, at: float, utc_of: Callable[[float], float]) -> list[Event]:
        """End of stream: every active trigger gets its end event."""
        out = []
        for st in self.states.values():
            ev = self._close(st, at, utc_of, "end_of_stream")
            if ev:
                out.append(ev)
        return out

    def _close(self, st: _State, at: float, utc_of: Callable[[float], float], reason: str
               ) -> Event | None:
        tr = st.hyst.finish(at, reason)
        if tr is None or st.event_id is None:
            return None
        ev = self._event(st, tr, None, None, utc_of)
        st.event_id = None
        st.onset = None
        return ev

    def _event(self, st: _State, tr: Transition, sc: TriggerScore | None, level: float | None,
               utc_of: Callable[[float], float]) -> Event:
        s = st.trigger.settings
        hop = self.hop_seconds
        assert st.event_id is not None and st.onset is not None
        onset = st.onset.window
        sound_start = max(onset.start, onset.end - hop)
        details: dict[str, Any] = {
            "reason": tr.reason,
            "confirmed_at": round(tr.confirmed_at, 3),
            "on_threshold": s.on_threshold,
            "off_threshold": s.off_threshold,
            "margin": s.margin,
            "settings": asdict(s),
            "sound_start": round(sound_start, 3),
        }
        if sc is not None:
            details.update(sc.details())
        elif st.last:
            details.update({k: v for k, v in st.last.items() if k != "score"})
        if level is not None:
            details["level_dbfs"] = round(level, 2)
        if tr.kind == "start":
            details["on_windows_seen"] = tr.run_windows
            match = sc.match if sc is not None else st.peak_match
            return Event(
                type="start", id=st.event_id, trigger=st.trigger.name, score=tr.score,
                peak_score=tr.peak, match=match, window_start=tr.window.start,
                window_end=tr.window.end, time=utc_iso(utc_of(tr.window.end)),
                model=self.model_id, details=details,
            )
        w = tr.window
        # the first window without the sound starts roughly where the sound ended
        sound_end = min(w.end, w.start + hop) if tr.reason == "threshold" else w.end
        sound_end = max(sound_end, sound_start)
        details["sound_end"] = round(sound_end, 3)
        return Event(
            type="end", id=st.event_id, trigger=st.trigger.name, score=tr.score,
            peak_score=max(st.peak, tr.peak), match=st.peak_match, window_start=w.start,
            window_end=w.end, time=utc_iso(utc_of(w.end)), model=self.model_id,
            duration=sound_end - sound_start, details=details,
        )

    def inference_ms(self) -> float:
        return float(np.mean(self.infer_ms)) if self.infer_ms else 0.0
