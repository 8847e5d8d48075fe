"""Events that started and have not ended yet, kept on disk so a crash cannot orphan them.

Home Assistant shows a sound as "on" from its start event until its end event. If the
daemon dies in between (SIGKILL, power cut, out of memory), nothing would ever send
the end: the entity stays on forever. So every start is written to the state
directory's ``open_events.json`` as it happens, removed again with its end, and the
file's modification time is refreshed while the daemon runs (:meth:`alive`). At the
next start-up :meth:`OpenEvents.recover` turns whatever is still open into end
events with ``details.reason: "restart"`` and the time the daemon last knew it was
running, which then go out like any other event (log, MQTT spool).

It is a sink: it reads the detector's results like every other consumer.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from listener.detect.detector import DetectorResult
from listener.detect.events import Event, utc_iso
from listener.files import atomic_write
from listener.logs import get_logger

log = get_logger("listener.open_events")

ALIVE_EVERY = 10.0  # seconds between "still running" marks (an orphan's end is at most this early)


class OpenEvents:
    """start event id -> the start event (as JSON), persisted on every change."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._open: dict[str, dict[str, Any]] = {}
        self._alive_at = 0.0

    def _save(self) -> None:
        try:
            atomic_write(self.path, json.dumps({"open": self._open}, separators=(",", ":")),
                         mode=0o600)
        except OSError as exc:
            log.error("cannot record open events; a crash now would leave them open in "
                      "Home Assistant", path=str(self.path), error=str(exc))

    def on_result(self, result: DetectorResult) -> None:
        if not result.events:
            return
        for ev in result.events:
            if ev.type == "start":
                self._open[ev.id] = ev.to_dict()
            else:
                self._open.pop(ev.id, None)
        self._save()

    def close(self) -> None:
        pass

    def alive(self, now: float | None = None) -> None:
        """Mark "still running" (cheap, rate-limited): the file's modification time."""
        now = time.time() if now is None else now
        if now - self._alive_at < ALIVE_EVERY:
            return
        self._alive_at = now
        try:
            if not self.path.exists():
                self._save()
            os.utime(self.path, (now, now))
        except OSError:
            pass  # the next write or mark tries again

    def recover(self) -> list[Event]:
        """End events for starts a previous run never ended; the record is cleared."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            last_alive = self.path.stat().st_mtime
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("ignoring an unreadable record of open events", path=str(self.path),
                        error=str(exc))
            return []
        starts = [d for d in (data.get("open") or {}).values() if isinstance(d, dict)]
        ends = [_end_of(d, last_alive) for d in starts]
        if ends:
            log.warning("a previous run stopped with events open; ending them",
                        count=len(ends), last_alive=utc_iso(last_alive),
                        triggers=sorted({e.trigger for e in ends}))
        self._open = {}
        self._save()
        return ends


def _end_of(start: dict[str, Any], last_alive: float) -> Event:
    """The end a crashed run owed: at the last moment it was known to run."""
    began = _unix(start.get("time"))
    duration = max(0.0, last_alive - began) if began is not None else None
    details = {**(start.get("details") or {}), "reason": "restart",
               "last_alive": utc_iso(last_alive)}
    return Event(
        type="end", id=str(start["id"]), trigger=str(start["trigger"]),
        score=float(start.get("score", 0.0)), peak_score=float(start.get("peak_score", 0.0)),
        match=str(start.get("match", "")), window_start=float(start.get("window_start", 0.0)),
        window_end=float(start.get("window_end", 0.0)), time=utc_iso(last_alive),
        model=str(start.get("model", "")), duration=duration, details=details,
    )


def _unix(iso: Any) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
