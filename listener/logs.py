"""Logging: structlog for our messages, stdlib logging (paho, onnxruntime) routed through it.

One call, :func:`setup_logging`, decides the output once per process (and again on
SIGHUP when the level or format changes):

- ``console``: coloured, aligned key=value lines, for a person at a terminal;
- ``json``: one JSON object per line (``timestamp``, ``level``, ``event``, ``logger``
  and the event's own keys), for journald/jq/log shippers;
- ``auto``: console when stderr is a TTY and we are not under systemd
  (``$JOURNAL_STREAM`` or ``$INVOCATION_ID`` set), JSON otherwise.

Everything goes to stderr, so stdout stays free for command output (scan's JSON lines).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def under_systemd(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


def choose_format(fmt: str, stream: TextIO, environ: dict[str, str] | None = None) -> str:
    """'console' or 'json' for ``fmt`` in auto/console/json."""
    if fmt in ("console", "json"):
        return fmt
    isatty = getattr(stream, "isatty", lambda: False)()
    return "console" if isatty and not under_systemd(environ) else "json"


def setup_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> str:
    """Configure structlog and the stdlib root logger; returns the chosen format."""
    stream = stream or sys.stderr
    chosen = choose_format(fmt, stream)
    numeric = LEVELS.get(level, logging.INFO)

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if chosen == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", bool)())

    structlog.configure(
        processors=[
            *shared[:1],
            structlog.stdlib.filter_by_level,
            *shared[1:],
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # paho logs every packet at DEBUG; keep it one step quieter than ours.
    logging.getLogger("paho").setLevel(max(numeric, logging.INFO))
    return chosen


def get_logger(name: str = "listener") -> Any:
    return structlog.get_logger(name)
