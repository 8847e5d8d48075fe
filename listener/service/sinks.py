"""Where the detector's results go: one small interface, one fan-out.

A sink gets every :class:`~listener.detect.detector.DetectorResult` in order: one per
scored window, plus one for each switch, reload and the end of the stream (those
have ``window`` None and may carry events). Sinks must not block: MQTT spools to
disk and publishes from its own thread. The pipeline hands results to exactly one
sink, a :class:`FanOut`, which isolates the others from a sink that fails.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from listener.detect.detector import DetectorResult
from listener.logs import get_logger

log = get_logger("listener.sinks")


class Sink(Protocol):
    def on_result(self, result: DetectorResult) -> None:
        """The detector's newest result: states of every trigger, scores, events."""

    def close(self) -> None:
        """Flush and release resources; called once by whoever made the sink."""


class FanOut:
    """Forwards every result to each sink in order.

    With ``isolate`` (the daemon) a failing sink is logged (with its traceback the
    first time, then at debug level) and counted, and the others go on: a broken MQTT
    connection must not stop the log. Without it (`scan`, `top`, `calibrate`, whose
    output sink is the product) the error ends the command as it would without a
    fan-out, e.g. ``listener scan ... | head`` exits quietly on the closed pipe.
    """

    def __init__(self, sinks: Iterable[Sink] = (), isolate: bool = True) -> None:
        self.sinks: list[Sink] = list(sinks)
        self.isolate = isolate
        self.failures: Counter[str] = Counter()
        # several streams' pipelines call in from their own threads: one result at a time
        # (re-entrant: a sink may switch a trigger, whose end comes back through here)
        self._lock = threading.RLock()

    def add(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def on_result(self, result: DetectorResult) -> None:
        with self._lock:
            self._forward(result)

    def _forward(self, result: DetectorResult) -> None:
        for sink in self.sinks:
            try:
                sink.on_result(result)
            except Exception as exc:
                if not self.isolate:
                    raise
                name = type(sink).__name__
                self.failures[name] += 1
                if self.failures[name] == 1:
                    log.exception("sink failed; the other sinks go on", sink=name)
                else:
                    log.debug("sink failed again", sink=name, error=str(exc),
                              failures=self.failures[name])

    def close(self) -> None:
        """Close every sink (a failing close does not stop the others)."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("sink failed to close", sink=type(sink).__name__)


class LogSink:
    """Logs every event (one structured line each); scores only at debug level."""

    def on_result(self, result: DetectorResult) -> None:
        if result.window is not None:
            log.debug("scores", window_end=round(result.window.end, 3),
                      scores={t.name: round(t.score, 4) for t in result.triggers})
        for event in result.events:
            d = event.to_dict()
            details = d.pop("details", None) or {}
            kind = d.pop("type")
            if kind == "end":  # why it ended: threshold, no_audio, disabled, end_of_stream...
                d["reason"] = details.get("reason")
            log.info(f"event {kind}", **d)

    def close(self) -> None:
        pass
