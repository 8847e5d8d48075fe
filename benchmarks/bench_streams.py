"""Many streams, one model: how many real-time streams one process sustains (issue 15).

For each N, a child process builds the daemon's own stream wiring (service/streams.py:
one model stack, a pipeline per stream in its own thread) on N generated files paced at
real time (``realtime: true``, so each stream's reader delivers audio as a microphone
would), with the level gate and the novelty gate off so EVERY due window runs the audio
tower (the worst case), and reports:

- windows scored vs due (due = scored + skipped) and skipped per stream (min/max),
- per-window latency p50/p95 (the pipeline's whole window step: log-mel, tower, scores,
  sinks), CPU-seconds per audio-second (all threads, getrusage), peak RSS (VmHWM).

N is *sustained* when no stream skipped a window and the p95 window latency leaves 20 %
of the hop free (p95 <= 0.8 x hop). The target (issue 15): sustained N >= 0.8 x (hop /
single-stream window time) x cores used for inference (streams run in parallel threads,
each tower run with ``model.threads`` intra-op threads; on this machine: all cores).

    python benchmarks/bench_streams.py --model DIR [--streams 1,4,8,16] [--seconds 25]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRIGGERS = [{"name": "alarm", "prompts": ["an alarm beeping"]},
            {"name": "siren", "prompts": ["a siren wailing"]},
            {"name": "knock", "prompts": ["someone knocking on a door"]}]


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _write_streams(d: Path, n: int, seconds: float) -> list[str]:
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


def one(model: str, n: int, seconds: float, hop: float, state: str) -> dict[str, Any]:
    """One N, in this process: the daemon's stream wiring on N real-time files (written
    by the parent, so their generation is not in this process's peak RSS)."""
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "tests/assets/hearing_model"))
    ap.add_argument("--streams", default="1,4,8,16", help="comma-separated N to run")
    ap.add_argument("--seconds", type=float, default=25.0, help="audio per stream")
    ap.add_argument("--hop", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--state", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.model, args.one, args.seconds, args.hop, args.state)))
        return 0
    rows = []
    counts = [int(x) for x in args.streams.split(",")]
    with tempfile.TemporaryDirectory() as state:
        _write_streams(Path(state), max(counts), args.seconds)
        for n in counts:
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(n), "--model", args.model,
                 "--seconds", str(args.seconds), "--hop", str(args.hop), "--state", state],
                capture_output=True, text=True, check=True, env={**os.environ,
                                                                 "PYTHONPATH": str(ROOT)})
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            if not args.json:
                _print_row(rows[-1], args.hop, header=len(rows) == 1)
    ok = [r["streams"] for r in rows
          if r["skipped_max"] == 0 and r["p95_ms"] <= 0.8 * args.hop * 1000.0]
    single = next((r for r in rows if r["streams"] == 1), None)
    summary = {"sustained": max(ok) if ok else 0, "cores": os.cpu_count(), "hop": args.hop}
    if single is not None:
        summary["target"] = 0.8 * args.hop * 1000.0 / single["p50_ms"] * (os.cpu_count() or 1)
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        summary["rss_mb_per_added_stream"] = (b["rss_peak_mb"] - a["rss_peak_mb"]) / max(
            1, b["streams"] - a["streams"])
    if args.json:
        print(json.dumps({"rows": rows, **summary}))
    else:
        print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in summary.items()))
    return 0


def _print_row(r: dict[str, Any], hop: float, header: bool) -> None:
    if header:
        print(f"{'N':>3} {'scored/due':>11} {'skip min/max':>12} {'p50 ms':>7} {'p95 ms':>7} "
              f"{'CPU-s/audio-s':>13} {'peak RSS MB':>11}")
    print(f"{r['streams']:>3} {r['scored']:>5}/{r['due']:<5} {r['skipped_min']:>5}/"
          f"{r['skipped_max']:<6} {r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} "
          f"{r['cpu_s_per_audio_s']:>13.3f} {r['rss_peak_mb']:>11.0f}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
