"""`listener scan FILE`: the daemon's exact pipeline over a file, as fast as possible.

Prints events (and with ``--scores`` every window's scores) as JSON lines with
``--jsonl``, else a human-readable timeline. The config's triggers, model and
audio settings are used; its ``source`` is ignored (the FILE is the source).
Exit 0 even when nothing was detected; 2 for user mistakes (missing file,
bad config, short example).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import TextIO

from listener.cli import add_command, add_config_option
from listener.detect.detector import DetectorResult
from listener.detect.events import Event, ScoreLine


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "scan",
        help="run the detection pipeline over an audio file and print events",
        description="Run the same pipeline as the daemon over FILE (wav/flac/ogg, any rate "
        "and channel count) and print start/end events.",
        func=run,
    )
    p.add_argument("file", metavar="FILE", help="audio file to scan")
    add_config_option(p)
    p.add_argument("--model", metavar="DIR", help="model directory (overrides model.dir)")
    p.add_argument("--jsonl", action="store_true", help="print JSON lines instead of a timeline")
    p.add_argument("--scores", action="store_true", help="also print every window's scores")
    p.add_argument("--realtime", action="store_true",
                   help="pace the file like a microphone (default: as fast as possible)")
    p.add_argument("--plot", metavar="OUT.png", help="also draw every trigger's score timeline "
                   "to a PNG (needs: pip install 'listener[plot]')")


def _clock(t: float) -> str:
    m, s = divmod(t, 60.0)
    h, m = divmod(int(m), 60)
    return f"{h:02d}:{m:02d}:{s:04.1f}"


class ScanSink:
    """Writes what the pipeline reports to ``out`` as JSON lines or a timeline."""

    def __init__(self, out: TextIO, jsonl: bool, scores: bool) -> None:
        self.out = out
        self.jsonl = jsonl
        self.scores = scores
        self.events: list[Event] = []

    def on_result(self, result: DetectorResult) -> None:
        if self.scores and result.window is not None:
            self._scores(result.score_line(), result.active)
        for event in result.events:
            self._event(event)

    def _scores(self, line: ScoreLine, active: dict[str, bool]) -> None:
        if self.jsonl:
            print(json.dumps(line.to_dict(), separators=(",", ":")), file=self.out)
        else:
            parts = "  ".join(
                f"{k}={v:.3f}{'*' if active.get(k) else ''}" for k, v in line.scores.items()
            )
            print(f"{_clock(line.window_end)}  {line.level_dbfs:6.1f} dBFS  {parts}",
                  file=self.out)

    def _event(self, event: Event) -> None:
        self.events.append(event)
        if self.jsonl:
            print(event.to_json(), file=self.out)
            return
        if event.type == "start":
            text = (f"{_clock(event.window_end)}  START  {event.trigger:<20} "
                    f"score {event.score:.3f}  match {event.match!r}")
        else:
            text = (f"{_clock(event.window_end)}  END    {event.trigger:<20} "
                    f"peak {event.peak_score:.3f}  duration {event.duration or 0:.1f} s")
            if event.clip:
                text += f"  clip {event.clip}"
        print(text, file=self.out)

    def close(self) -> None:
        self.out.flush()


def run(args: argparse.Namespace) -> int:
    from listener.audio.sources import FileSource
    from listener.config.loader import load_config
    from listener.errors import ConfigError
    from listener.service.assemble import build_pipeline, require_triggers

    source = FileSource(Path(args.file), realtime=bool(args.realtime))
    source.open()  # a missing or undecodable file fails before the model loads
    try:
        loaded = load_config(args.config, check_model=args.model is None)
    except ConfigError as exc:
        # scan ignores the config's source, so a missing source file is no error here
        rest = [e for e in exc.errors if " source.path: " not in e]
        if rest:
            raise ConfigError("\n".join(rest), rest) from None
        loaded = load_config(args.config, check_files=False)
    cfg = loaded.config
    if args.model:
        cfg.model.dir = Path(args.model)
    require_triggers(cfg, loaded.path)
    sink = ScanSink(sys.stdout, args.jsonl, args.scores)
    plot = None
    if args.plot:
        from listener.tuning.plot import ScanPlot

        plot = ScanPlot(args.plot)
    pipe = build_pipeline(cfg, [sink] + ([plot] if plot else []), source=source)
    pipe.open()
    pipe.run(threading.Event())
    sink.close()
    if plot is not None:
        plot.save(cfg, args.file)
    st = pipe.stats()
    starts = sum(1 for e in sink.events if e.type == "start")
    audio_s = st["audio_seconds"]
    speed = audio_s / st["uptime_s"] if st["uptime_s"] > 0 else 0.0
    summary = (
        f"{args.file}: {audio_s:.1f} s scanned, {starts} event(s), {st['windows']} windows "
        f"({st['gated_windows']} gated quiet, {st['novelty_gated_windows']} nothing new, "
        f"{st['skipped_windows']} skipped), "
        f"{st['inference_ms']:.0f} ms/window, {speed:.1f}x real time"
    )
    if st["bad_samples"]:
        summary += f", {st['bad_samples']} NaN/inf samples replaced by 0"
    if st["clipped_samples"]:
        summary += f", {st['clipped_samples']} samples outside [-1, 1] clipped"
    print(summary, file=sys.stderr if args.jsonl else sys.stdout)
    return 0
