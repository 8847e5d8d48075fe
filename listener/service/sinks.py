"""Where the engine's output goes: one small interface for scan output, MQTT and `top`.

The engine calls every sink in order after each window: ``on_scores`` once per
scored window, ``on_event`` once per start/end. Sinks must not block: MQTT
spools to disk and publishes from its own network thread.
"""

from __future__ import annotations

from typing import Protocol

from listener.detect.events import Event, ScoreLine


class Sink(Protocol):
    def on_scores(self, line: ScoreLine, active: dict[str, bool]) -> None:
        """Latest per-trigger scores and on/off state, after every window (or gated hop)."""

    def on_event(self, event: Event) -> None:
        """A trigger turned on (type start) or off (type end)."""

    def close(self) -> None:
        """Flush and release resources; called once at shutdown."""
