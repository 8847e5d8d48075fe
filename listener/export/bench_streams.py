"""`listener bench --streams N`: N real-time streams through the daemon's own stream
wiring (listener/service/streams.py) on one model, as benchmarks/bench_streams.py does
for several N (issue 15; benchmarks/README.md, "Many streams, one model").

Each stream is a generated file (noise and a tone, a different one per stream) paced at
real time; the level and novelty gates are off, so every due window runs the tower (the
worst case). Reported: windows scored vs due, skipped per stream (min/max), the window
step's latency p50/p95, CPU-seconds per audio-second per stream, peak RSS.
"""

from __future__ import annotations

import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

TRIGGERS = [{"name": "alarm", "prompts": ["an alarm beeping"]},
            {"name": "siren", "prompts": ["a siren wailing"]},
            {"name": "knock", "prompts": ["someone knocking on a door"]}]


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def write_streams(d: Path, n: int, seconds: float) -> list[str]:
    from listener.audio.decode import write_wav

    paths = []
    for i in range(n):
        rng = np.random.default_rng(1000 + i)
        t = np.arange(round(seconds * 48000)) / 48000.0
        audio = 0.05 * rng.standard_normal(t.size) + 0.1 * np.sin(2 * np.pi * (300 + 50 * i) * t)
        path = d / f"s{i}.wav"
        write_wav(path, audio.astype(np.float32))
        paths.append(str(path))
    return paths


def run_streams(model: str, n: int, seconds: float, hop: float, state: str) -> dict[str, Any]:
    """N streams in this process: the daemon's stream wiring on the N real-time files
    ``write_streams`` left in ``state`` (written first, so their generation is over
    before the peak RSS that counts)."""
    from listener.config.schema import Config
    from listener.service.assemble import configured_enabled, load_model
    from listener.service.sinks import FanOut
    from listener.service.streams import StreamRunner, build_streams
    from listener.service.switches import SwitchStore

    files = [str(Path(state) / f"s{i}.wav") for i in range(n)]
    cfg = Config.model_validate({
        "model": {"dir": model}, "state_dir": state, "mqtt": {"enabled": False},
        "audio": {"hop_seconds": hop, "min_level_dbfs": -120.0,
                  "novelty": {"enabled": False}},
        "streams": [{"name": f"s{i}", "source": {"type": "file", "path": f,
                                                 "realtime": True}}
                    for i, f in enumerate(files)],
        "triggers": TRIGGERS})
    stack = load_model(cfg)
    rss_model = _status_mb("VmRSS")
    switches = SwitchStore(None, configured_enabled(cfg))
    runs = build_streams(cfg, stack, switches, FanOut([]))
    latencies: list[float] = []
    lock = threading.Lock()
    for run in runs:
        step = run.pipeline._window

        def timed(end: int, step: Any = step) -> None:
            t0 = time.perf_counter()
            step(end)
            with lock:
                latencies.append(time.perf_counter() - t0)

        run.pipeline._window = timed  # type: ignore[method-assign]
    runner = StreamRunner(runs, threading.Event())
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    runner.open()
    runner.start()
    deadline = time.monotonic() + seconds * 2 + 60
    while runner.is_alive() and time.monotonic() < deadline:
        runner.join(1.0)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    scored = [r.pipeline.detector.stats.scored for r in runs]
    skipped = [r.pipeline.scheduler.skipped for r in runs]
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    lat = np.array(latencies) * 1000.0
    return {"streams": n, "scored": sum(scored), "due": sum(scored) + sum(skipped),
            "skipped_min": min(skipped), "skipped_max": max(skipped),
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "cpu_s_per_audio_s": cpu / (n * seconds), "rss_peak_mb": _status_mb("VmHWM"),
            "rss_model_mb": rss_model, "errors": [str(r.error) for r in runs if r.error]}




def bench_streams(model: str, n: int, seconds: float, hop: float) -> dict[str, Any]:
    """`listener bench --streams N`: files and state in a temporary directory."""
    with tempfile.TemporaryDirectory() as state:
        write_streams(Path(state), n, seconds)
        return run_streams(model, n, seconds, hop, state)


def format_streams(r: dict[str, Any], hop: float, header: bool = True) -> str:
    """One row (with the header line first)."""
    head = (f"{'N':>3} {'scored/due':>11} {'skip min/max':>12} {'p50 ms':>7} {'p95 ms':>7} "
            f"{'CPU-s/audio-s':>13} {'peak RSS MB':>11}\n") if header else ""
    return head + (
        f"{r['streams']:>3} {r['scored']:>5}/{r['due']:<5} {r['skipped_min']:>5}/"
        f"{r['skipped_max']:<6} {r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} "
        f"{r['cpu_s_per_audio_s']:>13.3f} {r['rss_peak_mb']:>11.0f}")
