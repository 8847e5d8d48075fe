"""The part of Home Assistant's MQTT discovery schema that listener's configs touch, as
data, and a validator that reads a config the way Home Assistant does.

Written (not copied) from Home Assistant core, homeassistant/components/mqtt/:
``abbreviations.py`` (ABBREVIATIONS, DEVICE_ABBREVIATIONS, ORIGIN_ABBREVIATIONS),
``schemas.py`` (MQTT_ENTITY_COMMON_SCHEMA, MQTT_ENTITY_DEVICE_INFO_SCHEMA,
MQTT_ORIGIN_INFO_SCHEMA, MQTT_AVAILABILITY_SCHEMA, DEVICE_DISCOVERY_SCHEMA,
SHARED_OPTIONS), ``config.py`` (MQTT_BASE_SCHEMA, MQTT_RO_SCHEMA, MQTT_RW_SCHEMA),
``binary_sensor.py``, ``sensor.py``, ``event.py``, ``switch.py`` (each platform's
DISCOVERY_SCHEMA) and ``discovery.py`` (abbreviation expansion, device discovery), and
the MQTT integration docs (https://www.home-assistant.io/integrations/mqtt/). Only the
options of the four platforms listener uses are listed. Home Assistant drops unknown
options silently (``extra=vol.REMOVE_EXTRA``), so an option that is not here would be
a setting that does nothing: the validator calls it an error.
"""

from __future__ import annotations

import re
from typing import Any

# key -> the type check Home Assistant's validator applies (cv.string, cv.boolean, ...)
STR, BOOL, INT, LIST_STR, QOS, TOPIC, SUB_TOPIC, TEMPLATE, URL = (
    "str", "bool", "int", "list[str]", "qos", "publish topic", "subscribe topic", "template",
    "url")

ABBREVIATIONS = {  # abbreviations.py ABBREVIATIONS, the subset for these platforms
    "avty": "availability", "avty_mode": "availability_mode", "avty_t": "availability_topic",
    "avty_tpl": "availability_template", "cmd_t": "command_topic", "cmps": "components",
    "dev": "device", "dev_cla": "device_class", "e": "encoding", "en": "enabled_by_default",
    "ent_cat": "entity_category", "ent_pic": "entity_picture", "evt_typ": "event_types",
    "exp_aft": "expire_after", "frc_upd": "force_update", "ic": "icon",
    "json_attr_t": "json_attributes_topic", "json_attr_tpl": "json_attributes_template",
    "o": "origin", "obj_id": "object_id", "off_dly": "off_delay", "opt": "optimistic",
    "p": "platform", "pl_avail": "payload_available", "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off", "pl_on": "payload_on", "ret": "retain",
    "stat_cla": "state_class", "stat_off": "state_off", "stat_on": "state_on",
    "stat_t": "state_topic", "sug_dsp_prc": "suggested_display_precision",
    "uniq_id": "unique_id", "unit_of_meas": "unit_of_measurement", "val_tpl": "value_template",
}
DEVICE_ABBREVIATIONS = {
    "cns": "connections", "cu": "configuration_url", "hw": "hw_version", "ids": "identifiers",
    "mdl": "model", "mdl_id": "model_id", "mf": "manufacturer", "sa": "suggested_area",
    "sn": "serial_number", "sw": "sw_version",
}
ORIGIN_ABBREVIATIONS = {"sw": "sw_version", "url": "support_url"}

# schemas.py MQTT_AVAILABILITY_SCHEMA + MQTT_ENTITY_COMMON_SCHEMA, config.py MQTT_BASE_SCHEMA
COMMON = {
    "availability_topic": SUB_TOPIC, "availability_template": TEMPLATE,
    "payload_available": STR, "payload_not_available": STR, "availability_mode": STR,
    "device": "device", "origin": "origin", "enabled_by_default": BOOL,
    "entity_category": STR, "entity_picture": URL, "icon": STR,
    "json_attributes_topic": SUB_TOPIC, "json_attributes_template": TEMPLATE,
    "object_id": STR, "unique_id": STR, "name": STR, "availability": "availability",
    "qos": QOS, "encoding": STR,
}
RO = {"state_topic": SUB_TOPIC, "value_template": TEMPLATE}  # MQTT_RO_SCHEMA
RW = {"command_topic": TOPIC, "optimistic": BOOL, "retain": BOOL,  # MQTT_RW_SCHEMA
      "state_topic": SUB_TOPIC}

PLATFORMS: dict[str, dict[str, Any]] = {
    "binary_sensor": {
        "required": {"state_topic"},
        "options": {**COMMON, **RO, "device_class": STR, "expire_after": INT,
                    "force_update": BOOL, "off_delay": INT, "payload_on": STR,
                    "payload_off": STR},
        "device_classes": {"sound", "problem", "running", "connectivity", "motion",
                           "occupancy", "safety", "smoke", "vibration", "moisture"},
    },
    "sensor": {
        "required": {"state_topic"},
        "options": {**COMMON, **RO, "device_class": STR, "expire_after": INT,
                    "force_update": BOOL, "last_reset_value_template": TEMPLATE,
                    "options": LIST_STR, "suggested_display_precision": INT,
                    "state_class": STR, "unit_of_measurement": STR},
        # a subset: the sensor platform has many more
        "device_classes": {"duration", "sound_pressure", "data_size", "timestamp", "enum"},
    },
    "event": {
        "required": {"state_topic", "event_types"},
        "options": {**COMMON, **RO, "device_class": STR, "event_types": LIST_STR},
        "device_classes": {"button", "doorbell", "motion"},
    },
    "switch": {
        "required": {"command_topic"},
        "options": {**COMMON, **RW, "payload_on": STR, "payload_off": STR, "state_on": STR,
                    "state_off": STR, "value_template": TEMPLATE, "device_class": STR,
                    "command_template": TEMPLATE},
        "device_classes": {"outlet", "switch"},
    },
}
STATE_CLASSES = {"measurement", "total", "total_increasing", "measurement_angle"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
DURATION_UNITS = {"d", "h", "min", "s", "ms", "µs"}  # sensor device_class duration
DEVICE_OPTIONS = {"identifiers": LIST_STR, "connections": "connections", "manufacturer": STR,
                  "model": STR, "model_id": STR, "name": STR, "hw_version": STR,
                  "serial_number": STR, "sw_version": STR, "via_device": STR,
                  "suggested_area": STR, "configuration_url": URL}
ORIGIN_OPTIONS = {"name": STR, "sw_version": STR, "support_url": URL}
# schemas.py SHARED_OPTIONS: what a device config passes down to its components
SHARED_OPTIONS = {"availability", "availability_mode", "availability_template",
                  "availability_topic", "command_topic", "payload_available",
                  "payload_not_available", "state_topic"}
DEVICE_CONFIG_OPTIONS = {"device", "origin", "components", "state_topic", "command_topic",
                         "qos", "encoding", "availability_topic", "availability_template",
                         "payload_available", "payload_not_available", "availability_mode",
                         "availability"}
ID = re.compile(r"[a-zA-Z0-9_-]+")  # node and object ids in discovery topics


def expand(payload: dict[str, Any], table: dict[str, str]) -> dict[str, Any]:
    """Abbreviated keys written out, as discovery.py does; both forms of one key is an
    error (Home Assistant would keep one of them silently)."""
    out = dict(payload)
    for short, full in table.items():
        if short in out and short != full:
            assert full not in payload, f"both {short!r} and {full!r}"
            out[full] = out.pop(short)
    return out


def _check_type(path: str, value: Any, kind: str) -> None:
    ok = {
        STR: lambda v: isinstance(v, str), BOOL: lambda v: isinstance(v, bool),
        INT: lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        LIST_STR: lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        QOS: lambda v: v in (0, 1, 2), TEMPLATE: lambda v: isinstance(v, str),
        URL: lambda v: isinstance(v, str) and re.match(r"^(https?|homeassistant)://", v),
        TOPIC: lambda v: isinstance(v, str) and v and not set(v) & {"+", "#"},
        SUB_TOPIC: lambda v: isinstance(v, str) and v and "#" not in v[:-1],
    }.get(kind, lambda v: True)
    assert ok(value), f"{path}: {value!r} is not a valid {kind}"


def check_block(path: str, block: Any, options: dict[str, str]) -> dict[str, Any]:
    assert isinstance(block, dict), f"{path}: not a mapping"
    unknown = block.keys() - options.keys()
    assert not unknown, f"{path}: Home Assistant ignores {sorted(unknown)}"
    for key, value in block.items():
        _check_type(f"{path}.{key}", value, options[key])
    return block


def check_device(path: str, device: Any) -> None:
    device = check_block(path, expand(device, DEVICE_ABBREVIATIONS), DEVICE_OPTIONS)
    assert device.get("identifiers") or device.get("connections"), \
        f"{path}: needs identifiers or connections"


def check_origin(path: str, origin: Any) -> None:
    origin = check_block(path, expand(origin, ORIGIN_ABBREVIATIONS), ORIGIN_OPTIONS)
    assert "name" in origin, f"{path}: origin needs a name"


def check_entity(path: str, platform: str, payload: dict[str, Any]) -> dict[str, Any]:
    """One entity config (per-entity form, or a device component with the device's shared
    options merged in): known options, required ones present, types and values."""
    assert platform in PLATFORMS, f"{path}: platform {platform!r} not used by listener"
    spec = PLATFORMS[platform]
    cfg = check_block(path, expand(payload, ABBREVIATIONS), spec["options"])
    missing = spec["required"] - cfg.keys()
    assert not missing, f"{path}: lacks {sorted(missing)}"
    if "device" in cfg:
        check_device(f"{path}.device", cfg["device"])
    if "origin" in cfg:
        check_origin(f"{path}.origin", cfg["origin"])
    if "device_class" in cfg:
        assert cfg["device_class"] in spec["device_classes"], f"{path}: device_class"
    if "state_class" in cfg:
        assert cfg["state_class"] in STATE_CLASSES, f"{path}: state_class"
    if "entity_category" in cfg:
        assert cfg["entity_category"] in ENTITY_CATEGORIES, f"{path}: entity_category"
    if platform == "sensor" and cfg.get("device_class") == "duration":
        assert cfg.get("unit_of_measurement") in DURATION_UNITS, f"{path}: duration unit"
    if platform == "event":
        assert cfg["event_types"], f"{path}: event_types is empty"
    return cfg


def entity_configs(topic: str, payload: dict[str, Any], prefix: str = "homeassistant"
                   ) -> dict[str, tuple[str, dict[str, Any]]]:
    """Validate one discovery message; its entities as discovery id -> (platform,
    config), the way discovery.py splits a device config into components."""
    parts = topic.split("/")
    assert topic.startswith(prefix + "/") and parts[-1] == "config", topic
    assert all(ID.fullmatch(p) for p in parts[len(prefix.split("/")) + 1:-1]), topic
    per_entity = len(parts) >= 5  # <prefix>/<platform>/<node>/<object>/config
    component = parts[-4] if per_entity else parts[-3]
    node = parts[-3] if per_entity else None
    if component != "device":
        cfg = check_entity(topic, component, payload)
        return {f"{node} {parts[-2]}": (component, cfg)}
    root = expand(payload, ABBREVIATIONS)
    unknown = root.keys() - DEVICE_CONFIG_OPTIONS
    assert not unknown, f"{topic}: device config ignores {sorted(unknown)}"
    for key in ("device", "origin", "components"):
        assert key in root, f"{topic}: a device config needs {key!r}"
    check_device(f"{topic}.device", root["device"])
    check_origin(f"{topic}.origin", root["origin"])
    out = {}
    for cid, comp in root["components"].items():
        assert ID.fullmatch(cid), f"{topic}: component id {cid!r}"
        comp = expand(comp, ABBREVIATIONS)
        platform = comp.pop("platform", None)
        assert platform, f"{topic}.components.{cid}: no platform"
        if not comp:  # platform only: a removal
            continue
        assert "unique_id" in comp, f"{topic}.components.{cid}: no unique_id"
        merged = {**{k: v for k, v in root.items() if k in SHARED_OPTIONS}, **comp}
        out[f"{parts[-2]} {cid}"] = (platform, check_entity(f"{topic}.components.{cid}",
                                                            platform, merged))
    return out
