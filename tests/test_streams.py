"""Many streams in one `listener run` (issue 15): real model, real files, real mosquitto.

Each stream is a generated file (tests/hearing/sounds.py) with one known sound; the
daemon hears them all with one model and must report each sound on its own stream:
in the events' ``stream``, on the stream's MQTT topics and Home Assistant device
(checked against Home Assistant's schema, tests/ha_schema.py), with switches per
(stream, trigger). Two daemons on one broker keep to their own devices and topics.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

from tests.fixtures_daemon import DEFAULTS, Proc, make_stream, trigger
from tests.ha_schema import entity_configs
from tests.helpers import assert_clean_error, assert_no_traceback, run_cli, write_config

TRIGGERS = [trigger("alarm"), trigger("siren")]


def streams_config(d: Path, model: Path, port: int, streams: list[dict[str, Any]],
                   device_id: str = "host1", web: dict[str, Any] | None = None,
                   **mqtt: Any) -> Path:
    return write_config(
        d, model, TRIGGERS, streams=streams, audio={"hop_seconds": 1.0}, defaults=DEFAULTS,
        web=web or {},
        mqtt={"host": "127.0.0.1", "port": port, "device_id": device_id,
              "reconnect_min_seconds": 0.1, "reconnect_max_seconds": 0.5,
              "stats_interval_seconds": 1, **mqtt},
        logging={"level": "info"}, state_dir="state")


def file_stream(name: str, path: str, realtime: bool = False, **extra: Any) -> dict[str, Any]:
    return {"name": name, "source": {"type": "file", "path": path, "realtime": realtime},
            **extra}


def events_on(sub, topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in sub.on(topic)]


def discovery(sub, prefix: str = "homeassistant") -> dict[str, dict[str, Any]]:
    """Every retained device config seen: topic -> payload, each checked by HA's schema."""
    out = {}
    for m in sub.messages:
        if m.topic.startswith(prefix + "/") and m.topic.endswith("/config") and m.payload:
            payload = json.loads(m.payload)
            entity_configs(m.topic, payload)
            out[m.topic] = payload
    return out


def test_each_stream_hears_its_own_sound_on_its_own_device(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, mqtt_subscriber, procs
):
    sub = mqtt_subscriber(mosquitto, "listener/#", "homeassistant/#")
    make_stream(tmp_path, "kitchen.wav", [("alarm", 4.0)], 20.0)
    make_stream(tmp_path, "street.wav", [("siren", 8.0)], 20.0)
    streams_config(tmp_path, hearing_model_dir, mosquitto.port, [
        file_stream("kitchen", "kitchen.wav", label="Kitchen mic", suggested_area="Kitchen"),
        file_stream("street", "street.wav", triggers=["siren"]),
        file_stream("gone", "missing.wav")],  # cannot be opened: the others go on
        web={"history": {"enabled": True}})
    p = Proc(tmp_path)
    procs.append(p)
    assert p.wait(90) == 0, p.text()[-3000:]
    assert_no_traceback(p.text())
    assert any(ln.get("stream") == "gone" and "cannot be opened" in ln["event"]
               for ln in p.lines())
    logged = [ln for ln in p.lines() if ln.get("event") == "event start"]
    assert {(ln["stream"], ln["trigger"]) for ln in logged} == {("kitchen", "alarm"),
                                                                ("street", "siren")}
    kitchen = sub.wait_for(lambda ms: events_on(sub, "listener/host1/kitchen/alarm/event"),
                           10, "the kitchen's alarm events")
    street = sub.wait_for(lambda ms: events_on(sub, "listener/host1/street/siren/event"),
                          10, "the street's siren events")
    assert {e["stream"] for e in kitchen} == {"kitchen"}
    assert {e["stream"] for e in street} == {"street"}
    assert not sub.on("listener/host1/kitchen/siren/event")
    assert not sub.on("listener/host1/street/alarm/state")  # not a trigger of the street
    assert not sub.on("listener/host1/alarm/event")  # nothing on the host's own topics

    configs = discovery(sub)
    assert set(configs) == {"homeassistant/device/host1/config",
                            "homeassistant/device/host1_kitchen/config",
                            "homeassistant/device/host1_street/config",
                            "homeassistant/device/host1_gone/config"}
    host = configs["homeassistant/device/host1/config"]
    kdev = configs["homeassistant/device/host1_kitchen/config"]
    sdev = configs["homeassistant/device/host1_street/config"]
    assert kdev["device"]["name"] == "Kitchen mic"
    assert kdev["device"]["suggested_area"] == "Kitchen"
    assert kdev["device"]["via_device"] == host["device"]["identifiers"][0] == "listener_host1"
    assert kdev["availability_topic"] == "listener/host1/kitchen/availability"
    assert {"alarm_sound", "siren_sound", "connectivity", "skipped_windows"} <= \
        set(kdev["components"])
    assert "alarm_sound" not in sdev["components"]
    assert kdev["components"]["alarm_sound"]["state_topic"] == "listener/host1/kitchen/alarm/state"
    conn = kdev["components"]["connectivity"]
    assert conn["device_class"] == "connectivity"
    assert conn["state_topic"] == "listener/host1/kitchen/stats"
    ids = [c["unique_id"] for cfg in configs.values() for c in cfg["components"].values()]
    assert len(ids) == len(set(ids))
    # each stream's own diagnostics, and its connectivity gone once its file ended
    stats = json.loads(sub.wait_topic("listener/host1/kitchen/stats").payload)
    assert stats["stream"] == "kitchen"
    last = json.loads(sub.on("listener/host1/kitchen/stats")[-1].payload)
    assert last["audio_arriving"] is False and last["windows"] > 0
    # the history's rows carry their stream
    db = sqlite3.connect(tmp_path / "state" / "history.sqlite3")
    try:
        events = set(db.execute("SELECT stream, trigger FROM events WHERE type = 'start'"))
        windows = {s for (s,) in db.execute("SELECT DISTINCT stream FROM windows")}
    finally:
        db.close()
    assert events == {("kitchen", "alarm"), ("street", "siren")}
    assert windows == {"kitchen", "street"}


def test_a_trigger_switched_off_on_one_stream_stays_on_on_the_other(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, mqtt_subscriber, procs
):
    sub = mqtt_subscriber(mosquitto, "listener/#")
    quiet = make_stream(tmp_path, "quiet.wav", [], 60.0)
    streams_config(tmp_path, hearing_model_dir, mosquitto.port, [
        file_stream("a", quiet, realtime=True), file_stream("b", quiet, realtime=True)])
    p = Proc(tmp_path)
    procs.append(p)
    for name in ("a", "b"):
        sub.wait_topic(f"listener/host1/{name}/alarm/enabled", 60, lambda m: m.text == "ON")
    sub.wait_topic("listener/host1/a/stats", 30,
                   lambda m: json.loads(m.payload)["audio_arriving"] is True)
    sub.publish("listener/host1/a/alarm/enabled/set", "OFF")
    sub.wait_topic("listener/host1/a/alarm/enabled", 10, lambda m: m.text == "OFF")
    p.wait_log(lambda ln: ln.get("event") == "trigger switched", 10, "the switch")
    p.signal(signal.SIGTERM)
    assert p.wait(30) == 0, p.text()[-3000:]
    assert all(m.text == "ON" for m in sub.on("listener/host1/b/alarm/enabled"))
    stored = json.loads((tmp_path / "state" / "switches.json").read_text())
    assert stored["a/alarm"]["enabled"] is False and "b/alarm" not in stored


def test_two_daemons_on_one_broker_keep_to_their_own_devices_and_topics(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, mqtt_subscriber, procs
):
    sub = mqtt_subscriber(mosquitto, "#")
    topics: dict[str, set[str]] = {}
    for host, sound in (("host1", "alarm"), ("host2", "siren")):
        d = tmp_path / host
        d.mkdir()
        make_stream(d, "mic.wav", [(sound, 4.0)], 15.0)
        streams_config(d, hearing_model_dir, mosquitto.port, [file_stream("garage", "mic.wav")],
                       device_id=host)
        procs.append(Proc(d))
    for p in procs:
        assert p.wait(90) == 0, p.text()[-3000:]
    for host, sound in (("host1", "alarm"), ("host2", "siren")):
        events = sub.wait_for(lambda ms, h=host, s=sound: events_on(
            sub, f"listener/{h}/garage/{s}/event"), 10, f"{host}'s events")
        assert {e["stream"] for e in events} == {"garage"}
        topics[host] = {m.topic for m in sub.messages if f"/{host}" in m.topic}
    assert topics["host1"] and topics["host2"] and not topics["host1"] & topics["host2"]
    assert not sub.on("listener/host2/garage/alarm/event")
    assert not sub.on("listener/host1/garage/siren/event")
    devices = {cfg["device"]["identifiers"][0] for cfg in discovery(sub).values()}
    assert devices == {"listener_host1", "listener_host1_garage", "listener_host2",
                       "listener_host2_garage"}


def test_check_config_lists_streams_and_refuses_bad_ones(tmp_path: Path,
                                                          hearing_model_dir: Path):
    streams_config(tmp_path, hearing_model_dir, 1883, [
        file_stream("kitchen", "k.wav"), file_stream("street", "s.wav", triggers=["siren"])])
    r = run_cli("check-config", "--config", "config.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "# stream kitchen: file:" in r.stdout and "k.wav -> alarm, siren\n" in r.stdout
    assert "# stream street: file:" in r.stdout and "s.wav -> siren\n" in r.stdout
    cases = [
        ([file_stream("a", "k.wav"), file_stream("a", "s.wav")], {},
         "streams[1].name: duplicate stream name 'a'"),
        ([file_stream("a", "k.wav", triggers=["alarm", "doorbell"])], {},
         "streams[0].triggers[1]: unknown trigger 'doorbell'"),
        ([file_stream("a b", "k.wav")], {}, "streams[0].name: may only contain letters"),
        ([file_stream("a", "k.wav")], {"source": "mic"}, "streams: and 'source:' cannot both"),
    ]
    for streams, extra, message in cases:
        write_config(tmp_path, hearing_model_dir, TRIGGERS, streams=streams, **extra)
        r = run_cli("check-config", "--config", "config.yaml", cwd=tmp_path)
        assert_clean_error(r, message)
        assert "config.yaml:" in r.stderr


def test_calibrate_and_top_take_the_stream_they_tune(tmp_path: Path, hearing_model_dir: Path,
                                                     capsys):
    from tests.helpers import run_main

    quiet = make_stream(tmp_path, "quiet.wav", [], 12.0)
    streams_config(tmp_path, hearing_model_dir, 1883, [
        file_stream("kitchen", quiet), file_stream("street", quiet, triggers=["siren"])])
    cfg = tmp_path / "config.yaml"
    r = run_main(capsys, "calibrate", "-c", cfg, "--stream", "street", "--from",
                 tmp_path / quiet)
    assert r.returncode == 0, r.stderr
    rows = [ln.split()[0] for ln in r.stdout.splitlines() if ln.startswith(("alarm ", "siren "))]
    assert rows == ["siren"], r.stdout  # the street's triggers only
    for command in (["calibrate", "--from", str(tmp_path / quiet)], ["top"]):
        r = run_main(capsys, *command, "-c", cfg)  # several streams: which one?
        assert r.returncode == 2 and "choose one of: kitchen, street" in r.stderr, r.stderr
    r = run_main(capsys, "top", "-c", cfg, "--stream", "garage")
    assert r.returncode == 2 and "--stream garage: no such stream" in r.stderr, r.stderr


def test_the_web_page_follows_and_switches_the_first_stream(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, mqtt_subscriber, procs
):
    import urllib.request

    from tests.helpers import free_port

    sub = mqtt_subscriber(mosquitto, "listener/#")
    quiet = make_stream(tmp_path, "quiet.wav", [], 60.0)
    port = free_port()
    streams_config(tmp_path, hearing_model_dir, mosquitto.port, [
        file_stream("a", quiet, realtime=True), file_stream("b", quiet, realtime=True)],
        web={"enabled": True, "port": port})
    p = Proc(tmp_path)
    procs.append(p)
    p.wait_log(lambda ln: ln.get("event") == "web page", 60, "the web page")
    sub.wait_topic("listener/host1/b/alarm/enabled", 60, lambda m: m.text == "ON")
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/triggers/alarm/enabled",
                                 data=b'{"enabled": false}', method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read()) == {"trigger": "alarm", "enabled": False}
    sub.wait_topic("listener/host1/a/alarm/enabled", 10, lambda m: m.text == "OFF")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as r:
        assert json.loads(r.read())["stream"] == "a"
    p.signal(signal.SIGTERM)
    assert p.wait(30) == 0, p.text()[-3000:]
    assert all(m.text == "ON" for m in sub.on("listener/host1/b/alarm/enabled"))


def test_a_camera_over_http_a_file_and_an_unreachable_url_in_one_daemon(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, mqtt_subscriber, procs
):
    from tests.helpers import HOST, free_port
    from tests.stream_server import StreamServer

    sub = mqtt_subscriber(mosquitto, "listener/#")
    loop = make_stream(tmp_path, "loop.wav", [("alarm", 3.0)], 12.0)
    street = make_stream(tmp_path, "street.wav", [("siren", 6.0)], 40.0)
    server = StreamServer(tmp_path / loop, free_port()).start()
    try:
        retry = {"reconnect_min_seconds": 0.1, "reconnect_max_seconds": 0.4}
        streams_config(tmp_path, hearing_model_dir, mosquitto.port, [
            {"name": "camera", "source": {"type": "url", "url": server.url, **retry}},
            file_stream("street", street, realtime=True),
            {"name": "dead", "source": {"type": "url", **retry,
                                        "url": f"http://{HOST}:{free_port()}/nothing"}}])
        p = Proc(tmp_path)
        procs.append(p)
        alarm = sub.wait_for(lambda ms: events_on(sub, "listener/host1/camera/alarm/event"),
                             90, "the camera's alarm")
        siren = sub.wait_for(lambda ms: events_on(sub, "listener/host1/street/siren/event"),
                             90, "the street's siren")
        camera = sub.wait_topic("listener/host1/camera/stats", 30,
                                lambda m: json.loads(m.payload)["audio_arriving"] is True)
        p.signal(signal.SIGTERM)
        assert p.wait(30) == 0, p.text()[-3000:]
    finally:
        server.kill()
    assert {e["stream"] for e in alarm} == {"camera"}
    assert {e["stream"] for e in siren} == {"street"}
    assert json.loads(camera.payload)["stream"] == "camera"
    assert json.loads(sub.on("listener/host1/camera/stats")[-1].payload)["windows"] > 0
    assert not sub.on("listener/host1/dead/alarm/event")
    assert not sub.on("listener/host1/street/alarm/event")
    dead = [json.loads(m.payload) for m in sub.on("listener/host1/dead/stats")]
    assert dead and not any(d["audio_arriving"] for d in dead)
    assert_no_traceback(p.text())
