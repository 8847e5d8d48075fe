"""Event boundaries (issue 14): how soon a trigger turns on and off around a sound.

Generated streams (the sound generators of tests/hearing/, imported, never edited) hold
sounds of 1, 2, 5, 12 and 30 s (alarm, knocking, siren, speech-like babble, and an
alarm beeping 1 s on / 1 s off) in room noise, several seeds and levels, 25 s of noise
after each. The test model that hears them (tests/assets/hearing_model) scores every
hop through the real detector (listener/detect/detector.py) with text triggers for
those classes plus "chirps" (a look-alike of the alarm beeps to this model), in two
configurations:

- ``before``: the window alone (``tail_seconds: 0``, ``compete: false``), i.e. today;
- ``compete only``: the window alone, triggers compete;
- ``tail only``: the tail refines the edges, triggers do not compete;
- ``after``: the defaults (the tail refines the edges, triggers compete).

Per duration it reports on delay (start decided minus true start), off delay (end
decided minus true end minus ``off_seconds``), duration error (|event duration - true
duration|), missed / false / split events, starts of a trigger on another trigger's
sound, and the tail's extra tower runs per hour. A second stream with one 5-s sound a
minute gives the extra CPU of the finer time scale, and streams where two target
sounds overlap give what competition costs.

    python benchmarks/bench_boundaries.py [--seeds 3] [--snr 10 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from listener.detect.detector import Detector  # noqa: E402
from listener.detect.events import Event  # noqa: E402
from listener.detect.settings import TriggerSettings  # noqa: E402
from listener.detect.triggers import TriggerSet, TriggerSpec  # noqa: E402
from listener.model.stack import ModelStack  # noqa: E402
from tests.boundary_streams import KINDS, SR, TRIGGERS, Truth, make_stream  # noqa: E402
from tests.hearing import sounds  # noqa: E402

WINDOW = 10.0
DURATIONS = (1.0, 2.0, 5.0, 12.0, 30.0)
# For this model a window holding the sound scores about 0.9, noise-only windows up to
# about 0.65 (tests/test_detection.py): 0.8/0.7 sit between the two regimes. The rest
# are the config defaults (listener/config/schema.py TriggerDefaults).
BASE = dict(on_threshold=0.8, off_threshold=0.7, on_windows=2, off_seconds=3.0,
            cooldown_seconds=10.0, margin=0.05)
MODES = {"before": dict(tail_seconds=0.0, compete=False),
         "compete only": dict(tail_seconds=0.0, compete=True),
         "tail only": dict(tail_seconds=2.0, compete=False),
         "after": dict(tail_seconds=2.0, compete=True)}


@dataclass
class Run:
    events: list[Event]
    windows: int
    tail_runs: int
    seconds: float


@dataclass
class Row:
    on: list[float] = field(default_factory=list)
    off: list[float] = field(default_factory=list)
    dur: list[float] = field(default_factory=list)
    decided_by: dict[str, int] = field(default_factory=dict)
    sounds: int = 0
    missed: int = 0
    false: int = 0
    split: int = 0
    cross: int = 0
    cross_detail: list[str] = field(default_factory=list)
    tail_runs: int = 0
    windows: int = 0
    seconds: float = 0.0


def detect(stack: ModelStack, audio: np.ndarray, mode: dict[str, Any], hop: float,
           extra: Callable[[str], dict[str, Any]] = lambda name: {}) -> Run:
    """Every hop of ``audio`` through the real detector, as `listener scan` steps it."""
    specs = [TriggerSpec(name, name, TriggerSettings(**{**BASE, **mode, **extra(name)}),
                         prompts=(sounds.TEST_CAPTIONS[name][0],)) for name in TRIGGERS]
    ts = TriggerSet(specs, sounds.TEST_CAPTIONS["quiet"], stack.embed_texts,
                    stack.embed_example)
    hop_n, win_n = round(hop * SR), round(WINDOW * SR)
    det = Detector(ts, stack.window_embedder(), rate=SR, hop_samples=hop_n, gate_dbfs=-70.0,
                   model_id=stack.model_id, is_enabled=lambda name: True)
    events: list[Event] = []
    end = win_n
    while end <= audio.size:
        events += det.process(audio[end - win_n:end], end, float).events
        end += hop_n
    events += det.finish(audio.size / SR, float).events
    return Run(events, det.stats.windows, det.stats.tail_runs, audio.size / SR)


def score(run: Run, truth: list[Truth], row: Row) -> None:
    """Match events to the sounds: own starts, misses, splits, false and cross starts."""
    ends = {e.id: e for e in run.events if e.type == "end"}
    starts = [e for e in run.events if e.type == "start"]
    used: set[str] = set()
    for t in truth:
        row.sounds += 1
        own = [e for e in starts if e.trigger == t.trigger
               and t.start - 1e-6 <= e.details["confirmed_at"] <= t.end + WINDOW]
        used.update(e.id for e in own)
        if not own:
            row.missed += 1
            continue
        row.split += len(own) - 1
        first, end = own[0], ends[own[-1].id]
        row.on.append(first.details["confirmed_at"] - t.start)
        off = end.details["settings"]["off_seconds"]
        row.off.append(end.details["confirmed_at"] - t.end - off)
        by = end.details["decided_by"]
        row.decided_by[by] = row.decided_by.get(by, 0) + 1
        sound_end = end.details["sound_end"]
        row.dur.append(abs(sound_end - first.details["sound_start"] - (t.end - t.start)))
    for e in starts:
        if e.id in used:
            continue
        at = e.details["confirmed_at"]
        if any(t.start <= at <= t.end + WINDOW for t in truth):
            row.cross += 1
            row.cross_detail.append(f"{e.trigger} on " + "+".join(
                t.kind for t in truth if t.start <= at <= t.end + WINDOW))
        else:
            row.false += 1
    row.tail_runs += run.tail_runs
    row.windows += run.windows
    row.seconds += run.seconds


def _stat(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} / {max(values):.1f}"


def table(rows: dict[tuple[str, float], Row]) -> str:
    head = ("| mode | sound s | sounds | on delay s (median / max) | off delay beyond "
            "off_seconds s (median / max) | duration error s (median / max) | missed | "
            "false | split | cross-trigger starts | end decided by | extra tower runs / h |")
    lines = [head, "|" + "---|" * 12]
    for (mode, dur), r in rows.items():
        per_hour = r.tail_runs / r.seconds * 3600 if r.seconds else 0.0
        by = ", ".join(f"{k} {v}" for k, v in sorted(r.decided_by.items()))
        lines.append(f"| {mode} | {dur:g} | {r.sounds} | {_stat(r.on)} | {_stat(r.off)} | "
                     f"{_stat(r.dur)} | {r.missed} | {r.false} | {r.split} | {r.cross} | "
                     f"{by} | {per_hour:.0f} |")
    return "\n".join(lines)


def one_a_minute(stack: ModelStack, seeds: list[int], hop: float) -> dict[str, Any]:
    """Extra tower runs and process CPU with one 5-s sound a minute (10 minutes per seed).

    CPU is measured on this test model, whose tower is tiny, so the log-mel dominates:
    a window's log-mel is streamed (one new hop), a tail's is computed whole (10 s of
    padded clip), which makes a tail run dearer here relative to a window than on the
    real model (where the tower is ~90 % of a window)."""
    out: dict[str, Any] = {}
    kinds = ["alarm", "knocking", "siren", "speech", "beeping"] * 2
    streams = [make_stream(kinds, 5.0, seed, 20.0, spacing=60.0)[0] for seed in seeds]
    for mode_name in ("before", "after"):
        mode, windows, tails, cpu = MODES[mode_name], 0, 0, 0.0
        for audio in streams:
            t0 = time.process_time()
            run = detect(stack, audio, mode, hop)
            cpu += time.process_time() - t0
            windows, tails = windows + run.windows, tails + run.tail_runs
        out[mode_name] = {"windows": windows, "tail_runs": tails,
                          "extra_tower_runs_percent": round(100.0 * tails / windows, 1),
                          "cpu_s": round(cpu, 2)}
    out["extra_cpu_percent"] = round(
        100.0 * (out["after"]["cpu_s"] / out["before"]["cpu_s"] - 1.0), 1)
    return out


def overlap(stack: ModelStack, seeds: list[int], hop: float) -> dict[str, Any]:
    """Two target sounds at once (5 s, same level): which of the two triggers start, with
    and without competition (what competing costs when sounds really overlap)."""
    pairs = [("siren", "alarm"), ("knocking", "speech"), ("siren", "speech")]
    out: dict[str, Any] = {}
    for compete in (False, True):
        found: dict[str, int] = {}
        total = 0
        for seed in seeds:
            for a, b in pairs:
                x, ta = make_stream([a], 5.0, seed, 20.0)
                y, tb = make_stream([b], 5.0, seed + 7, 20.0)
                run = detect(stack, x + y, {**MODES["after"], "compete": compete}, hop)
                starts = {e.trigger for e in run.events if e.type == "start"}
                total += 1
                for t in (ta[0], tb[0]):
                    key = f"{t.kind} (with {b if t is ta[0] else a})"
                    found[key] = found.get(key, 0) + (t.trigger in starts)
        out[f"compete={str(compete).lower()}"] = {
            "started": sum(found.values()), "of": 2 * total, "per sound": found}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=ROOT / "tests" / "assets" / "hearing_model")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--snr", type=float, nargs="+", default=[10.0, 20.0])
    p.add_argument("--hop", type=float, default=1.0)
    p.add_argument("--durations", type=float, nargs="*", default=list(DURATIONS),
                   help="sound lengths of the table (none: only the CPU and overlap runs)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    seeds = [sounds.FRESH_SEED_BASE + 14_000 + 97 * i for i in range(args.seeds)]
    with tempfile.TemporaryDirectory() as tmp:
        stack = ModelStack(args.model, "int8", "cpu", 1, Path(tmp) / "prompts.json")
        rows: dict[tuple[str, float], Row] = {}
        for mode_name in args.modes:
            mode = MODES[mode_name]
            for dur in args.durations:
                row = rows.setdefault((mode_name, dur), Row())
                for seed in seeds:
                    for snr in args.snr:
                        audio, truth = make_stream(list(KINDS), dur, seed, snr)
                        score(detect(stack, audio, mode, args.hop), truth, row)
        cpu = one_a_minute(stack, seeds, args.hop)
        comp = overlap(stack, seeds, args.hop)
    if args.json:
        print(json.dumps({"rows": {f"{m} {d:g}": vars(r) for (m, d), r in rows.items()},
                          "one_a_minute": cpu, "overlap": comp}, indent=1))
        return 0
    print(table(rows))
    for (mode, dur), r in rows.items():
        if r.cross_detail:
            print(f"cross-trigger starts, {mode}, {dur:g} s: {', '.join(r.cross_detail)}")
    print("\none 5-s sound a minute:", json.dumps(cpu))
    print("two target sounds at once (after):", json.dumps(comp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
