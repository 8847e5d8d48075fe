"""One module per sub-command; each exposes ``register(subparsers)``.

The helpers here keep the commands alike: every command is added the same way, and
every command that reads the config takes ``--config/-c`` with the same search order.
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
    if func is not None:
        p.set_defaults(func=func)
    return p


def doc_body(doc: str | None) -> str | None:
    """A command module's docstring without its first line, as a ``--help`` description."""
    return doc.split("\n\n", 1)[1].replace("``", "") if doc and "\n\n" in doc else doc


def add_config_option(p: argparse.ArgumentParser, what: str = "config file") -> None:
    p.add_argument("--config", "-c", metavar="FILE", help=f"{what} (default: {CONFIG_SEARCH})")
