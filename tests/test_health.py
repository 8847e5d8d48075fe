"""`listener health`: the container HEALTHCHECK, fed by the processing loop's heartbeat.

The heartbeat file is touched from the same call site as the systemd watchdog ping
(listener/service/heartbeat.py), so it must stay fresh while the loop runs, age once the
loop stalls (tests/stalling_daemon.py blocks it while the process lives on, as in
test_sdnotify.py), and disappear on a clean stop. Real daemon processes, real files.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from listener.service.heartbeat import Heartbeat, problem
from tests.helpers import assert_clean_error, run_cli, running, start_cli, stop


def health(d: Path, *extra: str):
    return run_cli("health", "--config", d / "config.yaml", *extra)


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)  # polling another process's file; bounded by the deadline
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_fresh_while_running_and_gone_after_sigterm(daemon_dir: Path):
    beat = daemon_dir / "state" / "heartbeat"
    with running(start_cli("run", "--config", "config.yaml", cwd=daemon_dir)) as proc:
        wait_until(beat.exists, 60, "the first heartbeat")
        result = health(daemon_dir)
        assert result.returncode == 0, result.stderr
        assert "healthy" in result.stdout
        first = beat.stat().st_mtime
        wait_until(lambda: beat.stat().st_mtime > first, 15, "the heartbeat to be renewed")
        code, _, err = stop(proc)
        assert code == 0, err
    assert not beat.exists()
    result = health(daemon_dir)
    assert result.returncode == 1
    assert "no heartbeat file" in result.stderr


def test_stalled_loop_turns_unhealthy_while_the_process_lives(daemon_dir: Path):
    beat = daemon_dir / "state" / "heartbeat"
    cmd = ("4", "run", "--config", "config.yaml")
    with running(start_cli(*cmd, cwd=daemon_dir, module="tests.stalling_daemon")) as proc:
        wait_until(beat.exists, 60, "the first heartbeat")
        # touches come at most every 5 s, so 6 s without one means the loop stalled
        result = wait_until(lambda: (r := health(daemon_dir, "--max-age", "6")).returncode == 1
                            and r, 30, "the health check to fail")
        assert proc.poll() is None, "the stalled daemon must not exit by itself"
        assert "stalled" in result.stderr
        _, _, err = stop(proc, signal.SIGKILL)
        assert "processing loop stalled" in err


def test_a_config_error_is_exit_2(tmp_path: Path):
    (tmp_path / "config.yaml").write_text("mqtt:\n  hots: x\n")
    assert_clean_error(health(tmp_path), "mqtt.hots")


def test_heartbeat_file_rate_limit_and_age(tmp_path: Path):
    path = tmp_path / "heartbeat"
    pings: list[int] = []
    beat = Heartbeat(path, lambda: pings.append(1), every=3600)
    assert not path.exists()
    beat.beat()
    assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o600"
    os.utime(path, (1000.0, 1000.0))
    beat.beat()  # within `every`: the watchdog is pinged, the file is not touched
    assert path.stat().st_mtime == 1000.0 and len(pings) == 2
    assert problem(path, max_age=30, now=1029.0) is None
    assert "not beaten for 31 s" in (problem(path, max_age=30, now=1031.0) or "")
    Heartbeat(path)  # a new run removes what an earlier one left
    assert not path.exists()
    assert "no heartbeat file" in (problem(path) or "")


def test_an_unwritable_state_directory_never_breaks_the_beat(tmp_path: Path):
    beat = Heartbeat(tmp_path / "missing-dir" / "heartbeat")
    beat.beat()  # logged nowhere, raises nothing: the health check reports the truth
    assert problem(beat.path) is not None


def test_with_several_streams_one_stalled_stream_stops_the_heartbeat() -> None:
    # the daemon's beat needs every running stream: a healthy stream cannot hide a
    # stalled one; a stream that ended is retired and no longer holds the beat back
    from listener.service.heartbeat import JointBeat

    now = [0.0]
    beats: list[float] = []
    joint = JointBeat(lambda: beats.append(now[0]), ["a", "b"], within=10.0,
                      clock=lambda: now[0])
    a, b = joint.member("a"), joint.member("b")
    for t in range(0, 10):  # both beat: the daemon beats
        now[0] = float(t)
        a()
        b()
    assert beats and beats[-1] == 9.0
    beats.clear()
    for t in range(10, 25):  # b's loop hangs: a alone keeps beating, in vain past 10 s
        now[0] = float(t)
        a()
    assert beats and max(beats) <= 19.0 and 20.0 not in beats
    joint.retire("b")  # b's file ended: a alone is the daemon again
    now[0] = 25.0
    a()
    assert beats[-1] == 25.0
