"""MqttSink: events, states, scores and Home Assistant discovery over MQTT.

STUB: contract only, to be implemented (issue 4).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from listener.config import MqttConfig, TriggerConfig
from listener.events import Event, ScoreLine


class MqttSink:
    """A Sink that never blocks the audio path and never loses an event.

    - ``MqttSink(config, triggers, state_dir, model_id, on_enabled=None, hop_seconds=1.0)``
    - ``start()``: connect in the background (paho loop thread); returns at once even when the
      broker is down; reconnects with capped exponential backoff.
    - ``on_scores``/``on_event``/``close``: the Sink protocol. ``on_event`` writes the event to
      the SQLite spool (state_dir/spool.sqlite3) before publishing; removed on PUBACK.
    - ``publish_stats(stats)``: the JSON stats topic (the daemon calls it every 30 s).
    - ``update_triggers(triggers)``: after a config reload: discovery for new triggers, empty
      retained configs for removed ones.
    - ``enabled``: dict name -> bool, the runtime switches persisted in state_dir (they survive
      restarts); ``on_enabled(name, enabled)`` is called when a command arrives.
    - ``flush(timeout) -> bool``: wait (bounded) until the spool is empty.
    - ``close()``: flush briefly, publish availability offline, disconnect.
    """

    enabled: dict[str, bool]

    def __init__(
        self,
        config: MqttConfig,
        triggers: list[TriggerConfig],
        state_dir: Path,
        model_id: str,
        on_enabled: Callable[[str, bool], None] | None = None,
        hop_seconds: float = 1.0,
    ) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def on_scores(self, line: ScoreLine, active: dict[str, bool]) -> None:
        raise NotImplementedError

    def on_event(self, event: Event) -> None:
        raise NotImplementedError

    def publish_stats(self, stats: dict[str, Any]) -> None:
        raise NotImplementedError

    def update_triggers(self, triggers: list[TriggerConfig]) -> None:
        raise NotImplementedError

    def flush(self, timeout: float) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
