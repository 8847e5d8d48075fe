"""Home Assistant MQTT discovery payloads, as pure functions.

Home Assistant creates entities from retained JSON configs published to
``<discovery_prefix>/<component>/<node_id>/<object_id>/config``. Building them here,
without a client, keeps them easy to test and to read: :func:`discovery_configs` maps
every config topic to its payload for one listener device. Removing an entity means
publishing an empty retained payload to its topic; :func:`load_published` and
:func:`save_published` remember which topics were published (in the state directory),
so entities of a trigger removed while the daemon was down are deleted at the next start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from listener import __version__
from listener.config.schema import MqttConfig, TriggerConfig

ORIGIN_NAME = "listener"
# Where users report problems; shown by Home Assistant in the device's MQTT info.
SUPPORT_URL = "https://github.com/listener-project/listener"
MANUFACTURER = "listener"

# Keys every config carries, and the keys each component type needs on top.
COMMON_KEYS = ("name", "unique_id", "availability_topic", "payload_available",
               "payload_not_available", "device", "origin")
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "binary_sensor": ("state_topic", "device_class", "payload_on", "payload_off"),
    "event": ("state_topic", "event_types"),
    "sensor": ("state_topic",),
    "switch": ("state_topic", "command_topic", "payload_on", "payload_off"),
}

PUBLISHED_FILE = "mqtt_discovery.json"


def base_topic(cfg: MqttConfig) -> str:
    """``<topic_prefix>/<device_id>``: every listener topic lives below it."""
    return f"{cfg.topic_prefix}/{cfg.device_id}"


def availability_topic(cfg: MqttConfig) -> str:
    return f"{base_topic(cfg)}/availability"


def trigger_topic(cfg: MqttConfig, trigger: str, leaf: str) -> str:
    """``<base>/<trigger>/<leaf>`` for state, event, score, enabled, enabled/set."""
    return f"{base_topic(cfg)}/{trigger}/{leaf}"


def status_topic(cfg: MqttConfig) -> str:
    """Where Home Assistant announces ``online`` after it (re)starts."""
    return f"{cfg.discovery.prefix}/status"


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

    oid = f"{t}_sound"
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


def device_configs(cfg: MqttConfig, model_id: str) -> dict[str, dict[str, Any]]:
    """Device-level diagnostic sensors: input level, inference time, skipped windows."""
    base = base_topic(cfg)
    out: dict[str, dict[str, Any]] = {}
    oid = "level"
    out[_config_topic(cfg, "sensor", oid)] = {
        **_common(cfg, model_id, "Sound level", oid),
        "state_topic": f"{base}/level",
        "unit_of_measurement": "dBFS",
        "state_class": "measurement",
        "suggested_display_precision": 1,
        "entity_category": "diagnostic",
        "icon": "mdi:volume-high",
    }
    oid = "inference_time"
    out[_config_topic(cfg, "sensor", oid)] = {
        **_common(cfg, model_id, "Inference time", oid),
        "state_topic": f"{base}/stats",
        "value_template": "{{ value_json.inference_ms }}",
        "unit_of_measurement": "ms",
        "device_class": "duration",
        "state_class": "measurement",
        "suggested_display_precision": 0,
        "entity_category": "diagnostic",
    }
    oid = "skipped_windows"
    out[_config_topic(cfg, "sensor", oid)] = {
        **_common(cfg, model_id, "Skipped windows", oid),
        "state_topic": f"{base}/stats",
        "value_template": "{{ value_json.skipped_windows }}",
        "state_class": "total_increasing",
        "entity_category": "diagnostic",
        "icon": "mdi:skip-next",
    }
    return out


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


def component_of(topic: str) -> str:
    """``homeassistant/sensor/dev/obj/config`` -> ``sensor``."""
    return topic.split("/")[-4]


def missing_keys(topic: str, payload: dict[str, Any]) -> list[str]:
    """Required keys absent from a config payload (empty list = complete)."""
    need = (*COMMON_KEYS, *REQUIRED_KEYS.get(component_of(topic), ()))
    return [k for k in need if k not in payload]


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def load_published(state_dir: Path) -> set[str]:
    """Config topics published by an earlier run (empty when unknown or unreadable)."""
    try:
        data = json.loads((state_dir / PUBLISHED_FILE).read_text(encoding="utf-8"))
        return {str(t) for t in data.get("topics", [])}
    except (OSError, ValueError, AttributeError):
        return set()


def save_published(state_dir: Path, topics: Iterable[str]) -> None:
    """Atomically remember the config topics now published."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / PUBLISHED_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"topics": sorted(topics)}, indent=1), encoding="utf-8")
    os.replace(tmp, path)
