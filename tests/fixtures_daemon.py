"""`listener run` as a real process, for the daemon tests: config, audio, log, broker.

- :func:`daemon_config` writes a config for the small trained hearing model (triggers
  that really fire on the sounds they describe) publishing to a test broker;
  :func:`make_stream` writes a generated stream with sounds inserted at known times.
- :class:`Proc` runs ``python -m listener run`` with its JSON log lines in a file the
  test polls (bounded waits); the ``procs`` fixture kills what a test left running.
- :func:`event_msgs`, :func:`spool_count`: what reached the broker, what is spooled.
- ``daemon_dir``: a directory with a config that keeps ``listener run`` listening without
  a broker (60 s of noise as a real-time file, hop 0.25 s, state in ``state/``), for the
  watchdog and health-check tests.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from listener.audio.decode import write_wav
from tests.hearing import sounds
from tests.helpers import start_cli, write_config

DEVICE = "testdev"
BASE = f"listener/{DEVICE}"
# Scores of the hearing model: a window holding the sound scores ~0.9 against its
# caption, background and the other classes ~0.5 or less (tests/assets/hearing_model/
# README.md, "cosine regime"); these settings fire within a window or two.
DEFAULTS = {"on_threshold": 0.75, "off_threshold": 0.6, "on_windows": 1, "off_seconds": 1.0,
            "cooldown_seconds": 0.0, "margin": 0.0}
PROMPTS = {"alarm": "an alarm beeping", "siren": "a siren wailing"}


def trigger(name: str, prompt: str | None = None) -> dict[str, Any]:
    return {"name": name, "prompts": [prompt or PROMPTS[name]]}


def daemon_config(
    d: Path,
    model: Path,
    port: int,
    source: dict[str, Any],
    triggers: list[dict[str, Any]] | None = None,
    hop: float = 1.0,
    **defaults: float,
) -> Path:
    """d/config.yaml: the daemon on ``source`` with ``triggers`` (the alarm alone by
    default), publishing to the broker on ``port``; ``defaults`` override :data:`DEFAULTS`."""
    return write_config(
        d, model, triggers or [trigger("alarm")],
        source=source,
        audio={"hop_seconds": hop},
        defaults={**DEFAULTS, **defaults},
        mqtt={"host": "127.0.0.1", "port": port, "device_id": DEVICE,
              "reconnect_min_seconds": 0.1, "reconnect_max_seconds": 0.5, "keepalive": 10,
              "stats_interval_seconds": 2},
        logging={"level": "info"},
        state_dir="state",
    )


def file_source(path: str, realtime: bool) -> dict[str, Any]:
    return {"type": "file", "path": path, "realtime": realtime}


def make_stream(d: Path, name: str, events: list[tuple[str, float]], seconds: float) -> str:
    audio, _ = sounds.stream(events, seconds, seed=sounds.FRESH_SEED_BASE + 77, snr_db=25.0)
    write_wav(d / name, audio)
    return name


class Proc:
    """A `listener run` subprocess whose JSON log lines land in a file."""

    def __init__(self, d: Path, tag: str = "daemon", stdin: int | None = None) -> None:
        self.log_path = d / f"{tag}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in wait()
        self.p = start_cli("run", "--config", "config.yaml", cwd=d, stdin=stdin,
                           stdout=subprocess.DEVNULL, stderr=self._log)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"event": raw})
        return out

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            hit = next((ln for ln in self.lines() if pred(ln)), None)
            if hit is not None:
                return hit
            if self.p.poll() is not None:
                hit = next((ln for ln in self.lines() if pred(ln)), None)
                if hit is not None:
                    return hit
                raise AssertionError(
                    f"daemon exited {self.p.returncode} before {what}:\n" + self.text()[-3000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.text()[-3000:]}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        self.p.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.p.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.wait(10)


@pytest.fixture
def daemon_dir(tmp_path: Path, hearing_model_dir: Path) -> Path:
    rng = np.random.default_rng(7)
    write_wav(tmp_path / "long.wav", (0.05 * rng.standard_normal(48000 * 60)).astype(np.float32))
    write_config(
        tmp_path, hearing_model_dir, [{"name": "alarm", "prompts": ["an alarm beeping"]}],
        source={"type": "file", "path": "long.wav", "realtime": True},
        audio={"hop_seconds": 0.25},
        mqtt={"enabled": False},
        state_dir="state",
    )
    return tmp_path


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def event_msgs(sub, trigger: str, kind: str | None = None) -> list[dict[str, Any]]:
    out = []
    for m in sub.on(f"{BASE}/{trigger}/event"):
        d = json.loads(m.payload)
        if kind is None or d["event_type"] == kind:
            out.append(d)
    return out


def spool_count(d: Path) -> int:
    db = sqlite3.connect(d / "state" / "spool.sqlite3")
    try:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        db.close()
