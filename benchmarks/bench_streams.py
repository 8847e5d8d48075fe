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
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from listener.export.bench_streams import format_streams, run_streams, write_streams  # noqa: E402


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
        print(json.dumps(run_streams(args.model, args.one, args.seconds, args.hop,
                                     args.state)))
        return 0
    rows = []
    counts = [int(x) for x in args.streams.split(",")]
    with tempfile.TemporaryDirectory() as state:
        write_streams(Path(state), max(counts), args.seconds)
        for n in counts:
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(n), "--model", args.model,
                 "--seconds", str(args.seconds), "--hop", str(args.hop), "--state", state],
                capture_output=True, text=True, check=True, env={**os.environ,
                                                                 "PYTHONPATH": str(ROOT)})
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            if not args.json:
                print(format_streams(rows[-1], args.hop, header=len(rows) == 1), flush=True)
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


if __name__ == "__main__":
    raise SystemExit(main())
