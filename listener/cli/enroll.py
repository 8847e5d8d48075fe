"""`listener enroll NAME`: record or cut an example clip for a trigger's ``examples``.

An example is how a user says "OUR doorbell": its audio-tower embedding becomes a
prototype the trigger matches against. Record it from the microphone
(``--seconds N``) or cut it from a recording (``--from FILE --start S --end E``).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import numpy as np

from listener.audio.decode import SAMPLE_RATE
from listener.cli import add_command, add_config_option


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "enroll", help="record (or cut from a file) an example clip for a trigger",
        description="Record NAME.wav from the microphone, or cut it from a file, for use in a "
        "trigger's 'examples' list.", func=run,
    )
    p.add_argument("name", metavar="NAME", help="name of the example (file NAME.wav)")
    p.add_argument("--seconds", type=float, help="record this many seconds from the microphone")
    p.add_argument("--out", metavar="FILE", help="output WAV (default: NAME.wav)")
    p.add_argument("--from", dest="src", metavar="FILE", help="cut the example from this file")
    p.add_argument("--start", type=float, help="start of the cut, seconds (with --from)")
    p.add_argument("--end", type=float, help="end of the cut, seconds (with --from)")
    add_config_option(p, "config file (source.device when recording; the printed "
                      "'examples:' path is relative to its directory)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--device", help="input device index or name (overrides the config)")


def _record(seconds: float, device: str | int | None) -> np.ndarray:
    from listener.audio.mic import MicSource

    mic = MicSource(device)
    mic.open()
    need = round(seconds * SAMPLE_RATE)
    got: list[np.ndarray] = []
    n = 0
    print(f"recording {seconds:g} s from {mic.description} ...")
    try:
        for block in mic.blocks():
            got.append(block)
            n += block.size
            if n >= need:
                break
    finally:
        mic.close()
    return np.concatenate(got)[:need] if got else np.zeros(0, np.float32)


def run(args: argparse.Namespace) -> int:
    from listener.audio.decode import check_example_length, load_audio, write_wav
    from listener.audio.level import level_dbfs
    from listener.errors import UserError

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.name):
        raise UserError(f"enroll: NAME {args.name!r} may only contain letters, digits, "
                        "'_', '-' and '.' (it becomes a file name)")
    out = Path(args.out) if args.out else Path(f"{args.name}.wav")
    if out.exists() and not args.force:
        raise UserError(f"enroll: {out} already exists; pass --force to replace it, or "
                        "--out FILE to write another file")
    if args.src:
        if args.seconds is not None:
            raise UserError("enroll: use either --seconds (microphone) or --from FILE, not both")
        if args.start is not None and args.end is not None and args.end <= args.start:
            raise UserError(f"enroll: --end ({args.end}) must be after --start ({args.start})")
        audio = load_audio(args.src, args.start, args.end)
    else:
        if args.seconds is None:
            raise UserError("enroll: give --seconds N to record from the microphone, "
                            "or --from FILE --start S --end E to cut from a file")
        if args.seconds <= 0:
            raise UserError(f"enroll: --seconds must be positive, got {args.seconds}")
        device: str | int | None = args.device
        if device is None and args.config:
            from listener.config.loader import load_config

            device = load_config(args.config, check_files=False).config.source.device
        audio = _record(args.seconds, device)
    check_example_length(audio, SAMPLE_RATE, "enroll: the example")
    secs = audio.size / SAMPLE_RATE
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    write_wav(out, audio)
    where, path = _as_in_config(out, args.config)
    print(f"wrote {out} ({secs:.2f} s, level {level_dbfs(audio):.1f} dBFS); use it in a "
          f"trigger{where}:\n  examples: [{path}]")
    return 0


def _as_in_config(out: Path, config: str | None) -> tuple[str, str]:
    """How a trigger in the config names ``out``: relative to the config file's directory
    (the loader resolves example paths against it), absolute when no config is found."""
    from listener.config.loader import find_config
    from listener.errors import ConfigError

    try:
        cfg = find_config(config)
    except ConfigError:
        return "", str(out.resolve())
    if not cfg.is_file():
        return "", str(out.resolve())
    rel = os.path.relpath(out.resolve(), cfg.resolve().parent)
    return f" of {cfg}", rel
