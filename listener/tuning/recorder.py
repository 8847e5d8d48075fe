"""A Sink that records what the engine produced: every ScoreLine, its on/off state, events.

`top`, `calibrate` and `scan --plot` all need the same raw material (per-window
scores of every trigger, the level, the events), so one small recorder serves
them. It only appends to lists (never blocks the processing loop); ``max_lines``
bounds memory for the endless live view.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

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

    def active_of(self, name: str) -> np.ndarray:
        return np.array([bool(a.get(name, False)) for a in self.active], dtype=bool)

    @property
    def duration(self) -> float:
        """Seconds of stream the lines cover (end of the last window)."""
        return float(self.lines[-1].window_end) if self.lines else 0.0


class ScoreRecorder:
    """Sink: keeps everything (or the newest ``max_lines``) and calls ``on_update`` per hop."""

    def __init__(
        self,
        max_lines: int | None = None,
        on_update: Callable[[ScoreLine, dict[str, bool]], None] | None = None,
        on_event_cb: Callable[[Event], None] | None = None,
    ) -> None:
        self.max_lines = max_lines
        self._lines: deque[ScoreLine] | list[ScoreLine] = (
            deque(maxlen=max_lines) if max_lines else []
        )
        self._active: deque[dict[str, bool]] | list[dict[str, bool]] = (
            deque(maxlen=max_lines) if max_lines else []
        )
        self._events: deque[Event] | list[Event] = deque(maxlen=max_lines) if max_lines else []
        self._on_update = on_update
        self._on_event = on_event_cb
        self.closed = False

    # --- Sink protocol ------------------------------------------------------------------
    def on_scores(self, line: ScoreLine, active: dict[str, bool]) -> None:
        self._lines.append(line)
        self._active.append(dict(active))
        if self._on_update is not None:
            self._on_update(line, active)

    def on_event(self, event: Event) -> None:
        self._events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    def close(self) -> None:
        self.closed = True

    # --- results ------------------------------------------------------------------------
    def recording(self) -> Recording:
        return Recording(list(self._lines), list(self._active), list(self._events))


def recording_from_dicts(rows: Iterable[dict]) -> Recording:
    """Rebuild a Recording from `scan --jsonl --scores` lines (dicts); unknown types skipped.

    A score line's ``active`` state is derived from the start/end events seen so far,
    so a plot can be made from saved JSON lines as well as from a live run.
    """
    rec = Recording()
    state: dict[str, bool] = {}
    for row in rows:
        kind = row.get("type")
        if kind == "scores":
            line = ScoreLine(
                window_start=float(row["window_start"]),
                window_end=float(row["window_end"]),
                level_dbfs=float(row["level_dbfs"]),
                scores={k: float(v) for k, v in row["scores"].items()},
            )
            rec.lines.append(line)
            rec.active.append({k: state.get(k, False) for k in line.scores})
        elif kind in ("start", "end"):
            ev = Event.from_dict(row)
            rec.events.append(ev)
            state[ev.trigger] = kind == "start"
    return rec
