"""Where the pipeline hands its events: the spool, or memory while the disk refuses.

A full disk (or one that turned read-only) must neither stop detection nor lose an
event. When the spool cannot store an event it is held here, in memory and in order,
behind the spooled ones; the MQTT worker then either publishes the held events without
durability (when the spool's backlog has been handed to the broker, so the order
holds) or, every :data:`RETRY_SECONDS`, tries to write them into the spool again, where
they become durable. The refusal is logged once per episode, with the reason, and its
end once, with the number of events stored late; not a line per event.

New events are held, not spooled, while any are held, so the spool never gets an event
ahead of an older one. Memory is bounded like the spool (``max_events``); what is
dropped beyond it is logged at error level with counts.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque

import structlog

from listener.mqtt.salvage import SpoolRecord
from listener.mqtt.spool import Spool, why_unwritable

log = structlog.get_logger("listener.spool")

RETRY_SECONDS = 1.0  # how often the worker tries the spool again while it refuses


class Holdback:
    """The spool's intake; thread-safe (pipeline thread adds, the MQTT worker drains)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._lock = threading.Lock()
        self._held: deque[SpoolRecord] = deque()
        self._refusing = False  # new events go to memory until the next successful retry
        self._reported = False  # the refusal was logged and its end not yet
        self._next_try = 0.0
        self._stored_late = self._sent_unspooled = 0  # this episode's events, for its end

    def add(self, event_id: str, trigger: str, payload: str) -> None:
        """Spool one event (durable on return), or hold it when the spool refuses."""
        record = (event_id, trigger, payload, time.time())
        with self._lock:
            if not self._refusing:
                try:
                    self.spool.add(*record[:3], now=record[3])
                except sqlite3.Error as exc:
                    self._refused(exc)
                else:
                    self._recovered()
                    return
            self._hold(record)

    def retry(self, now: bool = False) -> None:
        """Try the spool again (at most every RETRY_SECONDS unless ``now``): held events
        become durable."""
        t = time.monotonic()
        with self._lock:
            if not self._refusing or (t < self._next_try and not now):
                return
            self._next_try = t + RETRY_SECONDS
            try:
                if self._held:
                    self.spool.add_many(list(self._held))
                else:  # all were published meanwhile: does the disk take writes again?
                    self.spool.touch()
            except sqlite3.Error as exc:
                log.debug("event spool still refuses writes", held=len(self._held),
                          error=str(exc))
                return
            self._stored_late += len(self._held)
            self._held.clear()
            self._refusing = False
            self._recovered()

    def take(self) -> list[SpoolRecord]:
        """The held events, for publishing without durability; they are no longer held."""
        with self._lock:
            taken = list(self._held)
            self._held.clear()
            self._sent_unspooled += len(taken)
        return taken

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def _refused(self, exc: sqlite3.Error) -> None:
        self._refusing = True
        self._next_try = time.monotonic() + RETRY_SECONDS
        if self._reported:
            log.debug("event spool refused a write again", error=str(exc))
            return
        self._reported = True
        self._stored_late = self._sent_unspooled = 0
        cause, fix = why_unwritable(self.spool.path, exc)
        log.error(
            f"cannot write events to the spool ({cause}); holding them in memory, publishing "
            f"them without durability and retrying the spool every {RETRY_SECONDS:g} s; {fix}",
            path=str(self.spool.path), error=str(exc),
        )

    def _recovered(self) -> None:
        if self._reported:
            self._reported = False
            log.info("event spool takes writes again", path=str(self.spool.path),
                     stored_late=self._stored_late, sent_without_spool=self._sent_unspooled)

    def _hold(self, record: SpoolRecord) -> None:
        self._held.append(record)
        over = len(self._held) - self.spool.max_events
        if over > 0:
            first = self._held[0][0]
            for _ in range(over):
                self._held.popleft()
            log.error(
                "events held in memory exceed mqtt.spool.max_events: dropped the oldest "
                "(the spool refuses writes and the broker is unreachable)",
                dropped=over, kept=len(self._held), oldest_dropped_id=first,
            )
