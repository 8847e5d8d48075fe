"""`listener check-config`: validate the config file without starting anything.

Prints the resolved config (defaults filled in, relative paths made absolute,
secrets masked; every trigger's effective thresholds and timings, each inherited one
commented with where it comes from: ``defaults``, the ``model``'s listener.json or
``built-in``) and exits 0, or prints every problem, one per line as
``FILE:LINE key.path: what is wrong``, and exits 2. Run it after every edit,
before ``systemctl reload listener`` (a reload with a broken file keeps the old
config running, but this tells you why before you try). A config without triggers is
refused here as by `run` and `scan` (one rule: service/assemble.py's require_triggers).
"""

from __future__ import annotations

import argparse
import sys

from listener.cli import CONFIG_SEARCH, add_command, add_config_option
from listener.config.loader import find_config, load_config, masked_dump
from listener.config.schema import Config
from listener.config.streams import streams_of
from listener.errors import ConfigError
from listener.service.assemble import require_triggers


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "check-config",
        help="validate the config file and print it resolved (secrets masked)",
        description="Validate the config file. Exit 0 and print the resolved config, "
        "or exit 2 and print every problem with its file, line and key path. "
        f"Search order: --config, {CONFIG_SEARCH}.",
        func=run,
    )
    add_config_option(p, "config file to check")
    p.add_argument(
        "--quiet", "-q", action="store_true", help="print nothing when the config is valid"
    )


def stream_lines(config: Config) -> list[str]:
    """What each stream hears: name, source, triggers (the single-source form: one line)."""
    out = []
    for s in streams_of(config):
        name = f"stream {s.name}" if s.named else "source"
        device = f" device {s.source.device}" if s.source.device is not None else ""
        out.append(f"{name}: {s.source.shown}{device} -> "
                   f"{', '.join(s.triggers) or '(no triggers)'}")
    return out


def run(args: argparse.Namespace) -> int:
    path = find_config(args.config)
    try:
        loaded = load_config(path)
        require_triggers(loaded.config, path)
        dump = masked_dump(loaded.config)  # resolves every trigger's settings (may fail)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        n = len(exc.errors)
        print(
            f"listener: {path}: {n} problem{'s' if n != 1 else ''}; "
            "config.example.yaml documents every key",
            file=sys.stderr,
        )
        return 2
    if not args.quiet:
        print(f"# {path}: valid. Resolved configuration (defaults filled in, secrets masked):")
        for line in stream_lines(loaded.config):
            print(f"# {line}")
        sys.stdout.write(dump)
    return 0
