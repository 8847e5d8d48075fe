"""The novelty gate on long home-like streams: tower runs, CPU and events, gate off vs on.

Issue 18. Each stream of benchmarks/home_streams.py (an hour each by default) is
written to a WAV file and run through the real pipeline (`build_pipeline`, file
source, as fast as it decodes: a simulated hour, not a paced one) twice, with
``audio.novelty.enabled`` false and true: trained hearing test model, int8, 1 thread,
hop 1 s, window 10 s, one prompt trigger per target class. Reported per stream:
windows due, scored (tower runs), gated by level and by novelty; CPU-s per audio-s
(process time of the run: decode + log-mel + gate + tower + scoring); and the events
of the two runs compared: starts within one hop, same ends, none missed, none extra,
and the largest onset delay the gate added.

The hearing model's tower is tiny, so in these runs the tower is a small share of a
window's cost; ``--tower-ms`` (the full-size int8 window time from bench_model.py on
the same machine) adds a projection: the measured CPU with each tower run costing
that much more; ``--full-model DIR`` measures that time in the same run (the int8
audio tower of a full-size export, 1 thread, median of 7 windows after a warm-up).
``--model DIR`` runs the streams with another model (a full-size export: the CPU is
then measured directly; its random weights hear nothing, so only the CPU and the
equality of the two runs' events mean something).

    python benchmarks/bench_novelty.py [--minutes 60] [--streams steady,tv,quiet]
        [--full-model DIR | --tower-ms 330] [--model DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.home_streams import SR, STREAMS, TARGETS  # noqa: E402
from listener.config.schema import Config  # noqa: E402
from listener.service.assemble import build_pipeline  # noqa: E402
from tests.fixtures_hearing import resolve_hearing_model  # noqa: E402
from tests.hearing import sounds  # noqa: E402

HOP = 1.0
TEXT = {"on_threshold": 0.8, "off_threshold": 0.7, "margin": 0.05}  # as tests/test_detection


class EventSink:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_result(self, result: Any) -> None:
        self.events.extend(result.events)

    def close(self) -> None:
        pass


def config(model_dir: Path, state: Path, audio_file: Path, novelty: bool) -> Config:
    triggers = [{"name": c, "prompts": [sounds.TEST_CAPTIONS[c][0]], **TEXT} for c in TARGETS]
    return Config.model_validate({
        "model": {"dir": str(model_dir), "precision": "int8", "threads": 1},
        "state_dir": str(state),
        "source": {"type": "file", "path": str(audio_file), "realtime": False},
        "audio": {"hop_seconds": HOP, "window_seconds": 10.0,
                  "novelty": {"enabled": novelty}},
        "defaults": {"on_windows": 1, "off_seconds": 2.0, "cooldown_seconds": 5.0,
                     "margin": 0.05},
        "background": [sounds.TEST_CAPTIONS["quiet"][0]],
        "mqtt": {"enabled": False},
        "triggers": triggers,
    })


def full_tower_ms(model_dir: Path) -> float:
    """Median time of one int8 tower run of ``model_dir`` (1 thread) on a noise window."""
    import numpy as np

    from listener.model.audio_tower import AudioTower
    from listener.model.logmel import LogMel
    from listener.model.modeldir import ModelDir

    model = ModelDir(model_dir, None)
    tower = AudioTower(model, "int8", "cpu", 1)
    lm = LogMel.from_config(model.preprocessor_config)
    feats = lm(np.random.default_rng(0).standard_normal(lm.n_samples).astype("float32") * 0.01)
    tower.embed(feats[None])
    times = []
    for _ in range(7):
        t0 = time.process_time()
        tower.embed(feats[None])
        times.append(time.process_time() - t0)
    return 1000.0 * float(np.median(times))


def run(cfg: Config) -> dict[str, Any]:
    sink = EventSink()
    pipe = build_pipeline(cfg, [sink])
    pipe.open()
    c0, w0 = time.process_time(), time.perf_counter()
    pipe.run(threading.Event())
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    st = pipe.stats()
    pairs = [(e.trigger, e.type, e.window_end) for e in sink.events]
    return {"cpu_s": cpu, "wall_s": wall, "audio_s": st["audio_seconds"],
            "windows": st["windows"], "scored": st["scored_windows"],
            "gated_level": st["gated_windows"], "gated_novelty": st["novelty_gated_windows"],
            "events": pairs}


def compare(off: list, on: list) -> dict[str, Any]:
    """Events with the gate on vs off: matched per trigger and kind in order."""
    out: dict[str, Any] = {"missed": 0, "extra": 0, "start_diff_max": 0.0, "end_diff_max": 0.0}
    for kind in ("start", "end"):
        for trig in TARGETS:
            a = [t for n, k, t in off if n == trig and k == kind]
            b = [t for n, k, t in on if n == trig and k == kind]
            used = set()
            for t in a:
                best = min((j for j in range(len(b)) if j not in used),
                           key=lambda j: abs(b[j] - t), default=None)
                if best is None or abs(b[best] - t) > HOP + 1e-6:
                    out["missed"] += 1
                    continue
                used.add(best)
                key = "start_diff_max" if kind == "start" else "end_diff_max"
                out[key] = max(out[key], b[best] - t)
            out["extra"] += len(b) - len(used)
    return out


def found(events: list, truth: list) -> int:
    """Inserted targets whose own trigger started within 10 s of the sound's start."""
    starts = [(n, t) for n, k, t in events if k == "start"]
    return sum(1 for cls, a, _b in truth
               if any(n == cls and a < t <= a + 10.0 for n, t in starts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--streams", default="steady,tv,quiet")
    ap.add_argument("--tower-ms", type=float, default=None,
                    help="full-size int8 window time (ms) for the projected CPU column")
    ap.add_argument("--full-model", type=Path, default=None,
                    help="a full-size export: measure --tower-ms from its int8 tower")
    ap.add_argument("--model", type=Path, default=None,
                    help="run the streams with this model instead of the hearing test model "
                    "(a full-size export: the CPU is then measured, not projected)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.full_model is not None:
        args.tower_ms = full_tower_ms(args.full_model)
        print(f"full-size int8 tower, 1 thread: {args.tower_ms:.0f} ms CPU per window",
              flush=True)
    model_dir = args.model or resolve_hearing_model()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-novelty-") as tmp_s:
        tmp = Path(tmp_s)
        for name in args.streams.split(","):
            audio, truth = STREAMS[name](args.minutes * 60.0)
            path = tmp / f"{name}.wav"
            sf.write(path, audio.astype("float32"), SR, subtype="FLOAT")
            del audio
            res = {}
            for gate in (False, True):
                res[gate] = run(config(model_dir, tmp / "state", path, gate))
            rows.append(row(name, truth, res[False], res[True], args.tower_ms))
            path.unlink()
            print(json.dumps(rows[-1]) if args.json else table_line(rows[-1]), flush=True)


def row(name: str, truth: list, off: dict, on: dict, tower_ms: float | None) -> dict:
    r: dict[str, Any] = {"stream": name, "audio_s": on["audio_s"], "targets": len(truth),
                         "found_off": found(off["events"], truth),
                         "found_on": found(on["events"], truth),
                         "windows": on["windows"], "scored_off": off["scored"],
                         "scored_on": on["scored"], "gated_level": on["gated_level"],
                         "gated_novelty": on["gated_novelty"],
                         "scored_pct": 100.0 * on["scored"] / max(1, on["windows"]),
                         "cpu_per_audio_off": off["cpu_s"] / off["audio_s"],
                         "cpu_per_audio_on": on["cpu_s"] / on["audio_s"],
                         **compare(off["events"], on["events"]),
                         "events_off": len(off["events"]), "events_on": len(on["events"])}
    r["cpu_ratio"] = r["cpu_per_audio_off"] / max(1e-12, r["cpu_per_audio_on"])
    if tower_ms is not None:
        extra = tower_ms / 1000.0
        p_off = (off["cpu_s"] + off["scored"] * extra) / off["audio_s"]
        p_on = (on["cpu_s"] + on["scored"] * extra) / on["audio_s"]
        r.update(proj_off=p_off, proj_on=p_on, proj_ratio=p_off / p_on)
    return r


def table_line(r: dict) -> str:
    proj = (f"  full-size projection {r['proj_off']:.3f} -> {r['proj_on']:.3f} "
            f"({r['proj_ratio']:.1f}x)" if "proj_ratio" in r else "")
    return (
        f"{r['stream']:7s} {r['audio_s']:.0f} s: windows {r['windows']}, scored "
        f"{r['scored_off']} -> {r['scored_on']} ({r['scored_pct']:.1f} %), gated level "
        f"{r['gated_level']} novelty {r['gated_novelty']}; CPU-s/audio-s "
        f"{r['cpu_per_audio_off']:.4f} -> {r['cpu_per_audio_on']:.4f} "
        f"({r['cpu_ratio']:.2f}x){proj}; events {r['events_off']} vs {r['events_on']}: "
        f"missed {r['missed']} extra {r['extra']} start +{r['start_diff_max']:.1f} s "
        f"end +{r['end_diff_max']:.1f} s; targets found {r['found_off']}/{r['targets']} off, "
        f"{r['found_on']}/{r['targets']} on"
    )


if __name__ == "__main__":
    main()
