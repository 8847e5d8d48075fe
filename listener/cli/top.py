"""`listener top`: live view of what the model hears (scores, thresholds, state, level).

Updates every hop. On a terminal it redraws in place with plain ANSI escapes
(works over SSH, no curses); piped, it prints plain frames separated by blank lines.
``--prompts`` tries new wording live, without editing the config.
"""

from __future__ import annotations

import argparse

from listener.cli import (
    add_command,
    add_config_option,
    add_source_option,
    add_stream_option,
    doc_body,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "top", help="live view of scores, thresholds and trigger states",
                    description=doc_body(__doc__), func=run)
    add_config_option(p)
    p.add_argument("--prompts", nargs="+", default=[], metavar="TEXT",
                   help='extra prompts to score live, e.g. --prompts "a dog barking" "a doorbell"')
    add_source_option(p)
    add_stream_option(p)
    p.add_argument("--width", type=int, metavar="COLS",
                   help="frame width (default: terminal width, 80 when piped)")


def run(args: argparse.Namespace) -> int:
    from listener.cli import source_from_arg
    from listener.config.loader import load_config
    from listener.config.streams import select_stream
    from listener.errors import UserError
    from listener.tuning.top import run_top

    cfg = select_stream(load_config(args.config).config, args.stream)
    if args.source:
        cfg.source = source_from_arg(args.source)
    if args.width is not None and args.width < 50:
        raise UserError(f"--width must be at least 50, got {args.width}")
    return run_top(cfg, prompts=args.prompts, width=args.width)
