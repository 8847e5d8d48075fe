"""systemd notifications (READY, WATCHDOG, STATUS, STOPPING) without a systemd dependency.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named
in ``$NOTIFY_SOCKET`` (a leading ``@`` means the Linux abstract namespace). When
the variable is unset (not under systemd, or in a terminal) every call is a cheap
no-op, so the daemon calls it unconditionally. The watchdog interval comes from
``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, which must be us if set); pings are
rate-limited to half of it, so the processing loop may call :meth:`watchdog`
after every window without flooding the socket.
"""

from __future__ import annotations

import os
import socket
import threading
import time


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET`` (no-op when it is unset)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)
        self._last_ping = 0.0
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, message: str) -> bool:
        """Send one datagram; False when not under systemd or the send failed."""
        if self.address is None:
            return False
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.setblocking(False)
                self._sock.sendto(message.encode("utf-8"), self.address)
                return True
            except OSError:
                # systemd gone or socket full: never let a notification break the daemon.
                return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def watchdog(self, force: bool = False) -> bool:
        """WATCHDOG=1, at most once per half watchdog interval (unless ``force``)."""
        if self.address is None or self.watchdog_interval is None:
            return False
        now = time.monotonic()
        if not force and now - self._last_ping < self.watchdog_interval / 2:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _address(raw: str) -> str | bytes | None:
    if not raw:
        return None
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    return None  # vsock and other schemes are not used by the service manager we target


def _watchdog_interval(env: os._Environ[str] | dict[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


def _one_line(text: str) -> str:
    return " ".join(text.split())
