"""The event spool on a disk that fails: full, read-only, corrupt; and its permissions.

Real file systems (a tmpfs of a few megabytes filled to ENOSPC, a read-only tmpfs:
tests/fixtures_fs.py), a real mosquitto and, for start-up, the real daemon. What must
hold: a spool is moved aside only when the file itself is damaged, and then its
readable rows are still delivered; a full or read-only disk is a clear error at
start-up that leaves the spool as it is, and at run time events keep reaching the
broker in order and become durable again when space is back.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from listener.audio.decode import write_wav
from listener.errors import UserError
from listener.mqtt.spool import Spool
from listener.service.state_files import StateDir
from tests.fixtures_broker import mqtt_config, wait_until
from tests.fixtures_fs import fill, remount_readonly
from tests.helpers import assert_clean_error, run_cli, write_config
from tests.mqtt_driver import make_pair, publisher, send_pairs, started
from tests.test_mqtt_delivery import first_occurrences, spooled

BASE = "listener/testdev"


def spool_with(state_dir: Path, n: int) -> list[str]:
    """A closed spool in ``state_dir`` holding ``n`` events; their ids, in order."""
    spool = Spool(StateDir(state_dir).spool, max_events=1000, max_age_days=7)
    ids = [f"ev{i:03d}" for i in range(n)]
    for i, eid in enumerate(ids):
        spool.add(eid, "smoke", json.dumps({"id": eid, "event_type": "start", "n": i}))
    spool.close()
    return ids


def arrived(sub, n: int, timeout: float = 20) -> list[tuple[str, str]]:
    """(id, event_type) of the first ``n`` distinct events ``sub`` received, in order."""
    return sub.wait_for(lambda ms: len(f := first_occurrences(ms)) >= n and f[:n], timeout,
                        f"{n} events")


def spool_errors(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["log_level"] == "error" and "spool" in e["event"]]


@pytest.fixture
def events_sub(mosquitto, mqtt_subscriber):
    """A subscriber to every event topic on the test broker, subscribed before the test."""
    return mqtt_subscriber(mosquitto, f"{BASE}/+/event")


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_full_disk_at_start_keeps_the_spool_and_exits_2(
    small_fs, hearing_model_dir, mosquitto, events_sub, tmp_path
) -> None:
    state = small_fs("2m")
    ids = spool_with(state, 48)
    spool_file = StateDir(state).spool
    before = spool_file.read_bytes()
    fill(state)
    write_wav(tmp_path / "quiet.wav", np.zeros(48000, dtype=np.float32))
    write_config(tmp_path, hearing_model_dir, [{"name": "smoke", "prompts": ["smoke alarm"]}],
                 source={"type": "file", "path": "quiet.wav", "realtime": False},
                 mqtt={"host": mosquitto.host, "port": mosquitto.port, "device_id": "testdev"},
                 state_dir=str(state))
    r = run_cli("run", "--config", "config.yaml", cwd=tmp_path)
    assert_clean_error(r, str(spool_file), "the disk is full", "free some space")
    assert "damaged" not in r.stderr
    assert spool_file.read_bytes() == before
    assert not list(state.glob("*corrupt*"))

    (state / "filler").unlink()  # space is back: a later run delivers every event
    sink = publisher(mqtt_config(mosquitto), ["smoke"], state)
    sink.start()
    try:
        assert [eid for eid, _ in arrived(events_sub, 48)] == ids
        assert sink.flush(10)
    finally:
        sink.close()


def test_read_only_state_dir_is_a_clear_error(small_fs) -> None:
    empty = small_fs("1m", readonly=True)
    with capture_logs() as logs, pytest.raises(UserError) as exc:
        Spool(StateDir(empty).spool, 100, 1)
    assert str(StateDir(empty).spool) in str(exc.value)
    assert "read-only" in str(exc.value)
    assert not [e for e in logs if "damaged" in e["event"]]

    # A spool with events on a file system that became read-only: untouched.
    state = small_fs("2m")
    spool_with(state, 5)
    before = StateDir(state).spool.read_bytes()
    remount_readonly(state)
    with capture_logs() as logs, pytest.raises(UserError, match="read-only"):
        Spool(StateDir(state).spool, 100, 1)
    assert not [e for e in logs if "damaged" in e["event"]]
    assert StateDir(state).spool.read_bytes() == before
    db = sqlite3.connect(f"file:{StateDir(state).spool}?immutable=1", uri=True)
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 5
    db.close()


def test_full_disk_at_run_time_events_still_arrive_in_order(
    small_fs, mosquitto, events_sub
) -> None:
    state, sub = small_fs("2m"), events_sub
    sink, feed = started(mqtt_config(mosquitto), ["smoke"], state)
    try:
        events = send_pairs(sink, feed, "smoke", [0.0])
        assert sink.flush(10)
        fill(state)
        with capture_logs() as logs:
            events += send_pairs(sink, feed, "smoke", [20.0, 40.0, 60.0, 80.0])
            assert arrived(sub, 10, 15) == [(e.id, e.type) for e in events]
        errors = spool_errors(logs)
        assert len(errors) == 1, errors  # once, not once per event
        assert "the disk is full" in errors[0]["event"]

        with capture_logs() as logs:
            (state / "filler").unlink()
            wait_until(lambda: any(e["event"] == "event spool takes writes again"
                                   for e in logs), 10, "the spool to take writes again")
        events += send_pairs(sink, feed, "smoke", [200.0])
        assert sink.flush(10)
        assert arrived(sub, 12, 10) == [(e.id, e.type) for e in events]
    finally:
        sink.close()


def test_events_held_while_the_disk_is_full_are_spooled_when_space_is_back(
    small_fs, mosquitto, events_sub
) -> None:
    state, sub = small_fs("2m"), events_sub
    mosquitto.stop()
    sink, feed = started(mqtt_config(mosquitto), ["smoke"], state)
    try:
        fill(state)
        events = send_pairs(sink, feed, "smoke", [0.0, 20.0, 40.0])
        assert spooled(state) == 0  # held in memory: the disk refuses
        (state / "filler").unlink()
        wait_until(lambda: spooled(state) == 6, 10, "the held events to reach the spool")
        mosquitto.start()
        assert sink.flush(15)
        assert arrived(sub, 6, 10) == [(e.id, e.type) for e in events]
    finally:
        sink.close()


def corrupt_a_middle_page(path: Path) -> None:
    """Overwrite one leaf page of the events table (not its root) with garbage."""
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    victim = max(root + 2, pages // 2)
    data = bytearray(path.read_bytes())
    data[(victim - 1) * page_size: victim * page_size] = b"\xab" * page_size
    path.write_bytes(bytes(data))


def readable_ids(path: Path, n: int) -> list[str]:
    """Ids the test itself can still read from ``path``, one row at a time."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    out = []
    for seq in range(1, n + 1):
        try:
            row = db.execute("SELECT event_id FROM events WHERE seq = ?", (seq,)).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row:
            out.append(row[0])
    db.close()
    return out


def test_corrupt_spool_is_moved_aside_and_its_readable_rows_delivered(
    tmp_path, mosquitto, events_sub
) -> None:
    state, sub = tmp_path / "state", events_sub
    ids = [f"ev{i:03d}" for i in range(200)]
    spool = Spool(StateDir(state).spool, max_events=1000, max_age_days=7)
    for eid in ids:
        spool.add(eid, "smoke", json.dumps({"id": eid, "event_type": "start", "pad": "x" * 300}))
    spool.close()
    corrupt_a_middle_page(StateDir(state).spool)
    readable = readable_ids(StateDir(state).spool, len(ids))
    assert 100 < len(readable) < len(ids)

    with capture_logs() as logs:
        sink = publisher(mqtt_config(mosquitto), ["smoke"], state)
    try:
        assert any(e["log_level"] == "error" and "damaged" in e["event"] for e in logs)
        recovered = [e for e in logs if e["event"].startswith("recovered events")]
        assert recovered and recovered[0]["recovered"] == len(readable)
        assert list(state.glob("spool.sqlite3.corrupt-*"))
        sink.start()
        assert [eid for eid, _ in arrived(sub, len(readable))] == readable
        assert sink.flush(10)
    finally:
        sink.close()


def test_spool_and_discovery_memory_are_private_whatever_the_umask(
    umask_022, tmp_path, mosquitto, events_sub
) -> None:
    files, sub = StateDir(tmp_path / "state"), events_sub
    sink, feed = started(mqtt_config(mosquitto), ["smoke"], files.path)
    try:
        start, _ = make_pair("smoke", 0.0)
        sink.on_result(feed.events(start))
        sub.wait_topic(f"{BASE}/smoke/event")
        wait_until(files.published_discovery.exists, 10, "the discovery memory file")
        side = [Path(f"{files.spool}{s}") for s in ("-wal", "-shm")]
        for path in [files.spool, *side, files.published_discovery]:
            assert path.exists(), path
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
    finally:
        sink.close()
