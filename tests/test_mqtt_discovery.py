"""Home Assistant discovery: complete configs, resent when HA restarts (logged once),
removed triggers deleted (also their retained state, also across a restart)."""

from __future__ import annotations

import json
import re

from structlog.testing import capture_logs

from listener.config.schema import MqttConfig
from listener.mqtt.discovery import discovery_configs, load_published
from tests.fixtures_broker import mqtt_config, wait_until
from tests.mqtt_driver import publisher, started, trigger

# Written from Home Assistant's MQTT docs, independently of listener.mqtt.discovery.
COMMON = {"name", "unique_id", "availability_topic", "payload_available",
          "payload_not_available", "device", "origin"}
PER_COMPONENT = {
    "binary_sensor": {"state_topic", "device_class", "payload_on", "payload_off"},
    "event": {"state_topic", "event_types"},
    "sensor": {"state_topic"},
    "switch": {"state_topic", "command_topic", "payload_on", "payload_off"},
}
DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version", "suggested_area"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
TOPIC = re.compile(
    r"^homeassistant/(binary_sensor|event|sensor|switch)/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config$"
)


def check_config(topic: str, cfg: dict) -> None:
    m = TOPIC.match(topic)
    assert m, topic
    component = m.group(1)
    missing = (COMMON | PER_COMPONENT[component]) - cfg.keys()
    assert not missing, f"{topic} lacks {missing}"
    assert cfg["device"].keys() >= DEVICE_KEYS, cfg["device"]
    assert cfg["origin"].keys() >= ORIGIN_KEYS, cfg["origin"]
    assert cfg["origin"]["name"] == "listener"
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cfg["unique_id"])
    assert cfg["availability_topic"] == "listener/testdev/availability"


def test_payloads_are_complete_and_typed() -> None:
    cfg = MqttConfig(device_id="testdev", suggested_area="Kitchen")
    configs = discovery_configs(cfg, [trigger("smoke"), trigger("dog-bark")], "clap-int8")
    assert len(configs) == 2 * 4 + 3
    for topic, payload in configs.items():
        check_config(topic, payload)
    ids = [c["unique_id"] for c in configs.values()]
    assert len(set(ids)) == len(ids)
    by_suffix = {t.split("/")[-2]: (t.split("/")[1], c) for t, c in configs.items()}
    comp, sound = by_suffix["smoke_sound"]
    assert comp == "binary_sensor" and sound["device_class"] == "sound"
    assert sound["state_topic"] == "listener/testdev/smoke/state"
    comp, event = by_suffix["smoke_event"]
    assert comp == "event" and event["event_types"] == ["start", "end"]
    assert event["state_topic"] == "listener/testdev/smoke/event"
    comp, switch = by_suffix["dog-bark_enabled"]
    assert comp == "switch"
    assert switch["command_topic"] == "listener/testdev/dog-bark/enabled/set"
    assert switch["state_topic"] == "listener/testdev/dog-bark/enabled"
    assert by_suffix["smoke_score"][1]["state_topic"] == "listener/testdev/smoke/score"
    level = by_suffix["level"][1]
    assert level["unit_of_measurement"] == "dBFS" and level["state_topic"].endswith("/level")
    inference = by_suffix["inference_time"][1]
    assert inference["unit_of_measurement"] == "ms"
    assert "value_json.inference_ms" in inference["value_template"]
    skipped = by_suffix["skipped_windows"][1]
    assert "value_json.skipped_windows" in skipped["value_template"]
    for name in ("level", "inference_time", "skipped_windows"):
        assert by_suffix[name][1]["entity_category"] == "diagnostic"
    assert sound["device"]["suggested_area"] == "Kitchen"

    other = MqttConfig(device_id="testdev", discovery={"prefix": "ha"})
    assert all(t.startswith("ha/") for t in discovery_configs(other, [trigger("x")], "m"))
    off = MqttConfig(device_id="testdev", discovery={"enabled": False})
    assert discovery_configs(off, [trigger("x")], "m") == {}


def test_live_discovery_and_home_assistant_restart(mosquitto, mqtt_subscriber, tmp_path) -> None:
    sub = mqtt_subscriber(mosquitto, "homeassistant/#")
    cfg = mqtt_config(mosquitto, suggested_area="Hall")
    sink = publisher(cfg, ["smoke", "glass"], tmp_path, "clap-int8")
    sink.start()
    try:
        def configs(ms, rounds=1):
            seen: dict[str, int] = {}
            for m in ms:
                if m.topic.endswith("/config") and m.payload:
                    seen[m.topic] = seen.get(m.topic, 0) + 1
            return len(seen) == 11 and min(seen.values()) >= rounds and seen

        first = sub.wait_for(configs, 10, "11 discovery configs")
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
    cfg = mqtt_config(mosquitto)
    sink = publisher(cfg, ["smoke", "glass", "dog"], tmp_path)
    sink.start()

    def deleted(name):
        def pred(ms):
            gone = {m.topic for m in ms if f"/testdev/{name}_" in m.topic and not m.payload}
            return len(gone) == 4 and gone
        return pred

    try:
        sub.wait_for(lambda ms: len({m.topic for m in ms}) == 15, 10, "15 configs")
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
    topics = sorted(discovery_configs(MqttConfig(device_id="d"), [trigger("dog-bark")], "m"))
    old.write_text(json.dumps({"topics": topics}))  # written before triggers were remembered
    assert load_published(old).triggers == {"dog-bark"}
    assert load_published(old).topics == set(topics)
    assert load_published(tmp_path / "missing.json").triggers == set()


def test_home_assistant_online_storm_is_logged_once(mosquitto, mqtt_subscriber, tmp_path):
    sub = mqtt_subscriber(mosquitto, "homeassistant/#")
    sink = publisher(mqtt_config(mosquitto), ["smoke"], tmp_path)
    sink.start()

    def rounds(ms) -> int:
        seen: dict[str, int] = {}
        for m in ms:
            if m.topic.endswith("/config") and m.payload:
                seen[m.topic] = seen.get(m.topic, 0) + 1
        return min(seen.values()) if len(seen) == 7 else 0

    try:
        sub.wait_for(rounds, 10, "7 discovery configs")
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
