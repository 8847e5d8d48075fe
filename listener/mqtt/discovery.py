"""Home Assistant MQTT discovery payloads, as pure functions.

Home Assistant creates entities from retained JSON configs. Two forms carry the same
entities (:class:`Entity`: a platform, an object id and the platform's options):

- **device** (HA >= 2024.11): one config at ``<prefix>/device/<device_id>/config``
  with the device, origin and availability once and every entity under ``components``,
  each tagged with its ``platform``;
- **entity** (any HA): one config per entity at
  ``<prefix>/<platform>/<device_id>/<object_id>/config``, each repeating the device.

Both forms give an entity the same discovery id in Home Assistant (``<device_id>
<object_id>``), which is what lets :mod:`listener.mqtt.discovery_memory` move an
install from one form to the other without losing its entities.

Entity unique_ids are ``listener_<device_id>_<object_id>``, so they cannot collide with
other MQTT devices; installs that published before the prefix existed keep their
``<device_id>_<object_id>`` ids (``legacy_ids``), since Home Assistant keys entities by
unique_id and a new one would orphan the old entity with its history and settings.

The device block is built per device (:class:`DeviceInfo`), so per-stream devices can
later get blocks of their own (with ``via_device``); ``configuration_url`` is set when
listener serves a web page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from listener import __version__
from listener.config.schema import MqttConfig, TriggerConfig
from listener.mqtt.topics import availability_topic, level_topic, stats_topic, trigger_topic

ORIGIN_NAME = "listener"
# Where users report problems; shown by Home Assistant in the device's MQTT info.
SUPPORT_URL = "https://github.com/listener-project/listener"
MANUFACTURER = "listener"
MODEL = "listener sound event detector"
SOUND = "_sound"  # object id suffix of a trigger's binary_sensor
DEVICE_FORM, ENTITY_FORM = "device", "entity"
PLATFORMS = frozenset({"binary_sensor", "event", "sensor", "switch"})  # all listener uses
# Delivery matters for what changes state or carries a command: Home Assistant
# subscribes to these topics at QoS 1, so the broker re-sends what a flaky link lost.
DELIVERY_QOS = 1


@dataclass(frozen=True)
class DeviceInfo:
    """What Home Assistant shows about the device besides its entities."""

    model_id: str  # the sound model's id (clap-int8, ...)
    configuration_url: str | None = None  # listener's web page, when it serves one
    via_device: str | None = None  # a stream's device: the identifier of its host device


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity: its platform, object id and platform options."""

    platform: str
    object_id: str
    options: dict[str, Any] = field(default_factory=dict)


def device_block(cfg: MqttConfig, info: DeviceInfo, model_id: bool = True) -> dict[str, Any]:
    """The device as Home Assistant registers it. ``model_id`` is left out of per-entity
    configs: that form is for Home Assistant older than 2024.11, and one older than
    2024.8 rejects a whole config whose device block has a key it does not know."""
    dev: dict[str, Any] = {
        "identifiers": [device_identifier(cfg)],
        "name": cfg.device_name,
        "manufacturer": MANUFACTURER,
        "model": MODEL if model_id else f"{MODEL} ({info.model_id})",
        "sw_version": __version__,
    }
    if model_id:
        dev["model_id"] = info.model_id
    if cfg.suggested_area:
        dev["suggested_area"] = cfg.suggested_area
    if info.configuration_url:
        dev["configuration_url"] = info.configuration_url
    if info.via_device:
        dev["via_device"] = info.via_device
    return dev


def device_identifier(cfg: MqttConfig) -> str:
    """What Home Assistant knows the device by (a stream device's ``via_device``)."""
    return f"listener_{cfg.device_id}"


def origin_block() -> dict[str, Any]:
    return {"name": ORIGIN_NAME, "sw_version": __version__, "support_url": SUPPORT_URL}


def availability(cfg: MqttConfig) -> dict[str, Any]:
    return {"availability_topic": availability_topic(cfg), "payload_available": "online",
            "payload_not_available": "offline"}


def unique_id(cfg: MqttConfig, object_id: str, legacy_ids: bool = False) -> str:
    prefix = "" if legacy_ids else "listener_"
    return f"{prefix}{cfg.device_id}_{object_id}"


def trigger_entities(trigger: TriggerConfig) -> list[Entity]:
    """The four entities of one trigger (object ids as in :func:`entity_topic`)."""
    t, label = trigger.name, trigger.display_name
    return [
        Entity("binary_sensor", f"{t}{SOUND}", {
            "name": label, "state_topic": f"{t}/state", "payload_on": "ON",
            "payload_off": "OFF", "device_class": "sound", "qos": DELIVERY_QOS}),
        Entity("event", f"{t}_event", {
            "name": f"{label} event", "state_topic": f"{t}/event",
            "event_types": ["start", "end"], "qos": DELIVERY_QOS}),
        # about one change a second: off by default so it does not fill the recorder
        Entity("sensor", f"{t}_score", {
            "name": f"{label} score", "state_topic": f"{t}/score",
            "state_class": "measurement", "suggested_display_precision": 3,
            "icon": "mdi:waveform", "enabled_by_default": False}),
        Entity("switch", f"{t}_enabled", {
            "name": f"{label} enabled", "state_topic": f"{t}/enabled",
            "command_topic": f"{t}/enabled/set", "payload_on": "ON", "payload_off": "OFF",
            "state_on": "ON", "state_off": "OFF", "entity_category": "config",
            "icon": "mdi:ear-hearing", "qos": DELIVERY_QOS}),
    ]


def _stat(object_id: str, name: str, key: str, **options: Any) -> Entity:
    return Entity("sensor", object_id, {
        "name": name, "state_topic": "@stats",
        "value_template": f"{{{{ value_json.{key} }}}}", "entity_category": "diagnostic",
        **options})


def device_entities() -> list[Entity]:
    """Device-level diagnostic sensors: input level and the ``stats`` figures."""
    return [
        Entity("sensor", "level", {
            "name": "Sound level", "state_topic": "@level", "unit_of_measurement": "dBFS",
            "state_class": "measurement", "suggested_display_precision": 1,
            "icon": "mdi:volume-high", "entity_category": "diagnostic",
            "enabled_by_default": False}),
        _stat("inference_time", "Inference time", "inference_ms", unit_of_measurement="ms",
              device_class="duration", state_class="measurement",
              suggested_display_precision=0),
        _stat("skipped_windows", "Skipped windows", "skipped_windows",
              state_class="total_increasing", icon="mdi:skip-next"),
        _stat("real_time_factor", "Real-time factor", "real_time_factor",
              state_class="measurement", suggested_display_precision=3, icon="mdi:speedometer"),
        _stat("spool_depth", "Undelivered events", "spool_depth", state_class="measurement",
              icon="mdi:tray-full"),
        _stat("uptime", "Uptime", "uptime_s", unit_of_measurement="s", device_class="duration",
              suggested_display_precision=0, icon="mdi:timer-outline"),
    ]


def connectivity_entity() -> Entity:
    """A stream device's ``connectivity``: is its audio arriving (from its stats)."""
    return Entity("binary_sensor", "connectivity", {
        "name": "Audio", "state_topic": "@stats", "device_class": "connectivity",
        "value_template": "{{ 'ON' if value_json.audio_arriving else 'OFF' }}",
        "payload_on": "ON", "payload_off": "OFF", "entity_category": "diagnostic"})


def entities(cfg: MqttConfig, triggers: Iterable[TriggerConfig],
             legacy_ids: bool = False, stream: bool = False) -> list[Entity]:
    """Every entity of this listener (``stream``: of a stream's device), topics resolved
    and unique_ids set."""
    out = device_entities() + ([connectivity_entity()] if stream else [])
    for trig in triggers:
        out += trigger_entities(trig)
    return [Entity(e.platform, e.object_id, {
        **_resolve_topics(cfg, e.options), "unique_id": unique_id(cfg, e.object_id, legacy_ids)})
        for e in out]


def _resolve_topics(cfg: MqttConfig, options: dict[str, Any]) -> dict[str, Any]:
    """Topic options are written relative (``<trigger>/<leaf>``, ``@level``, ``@stats``)."""
    named = {"@level": level_topic(cfg), "@stats": stats_topic(cfg)}
    out = dict(options)
    for key in ("state_topic", "command_topic"):
        value = out.get(key)
        if value is None:
            continue
        if value in named:
            out[key] = named[value]
        else:
            trigger, _, leaf = value.partition("/")
            out[key] = trigger_topic(cfg, trigger, leaf)
    return out


def entity_topic(cfg: MqttConfig, platform: str, object_id: str) -> str:
    return f"{cfg.discovery.prefix}/{platform}/{cfg.device_id}/{object_id}/config"


def device_topic(cfg: MqttConfig) -> str:
    return f"{cfg.discovery.prefix}/device/{cfg.device_id}/config"


def entity_form(cfg: MqttConfig, ents: Iterable[Entity], info: DeviceInfo
                ) -> dict[str, dict[str, Any]]:
    """One config per entity: config topic -> payload."""
    shared = {**availability(cfg), "device": device_block(cfg, info, model_id=False),
              "origin": origin_block()}
    return {entity_topic(cfg, e.platform, e.object_id): {**e.options, **shared} for e in ents}


def device_form(cfg: MqttConfig, ents: Iterable[Entity], info: DeviceInfo,
                removed: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """One config for the device: topic -> payload. ``removed`` (object id -> platform)
    are listed with their platform only, which is how Home Assistant deletes a component
    of a device config."""
    components: dict[str, dict[str, Any]] = {
        oid: {"platform": platform} for oid, platform in (removed or {}).items()}
    for e in ents:
        components[e.object_id] = {"platform": e.platform, **e.options}
    payload = {"device": device_block(cfg, info), "origin": origin_block(),
               **availability(cfg), "components": components}
    return {device_topic(cfg): payload}


def components_of(ents: Iterable[Entity]) -> dict[str, str]:
    """Object id -> platform: what a device config lists (remembered between runs)."""
    return {e.object_id: e.platform for e in ents}


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
