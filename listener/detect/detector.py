"""The detector: one window -> level gate -> embedding -> scores -> hysteresis -> events.

It is the single owner of per-trigger state (hysteresis, the open event, its peak)
and hands everything it knows to the outside as one immutable
:class:`DetectorResult` per step: every trigger's score, relative score, whether it
qualified, run length, active, enabled, cooldown and best match, the window's
timing and levels, every row's similarity and the events. MQTT, `top`, recorders,
clips and logs read that result; none keeps a copy of trigger state.

The audio tower runs at most once per window, whatever the number of triggers.
Windows quieter than the gate skip it and score as silence (0). Windows whose newest
hop brings nothing new (listener/detect/novelty.py) skip it too and reuse the last
scores, unless a trigger is on, counting towards a start or near its threshold
(:meth:`Detector._hot`): the gate is only asked when no decision can hang on it.
Whether a trigger is enabled is read from the switch store (``is_enabled``,
listener/service/switches.py) at every step; a trigger that is off emits no events,
and one switched off while on is ended at once by :meth:`Detector.apply_switches`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from listener.audio.level import levels_dbfs
from listener.detect.boundary import TailScorer
from listener.detect.events import DEFAULT_STREAM, Event, ScoreLine, new_event_id, utc_iso
from listener.detect.hysteresis import Hysteresis, TailScore, Transition
from listener.detect.novelty import NoveltyGate
from listener.detect.settings import TriggerSettings
from listener.detect.triggers import SILENT, Row, TriggerScore, TriggerSet, TriggerSpec

UtcOf = Callable[[float], float]  # stream seconds -> UNIX seconds


class Embedder(Protocol):
    """Window audio -> L2-normalised embedding (listener/model/stack.py WindowEmbedder)."""

    def embed(self, audio: np.ndarray, end_sample: int) -> np.ndarray: ...

    def embed_clip(self, audio: np.ndarray) -> np.ndarray: ...

    def features(self, audio: np.ndarray, end_sample: int) -> np.ndarray: ...

    def embed_features(self, features: np.ndarray) -> np.ndarray: ...

    def mean_ms(self) -> float: ...


@dataclass(frozen=True)
class TriggerState:
    """One trigger after one step, as every consumer sees it."""

    name: str
    score: float
    relative: float | None
    match: str
    qualifies: bool  # this window counted towards a start (threshold, margin, cooldown)
    run: int  # consecutive qualifying windows towards on_windows
    active: bool
    enabled: bool
    cooldown_left: float  # seconds
    settings: TriggerSettings
    tail_score: float | None = None  # the newest tail_seconds alone, when it was scored


@dataclass(frozen=True)
class ScoredWindow:
    start: float  # stream seconds
    end: float
    level_dbfs: float  # the newest hop: what the level sensor and `top` show
    window_level_dbfs: float  # the whole window: what the gate compares
    gated: bool  # below the gate: the tower did not run, scores are 0
    similarities: np.ndarray | None  # cosine per row of the trigger set (None when gated)
    #: the window's audio embedding (None when gated; the last scored one's when reused)
    embedding: np.ndarray | None = None
    #: nothing new since the last scored window (novelty gate): the tower did not run,
    #: ``similarities`` are that window's
    reused: bool = False


@dataclass(frozen=True)
class DetectorResult:
    """Everything one step decided: a scored window, or a switch/reload/end of stream."""

    window: ScoredWindow | None
    triggers: tuple[TriggerState, ...]
    events: tuple[Event, ...] = ()
    rows: tuple[Row, ...] = ()
    stream: str = DEFAULT_STREAM  # set by the stream's pipeline (service/pipeline.py)

    @property
    def active(self) -> dict[str, bool]:
        return {t.name: t.active for t in self.triggers}

    def state(self, name: str) -> TriggerState:
        for t in self.triggers:
            if t.name == name:
                return t
        raise KeyError(name)

    def score_line(self) -> ScoreLine:
        """The window's scores as a record (``scan --scores``); needs a window."""
        assert self.window is not None
        w = self.window
        tails = {t.name: t.tail_score for t in self.triggers if t.tail_score is not None}
        return ScoreLine(w.start, w.end, w.level_dbfs, {t.name: t.score for t in self.triggers},
                         tail_scores=tails, stream=self.stream)


@dataclass
class _Trigger:
    """Per-trigger state; lives only inside the Detector."""

    spec: TriggerSpec
    hyst: Hysteresis
    last: TriggerScore = SILENT
    level: float | None = None  # window level of the last scored window
    event_id: str | None = None
    onset: Transition | None = None
    peak: float = 0.0
    peak_match: str = ""
    tail: TailScore | None = None  # this window's tail, when it was scored
    #: the novelty gate leaves this trigger's windows alone until then (stream seconds):
    #: a window_seconds after its last score near the on-threshold
    near_until: float = float("-inf")


@dataclass
class DetectorStats:
    windows: int = 0  # windows processed
    gated: int = 0  # of those, below the level gate (the tower did not run)
    tail_runs: int = 0  # extra tower runs on a window's tail (listener/detect/boundary.py)
    novelty_gated: int = 0  # of those, nothing new: the last scores were reused

    @property
    def scored(self) -> int:
        """Windows the tower ran on."""
        return self.windows - self.gated - self.novelty_gated


class Detector:
    """Per stream: owns the trigger states; shares the trigger set and tower with others."""

    def __init__(self, triggers: TriggerSet, embedder: Embedder, *, rate: int,
                 hop_samples: int, gate_dbfs: float, model_id: str,
                 is_enabled: Callable[[str], bool], novelty: NoveltyGate | None = None
                 ) -> None:
        self.embedder = embedder
        self.novelty = novelty
        # of the last scored window: what a window the novelty gate passes over reuses
        self._last_emb: np.ndarray | None = None
        self._last_sims: np.ndarray | None = None
        self.rate = rate
        self.hop_samples = hop_samples
        self.gate_dbfs = gate_dbfs
        self.model_id = model_id
        self.is_enabled = is_enabled
        self.stats = DetectorStats()
        self.triggers = triggers
        self._states = {t.name: _Trigger(t, Hysteresis(t.settings)) for t in triggers.specs}
        self._now = 0.0
        self._tails = TailScorer(embedder, rate)

    # --- steps --------------------------------------------------------------------------

    def process(self, audio: np.ndarray, end_sample: int, utc_of: UtcOf) -> DetectorResult:
        """Score one window (the newest audio ending at absolute sample ``end_sample``)."""
        t_end = end_sample / self.rate
        t_start = max(0.0, t_end - audio.size / self.rate)
        self._now = t_end
        self.stats.windows += 1
        window_level, hop_level = levels_dbfs(audio, self.hop_samples)
        gated = window_level < self.gate_dbfs
        sims = emb = None
        reused = False
        if gated:
            self.stats.gated += 1
            self._last_sims = None
            if self.novelty is not None:
                self.novelty.forget()
            scores = self.triggers.silence()
        else:
            emb, sims, reused = self._similarities(audio, end_sample, t_end)
            scores = self.triggers.score(sims)
        tails = {} if gated else self._tail_scores(audio, t_start, t_end, scores)
        events: list[Event] = []
        for st in self._states.values():
            st.last, st.level = scores[st.spec.name], window_level
            st.tail = tails.get(st.spec.name)
            ev = self._update(st, t_start, t_end, utc_of)
            if ev is not None:
                events.append(ev)
        if self.novelty is not None and not gated and not reused:
            self._note_near(t_end)
        window = ScoredWindow(t_start, t_end, hop_level, window_level, gated, sims, emb,
                              reused)
        return self._result(window, events)

    def _tail_scores(self, audio: np.ndarray, t_start: float, t_end: float,
                     scores: dict[str, TriggerScore]) -> dict[str, TailScore]:
        """The tail's scores for the enabled triggers whose hysteresis wants them."""
        wanted = [name for name, st in self._states.items() if self.is_enabled(name)
                  and st.hyst.wants_tail(t_start, t_end, scores[name].score,
                                         scores[name].margin_ok)]
        tails = self._tails.scores(self.triggers, audio, wanted)
        self.stats.tail_runs = self._tails.runs
        return tails

    def _similarities(self, audio: np.ndarray, end_sample: int, t_end: float
                      ) -> tuple[np.ndarray, np.ndarray, bool]:
        """This window's embedding and every row's cosine, and whether they are the last
        window's (the novelty gate found nothing new and no trigger is near a decision)."""
        gate = self.novelty
        if gate is None:
            emb = self.embedder.embed(audio, end_sample)
            return emb, self.triggers.similarities(emb), False
        feats = self.embedder.features(audio, end_sample)
        full = audio.size >= round(gate.max_age * self.rate) - 1
        if (full and self._last_sims is not None and not self._hot(t_end)
                and not gate.is_new(feats[0], t_end)):
            self.stats.novelty_gated += 1
            assert self._last_emb is not None
            return self._last_emb, self._last_sims, True
        emb = self.embedder.embed_features(feats)
        sims = self.triggers.similarities(emb)
        self._last_emb, self._last_sims = emb, sims
        if full:
            gate.remember(feats[0], t_end)
        else:
            gate.forget()
        return emb, sims, False

    def _hot(self, t_end: float) -> bool:
        """Whether any trigger's next decision may hang on this window's score: on,
        counting towards a start, or scored near its on-threshold within the last
        window_seconds (scores swing from hop to hop while a sound is in the window,
        so one lower score does not make the next one low)."""
        return any(st.hyst.active or st.hyst.run > 0 or t_end < st.near_until - 1e-9
                   for st in self._states.values())

    def _note_near(self, t_end: float) -> None:
        """After a fresh score: triggers near their on-threshold stay hot a window long."""
        assert self.novelty is not None
        near = self.novelty.settings.near_threshold
        for st in self._states.values():
            if st.last.score >= st.spec.settings.on_threshold - near:
                st.near_until = t_end + self.novelty.max_age

    def _update(self, st: _Trigger, t_start: float, t_end: float, utc_of: UtcOf
                ) -> Event | None:
        if not self.is_enabled(st.spec.name):
            return self._close(st, t_end, utc_of, "disabled")
        sc = st.last
        if st.hyst.active and sc.score >= st.peak:
            st.peak, st.peak_match = sc.score, sc.match
        tr = st.hyst.update(t_start, t_end, sc.score, sc.margin_ok, st.tail)
        if tr is None:
            return None
        if tr.kind == "start":
            st.event_id = new_event_id()
            st.onset = tr
            st.peak, st.peak_match = tr.peak, sc.match
            return self._event(st, tr, sc, utc_of)
        ev = self._event(st, tr, sc, utc_of)
        st.event_id = st.onset = None
        if tr.sound_end is not None:  # the window still holds that sound, for everyone
            for other in self._states.values():
                other.hyst.window_holds(tr.sound_end)
        return ev

    def apply_switches(self, at: float, utc_of: UtcOf) -> DetectorResult:
        """Re-read the switch store now: a trigger switched off while on ends at ``at``."""
        self._now = max(self._now, at)
        events = [ev for st in self._states.values() if not self.is_enabled(st.spec.name)
                  if (ev := self._close(st, at, utc_of, "disabled")) is not None]
        return self._result(None, events)

    def set_triggers(self, triggers: TriggerSet, at: float, utc_of: UtcOf) -> DetectorResult:
        """Swap in a new trigger set; triggers whose spec is unchanged keep their state,
        changed or removed ones that are on end at ``at`` (reason ``reloaded``)."""
        old = self._states
        self.triggers = triggers
        self._last_sims = None  # other rows: the next window is scored
        self._states = {}
        for spec in triggers.specs:
            prev = old.get(spec.name)
            if prev is not None and prev.spec == spec:
                self._states[spec.name] = prev
            else:
                self._states[spec.name] = _Trigger(spec, Hysteresis(spec.settings))
        events = [ev for name, st in old.items() if self._states.get(name) is not st
                  if (ev := self._close(st, at, utc_of, "reloaded")) is not None]
        switched = self.apply_switches(at, utc_of)
        return self._result(None, events + list(switched.events))

    def finish(self, at: float, utc_of: UtcOf, reason: str = "end_of_stream"
               ) -> DetectorResult:
        """End of stream, or of its audio for now (``reason`` ``no_audio``): every active
        trigger gets its end event."""
        self._now = max(self._now, at)
        events = [ev for st in self._states.values()
                  if (ev := self._close(st, at, utc_of, reason)) is not None]
        return self._result(None, events)

    def inference_ms(self) -> float:
        """Mean time of the last few embeddings (log-mel + tower), milliseconds."""
        return self.embedder.mean_ms()

    def snapshot(self) -> DetectorResult:
        """The present state without stepping (what a sink shows before the first window)."""
        return self._result(None, [])

    # --- results and events -------------------------------------------------------------

    def _result(self, window: ScoredWindow | None, events: list[Event]) -> DetectorResult:
        states = tuple(
            TriggerState(
                name=st.spec.name, score=st.last.score, relative=st.last.relative,
                match=st.last.match, qualifies=st.hyst.qualified, run=st.hyst.run,
                active=st.hyst.active, enabled=self.is_enabled(st.spec.name),
                cooldown_left=st.hyst.cooldown_left(self._now), settings=st.spec.settings,
                tail_score=None if st.tail is None else st.tail.score,
            )
            for st in self._states.values()
        )
        return DetectorResult(window, states, tuple(events), self.triggers.rows)

    def _close(self, st: _Trigger, at: float, utc_of: UtcOf, reason: str) -> Event | None:
        tr = st.hyst.finish(at, reason)
        if tr is None or st.event_id is None:
            return None
        ev = self._event(st, tr, None, utc_of)
        st.event_id = st.onset = None
        return ev

    def _event(self, st: _Trigger, tr: Transition, sc: TriggerScore | None, utc_of: UtcOf
               ) -> Event:
        """A start or end event with every choice behind it in ``details``."""
        s = st.spec.settings
        hop = self.hop_samples / self.rate
        assert st.event_id is not None and st.onset is not None
        onset = st.onset.window
        sound_start = max(onset.start, onset.end - hop)
        details: dict[str, Any] = {
            "reason": tr.reason,
            "confirmed_at": round(tr.confirmed_at, 3),
            "decided_by": tr.evidence,
            "on_threshold": s.on_threshold,
            "off_threshold": s.off_threshold,
            "margin": s.margin,
            "settings": asdict(s),
            "sound_start": round(sound_start, 3),
        }
        level = {} if st.level is None else {"level_dbfs": round(st.level, 2)}
        if st.tail is not None and sc is not None:
            details["tail_score"] = round(st.tail.score, 4)
        if sc is not None:  # decided by this window
            details.update({**sc.details(), **level})
        elif st.level is not None:  # ended from outside: what the last window said
            details.update({**level, **st.last.details()})
        common = dict(id=st.event_id, trigger=st.spec.name, score=tr.score, model=self.model_id,
                      details=details)
        if tr.kind == "start":
            details["on_windows_seen"] = tr.run_windows
            return Event(type="start", peak_score=tr.peak, match=sc.match if sc else st.peak_match,
                         window_start=tr.window.start, window_end=tr.window.end,
                         time=utc_iso(utc_of(tr.window.end)), **common)  # type: ignore[arg-type]
        w = tr.window
        # the first window without the sound starts roughly where the sound ended
        sound_end = min(w.end, w.start + hop) if tr.reason == "threshold" else w.end
        if tr.sound_end is not None:  # the tail dated it
            sound_end = tr.sound_end
        sound_end = max(sound_end, sound_start)
        details["sound_end"] = round(sound_end, 3)
        return Event(type="end", peak_score=max(st.peak, tr.peak), match=st.peak_match,
                     window_start=w.start, window_end=w.end, time=utc_iso(utc_of(w.end)),
                     duration=sound_end - sound_start, **common)  # type: ignore[arg-type]
