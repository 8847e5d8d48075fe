"""Commands from outside (Home Assistant's switches over MQTT, the web page's switches)
applied to listener.

The transport only says "trigger X got command C with payload P" (listener/mqtt/
publisher.py); what that means is decided here. Today there is one command,
``enabled``: the payload is parsed, the switch store (the one owner of ``enabled``,
listener/service/switches.py) is updated and persisted, and ``apply`` lets the
pipeline end a trigger switched off while its sound is on. A malformed payload or an
unknown trigger is logged as a warning and ignored.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from listener.service.switches import SwitchStore

log = structlog.get_logger("listener.commands")

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


def _preview(payload: bytes, limit: int = 40) -> str:
    text = payload[:limit].decode("utf-8", errors="replace")
    return text + ("..." if len(payload) > limit else "")


class Commands:
    """Handles trigger commands; ``apply()`` is called after the store changed."""

    def __init__(self, switches: SwitchStore, apply: Callable[[], None]) -> None:
        self.switches = switches
        self.apply = apply

    def handle(self, trigger: str, command: str, payload: bytes, topic: str) -> None:
        if command != "enabled":
            log.warning("ignoring an unknown command", topic=topic, command=command)
            return
        value = parse_switch(payload)
        if value is None:
            log.warning(
                "ignoring malformed command: payload must be ON or OFF (or true/false, 1/0)",
                topic=topic, payload=_preview(payload),
            )
            return
        try:
            self.set_enabled(trigger, value, by="mqtt")
        except KeyError:
            log.warning("ignoring command for an unknown trigger", topic=topic,
                        known=sorted(self.switches.names()))

    def set_enabled(self, trigger: str, value: bool, by: str) -> None:
        """Switch a trigger (MQTT, the web page); KeyError names the known triggers."""
        self.switches.set(trigger, value)
        log.info("trigger switched", trigger=trigger, enabled=value, by=by)
        try:
            self.apply()
        except Exception:
            log.exception("applying the switch failed", trigger=trigger, enabled=value)
