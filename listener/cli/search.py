"""`listener search`: find moments of the past by words or by an example sound.

The daemon keeps every scored window's audio embedding (web.history; the state
directory's history.sqlite3), so a question nobody wrote a trigger for can still be
answered: "a dog barking" is embedded once (the prompt cache: the text tower runs
only for a new text), every stored window is scored against it and the best ones are
merged into spans. ``--example FILE`` or ``--clip EVENT_ID`` ask with a recording
instead (the audio tower). No audio is stored besides event clips; this only reads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from listener.cli import add_command, add_config_option, doc_body
from listener.errors import UserError
from listener.history.search import parse_duration


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "search", help="search the recorded past by words or by example sound",
                    description=doc_body(__doc__), func=run)
    p.add_argument("text", nargs="?", help='what to look for, e.g. "a dog barking"')
    add_config_option(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--example", metavar="FILE", help="search with a recording instead of words")
    g.add_argument("--clip", metavar="EVENT_ID", help="search with an event's clip")
    p.add_argument("--since", type=_duration, default=86400.0, metavar="DURATION",
                   help="how far back (default 24h; e.g. 30m, 2d)")
    p.add_argument("--stream", metavar="NAME", help="only this stream")
    p.add_argument("--top", type=int, default=10, metavar="N", help="spans to show (default 10)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON document")
    fmt.add_argument("--jsonl", action="store_true", help="one JSON object per span")


def run(args: argparse.Namespace) -> int:
    from listener.config.loader import load_config
    from listener.history.search import merge_spans, score_windows
    from listener.history.store import HistoryReader
    from listener.service.assemble import state_dir

    if bool(args.text) == bool(args.example or args.clip):
        raise UserError("give either a text to search for or --example FILE / --clip ID "
                        '(e.g. listener search "a dog barking")')
    if args.top < 1:
        raise UserError("--top must be at least 1")
    cfg = load_config(args.config).config
    path = state_dir(cfg).history
    if not path.is_file():
        raise UserError(f"no history at {path}: the daemon records one while web.enabled "
                        "(or web.history.enabled) is true in the config")
    reader = HistoryReader(path)
    try:
        query = _query(cfg, args, reader)
        t0 = time.perf_counter()
        spans = merge_spans(score_windows(reader, query, time.time() - args.since, args.stream),
                            top=args.top)
        seconds = time.perf_counter() - t0
        found = [{**s.to_dict(), "clip_event": _clip_id(reader, s)} for s in spans]
    finally:
        reader.close()
    _print(args, found, seconds)
    return 0


def _clip_id(reader, span) -> str | None:
    ev = reader.clip_near(span.start, span.end, span.stream)
    return None if ev is None else ev["id"]


def _query(cfg, args: argparse.Namespace, reader):
    """The query embedding: the text's (prompt cache), else the recording's."""
    from listener.service.assemble import load_model

    stack = load_model(cfg)
    if args.text:
        return stack.embed_texts([args.text])[0]
    if args.example:
        return stack.embed_example(Path(args.example))
    rows = [e for e in reader.event(args.clip) if e.get("clip")]
    if not rows:
        raise UserError(f"event {args.clip} has no clip in the history (clips.enabled?)")
    return stack.embed_example(Path(rows[-1]["clip"]))


def _print(args: argparse.Namespace, found: list[dict], seconds: float) -> None:
    if args.json:
        json.dump({"query": args.text or args.example or args.clip, "spans": found,
                   "seconds": round(seconds, 3)}, sys.stdout)
        sys.stdout.write("\n")
        return
    if args.jsonl:
        for s in found:
            sys.stdout.write(json.dumps(s) + "\n")
        return
    if not found:
        print("nothing recorded in that time")
        return
    for s in found:
        clip = f"  clip of event {s['clip_event']}" if s["clip_event"] else ""
        print(f"{s['start']} .. {s['end']}  score {s['score']:.3f}  {s['stream']}"
              f"  ({s['windows']} windows){clip}")
