"""Events: what a trigger turning on or off looks like to the outside world.

A start and its end share one ``id``. The JSON shape is stable: `listener scan`
prints it, MQTT publishes it (plus ``event_type``, which Home Assistant's event
entity requires) and the spool stores it, so scripts can rely on the keys.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

EventType = Literal["start", "end"]

#: the stream of a config with one top-level ``source:`` (listener/config/streams.py)
DEFAULT_STREAM = "default"


def new_event_id() -> str:
    """A unique, time-sortable-enough id (uuid4 hex; consumers dedupe by it)."""
    return uuid.uuid4().hex


def utc_iso(ts: float) -> str:
    """UNIX seconds -> UTC ISO-8601 with milliseconds and a Z suffix."""
    return (
        datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class Event:
    """One start or end of a trigger.

    ``window_start``/``window_end`` are seconds since the stream started (the
    window that caused the transition); ``time`` is the wall clock (UTC) of
    ``window_end``. ``match`` names the prompt text or example file that scored
    best. ``details`` carries the choices behind the decision (thresholds,
    margin, relative score, the settings in force) so every choice is visible.
    """

    type: EventType
    id: str
    trigger: str
    score: float
    peak_score: float
    match: str
    window_start: float
    window_end: float
    time: str
    model: str
    duration: float | None = None
    clip: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    stream: str = DEFAULT_STREAM  # which stream heard it (the config's stream name)

    @property
    def sound_start(self) -> float:
        """Estimated stream time the sound began (``details.sound_start``)."""
        return float(self.details["sound_start"])

    @property
    def sound_end(self) -> float | None:
        """Estimated stream time the sound ended (``details.sound_end``; ends only)."""
        value = self.details.get("sound_end")
        return None if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.type != "end":
            d.pop("duration")
        d["score"] = round(float(self.score), 4)
        d["peak_score"] = round(float(self.peak_score), 4)
        d["window_start"] = round(float(self.window_start), 3)
        d["window_end"] = round(float(self.window_end), 3)
        if d.get("duration") is not None:
            d["duration"] = round(float(d["duration"]), 3)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass(frozen=True)
class ScoreLine:
    """One window's per-trigger scores as a record (``scan --scores`` JSON, recordings)."""

    window_start: float
    window_end: float
    level_dbfs: float
    scores: dict[str, float]
    type: str = "scores"
    #: the tail's score (the newest ``tail_seconds`` alone) of the triggers it was scored for
    tail_scores: dict[str, float] = field(default_factory=dict)
    stream: str = DEFAULT_STREAM

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "type": "scores",
            "stream": self.stream,
            "window_start": round(self.window_start, 3),
            "window_end": round(self.window_end, 3),
            "level_dbfs": round(self.level_dbfs, 2),
            "scores": {k: round(float(v), 4) for k, v in self.scores.items()},
        }
        if self.tail_scores:
            d["tail_scores"] = {k: round(float(v), 4) for k, v in self.tail_scores.items()}
        return d
