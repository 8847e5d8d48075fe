"""Errors a user can fix: they carry a message, never a traceback.

Anything raised as a :class:`UserError` (or subclass) is printed by the CLI as
``listener: <message>`` and exits with code 2 (usage/config) or the error's own
``exit_code``. Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in input, config or environment that the user can fix.

    The message must say what is wrong, where (path, file:line, key path) and
    how to fix it.
    """

    exit_code = 2


class ConfigError(UserError):
    """The configuration file is invalid. ``errors`` holds one line per problem."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [message]


class ModelError(UserError):
    """A model directory or model file is missing, damaged or of the wrong shape."""


class AudioError(UserError):
    """An audio file, device or stream cannot be read as audio."""


class MissingExtraError(UserError):
    """An optional dependency is not installed; the message says which extra to install."""

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        super().__init__(
            f"{feature} needs the optional '{extra}' dependencies ({missing} is not installed). "
            f"Install them with: pip install 'listener[{extra}]'"
        )
