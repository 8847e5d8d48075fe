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
class Transition:
    kind: str  # "start" | "end"
    window: Window  # onset window (start) or first window below off_threshold (end)
    confirmed_at: float  # stream time the decision was made (end of the deciding window)
    score: float  # score of the deciding window
    peak: float  # highest score since the onset
    reason: str  # "threshold", "end_of_stream", "disabled", "reloaded"
    run_windows: int = 0


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

    @property
    def run(self) -> int:
        """Consecutive qualifying windows so far towards ``on_windows`` (0 while on)."""
        return self._run

    def cooldown_left(self, at: float) -> float:
        """Seconds of cooldown left at stream time ``at`` (0 when none)."""
        return max(0.0, self._cooldown_until - at)

    def update(self, start: float, end: float, score: float, margin_ok: bool) -> Transition | None:
        """Feed one window's score and whether its margin over the look-alikes holds."""
        w = Window(start, end, float(score))
        self._last = w
        if self.active:
            self.qualified = False
            return self._while_on(w)
        s = self.settings
        self.qualified = (
            margin_ok and score >= s.on_threshold and end >= self._cooldown_until - EPS
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
        if self._run < s.on_windows:
            return None
        self.active = True
        self._below_first = None
        n, self._run = self._run, 0
        assert self._run_first is not None
        return Transition("start", self._run_first, end, w.score, self.peak, "threshold", n)

    def _while_on(self, w: Window) -> Transition | None:
        self.peak = max(self.peak, w.score)
        if w.score >= self.settings.off_threshold:
            self._below_first = None
            return None
        if self._below_first is None:
            self._below_first = w
        if w.end - self._below_first.end >= self.settings.off_seconds - EPS:
            return self._end(w.end, w.score, "threshold")
        return None

    def _end(self, at: float, score: float, reason: str) -> Transition:
        window = self._below_first or self._last or Window(at, at, score)
        self.active = False
        self._below_first = None
        self._run = 0
        self._run_first = None
        self._cooldown_until = at + self.settings.cooldown_seconds
        return Transition("end", window, at, score, self.peak, reason)

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
