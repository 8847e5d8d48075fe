"""The on-disk event spool: no event is lost to a broker outage, a crash or a reboot.

Every event is inserted into the spool file (SQLite in the state directory, WAL mode,
``synchronous=FULL`` so an acknowledged insert survives power loss) *before* it is
published, and deleted only when the broker acknowledges the QoS 1 publish. Rows keep
their insertion order (``seq``), so a backlog is re-sent in the order it happened,
with the event's original id and timestamps (consumers dedupe by id + event_type).

The spool is bounded by count (``max_events``) and age (``max_age_days``); whatever
is dropped is logged at error level with counts, never silently. One connection is
shared by the pipeline thread (insert) and the MQTT worker (read/delete) under a lock.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("listener.spool")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    trigger TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass(frozen=True)
class SpoolRow:
    seq: int
    event_id: str
    trigger: str
    payload: str
    created: float


class Spool:
    """A bounded FIFO of event payloads in SQLite; thread-safe."""

    def __init__(self, path: Path, max_events: int, max_age_days: float) -> None:
        self.path = Path(path)
        self.max_events = int(max_events)
        self.max_age_s = float(max_age_days) * 86400.0
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            # A damaged file must not stop the daemon: keep it for inspection, start afresh.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error(
                "event spool is damaged; moved aside and starting an empty one "
                "(events in it were not delivered)",
                path=str(self.path), moved_to=str(aside), error=str(exc),
            )
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            self._db = self._open()
        self.prune()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(_SCHEMA)
            db.execute("SELECT count(*) FROM events").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def add(self, event_id: str, trigger: str, payload: str, now: float | None = None) -> int:
        """Append one event (durable when this returns); returns its sequence number."""
        created = time.time() if now is None else now
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO events (event_id, trigger, payload, created) VALUES (?, ?, ?, ?)",
                (event_id, trigger, payload, created),
            )
            seq = int(cur.lastrowid or 0)
            count = self._count()
            over = count - self.max_events
            if over > 0:
                self._drop_oldest(over, count)
        return seq

    def _drop_oldest(self, n: int, count: int) -> None:
        first = self._db.execute(
            "SELECT event_id, created FROM events ORDER BY seq LIMIT 1"
        ).fetchone()
        self._db.execute(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?)", (n,)
        )
        log.error(
            "event spool full: dropped the oldest undelivered events "
            "(the broker has been unreachable too long; raise mqtt.spool.max_events to keep more)",
            dropped=n, kept=count - n, max_events=self.max_events,
            oldest_dropped_id=first[0] if first else None, path=str(self.path),
        )

    def prune(self, now: float | None = None) -> int:
        """Drop events older than max_age_days (and any excess over max_events)."""
        now = time.time() if now is None else now
        with self._lock:
            cutoff = now - self.max_age_s
            old = self._db.execute(
                "SELECT count(*) FROM events WHERE created < ?", (cutoff,)
            ).fetchone()[0]
            if old:
                self._db.execute("DELETE FROM events WHERE created < ?", (cutoff,))
                log.error(
                    "event spool: dropped undelivered events older than mqtt.spool.max_age_days",
                    dropped=old, kept=self._count(), max_age_days=self.max_age_s / 86400.0,
                    path=str(self.path),
                )
            count = self._count()
            over = count - self.max_events
            if over > 0:
                self._drop_oldest(over, count)
                old += over
        return int(old)

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[SpoolRow]:
        """Rows with seq > after_seq, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, trigger, payload, created FROM events "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [SpoolRow(*r) for r in rows]

    def remove(self, seqs: list[int]) -> None:
        if not seqs:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])
            finally:
                self._db.execute("COMMIT")

    def _count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def count(self) -> int:
        with self._lock:
            return self._count()

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()
