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


def run(args: argparse.Namespace) -> int:
    _limit_malloc()
    from listener.daemon import run_daemon

    return run_daemon(args.config, log_level=args.log_level)
