"""Per-trigger hysteresis: turns a noisy score per window into clean start/end pairs.

This is the only code that compares a score with ``on_threshold``/``off_threshold``.
Rules (all times are stream seconds, the end of the window being judged):

- start: ``on_windows`` consecutive windows each with score >= ``on_threshold``
  and the margin satisfied (``margin_ok``, decided by the trigger set), all of them
  at or after the end of the cooldown. The start is reported at the FIRST window of
  that run (the onset), emitted at the last one (``confirmed_at``).
- while on, scores between ``off_threshold`` and ``on_threshold`` keep it on
  (no flapping); it ends once scores stay below ``off_threshold`` for
  ``off_seconds`` (measured from the first such window, which is the reported
  end window). ``off_seconds = 0`` ends at the first window below.
- cooldown: no new start is confirmed within ``cooldown_seconds`` after an end
  was emitted; windows inside the cooldown do not count towards ``on_windows``.
- every start gets exactly one end: ``finish`` closes an open event (end of the
  stream, a trigger disabled, changed or removed).

The finer time scale (the *tail*: the newest ``tail_seconds`` scored alone, see
listener/detect/boundary.py) only refines *when*; the window still decides *what*:

- start early: a window that qualifies but has not yet made ``on_windows`` confirms
  the start at once when its tail also reaches ``on_threshold`` with the margin and
  has been sounding (by level) for ``MIN_EARLY_START_SECONDS``.
- end early: while on, a tail below ``off_threshold`` says the sound was absent for the
  whole tail, so it stopped about ``tail_seconds`` before; the event ends once that
  estimated stop is ``off_seconds`` old and no tail heard the sound again (a beep
  after a gap shorter than ``off_seconds`` keeps it one event).
- after an end decided by the tail, the window still holds the sound that ended:
  while it does (the window starts before the estimated stop) a start also needs the
  tail to qualify, so the old sound cannot start a second event, nor (the detector
  tells every trigger, :meth:`Hysteresis.window_holds`) another trigger's event: the
  last half second of an alarm at the window's edge sounds like a chirp.
"""

from __future__ import annotations

from dataclasses import dataclass

from listener.detect.settings import TriggerSettings

EPS = 1e-9


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    score: float


@dataclass(frozen=True)
class TailScore:
    """The tail's score and whether its margin holds (listener/detect/boundary.py)."""

    score: float
    margin_ok: bool
    sounding: float = 0.0  # seconds the tail has been sounding by level (boundary.py)


#: an early start needs the tail to have been sounding this long (boundary.py says why)
MIN_EARLY_START_SECONDS = 0.5


@dataclass(frozen=True)
class Transition:
    kind: str  # "start" | "end"
    window: Window  # onset window (start) or first window below off_threshold (end)
    confirmed_at: float  # stream time the decision was made (end of the deciding window)
    score: float  # score of the deciding window
    peak: float  # highest score since the onset
    reason: str  # "threshold", "end_of_stream", "disabled", "reloaded"
    run_windows: int = 0
    evidence: str = "window"  # what decided it: "window", "window+tail" (start), "tail" (end)
    sound_end: float | None = None  # the tail's estimate of when the sound stopped (ends)


class Hysteresis:
    """The state machine of one trigger. ``active``, ``run`` and ``qualified`` are read-only
    views for whoever reports the state (the detector's per-window result)."""

    def __init__(self, settings: TriggerSettings) -> None:
        self.settings = settings
        self.active = False
        self.peak = 0.0
        #: whether the last window counted towards a start (score, margin and cooldown)
        self.qualified = False
        self._run = 0
        self._run_first: Window | None = None
        self._below_first: Window | None = None
        self._cooldown_until = float("-inf")
        self._last: Window | None = None
        self._quiet_since: float | None = None  # tail evidence: the sound stopped about then
        self._ended_sound_at = float("-inf")  # a tail-decided end: when that sound stopped

    @property
    def run(self) -> int:
        """Consecutive qualifying windows so far towards ``on_windows`` (0 while on)."""
        return self._run

    def cooldown_left(self, at: float) -> float:
        """Seconds of cooldown left at stream time ``at`` (0 when none)."""
        return max(0.0, self._cooldown_until - at)

    def wants_tail(self, start: float, end: float, score: float, margin_ok: bool) -> bool:
        """Whether this window's tail can change a decision (so it is worth a tower run):
        always while on; before, only when the window qualifies but cannot start alone."""
        s = self.settings
        if s.tail_seconds <= 0:
            return False
        if self.active:
            return True
        if not (margin_ok and score >= s.on_threshold and end >= self._cooldown_until - EPS):
            return False
        return self._run + 1 < s.on_windows or start < self._ended_sound_at - EPS

    def window_holds(self, sound_end: float) -> None:
        """Another trigger's tail dated the end of its sound: until the window has slid
        past it, the window alone cannot start this trigger either."""
        self._ended_sound_at = max(self._ended_sound_at, sound_end)

    def update(self, start: float, end: float, score: float, margin_ok: bool,
               tail: TailScore | None = None) -> Transition | None:
        """Feed one window's score and whether its margin over the look-alikes holds, and
        the tail's score when :meth:`wants_tail` asked for it."""
        w = Window(start, end, float(score))
        self._last = w
        if self.active:
            self.qualified = False
            return self._while_on(w, tail)
        s = self.settings
        tail_ok = tail is not None and tail.margin_ok and tail.score >= s.on_threshold
        self.qualified = (
            margin_ok and score >= s.on_threshold and end >= self._cooldown_until - EPS
            # the window may still hold a sound whose end the tail decided: only a tail
            # that hears the sound again counts
            and (start >= self._ended_sound_at - EPS or tail_ok)
        )
        if not self.qualified:
            self._run = 0
            self._run_first = None
            return None
        if self._run == 0:
            self._run_first = w
            self.peak = w.score
        self._run += 1
        self.peak = max(self.peak, w.score)
        early = tail_ok and tail is not None and tail.sounding >= MIN_EARLY_START_SECONDS
        if self._run < s.on_windows and not early:
            return None
        evidence = "window" if self._run >= s.on_windows and start >= self._ended_sound_at \
            else "window+tail"
        self.active = True
        self._below_first = None
        self._quiet_since = None
        n, self._run = self._run, 0
        assert self._run_first is not None
        return Transition("start", self._run_first, end, w.score, self.peak, "threshold", n,
                          evidence)

    def _while_on(self, w: Window, tail: TailScore | None) -> Transition | None:
        self.peak = max(self.peak, w.score)
        s = self.settings
        if tail is not None:
            if tail.score >= s.off_threshold:
                self._quiet_since = None
            else:
                if self._quiet_since is None:  # absent for the whole tail: stopped before it
                    self._quiet_since = w.end - s.tail_seconds
                if w.end - self._quiet_since >= s.off_seconds - EPS:
                    return self._end_by_tail(w, tail.score)
        if w.score >= s.off_threshold:
            self._below_first = None
            return None
        if self._below_first is None:
            self._below_first = w
        if w.end - self._below_first.end >= s.off_seconds - EPS:
            return self._end(w.end, w.score, "threshold")
        return None

    def _end_by_tail(self, w: Window, score: float) -> Transition:
        """End decided by the tail: the reported window is the first quiet tail."""
        assert self._quiet_since is not None
        quiet = self._quiet_since
        self._below_first = Window(quiet, quiet + self.settings.tail_seconds, score)
        tr = self._end(w.end, score, "threshold")
        self.window_holds(quiet)
        return Transition(tr.kind, tr.window, tr.confirmed_at, tr.score, tr.peak, tr.reason,
                          evidence="tail", sound_end=quiet)

    def _end(self, at: float, score: float, reason: str) -> Transition:
        window = self._below_first or self._last or Window(at, at, score)
        self.active = False
        self._below_first = None
        self._quiet_since = None
        self._run = 0
        self._run_first = None
        self._cooldown_until = at + self.settings.cooldown_seconds
        evidence = "window" if reason == "threshold" else reason
        return Transition("end", window, at, score, self.peak, reason, evidence=evidence)

    def finish(self, at: float, reason: str = "end_of_stream") -> Transition | None:
        """Close an open event (end of stream, disabled, changed or removed)."""
        self._run = 0
        self._run_first = None
        self.qualified = False
        if not self.active:
            return None
        score = self._last.score if self._last else 0.0
        if self._below_first is None and self._last is not None:
            # still sounding: the event ends with the last window heard
            self._below_first = self._last
        return self._end(at, score, reason)
