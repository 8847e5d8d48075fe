"""Command-line entry point: a thin argparse front over ``listener.cli.*``.

Each sub-command lives in its own module under ``listener/cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func``. Heavy imports
(onnxruntime, torch) happen inside the commands, so ``listener --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# The feature extractor's matmuls are small: threaded OpenBLAS only adds spinning threads
# that burn CPU between windows (benchmarks/README.md). onnxruntime has its own thread
# pool. Must be set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from listener import __version__
from listener.errors import UserError

# Order is the order of `listener --help`.
COMMANDS = (
    "run",
    "scan",
    "top",
    "calibrate",
    "enroll",
    "devices",
    "check_config",
    "health",
    "embed",
    "search",
    "model",
    "bench",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="listener",
        description="Open-vocabulary sound-event daemon: describe sounds in words, get events.",
    )
    parser.add_argument("--version", action="version", version=f"listener {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"listener.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported with the usage of the command that got it, not the top level's
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"listener: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `listener scan ... | head`: the reader left; exit quietly like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
