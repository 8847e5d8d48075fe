"""Home Assistant discovery: complete configs, resent when HA restarts (logged once),
removed triggers deleted (also their retained state, also across a restart)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from listener.config.schema import MqttConfig
from listener.mqtt.discovery import PLATFORMS, DeviceInfo, entities
from listener.mqtt.discovery_memory import Published, load_published, next_discovery
from tests.fixtures_broker import mqtt_config, wait_until
from tests.ha_schema import ABBREVIATIONS, entity_configs
from tests.ha_schema import PLATFORMS as HA_PLATFORMS
from tests.mqtt_driver import publisher, started, trigger

ENTITY = {"discovery": {"form": "entity"}}  # one config per entity: countable topics


def configs_of(cfg: MqttConfig, names: list[str], legacy_ids: bool = False
               ) -> dict[str, dict]:
    """What a first publication sends: config topic -> payload."""
    before = Published(legacy_ids=legacy_ids, form="entity" if legacy_ids else None)
    messages, _ = next_discovery(cfg, [trigger(n) for n in names], DeviceInfo("clap-int8"),
                                 before)
    return {m.topic: json.loads(m.payload) for m in messages if m.payload}


def check_config(topic: str, cfg: dict) -> dict[str, tuple[str, dict]]:
    """Home Assistant's view of one config (tests/ha_schema.py), and listener's shape."""
    found = entity_configs(topic, cfg)
    assert cfg["device"]["identifiers"] == ["listener_testdev"]
    assert cfg["origin"]["name"] == "listener"
    for _, ent in found.values():
        assert ent["availability_topic"] == "listener/testdev/availability"
    return found


def test_payloads_are_what_home_assistant_accepts() -> None:
    cfg = MqttConfig(device_id="testdev", suggested_area="Kitchen")
    ents: dict[str, tuple[str, dict]] = {}
    for topic, payload in configs_of(cfg, ["smoke", "dog-bark"]).items():
        ents.update(check_config(topic, payload))
    per_entity = configs_of(MqttConfig(device_id="testdev", **ENTITY), ["smoke", "dog-bark"])
    assert len(per_entity) == len(ents) == 2 * 4 + 6
    flat: dict[str, tuple[str, dict]] = {}
    for topic, payload in per_entity.items():
        flat.update(check_config(topic, payload))
    # both forms give the same entities under the same discovery ids
    assert {k: (p, {o: v for o, v in c.items() if o not in ("device", "origin")})
            for k, (p, c) in flat.items()} == ents
    ids = [c["unique_id"] for _, c in ents.values()]
    assert len(set(ids)) == len(ids) and all(i.startswith("listener_testdev_") for i in ids)
    by_id = {k.split(" ")[1]: v for k, v in ents.items()}
    platform, sound = by_id["smoke_sound"]
    assert platform == "binary_sensor" and sound["device_class"] == "sound"
    assert sound["state_topic"] == "listener/testdev/smoke/state"
    platform, event = by_id["smoke_event"]
    assert platform == "event" and event["event_types"] == ["start", "end"]
    assert event["state_topic"] == "listener/testdev/smoke/event"
    platform, switch = by_id["dog-bark_enabled"]
    assert platform == "switch"
    assert switch["command_topic"] == "listener/testdev/dog-bark/enabled/set"
    assert switch["state_topic"] == "listener/testdev/dog-bark/enabled"
    # delivery matters for state, events and commands: Home Assistant subscribes at QoS 1
    assert sound["qos"] == event["qos"] == switch["qos"] == 1
    # score and level change about once a second: created disabled, out of the recorder
    assert by_id["smoke_score"][1]["state_topic"] == "listener/testdev/smoke/score"
    for noisy in ("smoke_score", "dog-bark_score", "level"):
        assert by_id[noisy][1]["enabled_by_default"] is False
    assert by_id["level"][1]["unit_of_measurement"] == "dBFS"
    stats = {"inference_time": "inference_ms", "skipped_windows": "skipped_windows",
             "spool_depth": "spool_depth", "uptime": "uptime_s",
             "real_time_factor": "real_time_factor"}
    for oid, key in stats.items():
        platform, sensor = by_id[oid]
        assert sensor["state_topic"] == "listener/testdev/stats"
        assert sensor["value_template"] == f"{{{{ value_json.{key} }}}}"
        assert sensor["entity_category"] == "diagnostic"
        assert sensor.get("enabled_by_default", True)
    device = next(iter(configs_of(cfg, ["x"]).values()))["device"]
    assert device["model_id"] == "clap-int8" and device["suggested_area"] == "Kitchen"
    assert "configuration_url" not in device
    # the per-entity form is for older Home Assistant, whose device schema (before
    # 2024.8) rejects a whole config with model_id: the model goes into `model`
    for payload in per_entity.values():
        assert "model_id" not in payload["device"]
        assert "clap-int8" in payload["device"]["model"]
    with_page = DeviceInfo("clap-int8", configuration_url="http://pi.local:8080/")
    _, now = next_discovery(cfg, [trigger("x")], with_page, Published())
    messages, _ = next_discovery(cfg, [trigger("x")], with_page, now)
    page = json.loads(messages[0].payload)["device"]["configuration_url"]
    assert page == "http://pi.local:8080/"

    other = MqttConfig(device_id="testdev", discovery={"prefix": "ha"})
    assert all(t.startswith("ha/") for t in configs_of(other, ["x"]))
    off = MqttConfig(device_id="testdev", discovery={"enabled": False})
    assert configs_of(off, ["x"]) == {}


def test_the_schema_check_reads_abbreviations_and_rejects_what_home_assistant_would(
) -> None:
    cfg = MqttConfig(device_id="testdev")
    (topic, payload), = configs_of(cfg, ["smoke"]).items()
    full = entity_configs(topic, payload)
    short = {v: k for k, v in ABBREVIATIONS.items()}
    comps = {cid: {short.get(k, k): v for k, v in c.items()}
             for cid, c in payload["components"].items()}
    abbreviated = {short.get(k, k): v for k, v in payload.items() if k != "components"}
    abbreviated["cmps"] = comps
    assert entity_configs(topic, abbreviated) == full
    for broken, why in [
        ({"qos": 3}, "qos"), ({"icon_color": "red"}, "ignores"),
        ({"event_types": "start"}, "list"), ({"platform": "siren"}, "platform"),
    ]:
        bad = json.loads(json.dumps(payload))
        bad["components"]["smoke_event"].update(broken)
        with pytest.raises(AssertionError, match=why):
            entity_configs(topic, bad)
    bad = json.loads(json.dumps(payload))
    del bad["components"]["smoke_event"]["event_types"]
    with pytest.raises(AssertionError, match="lacks"):
        entity_configs(topic, bad)


@pytest.mark.parametrize("form, count", [("device", 1), ("entity", 2 * 4 + 6)])
def test_live_discovery_and_home_assistant_restart(mosquitto, mqtt_subscriber, tmp_path,
                                                   form, count) -> None:
    sub = mqtt_subscriber(mosquitto, "homeassistant/#")
    cfg = mqtt_config(mosquitto, suggested_area="Hall", discovery={"form": form})
    sink = publisher(cfg, ["smoke", "glass"], tmp_path, "clap-int8")
    sink.start()
    try:
        def configs(ms, rounds=1):
            seen: dict[str, int] = {}
            for m in ms:
                if m.topic.endswith("/config") and m.payload:
                    seen[m.topic] = seen.get(m.topic, 0) + 1
            return len(seen) == count and min(seen.values()) >= rounds and seen

        first = sub.wait_for(configs, 10, f"{count} discovery configs")
        for topic in first:
            msg = sub.on(topic)[0]
            check_config(topic, json.loads(msg.payload))
        # Home Assistant restarts: everything is published again.
        sub.publish("homeassistant/status", "online")
        sub.wait_for(lambda ms: configs(ms, rounds=2), 10, "discovery sent a second time")
        # Other status payloads do not trigger a resend.
        sub.publish("homeassistant/status", "offline")
    finally:
        sink.close()


def test_removed_triggers_are_deleted(mosquitto, mqtt_subscriber, tmp_path) -> None:
    sub = mqtt_subscriber(mosquitto, "homeassistant/#")
    cfg = mqtt_config(mosquitto, **ENTITY)
    sink = publisher(cfg, ["smoke", "glass", "dog"], tmp_path)
    sink.start()

    def deleted(name):
        def pred(ms):
            gone = {m.topic for m in ms if f"/testdev/{name}_" in m.topic and not m.payload}
            return len(gone) == 4 and gone
        return pred

    try:
        sub.wait_for(lambda ms: len({m.topic for m in ms}) == 18, 10, "18 configs")
        # Config reload: glass removed -> its 4 entities get empty retained configs.
        sink.update_triggers([trigger("smoke"), trigger("dog")])
        sub.wait_for(deleted("glass"), 10, "glass entities deleted")
    finally:
        sink.close()
    # Trigger "dog" removed while the daemon was down: deleted at the next start.
    sink = publisher(cfg, ["smoke"], tmp_path)
    sink.start()
    try:
        sub.wait_for(deleted("dog"), 10, "dog entities deleted at start-up")
        assert not [m for m in sub.messages if "smoke_" in m.topic and not m.payload]
    finally:
        sink.close()


def test_triggers_removed_across_a_restart_lose_their_retained_state(
    mosquitto, mqtt_subscriber, tmp_path
) -> None:
    base = "listener/testdev"
    watch = mqtt_subscriber(mosquitto, f"{base}/#")
    cfg = mqtt_config(mosquitto)
    sink, _ = started(cfg, ["a", "b"], tmp_path)
    try:
        for name in ("a", "b"):
            for leaf in ("state", "enabled"):
                watch.wait_topic(f"{base}/{name}/{leaf}", accept=lambda m: bool(m.payload))
    finally:
        sink.close()
    # Restarted without trigger b (no reload happened): its retained topics are cleared.
    sink, _ = started(cfg, ["a"], tmp_path)
    try:
        for leaf in ("state", "enabled"):
            watch.wait_topic(f"{base}/b/{leaf}", accept=lambda m: not m.payload)
        late = mqtt_subscriber(mosquitto, f"{base}/#", persistent=False)
        late.publish(f"{base}/marker", "x")  # after the retained ones, on the same session
        late.wait_topic(f"{base}/marker")
        assert not [m for m in late.messages if m.topic.startswith(f"{base}/b/")]
        assert {m.topic for m in late.messages if m.retain} >= {f"{base}/a/state",
                                                                 f"{base}/a/enabled"}
    finally:
        sink.close()


def test_discovery_memory_of_an_older_version_still_names_its_triggers(tmp_path) -> None:
    old = tmp_path / "mqtt_discovery.json"
    cfg = MqttConfig(device_id="d", **ENTITY)
    topics = sorted(configs_of(cfg, ["dog-bark"], legacy_ids=True))
    old.write_text(json.dumps({"topics": topics}))  # written before triggers were remembered
    earlier = load_published(old)
    assert earlier.triggers == {"dog-bark"} and earlier.topics == set(topics)
    # it published per-entity configs with unprefixed unique_ids: both are kept
    assert earlier.form == "entity" and earlier.legacy_ids
    assert load_published(tmp_path / "missing.json") == Published()
    # a listener whose device_id is "device": its per-entity topics are not device configs
    named = MqttConfig(device_id="device", **ENTITY)
    old.write_text(json.dumps({"topics": sorted(configs_of(named, ["x"], legacy_ids=True))}))
    assert load_published(old).form == "entity" and not load_published(old).device_topics


def test_home_assistant_online_storm_is_logged_once(mosquitto, mqtt_subscriber, tmp_path):
    sub = mqtt_subscriber(mosquitto, "homeassistant/#")
    sink = publisher(mqtt_config(mosquitto), ["smoke"], tmp_path)
    sink.start()

    def rounds(ms) -> int:
        seen: dict[str, int] = {}
        for m in ms:
            if m.topic.endswith("/config") and m.payload:
                seen[m.topic] = seen.get(m.topic, 0) + 1
        return min(seen.values()) if len(seen) == 1 else 0

    try:
        sub.wait_for(rounds, 10, "the device's discovery config")
        with capture_logs() as logs:
            for _ in range(300):
                sub.publish("homeassistant/status", "online")
            wait_until(lambda: len([e for e in logs if "Home Assistant came online"
                                    in e["event"]]) >= 300, 20, "300 online messages handled")
            sub.wait_for(lambda ms: rounds(ms) >= 2, 10, "discovery sent again")
    finally:
        sink.close()
    online = [e for e in logs if "Home Assistant came online" in e["event"]]
    assert len(online) == 300
    assert [e["log_level"] for e in online].count("info") == 1
    assert online[0]["log_level"] == "info"


def test_readme_automations_ignore_the_comeback_after_a_restart() -> None:
    """Both automation forms in README's Home Assistant section: a state trigger on the
    event entity that skips its comebacks (from unavailable after a listener restart, to
    unknown after a Home Assistant restart) and keeps every real event, also the first
    after a Home Assistant restart, which comes from unknown (so unknown is not in
    not_from). tests/ha_live.py runs them in a real Home Assistant."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Home Assistant\n", 1)[1].split("\n## ", 1)[0]
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    forms = {}
    for block in blocks:
        (auto,) = block["automation"]
        key = "triggers" if "triggers" in auto else "trigger"
        (trig,) = auto[key]
        assert trig["entity_id"].startswith("event.")
        assert trig["not_from"] == ["unavailable"]
        assert trig["not_to"] == ["unavailable", "unknown"]
        (cond,) = auto["conditions" if key == "triggers" else "condition"]
        assert "event_type == 'start'" in cond["value_template"]
        forms[key] = auto
    assert set(forms) == {"triggers", "trigger"}  # HA >= 2024.10, and older
    assert {"conditions", "actions"} <= forms["triggers"].keys()
    assert {"condition", "action"} <= forms["trigger"].keys()
    assert forms["trigger"]["trigger"][0]["platform"] == "state"


def test_every_platform_used_is_one_the_schema_check_knows() -> None:
    used = {e.platform for e in entities(MqttConfig(), [trigger("x")])}
    assert used == PLATFORMS == HA_PLATFORMS.keys()
