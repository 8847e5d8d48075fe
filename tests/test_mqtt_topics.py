"""State, event, score, level and stats topics; runtime switches over MQTT."""

from __future__ import annotations

import json
import threading

import pytest
from structlog.testing import capture_logs

from listener.config.schema import MqttConfig
from listener.errors import UserError
from listener.service.commands import Commands, parse_switch
from listener.service.state_files import StateDir
from listener.service.switches import SwitchStore
from tests.fixtures_broker import mqtt_config
from tests.mqtt_driver import Feed, make_pair, publisher, started

BASE = "listener/testdev"


def test_state_event_score_level_stats(mosquitto, mqtt_subscriber, tmp_path) -> None:
    sub = mqtt_subscriber(mosquitto, f"{BASE}/#")
    sink, feed = started(mqtt_config(mosquitto), ["smoke"], tmp_path)
    try:
        sub.wait_topic(f"{BASE}/availability", accept=lambda m: m.text == "online")
        sub.wait_topic(f"{BASE}/smoke/state", accept=lambda m: m.text == "OFF")
        sub.wait_topic(f"{BASE}/smoke/enabled", accept=lambda m: m.text == "ON")

        start, end = make_pair("smoke", 0.0)
        sink.on_result(feed.window({"smoke": 0.40}, -30.0))
        sink.on_result(feed.events(start))
        sink.on_result(feed.window({"smoke": 0.405}, -30.2))  # within score_delta/level delta
        sink.publish_stats({"inference_ms": 41.5, "skipped_windows": 0})  # ordering marker
        stats = sub.wait_topic(f"{BASE}/stats")
        assert json.loads(stats.payload)["inference_ms"] == 41.5
        assert json.loads(stats.payload)["spool_depth"] in (0, 1)
        assert [m.text for m in sub.on(f"{BASE}/smoke/score")] == ["0.4000"]
        assert [m.text for m in sub.on(f"{BASE}/level")] == ["-30.0"]
        sink.on_result(feed.window({"smoke": 0.42}, -28.0))
        sub.wait_topic(f"{BASE}/smoke/score", accept=lambda m: m.text == "0.4200")
        sub.wait_topic(f"{BASE}/level", accept=lambda m: m.text == "-28.0")

        sub.wait_topic(f"{BASE}/smoke/state", accept=lambda m: m.text == "ON")
        ev = sub.wait_topic(f"{BASE}/smoke/event")
        data = json.loads(ev.payload)
        assert not ev.retain and ev.qos == 1
        assert data == {**start.to_dict(), "event_type": "start"}

        sink.on_result(feed.events(end))
        sink.on_result(feed.window({"smoke": 0.1}))
        sub.wait_for(lambda ms: [m.text for m in ms if m.topic == f"{BASE}/smoke/state"]
                     == ["OFF", "ON", "OFF"], 10, "state OFF, ON, OFF")
        sub.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("/event")]) == 2, 10,
                     what="the end event")
        last = json.loads(sub.on(f"{BASE}/smoke/event")[-1].payload)
        assert last["event_type"] == "end" and last["id"] == start.id and last["duration"] == 3.0
        assert sink.flush(5)
        # A late subscriber sees the present: retained availability, state, enabled, stats;
        # events are not retained.
        late = mqtt_subscriber(mosquitto, f"{BASE}/#", persistent=False)
        late.wait_for(lambda ms: len(ms) >= 4, 10, "retained messages")
        assert {(m.topic, m.text) for m in late.messages if m.retain} >= {
            (f"{BASE}/availability", "online"), (f"{BASE}/smoke/state", "OFF"),
            (f"{BASE}/smoke/enabled", "ON"),
        }
        assert not [m for m in late.messages if m.topic.endswith("/event")]
        assert late.on(f"{BASE}/stats")[0].retain
    finally:
        sink.close()
    sub.wait_topic(f"{BASE}/availability", accept=lambda m: m.text == "offline")
    late = mqtt_subscriber(mosquitto, f"{BASE}/availability", persistent=False)
    assert late.wait_topic(f"{BASE}/availability").text == "offline"


def test_parse_switch() -> None:
    for text in ("ON", "on", " On\n", "true", "TRUE", "1", b"on"):
        assert parse_switch(text) is True
    for text in ("OFF", "off", "False", "0", b"OFF"):
        assert parse_switch(text) is False
    for text in ("", "maybe", "2", "onn", b"\xff\xfe", "{}"):
        assert parse_switch(text) is None


def test_runtime_switch_persists_and_bad_commands_are_ignored(
    mosquitto, mqtt_subscriber, tmp_path
) -> None:
    """Commands over MQTT -> the switch store (persisted) -> the enabled topic. The feed
    stands for the detector, which reports the store's state in its results."""
    sub = mqtt_subscriber(mosquitto, f"{BASE}/#")
    names = ["smoke", "glass"]
    applied: list[dict[str, bool]] = []
    called = threading.Condition()
    cfg = mqtt_config(mosquitto)

    def wire() -> tuple:
        store = SwitchStore(StateDir(tmp_path).switches, {n: True for n in names})
        feed = Feed(names, store.snapshot())
        holder: list = []

        def apply() -> None:
            feed.enabled = store.snapshot()
            holder[0].on_result(feed.snapshot())
            with called:
                applied.append(store.snapshot())
                called.notify_all()

        sink = publisher(cfg, names, tmp_path, on_command=Commands(store, apply).handle)
        holder.append(sink)
        sink.on_result(feed.snapshot())
        return store, sink

    def wait_applied(n: int) -> None:
        with called:
            assert called.wait_for(lambda: len(applied) >= n, 10), applied

    store, sink = wire()
    sink.start()
    try:
        sub.wait_topic(f"{BASE}/glass/enabled", accept=lambda m: m.text == "ON")
        with capture_logs() as logs:
            sub.publish(f"{BASE}/smoke/enabled/set", "maybe")
            sub.publish(f"{BASE}/nosuch/enabled/set", "OFF")
            sub.publish(f"{BASE}/smoke/enabled/set", "off")
            wait_applied(1)
        assert applied == [{"smoke": False, "glass": True}]
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert len(warnings) == 2, logs
        assert warnings[0]["topic"] == f"{BASE}/smoke/enabled/set"
        assert warnings[0]["payload"] == "maybe"
        assert warnings[1]["topic"] == f"{BASE}/nosuch/enabled/set"
        assert store.snapshot() == {"smoke": False, "glass": True}
        stored = json.loads(StateDir(tmp_path).switches.read_text())
        assert stored == {"smoke": {"enabled": False, "config": True}}
        sub.wait_topic(f"{BASE}/smoke/enabled", accept=lambda m: m.text == "OFF")
    finally:
        sink.close()

    # A restart keeps the choice and announces it.
    sub2 = mqtt_subscriber(mosquitto, f"{BASE}/+/enabled")
    store, sink = wire()
    assert store.snapshot() == {"smoke": False, "glass": True}
    sink.start()
    try:
        sub2.wait_for(
            lambda ms: {(m.topic, m.text) for m in ms}
            >= {(f"{BASE}/smoke/enabled", "OFF"), (f"{BASE}/glass/enabled", "ON")},
            10, "enabled states after restart",
        )
        sub.publish(f"{BASE}/smoke/enabled/set", "1")
        wait_applied(2)
        assert applied[-1]["smoke"] is True and store.enabled("smoke") is True
    finally:
        sink.close()


def test_local_setup_problems_are_user_errors(tmp_path) -> None:
    missing = tmp_path / "nope" / "password"
    cfg = MqttConfig(username="u", password_file=missing)
    with pytest.raises(UserError, match="password_file") as exc:
        publisher(cfg, ["smoke"], tmp_path)
    assert str(missing) in str(exc.value)

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="spool") as exc:
        publisher(MqttConfig(), ["smoke"], blocker / "state")
    assert "writable" in str(exc.value)

    cfg = MqttConfig(tls={"enabled": True, "ca_file": str(blocker)})
    with pytest.raises(UserError, match="ca_file"):
        publisher(cfg, ["smoke"], tmp_path)


def test_fast_transitions_are_all_published_in_order(mosquitto, mqtt_subscriber, tmp_path):
    """A file scan runs faster than real time: a short detection must still show ON, OFF."""
    sub = mqtt_subscriber(mosquitto, f"{BASE}/smoke/state")
    sink, feed = started(mqtt_config(mosquitto), ["smoke"], tmp_path)
    try:
        sub.wait_topic(f"{BASE}/smoke/state", accept=lambda m: m.text == "OFF")
        for i in range(3):
            for ev in make_pair("smoke", 20.0 * i):
                sink.on_result(feed.events(ev))
                sink.on_result(feed.window({"smoke": 0.5}))
        states = sub.wait_for(
            lambda ms: len(ms) >= 7 and [m.text for m in ms], 10, "7 state messages"
        )
        assert states == ["OFF", "ON", "OFF", "ON", "OFF", "ON", "OFF"]
    finally:
        sink.close()
