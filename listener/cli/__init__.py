"""One module per sub-command; each exposes ``register(subparsers)``.

The helpers here keep the commands alike (one grammar): every command is added the same
way, with a description, and remembers its parser (an unknown argument is reported with
that command's usage, listener/__main__.py); every command that reads the config takes
``-c/--config FILE`` with the same search order; a live source is overridden with
``--source``; one JSON document is ``--json``, JSON lines ``--jsonl``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

CONFIG_SEARCH = "$LISTENER_CONFIG, /etc/listener/config.yaml, ./config.yaml"


def add_command(sub: argparse._SubParsersAction, name: str, help: str,
                description: str | None = None,
                func: Callable[[argparse.Namespace], int] | None = None
                ) -> argparse.ArgumentParser:
    """A sub-command parser: ``help`` is its line in `listener --help`, ``description``
    (default: the same) heads its own ``--help``; ``func`` runs it."""
    p = sub.add_parser(name, help=help, description=description or help)
    p.set_defaults(parser=p)
    if func is not None:
        p.set_defaults(func=func)
    return p


def doc_body(doc: str | None) -> str | None:
    """A command module's docstring without its first line, as a ``--help`` description."""
    return doc.split("\n\n", 1)[1].replace("``", "") if doc and "\n\n" in doc else doc


def add_config_option(p: argparse.ArgumentParser, what: str = "config file") -> None:
    p.add_argument("-c", "--config", metavar="FILE", help=f"{what} (default: {CONFIG_SEARCH})")


def add_source_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", metavar="SRC",
                   help="override the config's source: mic, stdin, file:PATH or a stream "
                   "URL (rtsp://, http://, ...)")


def add_stream_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stream", metavar="NAME",
                   help="with a 'streams:' config: the stream to use (its source and "
                   "triggers); needed when the config lists several")


def source_from_arg(text: str):  # -> listener.config.schema.SourceConfig
    """``--source`` as a SourceConfig (UserError naming the forms when it is none)."""
    from pydantic import ValidationError

    from listener.audio.urls import mask_url
    from listener.config.source import FORMS, SourceConfig, parse_source
    from listener.errors import UserError

    try:
        return SourceConfig.model_validate(parse_source(text))
    except (ValidationError, ValueError):
        shown = mask_url(text) if "://" in text else text  # never a password on screen
        raise UserError(f"--source {shown!r}: must be {FORMS}") from None
