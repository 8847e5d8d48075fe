"""Several streams on MQTT: one Home Assistant device per named stream, below the host's.

The host device (``<topic_prefix>/<device_id>``) keeps its diagnostic sensors (the
whole process's stats); each named stream is a device of its own, ``via_device`` the
host, with its triggers' entities, a ``connectivity`` sensor (audio arriving) and its
own diagnostics, publishing below ``<topic_prefix>/<device_id>/<stream>``. Each device is
one :class:`MqttPublisher` (its own connection, last will, spool and discovery memory),
so everything a publisher guarantees (nothing lost, state on every reconnect, removed
triggers cleared) holds per stream unchanged; the price is one broker connection per
stream, which a broker does not notice at the numbers of streams one host can score.

:class:`MqttGroup` looks like one publisher to the daemon: results go to the publisher
of their stream, stats to every device (each stream its own part of them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from listener.config.schema import Config, MqttConfig, TriggerConfig
from listener.config.streams import Stream, streams_of
from listener.detect.detector import DetectorResult
from listener.logs import get_logger
from listener.mqtt.discovery import device_identifier
from listener.mqtt.publisher import MqttPublisher, OnCommand
from listener.mqtt.topics import base_topic
from listener.service.state_files import StateDir
from listener.service.switches import switch_key

log = get_logger("listener.mqtt")


def make_mqtt(config: Config, model_id: str, state: StateDir, on_command: OnCommand,
              configuration_url: str | None) -> MqttPublisher | MqttGroup:
    """The daemon's MQTT sink: one publisher for the single-source form (topics and
    entities as before streams existed), else the host's plus one per named stream,
    whose commands reach ``on_command`` with the (stream, trigger) switch key."""
    if not config.streams:
        return MqttPublisher(config.mqtt, config.triggers, model_id, state.spool,
                             state.published_discovery, on_command=on_command,
                             configuration_url=configuration_url)

    def for_stream(stream: str) -> OnCommand:
        return lambda trigger, command, payload, topic: on_command(
            switch_key(stream, trigger), command, payload, topic)

    return MqttGroup(config.mqtt, streams_of(config), config.triggers, model_id, state,
                     for_stream, configuration_url=configuration_url)


def stream_mqtt_config(cfg: MqttConfig, stream: Stream) -> MqttConfig:
    """The MQTT settings of a stream's device: its own ids (``<device_id>_<stream>``, so
    two hosts with a stream of the same name stay two devices), name, area, client id,
    and topics below the host's base."""
    sub = cfg.model_copy(update={
        "device_id": f"{cfg.device_id}_{stream.name}", "device_name": stream.label,
        "suggested_area": stream.suggested_area,
        "client_id": f"{cfg.client_id}-{stream.name}" if cfg.client_id else None})
    sub._topic_base = f"{base_topic(cfg)}/{stream.name}"
    return sub


class MqttGroup:
    """The host's publisher plus one per named stream, with the publisher's interface."""

    def __init__(self, cfg: MqttConfig, streams: Sequence[Stream],
                 triggers: Sequence[TriggerConfig], model_id: str, state: StateDir,
                 on_command: Callable[[str], OnCommand],
                 configuration_url: str | None = None) -> None:
        """``on_command(stream)`` is the command handler of that stream's device."""
        self.host = MqttPublisher(cfg, [], model_id, state.spool, state.published_discovery,
                                  configuration_url=configuration_url)
        self.streams = {s.name: MqttPublisher(
            stream_mqtt_config(cfg, s), [t for t in triggers if t.name in s.triggers],
            model_id, state.stream_spool(s.name), state.stream_published_discovery(s.name),
            on_command=on_command(s.name), configuration_url=configuration_url,
            via_device=device_identifier(cfg)) for s in streams}
        self._stream_triggers = {s.name: s.triggers for s in streams}

    @property
    def publishers(self) -> list[MqttPublisher]:
        return [self.host, *self.streams.values()]

    @property
    def connected(self) -> bool:
        return all(p.connected for p in self.publishers)

    def start(self) -> None:
        for p in self.publishers:
            p.start()

    def on_result(self, result: DetectorResult) -> None:
        pub = self.streams.get(result.stream)
        if pub is not None:
            pub.on_result(result)
        elif result.events:
            log.warning("events of an unknown stream are not published",
                        stream=result.stream, events=len(result.events))

    def publish_stats(self, stats: dict[str, Any]) -> None:
        """``stats["streams"]``: each stream's own figures, for its device."""
        per_stream = stats.get("streams") or {}
        self.host.publish_stats({k: v for k, v in stats.items() if k != "streams"})
        for name, pub in self.streams.items():
            if name in per_stream:
                pub.publish_stats(per_stream[name])

    def update_triggers(self, triggers: Sequence[TriggerConfig]) -> None:
        for name, pub in self.streams.items():
            names = self._stream_triggers[name]
            pub.update_triggers([t for t in triggers if t.name in names])

    def flush(self, timeout: float) -> bool:
        """Every device's spool delivered, all within ``timeout`` together."""
        deadline = time.monotonic() + timeout
        done = True
        for p in self.publishers:
            done = p.flush(max(0.0, deadline - time.monotonic())) and done
        return done

    def close(self) -> None:
        for p in self.publishers:
            p.close()
