"""The on-disk event spool: no event is lost to a broker outage, a crash or a reboot.

Every event is inserted into the spool file (SQLite in the state directory, WAL mode,
``synchronous=FULL`` so an acknowledged insert survives power loss) *before* it is
published, and deleted only when the broker acknowledges the QoS 1 publish. Rows keep
their insertion order (``seq``), so a backlog is re-sent in the order it happened,
with the event's original id and timestamps (consumers dedupe by id + event_type).

The spool is bounded by count (``max_events``) and age (``max_age_days``); whatever
is dropped is logged at error level with counts, never silently. One connection is
shared by the pipeline thread (insert) and the MQTT worker (read/delete) under a lock.

Opening it tells a damaged file from a disk that cannot take writes, because only the
first may cost the file: a spool that is really corrupt (SQLite says "malformed" or
"not a database", or ``quick_check`` fails) is moved aside and the rows that can still
be read are copied into a fresh one (listener/mqtt/salvage.py), so they are delivered.
A full or read-only disk, or missing permissions, raise :class:`SpoolUnavailable` and
leave the file as it is: its events go out once the listener can start again.

The spool holds what was heard and when, so its files are the listener user's alone
(0600, whatever the umask; SQLite gives the -wal and -shm files the database's mode).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from listener.errors import UserError
from listener.mqtt.salvage import SpoolRecord, read_rows

log = structlog.get_logger("listener.spool")

_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 11, 13, 26
_SIDE_FILES = ("-wal", "-shm")

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


class SpoolUnavailable(UserError):
    """The spool cannot be opened, and it is not the file's fault (a full or read-only
    disk, permissions): the file is left untouched. Exit 2 at start-up."""


def is_corrupt(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file itself is damaged (not the disk under it)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def is_disk_full(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == _SQLITE_FULL) or \
        getattr(exc, "errno", None) == errno.ENOSPC or "disk is full" in str(exc)


def why_unwritable(path: Path, exc: BaseException) -> tuple[str, str]:
    """(cause, fix) for an error that is the disk's or the permissions' fault."""
    directory = path.parent
    try:
        st: os.statvfs_result | None = os.statvfs(directory)
    except OSError:
        st = None
    if (st is not None and st.f_flag & os.ST_RDONLY) or getattr(exc, "errno", None) == errno.EROFS:
        return ("its file system is read-only",
                "make state_dir (or $STATE_DIRECTORY) a directory on a writable file system")
    if not directory.is_dir():
        return (f"{directory} is not a directory and cannot be made one",
                "set state_dir (or $STATE_DIRECTORY) to a writable directory")
    if is_disk_full(exc) or (st is not None and st.f_bavail == 0):
        return "the disk is full", f"free some space on the file system of {directory}"
    if not os.access(directory, os.W_OK) or \
            (path.exists() and not os.access(path, os.R_OK | os.W_OK)):
        return ("permission denied",
                f"make {directory} and the spool files writable for the listener user")
    return str(exc), f"check {directory} (free space, permissions, the file system)"


def _unavailable(path: Path, exc: BaseException) -> SpoolUnavailable:
    cause, fix = why_unwritable(path, exc)
    kept = ("the spool was left as it is and its events are sent once the listener starts; "
            if path.exists() else "")
    return SpoolUnavailable(
        f"cannot open the MQTT event spool {path}: {cause} ({exc}); {kept}{fix}")


def _make_private(path: Path) -> None:
    """Create the spool file 0600 whatever the umask (SQLite's -wal and -shm copy its
    mode); tighten files an older version left readable by others."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        for p in (path, *(Path(f"{path}{s}") for s in _SIDE_FILES)):
            with contextlib.suppress(OSError):
                if p.stat().st_mode & 0o077:
                    os.chmod(p, 0o600)
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """All or nothing; a failed write (a full disk) leaves no transaction open."""
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class Spool:
    """A bounded FIFO of event payloads in SQLite; thread-safe."""

    def __init__(self, path: Path, max_events: int, max_age_days: float) -> None:
        self.path = Path(path)
        self.max_events = int(max_events)
        self.max_age_s = float(max_age_days) * 86400.0
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not os.access(self.path.parent, os.W_OK):
                raise PermissionError(errno.EACCES, f"cannot write in {self.path.parent}")
            _make_private(self.path)
            self._db = self._open_or_replace()
            self.prune()
        except (OSError, sqlite3.Error) as exc:
            if hasattr(self, "_db"):
                self._db.close()
            raise _unavailable(self.path, exc) from None

    def _open_or_replace(self) -> sqlite3.Connection:
        try:
            return self._open()
        except sqlite3.DatabaseError as exc:
            if not is_corrupt(exc):
                raise
            return self._replace_damaged(exc)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(_SCHEMA)
            db.execute("SELECT count(*) FROM events").fetchone()
            check = db.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise sqlite3.DatabaseError(
                    "database disk image is malformed: " + "; ".join(r[0] for r in check[:3]))
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _replace_damaged(self, exc: sqlite3.DatabaseError) -> sqlite3.Connection:
        """Move a corrupt spool aside (with its WAL, which may hold the newest rows), start
        a fresh one and copy into it every row that can still be read."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        log.error("event spool is damaged; moved it aside, recovering what can be read",
                  path=str(self.path), moved_to=str(aside), error=str(exc))
        self.path.rename(aside)
        wal = Path(f"{self.path}-wal")
        if wal.exists():
            wal.rename(f"{aside}-wal")
        Path(f"{self.path}-shm").unlink(missing_ok=True)
        rows, problem = read_rows(aside)
        _make_private(self.path)
        db = self._open()
        if rows:
            self._insert_many(db, rows)
            log.warning("recovered events from the damaged spool; they will be delivered",
                        recovered=len(rows), unreadable=problem, moved_to=str(aside))
        elif problem is not None:
            log.error("no event could be read from the damaged spool; it is kept as "
                      f"{aside} (`sqlite3 {aside} .recover` may get more out of it)",
                      moved_to=str(aside), why=problem)
        else:
            log.info("the damaged spool held no events", moved_to=str(aside))
        return db

    @staticmethod
    def _insert_many(db: sqlite3.Connection, rows: list[SpoolRecord]) -> None:
        with _transaction(db):
            db.executemany(
                "INSERT INTO events (event_id, trigger, payload, created) VALUES (?, ?, ?, ?)",
                rows)

    def add(self, event_id: str, trigger: str, payload: str, now: float | None = None) -> int:
        """Append one event (durable when this returns); returns its sequence number."""
        created = time.time() if now is None else now
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO events (event_id, trigger, payload, created) VALUES (?, ?, ?, ?)",
                (event_id, trigger, payload, created),
            )
            seq = int(cur.lastrowid or 0)
            self._bound()
        return seq

    def add_many(self, records: list[SpoolRecord]) -> None:
        """Append events (event_id, trigger, payload, created) in one transaction: all are
        durable when this returns, or none was stored."""
        with self._lock:
            self._insert_many(self._db, records)
            self._bound()

    def touch(self) -> None:
        """One small durable write (the header's ``user_version``): raises while the disk
        refuses writes, so the intake learns when it takes them again."""
        with self._lock:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            self._db.execute(f"PRAGMA user_version = {(version + 1) % 1000}")

    def _bound(self) -> None:
        count = self._count()
        over = count - self.max_events
        if over > 0:
            self._drop_oldest(over, count)

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
        with self._lock, _transaction(self._db):
            self._db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])

    def _count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def count(self) -> int:
        with self._lock:
            return self._count()

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()
