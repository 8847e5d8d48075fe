"""Home Assistant MQTT discovery payloads, as pure functions.

Home Assistant creates entities from retained JSON configs published to
``<discovery_prefix>/<component>/<node_id>/<object_id>/config``. Building them here,
without a client, keeps them easy to test and to read: :func:`discovery_configs` maps
every config topic to its payload for one listener device. Removing an entity means
publishing an empty retained payload to its topic; :func:`load_published` and
:func:`save_published` remember which topics and triggers were published (a file in the
state directory, listener/service/state_files.py), so the entities and the retained
state of a trigger removed while the daemon was down are deleted at the next start.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from listener import __version__
from listener.config.schema import MqttConfig, TriggerConfig
from listener.files import atomic_write
from listener.mqtt.topics import availability_topic, level_topic, stats_topic, trigger_topic

ORIGIN_NAME = "listener"
# Where users report problems; shown by Home Assistant in the device's MQTT info.
SUPPORT_URL = "https://github.com/listener-project/listener"
MANUFACTURER = "listener"
_SOUND = "_sound"  # object id suffix of a trigger's binary_sensor


def device_block(cfg: MqttConfig, model_id: str) -> dict[str, Any]:
    dev: dict[str, Any] = {
        "identifiers": [f"listener_{cfg.device_id}"],
        "name": cfg.device_name,
        "manufacturer": MANUFACTURER,
        "model": f"listener ({model_id})",
        "sw_version": __version__,
    }
    if cfg.suggested_area:
        dev["suggested_area"] = cfg.suggested_area
    return dev


def origin_block() -> dict[str, Any]:
    return {"name": ORIGIN_NAME, "sw_version": __version__, "support_url": SUPPORT_URL}


def _config_topic(cfg: MqttConfig, component: str, object_id: str) -> str:
    return f"{cfg.discovery.prefix}/{component}/{cfg.device_id}/{object_id}/config"


def _common(cfg: MqttConfig, model_id: str, name: str, object_id: str) -> dict[str, Any]:
    return {
        "name": name,
        "unique_id": f"{cfg.device_id}_{object_id}",
        "availability_topic": availability_topic(cfg),
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device_block(cfg, model_id),
        "origin": origin_block(),
    }


def trigger_configs(
    cfg: MqttConfig, trigger: TriggerConfig, model_id: str
) -> dict[str, dict[str, Any]]:
    """The four entities of one trigger: binary_sensor, event, score sensor, enabled switch."""
    t = trigger.name
    label = trigger.display_name
    out: dict[str, dict[str, Any]] = {}

    oid = f"{t}{_SOUND}"
    out[_config_topic(cfg, "binary_sensor", oid)] = {
        **_common(cfg, model_id, label, oid),
        "state_topic": trigger_topic(cfg, t, "state"),
        "payload_on": "ON",
        "payload_off": "OFF",
        "device_class": "sound",
    }
    oid = f"{t}_event"
    out[_config_topic(cfg, "event", oid)] = {
        **_common(cfg, model_id, f"{label} event", oid),
        "state_topic": trigger_topic(cfg, t, "event"),
        "event_types": ["start", "end"],
    }
    oid = f"{t}_score"
    out[_config_topic(cfg, "sensor", oid)] = {
        **_common(cfg, model_id, f"{label} score", oid),
        "state_topic": trigger_topic(cfg, t, "score"),
        "state_class": "measurement",
        "suggested_display_precision": 3,
        "icon": "mdi:waveform",
    }
    oid = f"{t}_enabled"
    out[_config_topic(cfg, "switch", oid)] = {
        **_common(cfg, model_id, f"{label} enabled", oid),
        "state_topic": trigger_topic(cfg, t, "enabled"),
        "command_topic": trigger_topic(cfg, t, "enabled/set"),
        "payload_on": "ON",
        "payload_off": "OFF",
        "state_on": "ON",
        "state_off": "OFF",
        "entity_category": "config",
        "icon": "mdi:ear-hearing",
    }
    return out


def _diagnostic(cfg: MqttConfig, model_id: str, oid: str, name: str, state_topic: str,
                **keys: Any) -> tuple[str, dict[str, Any]]:
    """One device-level diagnostic sensor: its config topic and payload."""
    payload = {**_common(cfg, model_id, name, oid), "state_topic": state_topic, **keys,
               "entity_category": "diagnostic"}
    return _config_topic(cfg, "sensor", oid), payload


def device_configs(cfg: MqttConfig, model_id: str) -> dict[str, dict[str, Any]]:
    """Device-level diagnostic sensors: input level, inference time, skipped windows."""
    stats = stats_topic(cfg)
    return dict([
        _diagnostic(cfg, model_id, "level", "Sound level", level_topic(cfg),
                    unit_of_measurement="dBFS", state_class="measurement",
                    suggested_display_precision=1, icon="mdi:volume-high"),
        _diagnostic(cfg, model_id, "inference_time", "Inference time", stats,
                    value_template="{{ value_json.inference_ms }}", unit_of_measurement="ms",
                    device_class="duration", state_class="measurement",
                    suggested_display_precision=0),
        _diagnostic(cfg, model_id, "skipped_windows", "Skipped windows", stats,
                    value_template="{{ value_json.skipped_windows }}",
                    state_class="total_increasing", icon="mdi:skip-next"),
    ])


def discovery_configs(
    cfg: MqttConfig, triggers: Iterable[TriggerConfig], model_id: str
) -> dict[str, dict[str, Any]]:
    """Every config topic -> payload for this listener (empty when discovery is off)."""
    if not cfg.discovery.enabled:
        return {}
    out = device_configs(cfg, model_id)
    for trig in triggers:
        out.update(trigger_configs(cfg, trig, model_id))
    return out


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Published:
    """What an earlier run published: discovery config topics and trigger names."""

    topics: frozenset[str] = frozenset()
    triggers: frozenset[str] = frozenset()


def load_published(path: Path) -> Published:
    """What an earlier run published (empty when unknown or unreadable).

    Files written before the trigger names were remembered list only topics; the names
    are then read from the topics of the triggers' sound sensors.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        topics = frozenset(str(t) for t in data.get("topics", []))
        names = data.get("triggers")
    except (OSError, ValueError, AttributeError, TypeError):
        return Published()
    if isinstance(names, list):
        return Published(topics, frozenset(str(n) for n in names))
    return Published(topics, frozenset(filter(None, map(_sound_trigger, topics))))


def _sound_trigger(topic: str) -> str | None:
    """The trigger of a sound sensor's config topic (see :func:`trigger_configs`)."""
    parts = topic.split("/")
    if len(parts) >= 5 and parts[-4] == "binary_sensor" and parts[-2].endswith(_SOUND):
        return parts[-2][: -len(_SOUND)] or None
    return None


def save_published(path: Path, topics: Iterable[str], triggers: Iterable[str]) -> None:
    """Atomically remember the config topics and the triggers now published (0600: the
    trigger names say what the household listens for)."""
    data = {"topics": sorted(topics), "triggers": sorted(triggers)}
    atomic_write(path, json.dumps(data, indent=1), mode=0o600)
