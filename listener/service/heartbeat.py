"""The processing loop's heartbeat: the systemd watchdog ping plus a file a container
health check can read.

Why a file: under systemd a stalled loop stops the WATCHDOG pings and systemd restarts
the service. A container has no such socket, but Docker/Podman run a HEALTHCHECK
command in the container from time to time; that command is another process, so the
loop leaves its mark where it can look: the ``heartbeat`` file in the state directory
(its name is owned by service/state_files.py), touched from the same call site as
the watchdog ping, i.e. after every window and while a quiet stdin writer is waited on.

The touch is rate-limited (:data:`TOUCH_SECONDS`: an SD card need not write an inode
every hop) and the file is removed at start-up and on a clean stop, so a file left by
an earlier run never passes for this one. :func:`problem` is what `listener health`
asks: is the file younger than the systemd unit's WatchdogSec (:data:`MAX_AGE_SECONDS`)?
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

TOUCH_SECONDS = 5.0
#: systemd/listener.service's WatchdogSec: the same stall means the same thing everywhere
MAX_AGE_SECONDS = 30.0


class Heartbeat:
    """``beat()`` is the pipeline's heartbeat callback: ping the watchdog (already
    rate-limited by the notifier) and touch ``path`` at most every TOUCH_SECONDS."""

    def __init__(self, path: Path | None, watchdog: Callable[[], object] | None = None,
                 every: float = TOUCH_SECONDS) -> None:
        self.path = path
        self.watchdog = watchdog
        self.every = every
        self._last = float("-inf")
        self.clear()

    def beat(self) -> None:
        if self.watchdog is not None:
            self.watchdog()
        now = time.monotonic()
        if self.path is None or now - self._last < self.every:
            return
        self._last = now
        # a full or read-only disk must not stop detection; the health check then reports
        # the stale file, which is the truth about the state directory
        with contextlib.suppress(OSError):
            self.path.touch(mode=0o600)  # creates it, or sets its mtime to now

    def clear(self) -> None:
        """Remove the file (start-up, clean stop): no heartbeat means not listening."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)


def problem(path: Path, max_age: float = MAX_AGE_SECONDS, now: float | None = None
            ) -> str | None:
    """None when the loop beat within ``max_age`` seconds, else what is wrong."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return (f"no heartbeat file {path}: the daemon is not running, still loading the "
                "model, or uses another state directory")
    except OSError as exc:
        return f"cannot read the heartbeat file {path} ({exc.strerror})"
    age = (time.time() if now is None else now) - mtime
    if age > max_age:
        return (f"the processing loop has not beaten for {age:.0f} s (limit {max_age:g} s): "
                "it is stalled; restart the container")
    return None


class JointBeat:
    """One heartbeat for many pipelines: the daemon's beat (watchdog ping, heartbeat
    file) goes out only while EVERY running stream has beaten within ``within`` seconds.

    Why: with one callback shared by all streams, any healthy stream kept the watchdog
    happy while another's processing loop hung, and that stream stayed deaf
    unnoticed. A stream that ended (its file is over, its source failed) is
    retired (:meth:`retire`), so it no longer counts."""

    def __init__(self, beat: Callable[[], None], names: list[str], within: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._beat = beat
        self.within = within
        self._clock = clock
        now = clock()
        self._seen = dict.fromkeys(names, now)

    def member(self, name: str) -> Callable[[], None]:
        """The heartbeat callback of stream ``name``'s pipeline."""
        return lambda: self._one(name)

    def _one(self, name: str) -> None:
        now = self._clock()
        seen = self._seen
        if name in seen:
            seen[name] = now
        if all(now - t <= self.within for t in list(seen.values())):
            self._beat()

    def retire(self, name: str) -> None:
        self._seen.pop(name, None)
