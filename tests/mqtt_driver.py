"""A tiny process that runs a real MqttSink, for crash and log tests.

    python -m tests.mqtt_driver --state-dir D --mqtt '{"host": ..., "port": ...}' \
        [--trigger smoke] [--pairs N] [--flush-exit SECONDS]

It starts the sink, emits N start/end event pairs (printing each event's JSON line on
stdout, then ``spooled``), and then either flushes and exits (``--flush-exit``: exit 0
when the spool emptied in time, else 1) or waits until SIGTERM/SIGINT (close, exit 0).
Logs are JSON lines on stderr, so tests can count error lines.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

import structlog

from listener.config.schema import MqttConfig, TriggerConfig
from listener.detect.events import Event, new_event_id, utc_iso
from listener.mqtt.publisher import MqttSink


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


def trigger(name: str) -> TriggerConfig:
    return TriggerConfig(name=name, prompts=["a test sound"])


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
    sink = MqttSink(cfg, [trigger(args.trigger)], args.state_dir, "test-model")
    sink.start()
    for i in range(args.pairs):
        for ev in make_pair(args.trigger, float(i * 20)):
            sink.on_event(ev)
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
