"""`listener calibrate`: propose thresholds from background audio for a false-alarm budget.

Scores ordinary background (live for ``--seconds N`` or ``--from FILE...`` that
contain none of the target sounds), prints each trigger's score distribution
and the on/off thresholds and on_windows that would have made at most
``--false-alarms-per-day`` false starts, and with ``--write`` edits the config in
place (comments and order kept; a timestamped backup first).
"""

from __future__ import annotations

import argparse
import sys
import threading

from listener.cli import add_command, add_config_option, add_stream_option, doc_body


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "calibrate",
                    help="propose thresholds from background audio for a false-alarm budget",
                    description=doc_body(__doc__), func=run)
    add_config_option(p)
    add_stream_option(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--seconds", type=float, metavar="N",
                     help="record N seconds of background from the configured live source")
    src.add_argument("--from", dest="files", nargs="+", metavar="FILE",
                     help="audio files of ordinary background (none of the target sounds)")
    p.add_argument("--false-alarms-per-day", type=float, default=1.0, metavar="R",
                   help="false-start budget per trigger and day (default 1)")
    p.add_argument("--margin", type=float, default=0.02, metavar="M",
                   help="safety margin added to the lowest fitting threshold (default 0.02)")
    p.add_argument("--write", action="store_true",
                   help="write the proposal into the config file (backup first)")


def run(args: argparse.Namespace) -> int:
    from listener.config.loader import load_config
    from listener.config.writeback import write_thresholds
    from listener.errors import UserError
    from listener.tuning.background import collect
    from listener.tuning.calibrate import calibrate
    from listener.tuning.crosstalk import crosstalk_report
    from listener.tuning.report import format_report

    if args.false_alarms_per_day < 0:
        raise UserError(
            f"--false-alarms-per-day must be 0 or more, got {args.false_alarms_per_day}"
        )
    if not 0 <= args.margin < 1:
        raise UserError(f"--margin must be between 0 and 1, got {args.margin}")
    from listener.config.streams import select_stream

    loaded = load_config(args.config)
    cfg = select_stream(loaded.config, args.stream)
    stop = threading.Event()
    if args.seconds is not None:
        print(f"listening to {args.seconds:g} s of background (Ctrl-C stops early) ...",
              file=sys.stderr)
    def progress(line) -> None:  # a live recording shows how far it got
        if args.seconds is not None and sys.stderr.isatty():
            print(f"\r  {line.window_end:.0f}/{args.seconds:g} s  level "
                  f"{line.level_dbfs:6.1f} dBFS", end="", file=sys.stderr, flush=True)

    streams = collect(cfg, files=args.files or (), seconds=args.seconds, stop=stop,
                      on_progress=progress)
    if args.seconds is not None and sys.stderr.isatty():
        print(file=sys.stderr)
    proposals = calibrate(cfg, streams, args.false_alarms_per_day, args.margin)
    sys.stdout.write(format_report(proposals, args.false_alarms_per_day))
    sys.stdout.write(crosstalk_report(cfg, {p.trigger: p.proposed for p in proposals}))
    if args.write:
        if loaded.path is None:
            raise UserError("--write needs a config file path (pass --config FILE)")
        backup = write_thresholds(loaded.path, proposals)
        print(f"\nwrote {loaded.path} (backup: {backup})")
    return 0
