"""A sink that records what the detector decided: every window's scores, states, events.

`calibrate` and `scan --plot` need the same raw material (per-window scores of every
trigger, the level, which triggers were on, the events), so one small recorder
serves both. It keeps compact records (a :class:`ScoreLine` per window), not the
detector's results, so a day of audio stays small; ``max_lines`` bounds memory for
endless live sources.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from listener.detect.detector import DetectorResult
from listener.detect.events import Event, ScoreLine


@dataclass
class Recording:
    """Score lines, the active state after each line, and events, in arrival order."""

    lines: list[ScoreLine] = field(default_factory=list)
    active: list[dict[str, bool]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def trigger_names(self) -> list[str]:
        names: dict[str, None] = {}
        for line in self.lines:
            for k in line.scores:
                names.setdefault(k, None)
        return list(names)

    def times(self) -> np.ndarray:
        """Window end times (seconds since stream start)."""
        return np.array([ln.window_end for ln in self.lines], dtype=np.float64)

    def levels(self) -> np.ndarray:
        return np.array([ln.level_dbfs for ln in self.lines], dtype=np.float64)

    def scores(self, name: str) -> np.ndarray:
        """One trigger's score per window (NaN where a line lacks it)."""
        return np.array([ln.scores.get(name, np.nan) for ln in self.lines], dtype=np.float64)

    def tail_scores(self, name: str) -> np.ndarray:
        """One trigger's tail score per window (NaN where the tail was not scored)."""
        return np.array([ln.tail_scores.get(name, np.nan) for ln in self.lines],
                        dtype=np.float64)

    def active_of(self, name: str) -> np.ndarray:
        return np.array([bool(a.get(name, False)) for a in self.active], dtype=bool)

    @property
    def duration(self) -> float:
        """Seconds of stream the lines cover (end of the last window)."""
        return float(self.lines[-1].window_end) if self.lines else 0.0


class ScoreRecorder:
    """Sink: keeps everything (or the newest ``max_lines``); ``on_update`` per window."""

    def __init__(self, max_lines: int | None = None,
                 on_update: Callable[[DetectorResult], None] | None = None) -> None:
        self._lines: deque[ScoreLine] = deque(maxlen=max_lines)
        self._active: deque[dict[str, bool]] = deque(maxlen=max_lines)
        self._events: deque[Event] = deque(maxlen=max_lines)
        self._on_update = on_update

    def record(self, line: ScoreLine | None, active: dict[str, bool],
               events: Iterable[Event] = ()) -> None:
        """One step: a window's scores (None for a step without a window) and events."""
        if line is not None:
            self._lines.append(line)
            self._active.append(dict(active))
        self._events.extend(events)

    def on_result(self, result: DetectorResult) -> None:
        line = result.score_line() if result.window is not None else None
        self.record(line, result.active, result.events)
        if line is not None and self._on_update is not None:
            self._on_update(result)

    def close(self) -> None:
        pass

    def recording(self) -> Recording:
        return Recording(list(self._lines), list(self._active), list(self._events))
