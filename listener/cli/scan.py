"""`listener scan FILE...`: the daemon's exact pipeline over files, as fast as possible.

Several files, or directories (every file under them that decodes, sorted), are
scanned one after the other on one loaded model, each with a fresh detector: one
summary per file, then a total; ``--jsonl`` lines carry ``"file"``.

Prints events (and with ``--scores`` every window's scores) as JSON lines with
``--jsonl``, else a human-readable timeline, events in time order (an end is decided
up to off_seconds after its time, so events are held that long). The timeline shows
offsets from the file's start; an event's ``time`` is the file's start (its ``date``
tag with a time of day, or ``--start-time``) plus the offset, and when neither is known
the summary says that ``time`` counts from when the scan began. The config's triggers, model and
audio settings are used; its ``source`` is ignored (the FILE is the source).
Exit 0 even when nothing was detected; 2 for user mistakes (missing file,
bad config, short example).
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from listener.audio.decode import READABLE_FORMATS
from listener.cli import add_command, add_config_option
from listener.detect.detector import DetectorResult
from listener.detect.events import Event, ScoreLine

if TYPE_CHECKING:
    from listener.config.schema import Config
    from listener.model.stack import ModelStack


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "scan",
        help="run the detection pipeline over audio files and print events",
        description="Run the same pipeline as the daemon over each FILE (any rate and "
        f"channel count; formats: {READABLE_FORMATS}; a directory: every audio file under "
        "it) and print start/end events, a summary per file and, for several, a total.",
        func=run,
    )
    p.add_argument("files", metavar="FILE", nargs="+",
                   help="audio file(s) to scan, or directories (every audio file under "
                   "them, in sorted order)")
    add_config_option(p)
    p.add_argument("--model", metavar="DIR", help="model directory (overrides model.dir)")
    p.add_argument("--jsonl", action="store_true", help="print JSON lines instead of a timeline")
    p.add_argument("--scores", action="store_true", help="also print every window's scores")
    p.add_argument("--realtime", action="store_true",
                   help="pace the file like a microphone (default: as fast as possible)")
    p.add_argument("--start-time", metavar="ISO8601", type=_start_time,
                   help="when the recording started, e.g. 2026-12-03T14:00:00Z (default: "
                   "the file's date tag if it holds a time, else times are relative)")
    p.add_argument("--plot", metavar="OUT.png", help="also draw every trigger's score timeline "
                   "to a PNG (needs: pip install 'listener[plot]')")


def _start_time(text: str) -> float:
    from listener.audio.decode import parse_start_time

    value = parse_start_time(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date and time like 2026-12-03T14:00:00Z")
    return value


def _clock(t: float) -> str:
    m, s = divmod(t, 60.0)
    h, m = divmod(int(m), 60)
    return f"{h:02d}:{m:02d}:{s:04.1f}"


class ScanSink:
    """Writes what the pipeline reports to ``out`` as JSON lines or a timeline.

    Lines are printed in the order of their time (``window_end``): an end is decided
    up to ``hold_seconds`` after its time, so each line (an event, or a window's scores
    with ``scores``) waits until the stream has passed its time by that much (all
    remaining ones at :meth:`close`); lines of one time keep their arrival order.
    """

    def __init__(self, out: TextIO, jsonl: bool, scores: bool, flush: bool = False,
                 hold_seconds: float = 0.0, file: str | None = None) -> None:
        self.out = out
        self.jsonl = jsonl
        self.scores = scores
        self.flush = flush  # each line as it is released (`listener demo`), not buffered
        self.hold_seconds = hold_seconds
        self.file = file  # JSON lines say which file they come from
        self.events: list[Event] = []
        self._held: list[tuple[float, int, Callable[[], None]]] = []
        self._arrived = 0

    def _hold(self, t: float, show: Callable[[], None]) -> None:
        self._arrived += 1
        heapq.heappush(self._held, (t, self._arrived, show))

    def on_result(self, result: DetectorResult) -> None:
        if self.scores and result.window is not None:
            line, active = result.score_line(), dict(result.active)
            self._hold(line.window_end, lambda: self._scores(line, active))
        for event in result.events:
            self._hold(event.window_end, lambda e=event: self._event(e))
            self.events.append(event)
        if result.window is not None:
            self._release(result.window.end - self.hold_seconds)

    def _release(self, until: float) -> None:
        while self._held and self._held[0][0] <= until:
            heapq.heappop(self._held)[2]()

    def _scores(self, line: ScoreLine, active: dict[str, bool]) -> None:
        if self.jsonl:
            print(self._json(line.to_dict()), file=self.out)
        else:
            parts = "  ".join(
                f"{k}={v:.3f}{'*' if active.get(k) else ''}" for k, v in line.scores.items()
            )
            print(f"{_clock(line.window_end)}  {line.level_dbfs:6.1f} dBFS  {parts}",
                  file=self.out)

    def _event(self, event: Event) -> None:
        if self.jsonl:
            print(self._json(event.to_dict()), file=self.out, flush=self.flush)
            return
        if event.type == "start":
            text = (f"{_clock(event.window_end)}  START  {event.trigger:<20} "
                    f"score {event.score:.3f}  match {event.match!r}")
        else:
            text = (f"{_clock(event.window_end)}  END    {event.trigger:<20} "
                    f"peak {event.peak_score:.3f}  duration {event.duration or 0:.1f} s")
            if event.clip:
                text += f"  clip {event.clip}"
        print(text, file=self.out, flush=self.flush)

    def _json(self, d: dict[str, Any]) -> str:
        if self.file is not None:
            d = {"file": self.file, **d}
        return json.dumps(d, separators=(",", ":"))

    def close(self) -> None:
        self._release(float("inf"))
        self.out.flush()


def run(args: argparse.Namespace) -> int:
    from listener.errors import UserError
    from listener.service.assemble import load_model

    files = scan_inputs(args.files)  # a missing or undecodable file fails before the model
    if len(files) > 1 and (args.plot or args.start_time is not None):
        raise UserError("--plot and --start-time describe one recording: give one FILE")
    cfg = _scan_config(args)
    stack = load_model(cfg)
    out = sys.stderr if args.jsonl else sys.stdout
    totals = [_scan_file(args, cfg, stack, path, out) for path in files]
    if len(files) > 1:
        print(_total(totals), file=out)
    return 0


def scan_inputs(names: list[str]) -> list[Path]:
    """The files to scan: each FILE as given (an error if it does not decode), each
    DIRECTORY as the files under it that decode, in sorted order (hidden ones left
    out); a directory without any is an error."""
    from listener.audio.decode import is_audio_file, open_audio_file
    from listener.errors import AudioError

    files: list[Path] = []
    for name in names:
        path = Path(name)
        if not path.is_dir():
            if not is_audio_file(path):
                open_audio_file(path).close()  # raises the AudioError that says why
            files.append(path)
            continue
        found = [p for p in sorted(path.rglob("*")) if p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(path).parts)]
        audio = [p for p in found if is_audio_file(p)]
        if not audio:
            raise AudioError(f"{path}: no audio file in this directory ({len(found)} other "
                             f"file(s)); formats: {READABLE_FORMATS}")
        if len(audio) < len(found):
            print(f"listener: {path}: {len(found) - len(audio)} file(s) that are not audio "
                  "left out", file=sys.stderr)
        files += audio
    return files


def _scan_config(args: argparse.Namespace) -> Config:
    """The config scan uses: its source is ignored (the files are the sources)."""
    from listener.config.loader import load_config
    from listener.errors import ConfigError
    from listener.service.assemble import require_triggers

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
    return cfg


def _scan_file(args: argparse.Namespace, cfg: Config, stack: ModelStack, path: Path,
               out: TextIO) -> dict[str, float]:
    """One file through a fresh pipeline (its own detector state) on the shared model;
    prints its summary and returns its figures for the total."""
    from listener.audio.sources import FileSource
    from listener.errors import AudioError
    from listener.service.assemble import build_pipeline

    source = FileSource(path, realtime=bool(args.realtime))
    if args.start_time is not None:
        source.start_time = args.start_time
    source.open()
    hold = max(cfg.trigger_settings(t).off_seconds for t in cfg.triggers) \
        + 2 * cfg.audio.hop_seconds
    sink = ScanSink(sys.stdout, args.jsonl, args.scores, hold_seconds=hold, file=str(path))
    plot = None
    if args.plot:
        from listener.tuning.plot import ScanPlot

        plot = ScanPlot(args.plot)
    pipe = build_pipeline(cfg, [sink] + ([plot] if plot else []), source=source, stack=stack)
    pipe.open()
    pipe.run(threading.Event())
    sink.close()
    if plot is not None:
        plot.save(cfg, str(path))
    st = pipe.stats()
    if st["audio_seconds"] <= 0:
        raise AudioError(f"{path}: no audio samples could be decoded (the file holds "
                         "none, or its data is damaged): record or export it again")
    starts = sum(1 for e in sink.events if e.type == "start")
    note = ("times: the wall clock (--realtime paces the file like a microphone)"
            if args.realtime else _times_note(source.start_time, args.start_time is not None))
    print(note, file=out)
    print(_summary(str(path), st, starts), file=out)
    return {"audio_seconds": st["audio_seconds"], "uptime_s": st["uptime_s"],
            "events": starts, "windows": st["windows"], "skipped": st["skipped_windows"]}


def _summary(name: str, st: dict[str, Any], starts: int) -> str:
    audio_s = st["audio_seconds"]
    speed = audio_s / st["uptime_s"] if st["uptime_s"] > 0 else 0.0
    summary = (
        f"{name}: {audio_s:.1f} s scanned, {starts} event(s), {st['windows']} windows "
        f"({st['gated_windows']} gated quiet, {st['novelty_gated_windows']} nothing new, "
        f"{st['skipped_windows']} skipped), "
        f"{st['inference_ms']:.0f} ms/window, {speed:.1f}x real time"
    )
    if st["bad_samples"]:
        summary += f", {st['bad_samples']} NaN/inf samples replaced by 0"
    if st["clipped_samples"]:
        summary += f", {st['clipped_samples']} samples outside [-1, 1] clipped"
    return summary


def _total(totals: list[dict[str, float]]) -> str:
    audio_s = sum(t["audio_seconds"] for t in totals)
    took = sum(t["uptime_s"] for t in totals)
    return (f"total: {len(totals)} files, {audio_s:.1f} s scanned, "
            f"{sum(t['events'] for t in totals):.0f} event(s), "
            f"{sum(t['windows'] for t in totals):.0f} windows "
            f"({sum(t['skipped'] for t in totals):.0f} skipped), "
            f"{audio_s / took if took > 0 else 0.0:.1f}x real time")


def _times_note(start: float | None, given: bool) -> str:
    """What the events' ``time`` means for this file."""
    if start is None:
        return ("times: relative to the start of the file (it records no start time; "
                "--start-time sets one); an event's 'time' counts from when the scan began")
    from listener.detect.events import utc_iso

    how = "--start-time" if given else "the file's date tag"
    return f"times: the recording started at {utc_iso(start)} ({how})"
