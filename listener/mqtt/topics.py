"""Every MQTT topic listener uses, in one place.

``<base>`` = ``<topic_prefix>/<device_id>``:

- ``<base>/availability``: ``online``/``offline`` (retained; the last will says offline)
- ``<base>/<trigger>/state``: ``ON``/``OFF`` (retained): is the sound happening now
- ``<base>/<trigger>/event``: JSON start/end events (QoS 1, from the durable spool)
- ``<base>/<trigger>/score``: the latest score, rate-limited
- ``<base>/<trigger>/enabled``: ``ON``/``OFF`` (retained); ``.../enabled/set`` commands it
- ``<base>/level``, ``<base>/stats``: input level (dBFS), JSON stats (retained)
- ``<discovery prefix>/status``: Home Assistant's ``online`` after it (re)starts

With ``streams:``, each stream is a device of its own whose ``<base>`` is
``<topic_prefix>/<device_id>/<stream>``: ``<base>/<trigger>/state`` and so on, plus its
``availability`` and ``stats``; the host device keeps ``<topic_prefix>/<device_id>``.
"""

from __future__ import annotations

from listener.config.schema import MqttConfig

#: trigger commands listened to, as ``<base>/<trigger>/<command>/set``
COMMANDS = ("enabled",)


def base_topic(cfg: MqttConfig) -> str:
    """``<topic_prefix>/<device_id>``: every listener topic lives below it; a named
    stream's device: ``<topic_prefix>/<device_id>/<stream>`` (listener/mqtt/streams.py)."""
    return cfg._topic_base or f"{cfg.topic_prefix}/{cfg.device_id}"


def availability_topic(cfg: MqttConfig) -> str:
    return f"{base_topic(cfg)}/availability"


def trigger_topic(cfg: MqttConfig, trigger: str, leaf: str) -> str:
    """``<base>/<trigger>/<leaf>`` for state, event, score, enabled, enabled/set."""
    return f"{base_topic(cfg)}/{trigger}/{leaf}"


def level_topic(cfg: MqttConfig) -> str:
    return f"{base_topic(cfg)}/level"


def stats_topic(cfg: MqttConfig) -> str:
    return f"{base_topic(cfg)}/stats"


def status_topic(cfg: MqttConfig) -> str:
    """Where Home Assistant announces ``online`` after it (re)starts."""
    return f"{cfg.discovery.prefix}/status"


def command_subscriptions(cfg: MqttConfig) -> list[str]:
    """Topic filters for every trigger command (``<base>/+/<command>/set``)."""
    return [trigger_topic(cfg, "+", f"{c}/set") for c in COMMANDS]


def parse_command(cfg: MqttConfig, topic: str) -> tuple[str, str] | None:
    """``<base>/<trigger>/<command>/set`` -> (trigger, command); None for other topics."""
    prefix = base_topic(cfg) + "/"
    if not (topic.startswith(prefix) and topic.endswith("/set")):
        return None
    trigger, _, command = topic[len(prefix) : -len("/set")].rpartition("/")
    if not trigger or command not in COMMANDS:
        return None
    return trigger, command
