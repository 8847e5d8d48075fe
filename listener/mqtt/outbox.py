"""What the MQTT worker has yet to publish, filled from any thread, taken in one go.

The pipeline thread adds results and stats, paho's thread says "connected" or "Home
Assistant is back", the main thread changes triggers; the publisher's worker takes
everything pending under one lock and publishes it outside it. Nothing here is a copy
of trigger state: it is a queue of messages (state changes in event order, scores and
level that moved enough, stats) plus the newest
detector result, from which the present state is read on every (re)connect.
Events are not here: they go through the spool (listener/mqtt/holdback.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from listener.config.schema import MqttConfig, TriggerConfig
from listener.detect.detector import DetectorResult

MAX_TRANSITIONS = 256  # state changes kept between two worker steps


@dataclass
class Pending:
    """One worker step's share: everything noted since the previous step."""

    new_connection: bool = False
    discovery: bool = False
    triggers: list[TriggerConfig] = field(default_factory=list)
    states: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # (active, enabled)
    transitions: list[tuple[str, bool]] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    level: float | None = None
    stats: dict[str, Any] | None = None


class Outbox:
    """Thread-safe pending messages; scores and level rate-limited by the config's deltas."""

    def __init__(self, config: MqttConfig, triggers: Sequence[TriggerConfig]) -> None:
        self.config = config
        self._lock = threading.Lock()  # never held while calling into paho
        self._triggers = list(triggers)
        self._latest: DetectorResult | None = None
        self._last_score: dict[str, float] = {}
        self._last_level: float | None = None
        self._connections = self._seen_connections = 0
        self._discovery_due: float | None = None
        self._next = Pending()

    def add_result(self, result: DetectorResult) -> None:
        """A detector result: its state changes, scores and level."""
        with self._lock:
            known = {t.name for t in self._triggers}
            nxt = self._next
            nxt.transitions += [(ev.trigger, ev.type == "start") for ev in result.events
                                if ev.trigger in known]
            del nxt.transitions[:-MAX_TRANSITIONS]
            self._latest = result
            if result.window is None:
                return
            for t in result.triggers:
                last = self._last_score.get(t.name)
                if t.name in known and (last is None
                                        or abs(t.score - last) > self.config.score_delta):
                    self._last_score[t.name] = nxt.scores[t.name] = t.score
            level = float(result.window.level_dbfs)
            if self._last_level is None or abs(level - self._last_level) > \
                    self.config.level_delta_db:
                self._last_level = nxt.level = level

    def add_stats(self, stats: dict[str, Any]) -> None:
        with self._lock:
            self._next.stats = stats

    def set_triggers(self, triggers: Sequence[TriggerConfig]) -> None:
        """After a reload: discovery is sent again (which clears removed triggers)."""
        with self._lock:
            old = {t.name for t in self._triggers}
            new = {t.name for t in triggers}
            self._triggers = list(triggers)
            for name in old - new:
                self._last_score.pop(name, None)
                self._next.scores.pop(name, None)
            self._discovery_due = time.monotonic()

    def connected(self) -> None:
        """A new connection: present state and discovery again, scores and level anew."""
        with self._lock:
            self._connections += 1
            self._last_score.clear()
            self._last_level = None
            self._discovery_due = time.monotonic()

    def discovery_after(self, delay: float) -> None:
        with self._lock:
            self._discovery_due = time.monotonic() + delay

    def seconds_to_discovery(self) -> float | None:
        with self._lock:
            due = self._discovery_due
        return None if due is None else max(0.0, due - time.monotonic())

    def take(self) -> Pending:
        """Everything pending, and the present state of every known trigger."""
        now = time.monotonic()
        with self._lock:
            taken, self._next = self._next, Pending()
            taken.new_connection = self._connections != self._seen_connections
            self._seen_connections = self._connections
            taken.discovery = self._discovery_due is not None and now >= self._discovery_due
            if taken.discovery:
                self._discovery_due = None
            taken.triggers = list(self._triggers)
            known = {t.name for t in self._triggers}
            if self._latest is not None:
                taken.states = {t.name: (t.active, t.enabled) for t in self._latest.triggers
                                if t.name in known}
        return taken
