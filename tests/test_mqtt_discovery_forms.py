"""Home Assistant discovery across versions of an install, on a real broker: moving
between the device and the per-entity form hands each entity over (Home Assistant's
``migrate_discovery``) and leaves no config of the other form retained; unique_ids stay
what an install first published; a device config drops components the documented way."""

from __future__ import annotations

import json
from pathlib import Path

from listener.mqtt.discovery_memory import MIGRATE, load_published
from listener.service.state_files import StateDir
from tests.fixtures_broker import Subscriber, mqtt_config
from tests.ha_schema import entity_configs
from tests.mqtt_driver import publisher

DEVICE_TOPIC = "homeassistant/device/testdev/config"


def run_once(broker, state_dir: Path, names: list[str], sub: Subscriber, form: str,
             expect: int) -> list:
    """Start a publisher with discovery ``form``, wait until it published ``expect``
    configs after the subscriber's messages so far, stop it; the messages it sent."""
    seen = len(sub.messages)
    sink = publisher(mqtt_config(broker, discovery={"form": form}), names, state_dir)
    sink.start()
    try:
        sub.wait_for(lambda ms: len([m for m in ms[seen:] if m.payload and m.payload != MIGRATE
                                     and m.topic.endswith("/config")]) >= expect, 10,
                     f"{expect} {form} configs")
    finally:
        sink.close()  # joins the worker: the step that published also saved the memory
    return sub.messages[seen:]


def retained(broker, mqtt_subscriber) -> dict[str, bytes]:
    """The retained discovery configs a newly started Home Assistant would read."""
    late = mqtt_subscriber(broker, "homeassistant/#", persistent=False)
    late.publish("homeassistant/zz-marker", "x")
    late.wait_topic("homeassistant/zz-marker")
    return {m.topic: m.payload for m in late.messages if m.retain}


def unique_ids(configs: dict[str, bytes]) -> dict[str, str]:
    out = {}
    for topic, payload in configs.items():
        for discovery_id, (_, cfg) in entity_configs(topic, json.loads(payload)).items():
            out[discovery_id] = cfg["unique_id"]
    return out


def test_switching_forms_hands_entities_over_without_duplicates(
    mosquitto, mqtt_subscriber, tmp_path
) -> None:
    sub = mqtt_subscriber(mosquitto, "homeassistant/#")
    per_entity = 4 + 6
    run_once(mosquitto, tmp_path, ["smoke"], sub, "entity", per_entity)
    old = retained(mosquitto, mqtt_subscriber)
    assert len(old) == per_entity and DEVICE_TOPIC not in old
    ids = unique_ids(old)

    sent = run_once(mosquitto, tmp_path, ["smoke"], sub, "device", 1)
    order = [(m.topic, "migrate" if m.payload == MIGRATE else "clear" if not m.payload
              else "config") for m in sent if m.topic.endswith("/config")]
    # every entity config is handed over, then the device config, then the old ones go
    assert order[:per_entity] == [(t, "migrate") for t in sorted(old)]
    assert order[per_entity] == (DEVICE_TOPIC, "config")
    assert sorted(order[per_entity + 1:]) == [(t, "clear") for t in sorted(old)]
    assert not any(m.retain for m in sent if m.payload == MIGRATE)
    now = retained(mosquitto, mqtt_subscriber)
    assert list(now) == [DEVICE_TOPIC]
    assert unique_ids(now) == ids  # same discovery ids, same unique_ids: same entities

    sent = run_once(mosquitto, tmp_path, ["smoke"], sub, "entity", per_entity)
    order = [(m.topic, "migrate" if m.payload == MIGRATE else "clear" if not m.payload
              else "config") for m in sent if m.topic.endswith("/config")]
    assert order[0] == (DEVICE_TOPIC, "migrate") and order[-1] == (DEVICE_TOPIC, "clear")
    back = retained(mosquitto, mqtt_subscriber)
    assert set(back) == set(old) and unique_ids(back) == ids


def test_an_existing_install_keeps_its_unique_ids_and_form(
    mosquitto, mqtt_subscriber, tmp_path
) -> None:
    sub = mqtt_subscriber(mosquitto, "homeassistant/#")
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    # what the previous version wrote: per-entity topics, no form, no id scheme
    old_topics = [f"homeassistant/{p}/testdev/smoke_{o}/config" for p, o in
                  [("binary_sensor", "sound"), ("event", "event"), ("sensor", "score"),
                   ("switch", "enabled")]]
    StateDir(old_dir).published_discovery.write_text(json.dumps({"topics": old_topics}))
    run_once(mosquitto, old_dir, ["smoke"], sub, "auto", 4 + 6)
    kept = retained(mosquitto, mqtt_subscriber)
    assert set(old_topics) <= set(kept) and DEVICE_TOPIC not in kept
    assert unique_ids(kept)["testdev smoke_sound"] == "testdev_smoke_sound"
    assert load_published(StateDir(old_dir).published_discovery).legacy_ids

    new_dir.mkdir()
    for _ in range(2):  # a new install, and the same one restarted
        run_once(mosquitto, new_dir, ["smoke"], sub, "auto", 1)
        config = retained(mosquitto, mqtt_subscriber)[DEVICE_TOPIC]
        assert unique_ids({DEVICE_TOPIC: config})["testdev smoke_sound"] == \
            "listener_testdev_smoke_sound"


def test_a_device_config_drops_components_the_documented_way(
    mosquitto, mqtt_subscriber, tmp_path
) -> None:
    sub = mqtt_subscriber(mosquitto, "homeassistant/#")
    run_once(mosquitto, tmp_path, ["a", "b"], sub, "device", 1)
    sent = run_once(mosquitto, tmp_path, ["a"], sub, "device", 2)
    first, second = (json.loads(m.payload) for m in sent if m.topic == DEVICE_TOPIC)
    # b's components listed with their platform only (Home Assistant deletes them) ...
    assert first["components"]["b_sound"] == {"platform": "binary_sensor"}
    assert first["components"]["b_enabled"] == {"platform": "switch"}
    assert not entity_configs(DEVICE_TOPIC, first).keys() & {"testdev b_sound"}
    # ... then the clean config, which is what stays retained
    assert not [c for c in second["components"] if c.startswith("b_")]
    assert json.loads(retained(mosquitto, mqtt_subscriber)[DEVICE_TOPIC]) == second
