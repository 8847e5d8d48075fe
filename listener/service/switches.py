"""Runtime on/off switches for triggers, persisted in the state directory.

A user turns a trigger off from Home Assistant at night (``<trigger>/enabled/set``)
and expects it to stay off after a reboot. The choice is kept in
``state_dir/switches.json``; a trigger without a stored choice uses its config's
``enabled``. Writes are atomic (temp file + rename) so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import structlog

log = structlog.get_logger("listener.switches")

SWITCHES_FILE = "switches.json"
_TRUE = {"on", "true", "1"}
_FALSE = {"off", "false", "0"}


def parse_switch(payload: bytes | str) -> bool | None:
    """ON/OFF/true/false/1/0 (any case, surrounding blanks ignored) -> bool; else None."""
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError:
            return None
    text = payload.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


class Switches:
    """name -> enabled, loaded from and saved to ``state_dir/switches.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / SWITCHES_FILE
        self._lock = threading.Lock()
        self._choices: dict[str, bool] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._choices = {str(k): bool(v) for k, v in data.items() if isinstance(v, bool)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            log.warning(
                "ignoring unreadable trigger switch file; all triggers use their config",
                path=str(self.path), error=str(exc),
            )

    def get(self, name: str, default: bool) -> bool:
        with self._lock:
            return self._choices.get(name, default)

    def set(self, name: str, enabled: bool) -> None:
        with self._lock:
            self._choices[name] = enabled
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._choices, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
