"""Whether each trigger is enabled: one owner, persisted across restarts.

Keyed by (stream, trigger) through :func:`switch_key`: with ``streams:`` a trigger can be
off on one stream and on on another; a single ``source:`` keys by trigger name, as before.

A user turns a trigger off from Home Assistant at night (``<trigger>/enabled/set``)
and expects it to stay off after a reboot; the choice is kept in the state
directory's ``switches.json``, with the config's ``enabled`` at the time it was made.
A trigger without a stored choice uses its config's ``enabled``. Editing a trigger's
``enabled`` in the config is the newer decision: the stored choice for it is dropped,
whether the edit is picked up by a reload or by the next start.

:class:`SwitchStore` is the only place this fact lives. The detector asks it at every
step, the MQTT publisher reads it from the detector's results, command handlers
(listener/service/commands.py) write it. Writes are atomic (listener/files.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path

import structlog

from listener.files import atomic_write

log = structlog.get_logger("listener.switches")


def switch_key(stream: str | None, trigger: str) -> str:
    """The key of one trigger on one stream: the trigger's name for the single-source
    form (so its switches file keeps working), ``<stream>/<trigger>`` for a named stream
    (a stream name cannot contain ``/``: listener/config/types.py)."""
    return trigger if stream is None else f"{stream}/{trigger}"


class SwitchStore:
    """name -> enabled: stored runtime choices over the config's ``enabled``."""

    def __init__(self, path: Path | None, configured: Mapping[str, bool]) -> None:
        """``path`` None keeps choices in memory only (scan, top, calibrate)."""
        self.path = path
        self._lock = threading.Lock()
        self._configured = dict(configured)
        # name -> (choice, the config's `enabled` when it was made; None: not recorded)
        self._choices: dict[str, tuple[bool, bool | None]] = (
            self._load() if path is not None else {})
        edited = [n for n, (_, then) in self._choices.items()
                  if then is not None and n in self._configured and self._configured[n] != then]
        if edited:
            with self._lock:
                for name in edited:
                    del self._choices[name]
                self._save()

    def _load(self) -> dict[str, tuple[bool, bool | None]]:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(k): c for k, v in data.items() if (c := _choice(v)) is not None}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning(
                "ignoring unreadable trigger switch file; all triggers use their config",
                path=str(self.path), error=str(exc),
            )
            return {}

    def _save(self) -> None:
        """Write the choices (caller holds the lock); a failure is logged, not raised."""
        if self.path is None:
            return
        data = {n: {"enabled": c, "config": then} for n, (c, then) in self._choices.items()}
        try:
            atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True), mode=0o600)
        except OSError as exc:
            log.error(
                "cannot store the trigger switch; it will not survive a restart",
                path=str(self.path), error=str(exc),
            )

    def _state(self, name: str) -> bool:
        choice = self._choices.get(name)
        return choice[0] if choice is not None else self._configured.get(name, False)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._configured)

    def enabled(self, name: str) -> bool:
        with self._lock:
            return self._state(name)

    def snapshot(self) -> dict[str, bool]:
        with self._lock:
            return {n: self._state(n) for n in self._configured}

    def set(self, name: str, enabled: bool) -> bool:
        """Store a runtime choice; True if it changed the trigger's state.

        Raises KeyError naming the known triggers when ``name`` is not one of them.
        """
        with self._lock:
            if name not in self._configured:
                known = ", ".join(self._configured)
                raise KeyError(f"unknown trigger {name!r}; triggers: {known}")
            before = self._state(name)
            self._choices[name] = (bool(enabled), self._configured[name])
            self._save()
            return before != bool(enabled)

    def reload(self, configured: Mapping[str, bool]) -> dict[str, bool]:
        """Take the reloaded config's ``enabled`` values; returns the triggers whose
        effective state changed (or that are new), with their new state."""
        with self._lock:
            before = {n: self._state(n) for n in self._configured}
            edited = [n for n, c in configured.items()
                      if n in self._configured and self._configured[n] != c]
            for name in edited:
                self._choices.pop(name, None)
            self._configured = dict(configured)
            if edited:
                self._save()
            after = {n: self._state(n) for n in self._configured}
        return {n: v for n, v in after.items() if before.get(n) != v}


def _choice(value: object) -> tuple[bool, bool | None] | None:
    """A stored entry: ``{"enabled": b, "config": b}``, or a plain bool (older files)."""
    if isinstance(value, bool):
        return value, None
    if isinstance(value, dict) and isinstance(value.get("enabled"), bool):
        then = value.get("config")
        return value["enabled"], then if isinstance(then, bool) else None
    return None
