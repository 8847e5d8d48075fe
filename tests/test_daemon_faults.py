"""The daemon under faults: a source that fails mid-event, a SIGKILL mid-event, a clip
directory that is full or read-only, and the permissions of what it writes.

Real parts only: `listener run` as a subprocess on the small trained hearing model,
a real mosquitto, real tmpfs file systems that fill up or are read-only
(tests/fixtures_fs.py), real signals. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import numpy as np
import soundfile as sf

from listener.service.clips import ClipRecorder
from listener.service.state_files import StateDir
from tests.fixtures_daemon import (
    BASE,
    DEFAULTS,
    Proc,
    daemon_config,
    event_msgs,
    file_source,
    make_stream,
    trigger,
)
from tests.fixtures_fs import fill, remount_readonly
from tests.hearing import sounds
from tests.helpers import assert_no_traceback, write_config


def log_events(p: Proc, kind: str) -> list[dict]:
    return [ln for ln in p.lines() if ln.get("event") == f"event {kind}"]


def test_a_source_error_mid_event_still_ends_the_event(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, mqtt_subscriber, procs
):
    """stdin that breaks off (half a sample frame) while the alarm sounds: exit 2 with a
    clear error, but the open event gets its end, delivered before the process exits."""
    sub = mqtt_subscriber(mosquitto, f"{BASE}/#")
    audio, _ = sounds.stream([("alarm", 10.5)], 14.0, seed=sounds.FRESH_SEED_BASE + 78)
    raw = tmp_path / "audio.s16le"
    raw.write_bytes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes() + b"\x01")
    daemon_config(tmp_path, hearing_model_dir, mosquitto.port,
                  {"type": "stdin", "format": "s16le", "sample_rate": 48000})
    with raw.open("rb") as stdin:
        p = Proc(tmp_path, stdin=stdin.fileno())
        procs.append(p)
        assert p.wait(90) == 2, p.text()[-3000:]
    assert "not a whole frame" in p.text()
    (start,) = log_events(p, "start")
    (end,) = log_events(p, "end")
    assert end["id"] == start["id"]
    sub.wait_for(lambda ms: [d["id"] for d in event_msgs(sub, "alarm", "end")] == [start["id"]],
                 10, "the end on MQTT")
    sub.wait_topic(f"{BASE}/alarm/state", 10, lambda m: m.text == "OFF")
    assert sub.on(f"{BASE}/alarm/state")[-1].text == "OFF"


def test_sigkill_mid_event_is_ended_at_the_next_start(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, mqtt_subscriber, procs
):
    sub = mqtt_subscriber(mosquitto, f"{BASE}/#")
    alarms = [("alarm", 2.0 + 2.0 * i) for i in range(14)]  # one long alarm, 2 to 30 s
    wav = make_stream(tmp_path, "alarm.wav", alarms, 32.0)
    daemon_config(tmp_path, hearing_model_dir, mosquitto.port, file_source(wav, True))
    p = Proc(tmp_path, "first")
    procs.append(p)
    start = p.wait_log(lambda ln: ln.get("event") == "event start", 60, "an event start")
    sub.wait_for(lambda ms: event_msgs(sub, "alarm", "start"), 10, "the start on MQTT")
    p.signal(signal.SIGKILL)
    p.wait(10)
    assert not event_msgs(sub, "alarm", "end")
    assert sub.on(f"{BASE}/alarm/state")[-1].text == "ON"  # what HA shows after the crash

    quiet = make_stream(tmp_path, "quiet.wav", [], 3.0)
    daemon_config(tmp_path, hearing_model_dir, mosquitto.port, file_source(quiet, False))
    p2 = Proc(tmp_path, "second")
    procs.append(p2)
    assert p2.wait(60) == 0, p2.text()[-3000:]
    ends = sub.wait_for(lambda ms: event_msgs(sub, "alarm", "end"), 10, "the owed end")
    assert [d["id"] for d in ends] == [start["id"]]
    assert ends[0]["details"]["reason"] == "restart"
    assert ends[0]["time"] >= start["time"]  # the last moment the first run was known alive
    assert ends[0]["duration"] >= 0
    sub.wait_topic(f"{BASE}/alarm/state", 10, lambda m: m.text == "OFF")
    assert any("ending them" in ln.get("event", "") for ln in p2.lines())
    assert json.loads(StateDir(tmp_path / "state").open_events.read_text()) == {"open": {}}


def _clip_config(tmp_path: Path, model: Path, clips_dir: Path, wav: str, realtime: bool
                 ) -> None:
    write_config(tmp_path, model, [trigger("alarm")],
                 source=file_source(wav, realtime), defaults=DEFAULTS,
                 clips={"enabled": True, "dir": str(clips_dir), "pre_seconds": 1.0,
                        "post_seconds": 1.0},
                 mqtt={"enabled": False}, state_dir="state")


def _assert_clips_failed_quietly(p: Proc, clips_dir: Path, starts: int) -> None:
    assert p.wait(60) == 0, p.text()[-3000:]
    assert len(log_events(p, "start")) == starts
    ends = log_events(p, "end")
    assert len(ends) == starts and all(e["clip"] is None for e in ends)
    failed = [ln for ln in p.lines() if ln.get("event", "").startswith("clip not written")]
    assert failed and failed[0]["level"] == "error" and len(failed) == 1  # then quiet
    assert_no_traceback(p.text())
    assert not [f for f in clips_dir.iterdir() if f.name != "filler"]  # no temp files


def test_clips_on_a_full_disk_do_not_stop_detection(
    tmp_path: Path, hearing_model_dir: Path, small_fs, procs
):
    full = small_fs("64k")
    fill(full)
    wav = make_stream(tmp_path, "alarms.wav", [("alarm", 6.0), ("alarm", 20.0)], 30.0)
    _clip_config(tmp_path, hearing_model_dir, full, wav, realtime=False)
    p = Proc(tmp_path)
    procs.append(p)
    _assert_clips_failed_quietly(p, full, starts=2)


def test_clips_dir_turning_read_only_while_running_does_not_stop_detection(
    tmp_path: Path, hearing_model_dir: Path, small_fs, procs
):
    """(A clips.dir that is read-only at start is a config problem: exit 2 at start-up.)"""
    clips_dir = small_fs("1m")
    wav = make_stream(tmp_path, "alarm.wav", [("alarm", 4.0)], 12.0)
    _clip_config(tmp_path, hearing_model_dir, clips_dir, wav, realtime=True)
    p = Proc(tmp_path)
    procs.append(p)
    p.wait_log(lambda ln: ln.get("event") == "listening", 60, "listening")
    remount_readonly(clips_dir)
    _assert_clips_failed_quietly(p, clips_dir, starts=1)


def test_a_clip_whose_write_fails_is_counted_and_leaves_no_temp_file(small_fs) -> None:
    """Room when the event ended, the disk full by the time the clip is written."""
    from listener.audio.ringbuffer import RingBuffer
    from listener.config.schema import ClipsConfig

    d = small_fs("256k")
    rate = 8000
    ring = RingBuffer(20 * rate)
    rec = ClipRecorder(ClipsConfig(enabled=True, pre_seconds=0.0, post_seconds=1.0), d, rate)
    ring.write(np.zeros(3 * rate, np.float32))
    rec.begin("ev1", 1 * rate, ring)
    assert rec.end("ev1", 3 * rate, ring) == d / "ev1.wav"  # room now: named in the event
    assert not (d / "ev1.wav").exists()  # written once the post-roll has arrived
    fill(d)
    ring.write(np.zeros(2 * rate, np.float32))
    rec.pull(ring)  # the post-roll arrived: the write fails on the full disk
    assert rec.failures == 1
    assert sorted(p.name for p in d.iterdir()) == ["filler"]
    # and the next clip works again once there is room
    (d / "filler").unlink()
    rec.begin("ev2", ring.total - rate, ring)
    rec.end("ev2", ring.total, ring)
    ring.write(np.zeros(2 * rate, np.float32))
    rec.pull(ring)
    assert (d / "ev2.wav").is_file() and rec.failures == 1


def test_state_and_clips_are_private_whatever_the_umask(
    tmp_path: Path, hearing_model_dir: Path, mosquitto, procs
):
    wav = make_stream(tmp_path, "alarm.wav", [("alarm", 2.0)], 12.0)
    daemon_config(tmp_path, hearing_model_dir, mosquitto.port, file_source(wav, False))
    cfg = (tmp_path / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text(
        cfg + "clips:\n  enabled: true\n  pre_seconds: 1.0\n  post_seconds: 1.0\n")
    old = os.umask(0o022)
    try:
        p = Proc(tmp_path)
        procs.append(p)
        assert p.wait(60) == 0, p.text()[-3000:]
    finally:
        os.umask(old)
    state = StateDir(tmp_path / "state")

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(state.path) == 0o700
    assert mode(state.open_events) == 0o600
    clips = list(state.clips.glob("*.wav"))
    assert len(clips) == 1 and mode(clips[0]) == 0o640 and mode(state.clips) == 0o750
    assert sf.info(str(clips[0])).frames > 0
