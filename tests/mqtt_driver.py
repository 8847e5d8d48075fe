"""A tiny process that runs a real MqttPublisher, for crash and log tests; and the
helpers the MQTT tests share to feed a publisher what a detector would hand it.

    python -m tests.mqtt_driver --state-dir D --mqtt '{"host": ..., "port": ...}' \
        [--trigger smoke] [--pairs N] [--flush-exit SECONDS]

(tests start it with :func:`start_driver`).

It starts the publisher, emits N start/end event pairs (printing each event's JSON line on
stdout, then ``spooled``), and then either flushes and exits (``--flush-exit``: exit 0
when the spool emptied in time, else 1) or waits until SIGTERM/SIGINT (close, exit 0).
Logs are JSON lines on stderr, so tests can count error lines.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from listener.config.schema import MqttConfig, TriggerConfig
from listener.detect.detector import DetectorResult, ScoredWindow, TriggerState
from listener.detect.events import Event, new_event_id, utc_iso
from listener.detect.settings import TriggerSettings
from listener.mqtt.publisher import MqttPublisher, OnCommand
from listener.service.state_files import StateDir
from tests.helpers import start_cli

SETTINGS = TriggerSettings(0.3, 0.25, 1, 1.0, 0.0, 0.0)


def make_pair(trigger: str, t0: float) -> list[Event]:
    """A start and its end (same id), as the engine would emit them."""
    eid = new_event_id()
    common = dict(id=eid, trigger=trigger, match="a test sound", model="test-model")
    return [
        Event(type="start", score=0.5, peak_score=0.5, window_start=t0, window_end=t0 + 10,
              time=utc_iso(time.time()), **common),  # type: ignore[arg-type]
        Event(type="end", score=0.1, peak_score=0.6, window_start=t0 + 3, window_end=t0 + 13,
              time=utc_iso(time.time()), duration=3.0, **common),  # type: ignore[arg-type]
    ]


def send_pairs(sink: MqttPublisher, feed: Feed, name: str, starts: list[float]) -> list[Event]:
    """Hand ``sink`` a start/end pair of trigger ``name`` at each window start in
    ``starts``, one result per event, as a detector would; the events, in order."""
    events = [ev for t0 in starts for ev in make_pair(name, t0)]
    for ev in events:
        sink.on_result(feed.events(ev))
    return events


def trigger(name: str) -> TriggerConfig:
    return TriggerConfig(name=name, prompts=["a test sound"])


def publisher(cfg: MqttConfig, names: list[str], state_dir: Path, model_id: str = "m",
              on_command: OnCommand | None = None) -> MqttPublisher:
    """A publisher for triggers ``names`` keeping its files in ``state_dir``."""
    files = StateDir(Path(state_dir))
    return MqttPublisher(cfg, [trigger(n) for n in names], model_id, files.spool,
                         files.published_discovery, on_command=on_command)


def started(cfg: MqttConfig, names: list[str], state_dir: Path
            ) -> tuple[MqttPublisher, Feed]:
    """A started publisher that has seen the present state, and the feed for its results."""
    pub = publisher(cfg, names, state_dir)
    feed = Feed(names)
    pub.on_result(feed.snapshot())
    pub.start()
    return pub, feed


class Feed:
    """The results a detector would hand the publisher for triggers ``names`` (test data):
    states follow the events fed, scores and level come with windows."""

    def __init__(self, names: list[str], enabled: dict[str, bool] | None = None) -> None:
        self.active = {n: False for n in names}
        self.enabled = {n: True for n in names} | (enabled or {})
        self.scores = {n: 0.0 for n in names}

    def _result(self, window: ScoredWindow | None, events: tuple[Event, ...]) -> DetectorResult:
        states = tuple(
            TriggerState(name=n, score=self.scores[n], relative=None, match="", qualifies=False,
                         run=0, active=self.active[n], enabled=self.enabled[n],
                         cooldown_left=0.0, settings=SETTINGS)
            for n in self.active
        )
        return DetectorResult(window, states, events)

    def snapshot(self) -> DetectorResult:
        return self._result(None, ())

    def events(self, *events: Event) -> DetectorResult:
        for ev in events:
            self.active[ev.trigger] = ev.type == "start"
        return self._result(None, events)

    def window(self, scores: dict[str, float], level: float = -30.0) -> DetectorResult:
        self.scores.update(scores)
        return self._result(ScoredWindow(0.0, 10.0, level, level, False, None), ())


def start_driver(state_dir: Path, cfg: dict[str, Any], *extra: str) -> subprocess.Popen[str]:
    """This module in a subprocess for MqttConfig fields ``cfg``; stdout and stderr piped."""
    return start_cli("--state-dir", state_dir, "--mqtt", json.dumps(cfg), *extra,
                     module="tests.mqtt_driver")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--state-dir", required=True, type=Path)
    ap.add_argument("--mqtt", required=True, help="MqttConfig fields as JSON")
    ap.add_argument("--trigger", default="smoke")
    ap.add_argument("--pairs", type=int, default=0)
    ap.add_argument("--flush-exit", type=float, default=None)
    args = ap.parse_args(argv)

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())

    cfg = MqttConfig.model_validate(json.loads(args.mqtt))
    sink = publisher(cfg, [args.trigger], args.state_dir, "test-model")
    feed = Feed([args.trigger])
    sink.on_result(feed.snapshot())
    sink.start()
    for i in range(args.pairs):
        for ev in make_pair(args.trigger, float(i * 20)):
            sink.on_result(feed.events(ev))
            print(ev.to_json(), flush=True)
    print("spooled", flush=True)
    if args.flush_exit is not None:
        ok = sink.flush(args.flush_exit)
        sink.close()
        print("flushed" if ok else "not flushed", flush=True)
        return 0 if ok else 1
    while not stop.wait(0.2):
        pass
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
