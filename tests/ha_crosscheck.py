"""Check listener's discovery payloads and tests/ha_schema.py with Home Assistant's own
code (not part of the test suite: it needs a Python with ``homeassistant`` installed;
script/check-ha sets one up and runs both halves).

    python -m tests.ha_crosscheck dump OUT.json     # listener's python: the payloads
    HA_PYTHON tests/ha_crosscheck.py check OUT.json  # HA's python: validate them

``check`` runs each payload through the steps of homeassistant/components/mqtt/
discovery.py (abbreviations, DEVICE_DISCOVERY_SCHEMA, shared options) and each
platform's DISCOVERY_SCHEMA, reports options Home Assistant would drop silently, and
compares tests/ha_schema.py's abbreviation and option tables with Home Assistant's.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def dump(out: str) -> None:
    from listener.config.schema import MqttConfig, TriggerConfig
    from listener.mqtt.discovery import DeviceInfo
    from listener.mqtt.discovery_memory import Published, next_discovery

    triggers = [TriggerConfig(name="smoke", prompts=["a smoke alarm"]),
                TriggerConfig(name="dog-bark", prompts=["a dog barking"])]
    info = DeviceInfo("clap-htsat-int8", configuration_url="http://pi.local:8080/")
    messages: list[list[Any]] = []
    for form in ("device", "entity"):
        cfg = MqttConfig(device_id="kitchen", suggested_area="Kitchen",
                         discovery={"form": form})
        sent, now = next_discovery(cfg, triggers, info, Published())
        dropped, _ = next_discovery(cfg, triggers[:1], info, now)  # a trigger removed
        messages += [[m.topic, m.payload.decode()] for m in sent + dropped if m.payload]
    Path(out).write_text(json.dumps(messages, indent=1))


def check(path: str) -> int:
    import homeassistant.helpers.frame as frame
    from homeassistant.components.mqtt import binary_sensor, event, sensor, switch
    from homeassistant.components.mqtt import discovery as ha
    from homeassistant.components.mqtt.schemas import DEVICE_DISCOVERY_SCHEMA, SHARED_OPTIONS
    from homeassistant.const import __version__

    frame.report_usage = lambda *a, **k: None  # templates validated without a running hass
    schemas = {"binary_sensor": binary_sensor.DISCOVERY_SCHEMA, "sensor": sensor.DISCOVERY_SCHEMA,
               "event": event.DISCOVERY_SCHEMA, "switch": switch.DISCOVERY_SCHEMA}
    problems: list[str] = []

    def entity(name: str, platform: str, cfg: dict[str, Any]) -> None:
        try:
            dropped = set(cfg) - set(schemas[platform](dict(cfg)))
        except Exception as exc:  # vol.Invalid and friends: the config is rejected
            problems.append(f"{name}: rejected: {exc}")
            return
        if dropped:
            problems.append(f"{name}: Home Assistant drops {sorted(dropped)}")

    checked = 0
    for topic, text in json.loads(Path(path).read_text()):
        payload = ha.MQTTDiscoveryPayload(json.loads(text))
        ha._replace_all_abbreviations(payload)
        platform = topic.split("/")[1]
        if platform != "device":
            entity(topic, platform, dict(payload))
            checked += 1
            continue
        DEVICE_DISCOVERY_SCHEMA(dict(payload))
        for cid, comp in payload["components"].items():
            comp = dict(comp)
            platform = comp.pop("platform")
            if comp:  # a platform alone is a removal
                shared = {k: payload[k] for k in SHARED_OPTIONS if k in payload}
                entity(f"{topic} {cid}", platform, {**shared, **comp,
                       "device": payload["device"], "origin": payload["origin"]})
                checked += 1
    problems += _tables_differ(schemas)
    print(f"Home Assistant {__version__}: {checked} entity configs checked")
    print("\n".join(problems) or "no problems")
    return 1 if problems else 0


def _tables_differ(schemas: dict[str, Any]) -> list[str]:
    """tests/ha_schema.py's tables against Home Assistant's."""
    from homeassistant.components.mqtt import abbreviations as abbr

    spec = importlib.util.spec_from_file_location("ha_schema", HERE / "ha_schema.py")
    assert spec is not None and spec.loader is not None
    ours = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ours)
    out = []
    for name in ("ABBREVIATIONS", "DEVICE_ABBREVIATIONS", "ORIGIN_ABBREVIATIONS"):
        theirs = getattr(abbr, name)
        out += [f"{name}[{k!r}]: ours {v!r}, Home Assistant {theirs.get(k)!r}"
                for k, v in getattr(ours, name).items() if theirs.get(k) != v]
    for platform, schema in schemas.items():
        while not isinstance(getattr(schema, "schema", None), dict):
            schema = schema.validators[0]
        theirs = {str(k) for k in schema.schema}
        mine = set(ours.PLATFORMS[platform]["options"])
        if mine != theirs:
            out.append(f"{platform} options: only ours {sorted(mine - theirs)}, "
                       f"only Home Assistant's {sorted(theirs - mine)}")
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["dump"]:
        dump(sys.argv[2])
    else:
        sys.exit(check(sys.argv[2]))
