"""The history database: past events and every scored window's audio embedding.

One SQLite file in the state directory (``history.sqlite3``, named by
listener/service/state_files.py), separate from the MQTT spool: the spool forgets an
event once the broker acknowledged it, the history keeps it for the web page and
`listener search` until its retention ends.

- ``events``: every start and end, its JSON exactly as MQTT and `scan` print it
  (listener/detect/events.py), with its trigger, stream, wall time and clip path.
- ``windows``: per scored window its end (UNIX seconds), stream, length, level and the
  L2-normalised embedding as float16 (half the bytes of float32; the effect on scores
  is measured in benchmarks/bench_history.py). No audio is stored here.

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
    ts REAL NOT NULL, stream TEXT NOT NULL, seconds REAL NOT NULL, level REAL NOT NULL,
    emb BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS windows_ts ON windows (ts);
"""

START_SLACK = 3.0  # seconds a start event may be confirmed after its sound began
ROW_OVERHEAD = 48  # bytes per window row besides the embedding (ts, stream, level, index)


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
                "INSERT INTO windows (ts, stream, seconds, level, emb) VALUES (?, ?, ?, ?, ?)",
                [(w.ts, w.stream, w.seconds, w.level,
                  np.asarray(w.embedding, np.float16).tobytes()) for w in windows])

    def retain(self, now: float | None = None) -> None:
        """Drop what is older than the retention, then the oldest beyond the size caps."""
        now = time.time() if now is None else now
        with self.db:
            self.db.execute("DELETE FROM events WHERE ts < ?", (now - self.events_max_age,))
            self.db.execute(
                "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?",
                (self.events_max_rows,))
            self.db.execute("DELETE FROM windows WHERE ts < ?", (now - self.windows_max_age,))
            row = self.db.execute("SELECT LENGTH(emb) FROM windows LIMIT 1").fetchone()
            if row is not None:
                keep = int(self.windows_max_bytes // (row[0] + ROW_OVERHEAD))
                self.db.execute(
                    "DELETE FROM windows WHERE rowid <= (SELECT MAX(rowid) FROM windows) - ?",
                    (keep,))

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

    def streams(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT stream FROM windows")]

    def window_blocks(self, since: float, stream: str | None = None, block: int = 20000
                      ) -> Iterator[Windows]:
        """Stored windows from ``since`` on, ordered by stream then time, in blocks (the
        memory a search needs stays bounded whatever the retention)."""
        sql = "SELECT ts, stream, seconds, level, emb FROM windows WHERE ts >= ?"
        args: list[Any] = [since]
        if stream is not None:
            sql += " AND stream = ?"
            args.append(stream)
        cur = self.db.execute(sql + " ORDER BY stream, ts", args)
        while rows := cur.fetchmany(block):
            ts, streams, seconds, level, embs = zip(*rows, strict=True)
            emb = np.frombuffer(b"".join(embs), np.float16).reshape(len(rows), -1)
            yield Windows(np.asarray(ts, np.float64), list(streams),
                          np.asarray(seconds, np.float32), np.asarray(level, np.float32), emb)

    def counts(self) -> dict[str, int]:
        return {t: int(self.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                for t in ("events", "windows")}
