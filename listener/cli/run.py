"""`listener run`: the service. Listens until stopped (or until a file source ends).

Under systemd it is started by systemd/listener.service (Type=notify: READY after
the model is loaded and the audio source opened, WATCHDOG pings from the
processing loop). See listener/daemon.py for signals and reloads.
"""

from __future__ import annotations

import argparse

from listener.cli import CONFIG_SEARCH, add_command, add_config_option, add_source_option


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "run",
        help="run the daemon: listen, detect, publish events (Ctrl-C or SIGTERM to stop)",
        description="Listen to the configured source and publish events. "
        f"Config search order: --config, {CONFIG_SEARCH}. SIGHUP reloads the config (a broken "
        "file is rejected and the old one keeps running); SIGTERM/SIGINT flush events and "
        "exit 0.",
        func=run,
    )
    add_config_option(p)
    add_source_option(p)
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="override logging.level from the config",
    )


def _limit_malloc() -> None:
    """glibc: 2 malloc arenas (not 8 per core) and big blocks via mmap, so memory freed
    after each window returns to the OS instead of staying in the heap (with
    onnxruntime's arena off; benchmarks/README.md has the numbers). No-op off glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _import_structlog_without_rich() -> None:
    """structlog imports rich (and pygments) at import time, only to pretty-print
    tracebacks on a terminal; the daemon never needs that, and the memory it costs
    shows in the daemon's peak RSS (benchmarks/README.md). rich stays importable
    afterwards; no-op when structlog is already imported (e.g. in-process tests)."""
    import sys

    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


def run(args: argparse.Namespace) -> int:
    _limit_malloc()
    _import_structlog_without_rich()
    from listener.cli import source_from_arg
    from listener.service.daemon import run_daemon

    source = source_from_arg(args.source) if args.source else None
    return run_daemon(args.config, log_level=args.log_level, source=source)
