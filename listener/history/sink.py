"""The history as a sink of detector results, written off the processing thread.

:meth:`HistorySink.on_result` only appends to a queue; a writer thread batches the
rows into SQLite (listener/history/store.py) and applies retention. A slow disk
therefore never delays a window. Events are written within a second; windows a block
at a time (a block is a row: ``BLOCK_WINDOWS`` windows, or what ``BLOCK_SECONDS``
brought), so `listener search` sees the last minute once it is written, and the web
page, in the same process, adds the windows still waiting (:meth:`pending`). Windows
are dropped (and counted) when the writer falls more than ``MAX_PENDING`` behind;
events never are: they are few, and nothing the detector decided may be lost.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from listener.detect.detector import DetectorResult
from listener.detect.events import DEFAULT_STREAM, Event
from listener.history.store import BLOCK_WINDOWS, HistoryWriter, WindowRow
from listener.logs import get_logger

if TYPE_CHECKING:
    from listener.config.schema import HistoryConfig

log = get_logger("listener.history")

MAX_PENDING = 600  # windows waiting for the writer before new ones are dropped
BATCH_SECONDS = 1.0  # how often the writer commits
BLOCK_SECONDS = 60.0  # the longest windows wait for their block to fill
RETAIN_SECONDS = 60.0  # how often retention runs


class HistorySink:
    """Records events and window embeddings of one stream."""

    def __init__(self, writer_factory: Callable[[], HistoryWriter], stream: str = DEFAULT_STREAM,
                 wall_time: Callable[[float], float] | None = None) -> None:
        self.stream = stream
        #: stream seconds -> UNIX seconds (the pipeline's clock; set once it exists)
        self.wall_time = wall_time or (lambda t: time.time())
        #: per stream name, its pipeline's clock (several streams; else ``wall_time``)
        self.clocks: dict[str, Callable[[float], float]] = {}
        self._factory = writer_factory
        self._events: queue.SimpleQueue[tuple[Event, str]] = queue.SimpleQueue()
        self._windows: queue.SimpleQueue[WindowRow] = queue.SimpleQueue()
        self._stop = threading.Event()
        self.dropped = 0
        self.failures = 0
        self._block: list[WindowRow] = []  # windows waiting for their block (writer's)
        self._block_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="listener-history", daemon=True)
        self._thread.start()

    def on_result(self, result: DetectorResult) -> None:
        """From any stream's pipeline thread: rows carry the result's stream name."""
        for event in result.events:
            self._events.put((event, event.stream))
        w = result.window
        if w is None or w.embedding is None:
            return
        if self._windows.qsize() >= MAX_PENDING:
            self.dropped += 1
            return
        clock = self.clocks.get(result.stream, self.wall_time)
        self._windows.put(WindowRow(clock(w.end), result.stream, w.end - w.start,
                                    w.window_level_dbfs, w.embedding))

    def _drain(self) -> list[tuple[Event, str]]:
        """Queued events; queued windows move to the block being filled."""
        events, windows = [], []
        while not self._events.empty():
            events.append(self._events.get())
        while not self._windows.empty():
            windows.append(self._windows.get())
        with self._block_lock:
            self._block.extend(windows)
        return events

    def pending(self) -> list[WindowRow]:
        """Windows not written yet (the page scores them with the stored ones)."""
        with self._block_lock:
            return list(self._block)

    def _run(self) -> None:
        try:
            writer = self._factory()
        except Exception as exc:
            log.error("history not recorded: cannot open its database", error=str(exc))
            return
        next_retain = 0.0
        block_due = time.monotonic() + BLOCK_SECONDS
        try:
            while True:
                stopping = self._stop.wait(BATCH_SECONDS)
                events = self._drain()
                now = time.monotonic()
                full = len(self._block) >= BLOCK_WINDOWS or now >= block_due or stopping
                if full:
                    block_due = now + BLOCK_SECONDS
                if events or (full and self._block):
                    self._write(writer, events, full)
                if now >= next_retain:
                    next_retain = now + RETAIN_SECONDS
                    self._guard(writer.retain)
                if stopping:
                    return
        finally:
            writer.close()

    def _write(self, writer: HistoryWriter, events: list, with_block: bool) -> None:
        with self._block_lock:
            block = list(self._block) if with_block else []
        if self._guard(lambda: writer.add(events, block)) and block:
            with self._block_lock:
                del self._block[:len(block)]

    def _guard(self, step: Callable[[], None]) -> bool:
        try:
            step()
            return True
        except Exception as exc:  # a full disk must not stop detection
            self.failures += 1
            level = log.error if self.failures == 1 else log.debug
            level("history write failed; detection goes on", error=str(exc),
                  failures=self.failures)
            if len(self._block) > 10 * BLOCK_WINDOWS:  # bounded while the disk is full
                with self._block_lock:
                    self.dropped += len(self._block)
                    self._block.clear()
            return False

    def close(self) -> None:
        """Write what is queued and stop the writer."""
        self._stop.set()
        self._thread.join(timeout=10.0)


def history_sink(path: Path, cfg: HistoryConfig, stream: str = DEFAULT_STREAM) -> HistorySink:
    """A sink writing to ``path`` with the retention of ``web.history`` (``cfg``)."""
    return HistorySink(lambda: HistoryWriter(
        path, cfg.events_max_age_days, cfg.events_max_rows, cfg.embeddings_hours,
        cfg.embeddings_max_mb), stream)
