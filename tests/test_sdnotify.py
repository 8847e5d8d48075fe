"""sd_notify: READY after start-up, WATCHDOG from the processing loop, silence when it stalls.

The daemon runs in a subprocess under a test-owned NOTIFY_SOCKET (a bound AF_UNIX
datagram socket, like systemd's) with a small WATCHDOG_USEC, on a real-time file
source so it keeps listening. tests/stalling_daemon.py runs the same daemon with its
processing loop blocked after N windows: the pings must stop while the process itself
lives on (so systemd's watchdog, not a crash, would restart it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from listener.service.sdnotify import Notifier
from tests.helpers import assert_no_traceback, running, start_cli, stop

WATCHDOG_USEC = 400_000  # 0.4 s: pings at most every 0.2 s


class NotifyListener:
    """What systemd does: a bound datagram socket collecting (monotonic time, message)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def collect_until(self, predicate, timeout: float, proc: subprocess.Popen | None = None):
        """Receive until ``predicate(messages)`` is truthy; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self.messages)
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; notifications so far: {self.messages}")
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"daemon exited {proc.returncode}: {self.messages}")
            self.sock.settimeout(min(remaining, 0.2))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self.sock.close()


def pings(messages: list[tuple[float, str]]) -> list[float]:
    return [t for t, m in messages if "WATCHDOG=1" in m.split("\n")]


@pytest.fixture
def notify(daemon_dir: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(daemon_dir / "notify.sock")
    yield listener
    listener.close()


def start_daemon(d: Path, notify: NotifyListener, stall_after: int | None = None
                 ) -> subprocess.Popen[str]:
    """`listener run` in ``d`` (or tests.stalling_daemon, stalling after ``stall_after``
    windows) reporting to ``notify`` with a watchdog of WATCHDOG_USEC."""
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    module, before = ("listener", []) if stall_after is None else (
        "tests.stalling_daemon", [str(stall_after)])
    return start_cli(*before, "run", "--config", "config.yaml", cwd=d, env=env, module=module)


def test_ready_then_periodic_watchdog_then_stopping(daemon_dir: Path, notify: NotifyListener):
    with running(start_daemon(daemon_dir, notify)) as proc:
        notify.collect_until(
            lambda ms: any(m.startswith("READY=1") for _, m in ms), timeout=60, proc=proc
        )
        ready_at = next(t for t, m in notify.messages if m.startswith("READY=1"))
        ready = next(m for _, m in notify.messages if m.startswith("READY=1"))
        assert "STATUS=listening: 1 trigger" in ready
        # periodic pings after READY, at about half the watchdog interval, never slower
        notify.collect_until(
            lambda ms: len([t for t in pings(ms) if t > ready_at]) >= 6, 15, proc=proc
        )
        after = [t for t in pings(notify.messages) if t > ready_at]
        gaps = np.diff(after)
        assert gaps.max() < WATCHDOG_USEC / 1e6, gaps
        assert gaps.min() >= WATCHDOG_USEC / 1e6 / 2 - 0.02, gaps  # rate-limited
        code, _, err = stop(proc)
        assert code == 0, err
        notify.collect_until(lambda ms: any("STOPPING=1" in m for _, m in ms), 5)
        assert_no_traceback(err)


def test_stalled_processing_loop_stops_the_watchdog(daemon_dir: Path, notify: NotifyListener):
    with running(start_daemon(daemon_dir, notify, stall_after=4)) as proc:
        notify.collect_until(
            lambda ms: any(m.startswith("READY=1") for _, m in ms), timeout=60, proc=proc
        )
        notify.collect_until(lambda ms: len(pings(ms)) >= 1, 10, proc=proc)
        # the loop stalls after 4 windows (~1 s at hop 0.25 s): from then on, no pings for
        # well over a watchdog interval, while the process stays alive
        quiet = 3 * WATCHDOG_USEC / 1e6

        def silent_for(ms: list[tuple[float, str]]) -> bool:
            last = max(pings(ms))
            return time.monotonic() - last > quiet

        notify.collect_until(silent_for, timeout=20, proc=proc)
        assert proc.poll() is None, "the stalled daemon must not exit by itself"
        n_before = len(pings(notify.messages))
        deadline = time.monotonic() + quiet
        while time.monotonic() < deadline:  # keep listening: still no ping arrives
            notify.sock.settimeout(max(0.01, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                notify.messages.append((time.monotonic(), notify.sock.recv(4096).decode()))
        assert len(pings(notify.messages)) == n_before
        _, _, err = stop(proc, signal.SIGKILL)
        assert "processing loop stalled" in err


# --- the Notifier itself ---------------------------------------------------------------


def test_abstract_namespace_socket_and_rate_limit():
    name = f"listener-test-{os.getpid()}-{time.monotonic_ns()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(b"\0" + name.encode())
    server.settimeout(5)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "10000000"})
        assert n.enabled and n.watchdog_interval == 10.0
        assert n.ready("loading\nmodel")
        assert server.recv(4096) == b"READY=1\nSTATUS=loading model"
        assert n.watchdog()
        assert not n.watchdog()  # within half the interval: rate-limited
        assert n.watchdog(force=True)
        assert n.status("x")
        assert n.stopping()
        got = [server.recv(4096) for _ in range(4)]
        assert got == [b"WATCHDOG=1", b"WATCHDOG=1", b"STATUS=x", b"STOPPING=1"]
        n.close()
    finally:
        server.close()


def test_without_notify_socket_everything_is_a_no_op():
    n = Notifier({})
    assert not n.enabled
    assert not n.ready() and not n.watchdog() and not n.status("x")


def test_watchdog_pid_of_another_process_disables_pings(tmp_path: Path):
    n = Notifier(
        {"NOTIFY_SOCKET": str(tmp_path / "s"), "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}
    )
    assert n.watchdog_interval is None and not n.watchdog()


def test_send_failure_never_raises(tmp_path: Path):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert n.notify("READY=1") is False
