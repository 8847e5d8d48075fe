"""Reading what is still readable from a damaged spool file.

A spool that SQLite calls corrupt usually has one or a few bad pages; the events on the
other pages are intact and were never delivered. Throwing them away with the file
loses them, so before starting afresh the spool (listener/mqtt/spool.py) copies them
over with :func:`read_rows`.

How: an ordered scan (``seq > after``) reads rows until it reaches a bad page; from
there single-row look-ups (``seq = n``), which touch only the page holding ``n``, step
over the damage one sequence number at a time until a page answers again, and the
scan resumes. (Python's sqlite3 reads one row ahead, so the row before a bad page is
fetched again by the first look-up.) The look-ups stop at the highest sequence number
the file knows (``max(seq)`` or ``sqlite_sequence``) and after :data:`MAX_PROBES`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

SpoolRecord = tuple[str, str, str, float]  # event_id, trigger, payload, created

MAX_PROBES = 200_000  # single-row look-ups spent stepping over damaged pages, in all

_COLUMNS = "seq, event_id, trigger, payload, created"


def read_rows(path: Path) -> tuple[list[SpoolRecord], str | None]:
    """Every readable event of the spool file ``path``, oldest first, and what went
    wrong while reading (None when nothing did)."""
    try:
        db = sqlite3.connect(str(path))
    except sqlite3.Error as exc:
        return [], str(exc)
    try:
        return _scan(db, _top(db))
    finally:
        db.close()


def _top(db: sqlite3.Connection) -> int | None:
    """The highest sequence number the file knows, if any page that says so is readable."""
    found: list[int] = []
    for query in ("SELECT max(seq) FROM events",
                  "SELECT seq FROM sqlite_sequence WHERE name = 'events'"):
        with contextlib.suppress(sqlite3.Error):
            row = db.execute(query).fetchone()
            if row is not None and row[0] is not None:
                found.append(int(row[0]))
    return max(found) if found else None


def _scan(db: sqlite3.Connection, top: int | None) -> tuple[list[SpoolRecord], str | None]:
    rows: list[SpoolRecord] = []
    problem: str | None = None
    after, probes = 0, 0
    while True:
        try:
            for seq, *rest in db.execute(
                    f"SELECT {_COLUMNS} FROM events WHERE seq > ? ORDER BY seq", (after,)):
                rows.append((str(rest[0]), str(rest[1]), str(rest[2]), float(rest[3])))
                after = int(seq)
            return rows, problem
        except sqlite3.DatabaseError as exc:
            problem = problem or str(exc)
        # Step over the damage: look rows up one by one until a page answers.
        while True:
            if top is None or after >= top or probes >= MAX_PROBES:
                return rows, problem
            after += 1
            probes += 1
            try:
                row = db.execute(f"SELECT {_COLUMNS} FROM events WHERE seq = ?",
                                 (after,)).fetchone()
            except sqlite3.DatabaseError:
                continue
            if row is not None:
                rows.append((str(row[1]), str(row[2]), str(row[3]), float(row[4])))
            break
