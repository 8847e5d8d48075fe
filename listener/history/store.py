"""The history database: past events and every scored window's audio embedding.

One SQLite file in the state directory (``history.sqlite3``, named by
listener/service/state_files.py), separate from the MQTT spool: the spool forgets an
event once the broker acknowledged it, the history keeps it for the web page and
`listener search` until its retention ends.

- ``events``: every start and end, its JSON exactly as MQTT and `scan` print it
  (listener/detect/events.py), with its trigger, stream, wall time and clip path.
- ``windows``: scored windows in blocks of up to ``BLOCK_WINDOWS`` consecutive ones of a
  stream (one row per block: reading a day's 86,400 one-window rows cost SQLite about
  half a second, 1,440 blocks a few milliseconds): each window's end (UNIX seconds),
  length, level and L2-normalised embedding as float16 (half the bytes of float32; the
  effect on scores is measured in benchmarks/bench_history.py). No audio is stored.

WAL mode: the daemon's writer thread appends while the web page and `listener search`
read from other connections without waiting. Retention runs in the writer, by age and
by size, so the file stays bounded whatever the uptime.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from listener.detect.events import Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL, type TEXT NOT NULL, trigger TEXT NOT NULL, stream TEXT NOT NULL,
    ts REAL NOT NULL, clip TEXT, json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_id ON events (id);
CREATE TABLE IF NOT EXISTS windows (
    stream TEXT NOT NULL, t_first REAL NOT NULL, t_last REAL NOT NULL, n INTEGER NOT NULL,
    ts BLOB NOT NULL, seconds BLOB NOT NULL, level BLOB NOT NULL, emb BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS windows_t_last ON windows (t_last);
"""

BLOCK_WINDOWS = 60  # windows per row: a day is 1,440 rows, read in a blink

START_SLACK = 3.0  # seconds a start event may be confirmed after its sound began


def iso_ts(iso: str) -> float:
    """An event's wall time (``time``, UTC ISO-8601 with Z) as UNIX seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class WindowRow:
    ts: float  # UNIX seconds of the window's end
    stream: str
    seconds: float  # window length
    level: float  # dBFS of the whole window
    embedding: np.ndarray  # float32 [D], L2-normalised


@dataclass(frozen=True)
class Windows:
    """A block of stored windows as arrays (what search scores)."""

    ts: np.ndarray  # float64 [N]
    streams: list[str]
    seconds: np.ndarray  # float32 [N]
    level: np.ndarray  # float32 [N]
    emb: np.ndarray  # float16 [N, D]

    def select(self, keep: np.ndarray) -> Windows:
        return Windows(self.ts[keep], [s for s, k in zip(self.streams, keep, strict=True) if k],
                       self.seconds[keep], self.level[keep], self.emb[keep])

    @classmethod
    def of(cls, rows: Sequence[WindowRow]) -> Windows:
        return cls(np.asarray([w.ts for w in rows], np.float64), [w.stream for w in rows],
                   np.asarray([w.seconds for w in rows], np.float32),
                   np.asarray([w.level for w in rows], np.float32),
                   np.asarray([w.embedding for w in rows], np.float16))


def blocks(windows: Sequence[WindowRow]) -> Iterator[Windows]:
    """Consecutive windows of one stream, at most BLOCK_WINDOWS at a time."""
    by_stream: dict[str, list[WindowRow]] = {}
    for w in windows:
        by_stream.setdefault(w.stream, []).append(w)
    for rows in by_stream.values():
        for i in range(0, len(rows), BLOCK_WINDOWS):
            yield Windows.of(rows[i:i + BLOCK_WINDOWS])


def _block_row(b: Windows) -> tuple[Any, ...]:
    return (b.streams[0], float(b.ts[0]), float(b.ts[-1]), int(b.ts.size), b.ts.tobytes(),
            b.seconds.tobytes(), b.level.tobytes(), b.emb.tobytes())


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0,
                             check_same_thread=False)
    else:
        db = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        with contextlib.suppress(OSError):
            path.chmod(0o600)  # a household's events
    return db


class HistoryWriter:
    """Appends rows and applies retention; used by one thread (the history sink's)."""

    def __init__(self, path: Path, events_max_age_days: float = 30.0,
                 events_max_rows: int = 100000, embeddings_hours: float = 24.0,
                 embeddings_max_mb: float = 200.0) -> None:
        self.path = path
        self.db = connect(path)
        self.events_max_age = events_max_age_days * 86400.0
        self.events_max_rows = events_max_rows
        self.windows_max_age = embeddings_hours * 3600.0
        self.windows_max_bytes = embeddings_max_mb * 1e6

    def add(self, events: Sequence[tuple[Event, str]], windows: Sequence[WindowRow]) -> None:
        """One transaction for a batch (one fsync per batch, not per window)."""
        with self.db:
            self.db.executemany(
                "INSERT INTO events (id, type, trigger, stream, ts, clip, json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.id, e.type, e.trigger, s, iso_ts(e.time), e.clip, e.to_json())
                 for e, s in events])
            self.db.executemany(
                "INSERT INTO windows (stream, t_first, t_last, n, ts, seconds, level, emb)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [_block_row(b) for b in blocks(windows)])

    def retain(self, now: float | None = None) -> None:
        """Drop what is older than the retention, then the oldest beyond the size caps."""
        now = time.time() if now is None else now
        with self.db:
            self.db.execute("DELETE FROM events WHERE ts < ?", (now - self.events_max_age,))
            self.db.execute(
                "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?",
                (self.events_max_rows,))
            self.db.execute("DELETE FROM windows WHERE t_last < ?",
                            (now - self.windows_max_age,))
            sizes = self.db.execute(
                "SELECT rowid, LENGTH(emb) + LENGTH(ts) + LENGTH(seconds) + LENGTH(level) + 64"
                " FROM windows ORDER BY t_last DESC").fetchall()
            total, drop = 0, []
            for rowid, size in sizes:
                total += size
                if total > self.windows_max_bytes:
                    drop.append((rowid,))
            self.db.executemany("DELETE FROM windows WHERE rowid = ?", drop)

    def close(self) -> None:
        self.db.close()


class HistoryReader:
    """Queries for the web page and `listener search` (a read-only connection)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = connect(path, readonly=True)

    def close(self) -> None:
        self.db.close()

    def events(self, trigger: str | None = None, stream: str | None = None,
               since: float | None = None, until: float | None = None,
               type: str | None = None, before_seq: int | None = None, limit: int = 50
               ) -> list[tuple[int, dict[str, Any]]]:
        """Newest first: (seq, the event's JSON); page with ``before_seq``."""
        where, args = ["1=1"], []
        for col, op, val in (("trigger", "=", trigger), ("stream", "=", stream),
                             ("ts", ">=", since), ("ts", "<", until), ("type", "=", type),
                             ("seq", "<", before_seq)):
            if val is not None:
                where.append(f"{col} {op} ?")
                args.append(val)
        rows = self.db.execute(
            f"SELECT seq, json FROM events WHERE {' AND '.join(where)}"
            " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
        return [(seq, json.loads(text)) for seq, text in rows]

    def event(self, event_id: str) -> list[dict[str, Any]]:
        """The start and end rows of one event id, oldest first."""
        rows = self.db.execute("SELECT json FROM events WHERE id = ? ORDER BY seq",
                               (event_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def clip_near(self, start: float, end: float, stream: str) -> dict[str, Any] | None:
        """The first event with a clip whose sound overlaps a span: it ended (its end
        window) after the span began and started (its confirming window, about a hop
        after the sound began) by the span's end."""
        row = self.db.execute(
            "SELECT e.json FROM events e JOIN events s ON s.id = e.id AND s.type = 'start'"
            " WHERE e.type = 'end' AND e.clip IS NOT NULL AND e.stream = ? AND e.ts >= ?"
            " AND s.ts <= ? ORDER BY e.ts LIMIT 1", (stream, start, end + START_SLACK)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def window_blocks(self, since: float, stream: str | None = None,
                      until: float | None = None) -> Iterator[Windows]:
        """Stored windows ending in [since, until], a block at a time, in the order they
        were written (memory stays bounded whatever the retention)."""
        sql = ("SELECT stream, ts, seconds, level, emb FROM windows WHERE t_last >= ?"
               " AND t_first <= ?")
        args: list[Any] = [since, float("inf") if until is None else until]
        if stream is not None:
            sql += " AND stream = ?"
            args.append(stream)
        # rowid order is time order within a stream; search sorts across streams
        for name, ts, seconds, level, emb in self.db.execute(sql, args):
            w = Windows(np.frombuffer(ts, np.float64), [name] * (len(ts) // 8),
                        np.frombuffer(seconds, np.float32), np.frombuffer(level, np.float32),
                        np.frombuffer(emb, np.float16).reshape(len(ts) // 8, -1))
            keep = (w.ts >= since) & (w.ts <= args[1])
            yield w if keep.all() else w.select(keep)

    def counts(self) -> dict[str, int]:
        return {"events": int(self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]),
                "windows": int(self.db.execute("SELECT COALESCE(SUM(n), 0) FROM windows"
                                               ).fetchone()[0])}
