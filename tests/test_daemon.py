"""`listener run` as a real process: file source, real mosquitto, signals, restarts.

Each test starts the daemon with ``python -m listener run`` on a generated stream
(tests/hearing/sounds.py) and the small trained hearing model, so triggers really
fire on the sounds they describe. Logs go to a file the test polls (JSON lines:
stderr is not a TTY). Every wait is bounded.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures_daemon import (
    BASE,
    DEVICE,
    Proc,
    daemon_config,
    event_msgs,
    file_source,
    make_stream,
    spool_count,
    trigger,
)
from tests.helpers import (
    assert_clean_error,
    assert_no_traceback,
    run_cli,
    write_config,
)


def test_file_source_delivers_events_then_exits_0(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, mqtt_subscriber, procs
):
    sub = mqtt_subscriber(mosquitto, f"{BASE}/#")
    wav = make_stream(tmp_path, "alarm.wav", [("alarm", 6.0), ("alarm", 20.0)], 30.0)
    daemon_config(tmp_path, hearing_model_dir, mosquitto.port, file_source(wav, False))
    p = Proc(tmp_path)
    procs.append(p)
    assert p.wait(90) == 0, p.text()[-3000:]
    # every event the log reported was delivered before exit, ends included
    logged = [ln for ln in p.lines() if ln.get("event") in ("event start", "event end")]
    assert any(ln["event"] == "event start" for ln in logged), p.text()[-3000:]
    ids = {(ln["event"].split()[1], ln["id"]) for ln in logged}
    sub.wait_for(
        lambda ms: {(d["event_type"], d["id"]) for d in event_msgs(sub, "alarm")} >= ids,
        10,
        "every logged event on MQTT",
    )
    assert spool_count(tmp_path) == 0
    # the process has exited; its last word reaches the subscriber through the broker
    sub.wait_topic(f"{BASE}/availability", 10, lambda m: m.text == "offline")
    assert sub.on(f"{BASE}/availability")[-1].text == "offline"
    assert_no_traceback(p.text())


def test_sighup_reloads_or_keeps_old_config_and_sigterm_exits_cleanly(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, mqtt_subscriber, procs
):
    sub = mqtt_subscriber(mosquitto, f"{BASE}/#", "homeassistant/#")
    # sirens all along, paced like a microphone: only a trigger for them can fire
    wav = make_stream(tmp_path, "sirens.wav", [("siren", float(t)) for t in range(2, 58, 3)], 60.0)
    src = file_source(wav, True)

    def configure(triggers: list[dict[str, Any]], **defaults: float) -> None:
        daemon_config(tmp_path, hearing_model_dir, mosquitto.port, src, triggers, 0.5, **defaults)

    configure([trigger("alarm")])
    p = Proc(tmp_path)
    procs.append(p)
    p.wait_log(lambda ln: ln.get("event") == "listening", 60, "listening")
    sub.wait_topic(f"{BASE}/availability", 10, lambda m: m.text == "online")
    device_cfg = f"homeassistant/device/{DEVICE}/config"

    def has_siren(m) -> bool:  # the device config lists the siren's event entity
        return bool(m.payload) and "event_types" in json.loads(m.payload)["components"].get(
            "siren_event", {})

    assert not [m for m in sub.on(device_cfg) if has_siren(m)]

    # 1. a broken file: rejected, the log says why, the daemon keeps running the old one
    configure([trigger("alarm")], on_threshold=1.7)
    p.signal(signal.SIGHUP)
    hit = p.wait_log(lambda ln: "reload rejected" in ln.get("event", ""), 20, "rejection")
    assert any(
        "defaults.on_threshold: must be between 0 and 1, got 1.7" in e for e in hit["errors"]
    ), hit
    assert p.p.poll() is None
    assert not [m for m in sub.on(device_cfg) if has_siren(m)]

    # 2. a valid file with a new trigger: discovery for it, then its events
    configure([trigger("alarm"), trigger("siren")])
    p.signal(signal.SIGHUP)
    p.wait_log(lambda ln: ln.get("event") == "config reloaded", 20, "reload")
    sub.wait_topic(device_cfg, 10, has_siren)
    sub.wait_for(lambda ms: event_msgs(sub, "siren", "start"), 30, "a siren event")
    assert not event_msgs(sub, "alarm")  # the unchanged trigger never fired on sirens

    # 3. a reload that changes only another trigger: the active siren keeps its state
    #    (no end, no second start)
    configure([trigger("alarm", "an alarm beeping loudly"), trigger("siren")])
    p.signal(signal.SIGHUP)
    p.wait_log(
        lambda ln: ln.get("event") == "config reloaded" and ln.get("changed") == ["alarm"],
        20,
        "second reload",
    )
    stats_seen = len(sub.on(f"{BASE}/stats"))
    sub.wait_for(lambda ms: len(sub.on(f"{BASE}/stats")) >= stats_seen + 2, 10, "more windows")
    assert len(event_msgs(sub, "siren", "start")) == 1
    assert not event_msgs(sub, "siren", "end")

    # 4. SIGTERM: exit 0, the open siren event ended and delivered, offline published
    p.signal(signal.SIGTERM)
    assert p.wait(30) == 0, p.text()[-3000:]
    starts = {d["id"] for d in event_msgs(sub, "siren", "start")}
    sub.wait_for(
        lambda ms: {d["id"] for d in event_msgs(sub, "siren", "end")} >= starts,
        10,
        "an end for every start",
    )
    sub.wait_topic(f"{BASE}/availability", 10, lambda m: m.text == "offline")
    assert sub.on(f"{BASE}/availability")[-1].text == "offline"
    assert spool_count(tmp_path) == 0
    assert_no_traceback(p.text())


def test_stats_of_the_previous_run_are_replaced_at_start(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, mqtt_subscriber, procs
):
    stats = f"{BASE}/stats"
    sub = mqtt_subscriber(mosquitto, stats)
    # what a run that stopped yesterday left retained
    sub.publish(stats, json.dumps({"uptime_s": 86400.0, "spool_depth": 7}), retain=True)
    wav = make_stream(tmp_path, "quiet.wav", [], 60.0)
    path = daemon_config(tmp_path, hearing_model_dir, mosquitto.port, file_source(wav, True))
    data = yaml.safe_load(path.read_text())
    data["mqtt"]["stats_interval_seconds"] = 600  # only the start can publish stats here
    path.write_text(yaml.safe_dump(data))
    p = Proc(tmp_path)
    procs.append(p)
    p.wait_log(lambda ln: ln.get("event") == "listening", 60, "listening")
    sub.wait_for(lambda ms: any(json.loads(m.payload)["uptime_s"] < 600 for m in ms
                                if m.payload), 20, "fresh stats")
    late = mqtt_subscriber(mosquitto, stats, persistent=False)
    fresh = json.loads(late.wait_topic(stats, 10).payload)
    assert fresh["uptime_s"] < 600 and fresh["spool_depth"] == 0
    p.signal(signal.SIGTERM)
    assert p.wait(30) == 0, p.text()[-3000:]


def test_events_spooled_while_broker_is_down_survive_sigkill(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, mqtt_subscriber, procs
):
    sub = mqtt_subscriber(mosquitto, f"{BASE}/+/event")  # persistent session, QoS 1
    mosquitto.stop()
    wav = make_stream(tmp_path, "alarm.wav", [("alarm", 1.0), ("alarm", 4.0)], 30.0)
    daemon_config(tmp_path, hearing_model_dir, mosquitto.port, file_source(wav, True))
    p = Proc(tmp_path, "first")
    procs.append(p)
    started = p.wait_log(lambda ln: ln.get("event") == "event start", 60, "an event start")
    deadline = time.monotonic() + 10
    while spool_count(tmp_path) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool_count(tmp_path) >= 1
    p.signal(signal.SIGKILL)
    p.wait(10)

    # broker back, daemon restarted on silence: the spooled event arrives, same id
    mosquitto.start()
    quiet = make_stream(tmp_path, "quiet.wav", [], 12.0)
    daemon_config(tmp_path, hearing_model_dir, mosquitto.port, file_source(quiet, False))
    p2 = Proc(tmp_path, "second")
    procs.append(p2)
    assert p2.wait(60) == 0, p2.text()[-3000:]
    sub.wait_for(
        lambda ms: any(d["id"] == started["id"] for d in event_msgs(sub, "alarm", "start")),
        15,
        "the spooled start event",
    )
    assert spool_count(tmp_path) == 0


def test_switch_off_survives_a_daemon_restart(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, mqtt_subscriber, procs
):
    sub = mqtt_subscriber(mosquitto, f"{BASE}/#")
    quiet = make_stream(tmp_path, "quiet.wav", [], 60.0)
    daemon_config(tmp_path, hearing_model_dir, mosquitto.port, file_source(quiet, True))
    p = Proc(tmp_path, "first")
    procs.append(p)
    sub.wait_topic(f"{BASE}/alarm/enabled", 60, lambda m: m.text == "ON")
    sub.publish(f"{BASE}/alarm/enabled/set", "OFF")
    p.wait_log(lambda ln: ln.get("event") == "trigger switched", 10, "the switch")
    sub.wait_topic(f"{BASE}/alarm/enabled", 10, lambda m: m.text == "OFF")
    p.signal(signal.SIGTERM)
    assert p.wait(30) == 0

    # restart on alarms: the trigger stays off (no events) and says so
    n_before = len(sub.on(f"{BASE}/alarm/enabled"))
    wav = make_stream(tmp_path, "alarm.wav", [("alarm", 3.0), ("alarm", 12.0)], 20.0)
    daemon_config(tmp_path, hearing_model_dir, mosquitto.port, file_source(wav, False))
    p2 = Proc(tmp_path, "second")
    procs.append(p2)
    assert p2.wait(60) == 0, p2.text()[-3000:]
    msgs = sub.wait_for(
        lambda ms: sub.on(f"{BASE}/alarm/enabled")[n_before:], 10, "enabled state after restart"
    )
    assert all(m.text == "OFF" for m in msgs)
    assert not event_msgs(sub, "alarm")
    assert not any(ln.get("event") == "event start" for ln in p2.lines())


# --- user mistakes at start-up: exit 2, one clear line, no traceback ---------------------


def run_once(
    d: Path, model: Path | str, source: str | dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`listener run` in ``d`` with one trigger and MQTT off, to completion."""
    write_config(d, model, [trigger("a", "an alarm beeping")], source=source,
                 mqtt={"enabled": False}, state_dir="state")
    return run_cli("run", "--config", "config.yaml", cwd=d)


def test_broken_model_dir_exits_2(tmp_path: Path):
    (tmp_path / "empty_model").mkdir()
    r = run_once(tmp_path, "empty_model", "mic")
    assert_clean_error(r, "empty_model", "listener model pull")


def test_missing_audio_device_exits_2(tmp_path: Path, hearing_model_dir: Path):
    r = run_once(tmp_path, hearing_model_dir, {"type": "mic", "device": "no-such-microphone-4711"})
    assert_clean_error(r)


# --- logging -----------------------------------------------------------------------------


class _Tty:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_log_format_console_on_a_terminal_json_under_systemd_or_a_pipe():
    from listener.logs import choose_format

    assert choose_format("auto", _Tty(True), {}) == "console"
    assert choose_format("auto", _Tty(False), {}) == "json"
    assert choose_format("auto", _Tty(True), {"JOURNAL_STREAM": "8:123"}) == "json"
    assert choose_format("auto", _Tty(True), {"INVOCATION_ID": "abc"}) == "json"
    assert choose_format("console", _Tty(False), {}) == "console"
    assert choose_format("json", _Tty(True), {}) == "json"


def test_stdlib_logging_goes_through_structlog_as_json_with_the_level_applied():
    import io
    import logging

    from listener.logs import get_logger, setup_logging

    buf = io.StringIO()
    try:
        assert setup_logging("warning", "json", stream=buf) == "json"
        logging.getLogger("paho.mqtt.client").warning("broker %s gone", "b1")
        logging.getLogger("paho.mqtt.client").info("hidden")
        get_logger("listener.test").info("hidden too")
        get_logger("listener.test").error("kept", trigger="alarm")
        lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    finally:
        setup_logging("info", "auto")
    assert [ln["event"] for ln in lines] == ["broker b1 gone", "kept"]
    assert lines[0]["logger"] == "paho.mqtt.client" and lines[0]["level"] == "warning"
    assert lines[1]["trigger"] == "alarm" and "timestamp" in lines[1]


def test_file_source_with_broker_down_spools_and_exits_0(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, procs
):
    mosquitto.stop()
    wav = make_stream(tmp_path, "alarm.wav", [("alarm", 2.0)], 12.0)
    daemon_config(tmp_path, hearing_model_dir, mosquitto.port, file_source(wav, False))
    p = Proc(tmp_path)
    procs.append(p)
    t0 = time.monotonic()
    assert p.wait(60) == 0, p.text()[-3000:]
    assert time.monotonic() - t0 < 30  # the flush wait is bounded
    assert spool_count(tmp_path) == 2  # the start and its end, kept for the next start
    assert any("broker not reachable" in ln.get("event", "") for ln in p.lines())
    assert_no_traceback(p.text())
