"""The live feed: the newest detector result, handed from the processing thread to
browsers without ever making the processing thread wait for them.

:meth:`LiveFeed.on_result` (a sink; runs on the processing thread) only swaps a
reference and wakes the waiting web threads. Each browser's stream thread sends the
newest result when it wakes, at most ``MIN_INTERVAL`` apart, and builds the JSON
itself: a slow or stalled browser misses intermediate results, it never queues them,
and never delays a window. Events are counted so the page knows to refresh its list.
"""

from __future__ import annotations

import threading
from typing import Any

from listener.detect.detector import DetectorResult

MIN_INTERVAL = 0.2  # seconds between two messages to one browser (a file scans fast)


class LiveFeed:
    def __init__(self, stream: str | None = None) -> None:
        #: the stream the page follows (several streams: the first); None: every result
        self.stream = stream
        self._cond = threading.Condition()
        self._seq = 0
        self._events = 0
        self._result: DetectorResult | None = None
        self._window: DetectorResult | None = None  # the newest result with a window
        self.closed = False

    def on_result(self, result: DetectorResult) -> None:
        if self.stream is not None and result.stream != self.stream:
            return
        with self._cond:
            self._seq += 1
            self._events += len(result.events)
            self._result = result
            if result.window is not None:
                self._window = result
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait(self, after: int, timeout: float) -> tuple[int, dict[str, Any] | None]:
        """The newest state once it is newer than ``after`` (or None after ``timeout``)."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after or self.closed, timeout)
            if self._seq <= after or self._result is None:
                return after, None
            seq, result, window, events = self._seq, self._result, self._window, self._events
        return seq, live_message(result, window, events)


def live_message(result: DetectorResult, window: DetectorResult | None, events: int
                 ) -> dict[str, Any]:
    """What the page draws: level, each trigger's score against its thresholds."""
    w = window.window if window is not None else None
    return {
        "level_dbfs": None if w is None else round(w.level_dbfs, 1),
        "window_end": None if w is None else round(w.end, 3),
        "gated": None if w is None else w.gated,
        "events_seen": events,
        "triggers": [
            {"name": t.name, "score": round(t.score, 4), "active": t.active,
             "enabled": t.enabled, "qualifies": t.qualifies, "match": t.match,
             "on_threshold": t.settings.on_threshold,
             "off_threshold": t.settings.off_threshold}
            for t in result.triggers
        ],
    }
