"""`listener run`: the service. Listens until stopped (or until a file source ends).

Under systemd it is started by systemd/listener.service (Type=notify: READY after
the model is loaded and the audio source opened, WATCHDOG pings from the
processing loop). See listener/daemon.py for signals and reloads.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the daemon: listen, detect, publish events (Ctrl-C or SIGTERM to stop)",
        description="Listen to the configured source and publish events. "
        "Config search order: --config, $LISTENER_CONFIG, /etc/listener/config.yaml, "
        "./config.yaml. SIGHUP reloads the config (a broken file is rejected and the old "
        "one keeps running); SIGTERM/SIGINT flush events and exit 0.",
    )
    p.add_argument("--config", "-c", metavar="FILE", help="config file")
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="override logging.level from the config",
    )
    p.set_defaults(func=run)


def _limit_malloc() -> None:
    """glibc: 2 malloc arenas (not 8 per core) and big blocks via mmap, so memory freed
    after each window returns to the OS; daemon peak RSS ~212 -> ~160 MB measured with
    benchmarks/bench_daemon.py (with onnxruntime's arena off). No-op off glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _import_structlog_without_rich() -> None:
    """structlog imports rich (and pygments) at import time, only to pretty-print
    tracebacks on a terminal; the daemon never needs that: daemon peak RSS -3.5 MB
    (benchmarks/bench_daemon.py: 139.5-139.9 -> 136.2-136.4 MB). rich stays importable
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
    from listener.service.daemon import run_daemon

    return run_daemon(args.config, log_level=args.log_level)
