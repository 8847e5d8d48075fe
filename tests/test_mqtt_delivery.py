"""Durable delivery: broker outages, a SIGKILLed daemon, and the spool's bounds."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

from structlog.testing import capture_logs

from listener.mqtt.spool import Spool
from listener.service.state_files import StateDir
from tests.fixtures_broker import mqtt_config, wait_until
from tests.helpers import running, stop
from tests.mqtt_driver import Feed, make_pair, publisher, start_driver, started

BASE = "listener/testdev"


def first_occurrences(messages) -> list[tuple[str, str]]:
    """(id, event_type) of event messages in arrival order, duplicates dropped."""
    seen: list[tuple[str, str]] = []
    for m in messages:
        if m.topic.endswith("/event"):
            d = json.loads(m.payload)
            key = (d["id"], d["event_type"])
            if key not in seen:
                seen.append(key)
    return seen


def spool_path(state_dir: Path) -> Path:
    return StateDir(state_dir).spool


def spooled(state_dir: Path) -> int:
    path = spool_path(state_dir)
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:  # table not created yet
        return 0
    finally:
        db.close()


def test_outage_delivers_every_event_once_in_order(mosquitto, mqtt_subscriber, tmp_path) -> None:
    sub = mqtt_subscriber(mosquitto, f"{BASE}/#")
    sink, feed = started(mqtt_config(mosquitto), ["smoke"], tmp_path)
    try:
        events = make_pair("smoke", 0.0)
        for ev in events:
            sink.on_result(feed.events(ev))
        sub.wait_for(lambda ms: len(first_occurrences(ms)) == 2, 10, "the first pair")
        assert sink.flush(5)

        mosquitto.stop()
        for i in range(1, 6):
            pair = make_pair("smoke", 20.0 * i)
            events += pair
            for ev in pair:
                sink.on_result(feed.events(ev))
        assert spooled(tmp_path) == 10
        assert not sink.flush(0.2)
        mosquitto.start()

        expected = [(e.id, e.type) for e in events]
        got = sub.wait_for(
            lambda ms: (f := first_occurrences(ms)) and len(f) == len(expected) and f,
            20, "all 12 events after the outage",
        )
        assert got == expected
        assert sink.flush(10)
        assert spooled(tmp_path) == 0
        # The present, not the backlog: the last event was an end, so the state is OFF.
        assert sub.on(f"{BASE}/smoke/state")[-1].text == "OFF"
        # Original ids and timestamps, unchanged by the outage.
        originals = {(e.id, e.type): {**e.to_dict(), "event_type": e.type} for e in events}
        for m in sub.on(f"{BASE}/smoke/event"):
            d = json.loads(m.payload)
            assert d == originals[(d["id"], d["event_type"])]
    finally:
        sink.close()


def test_sigkill_with_spooled_events_then_restart(mosquitto, mqtt_subscriber, tmp_path) -> None:
    cfg = {"host": mosquitto.host, "port": mosquitto.port, "device_id": "testdev",
           "reconnect_min_seconds": 0.1, "reconnect_max_seconds": 0.5}
    mosquitto.stop()
    with running(start_driver(tmp_path, cfg, "--pairs", "3")) as proc:
        wait_until(lambda: spooled(tmp_path) == 6 or proc.poll() is not None, 30,
                   "the driver to spool 6 events")
        assert proc.poll() is None, proc.communicate()
        code, out, _ = stop(proc, signal.SIGKILL, timeout=10)
    assert code == -signal.SIGKILL
    sent = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(sent) == 6
    assert spooled(tmp_path) == 6

    mosquitto.start()
    sub = mqtt_subscriber(mosquitto, f"{BASE}/+/event")
    with running(start_driver(tmp_path, cfg, "--flush-exit", "20")) as proc:
        out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    got = sub.wait_for(lambda ms: len(first_occurrences(ms)) == 6 and first_occurrences(ms),
                       10, "the 6 spooled events")
    assert got == [(d["id"], d["type"]) for d in sent]
    payloads = {(json.loads(m.payload)["id"], json.loads(m.payload)["event_type"]):
                json.loads(m.payload) for m in sub.messages}
    for d in sent:  # original ids and timestamps, unchanged
        assert payloads[(d["id"], d["type"])] == {**d, "event_type": d["type"]}
    assert spooled(tmp_path) == 0


def test_spool_bounds_drop_the_oldest_loudly(tmp_path) -> None:
    spool = Spool(spool_path(tmp_path), max_events=3, max_age_days=1.0)
    db = sqlite3.connect(spool_path(tmp_path))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with capture_logs() as logs:
        for i in range(5):
            spool.add(f"id{i}", "smoke", f'{{"n":{i}}}')
    assert [r.event_id for r in spool.pending()] == ["id2", "id3", "id4"]
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["dropped"] for e in errors] == [1, 1]
    assert errors[0]["oldest_dropped_id"] == "id0"

    spool.close()

    spool = Spool(spool_path(tmp_path), max_events=10, max_age_days=1.0)
    spool.add("ancient", "smoke", "{}", now=time.time() - 2 * 86400)
    with capture_logs() as logs:
        assert spool.prune() == 1
    assert [r.event_id for r in spool.pending()] == ["id2", "id3", "id4"]
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1 and errors[0]["dropped"] == 1
    assert "max_age_days" in errors[0]["event"]
    spool.close()

    # The order survives reopening; deletes by seq.
    spool = Spool(spool_path(tmp_path), max_events=10, max_age_days=1.0)
    rows = spool.pending()
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    spool.remove([rows[0].seq])
    assert spool.count() == len(rows) - 1
    spool.close()


def test_damaged_spool_is_moved_aside(tmp_path) -> None:
    (spool_path(tmp_path)).write_bytes(b"this is not a database" * 100)
    with capture_logs() as logs:
        spool = Spool(spool_path(tmp_path), max_events=10, max_age_days=1.0)
    assert spool.count() == 0
    assert any(e["log_level"] == "error" and "damaged" in e["event"] for e in logs)
    assert list(tmp_path.glob(f"{spool_path(tmp_path).name}.corrupt-*"))
    spool.close()


def test_sink_spool_bound_during_outage(mosquitto, mqtt_subscriber, tmp_path) -> None:
    sub = mqtt_subscriber(mosquitto, f"{BASE}/+/event")
    mosquitto.stop()
    cfg = mqtt_config(mosquitto, spool={"max_events": 4, "max_age_days": 1})
    sink = publisher(cfg, ["smoke"], tmp_path)
    feed = Feed(["smoke"])
    t0 = time.monotonic()
    sink.start()  # returns at once although the broker is down
    assert time.monotonic() - t0 < 0.5
    try:
        events = [ev for i in range(3) for ev in make_pair("smoke", 20.0 * i)]
        with capture_logs() as logs:
            for ev in events:
                sink.on_result(feed.events(ev))
        dropped = [e["dropped"] for e in logs if e["log_level"] == "error"]
        assert dropped == [1, 1]
        mosquitto.start()
        assert sink.flush(15)
        expected = [(e.id, e.type) for e in events[2:]]
        got = sub.wait_for(lambda ms: len(first_occurrences(ms)) >= 4 and first_occurrences(ms),
                           10, "the 4 kept events")
        assert got == expected
    finally:
        sink.close()


def test_last_will_marks_a_killed_daemon_offline(mosquitto, mqtt_subscriber, tmp_path) -> None:
    sub = mqtt_subscriber(mosquitto, f"{BASE}/availability")
    cfg = {"host": mosquitto.host, "port": mosquitto.port, "device_id": "testdev"}
    with running(start_driver(tmp_path, cfg)) as proc:
        sub.wait_topic(f"{BASE}/availability", accept=lambda m: m.text == "online")
        stop(proc, signal.SIGKILL, timeout=10)
    sub.wait_topic(f"{BASE}/availability", accept=lambda m: m.text == "offline")
