"""Per-trigger hysteresis: turns a noisy score per window into clean start/end pairs.

Rules (all times are stream seconds, the end of the window being judged):

- start: ``on_windows`` consecutive windows each with score >= ``on_threshold``
  and the margin satisfied (``qualifies``), all of them at or after the end of
  the cooldown. The start is reported at the FIRST window of that run (the
  onset), emitted at the last one (``confirmed_at``).
- while on, scores between ``off_threshold`` and ``on_threshold`` keep it on
  (no flapping); it ends once scores stay below ``off_threshold`` for
  ``off_seconds`` (measured from the first such window, which is the reported
  end window). ``off_seconds = 0`` ends at the first window below.
- cooldown: no new start is confirmed within ``cooldown_seconds`` after an end
  was emitted; windows inside the cooldown do not count towards ``on_windows``.
- every start gets exactly one end: ``finish`` closes an open event at the end
  of the stream, ``force_off`` when a trigger is disabled or removed.
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
    reason: str  # "threshold", "end_of_stream", "disabled"
    run_windows: int = 0


class Hysteresis:
    def __init__(self, settings: TriggerSettings) -> None:
        self.settings = settings
        self.active = False
        self.peak = 0.0
        self._run = 0
        self._run_first: Window | None = None
        self._below_first: Window | None = None
        self._cooldown_until = float("-inf")
        self._last: Window | None = None

    def update(self, start: float, end: float, score: float, qualifies: bool) -> Transition | None:
        """Feed one window. ``qualifies`` = score >= on_threshold and margin satisfied."""
        s = self.settings
        w = Window(start, end, float(score))
        self._last = w
        if not self.active:
            if qualifies and score >= s.on_threshold and end >= self._cooldown_until - EPS:
                if self._run == 0:
                    self._run_first = w
                    self.peak = float(score)
                self._run += 1
                self.peak = max(self.peak, float(score))
                if self._run >= s.on_windows:
                    self.active = True
                    self._below_first = None
                    n = self._run
                    self._run = 0
                    assert self._run_first is not None
                    return Transition("start", self._run_first, end, w.score, self.peak,
                                      "threshold", n)
            else:
                self._run = 0
                self._run_first = None
            return None
        self.peak = max(self.peak, float(score))
        if score < s.off_threshold:
            if self._below_first is None:
                self._below_first = w
            if end - self._below_first.end >= s.off_seconds - EPS:
                return self._end(end, w.score, "threshold")
        else:
            self._below_first = None
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
        """Close an open event (end of stream, disabled, removed)."""
        self._run = 0
        self._run_first = None
        if not self.active:
            return None
        score = self._last.score if self._last else 0.0
        if self._below_first is None and self._last is not None:
            # still sounding: the event ends with the last window heard
            self._below_first = self._last
        return self._end(at, score, reason)

    def force_off(self, at: float) -> Transition | None:
        return self.finish(at, "disabled")
