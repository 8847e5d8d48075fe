"""Validated value types and cross-key rules shared by every config section.

A value that is wrong on its own (a threshold above 1, a name with a line break, a
negative duration) is refused by its type here; a rule between two keys of a section
(a hop no longer than the window) raises through :func:`at_key`, which names the key the
user must change, so the message points at its line.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

#: what a name used in MQTT topics and Home Assistant ids may hold: matched against the
#: WHOLE value (``fullmatch``), so a trailing line break from a YAML block scalar fails it
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")


# --- small validated types -------------------------------------------------------------


def at_key(path: str, message: str) -> ValueError:
    """A cross-field error that belongs to one key (``path`` like ``triggers[2].name``).

    pydantic reports a model validator's error at the section; the tag lets the
    formatter point at the line of the key the user must change instead.
    """
    return ValueError(f"<<{path}>>{message}")


def not_above(section: object, low_key: str, high_key: str, at: str = "",
              note: str = "") -> ValueError | None:
    """The error for ``low_key`` set above ``high_key`` in one section, or None if it is not.

    Several pairs of keys must keep an order (a hop no longer than the window, the
    shortest reconnect delay no longer than the longest); every such rule says the same
    thing the same way, at the line of the lower key: ``must not exceed window_seconds
    (2.0), got 5.0``. A validator raises what this returns. ``at`` prefixes the key path
    (``"triggers[2]."``) and ``note`` is appended to the message.
    """
    low, high = getattr(section, low_key), getattr(section, high_key)
    if low > high:
        return at_key(at + low_key, f"must not exceed {high_key} ({high}), got {low}{note}")
    return None


def keeps_order(low_key: str, high_key: str) -> Any:
    """A section's validator: ``low_key`` must not exceed ``high_key`` (:func:`not_above`)."""

    def check(self: Any) -> Any:
        if (error := not_above(self, low_key, high_key)) is not None:
            raise error
        return self

    return model_validator(mode="after")(check)


def at_most(limit: float, message: str) -> AfterValidator:
    """A bound with its reason in the message (``must be at most 10 (the model ...)``)."""

    def check(v: float) -> float:
        if v > limit:
            raise ValueError(message)
        return v

    return AfterValidator(check)


def _unit_interval(v: float) -> float:
    if not 0.0 <= v <= 1.0:
        raise ValueError("must be between 0 and 1")
    return v


def _positive(v: float) -> float:
    if v <= 0:
        raise ValueError("must be greater than 0")
    return v


def _non_negative(v: float) -> float:
    if v < 0:
        raise ValueError("must be 0 or more")
    return v


#: why a value that looks right is refused: YAML's block scalars end with a line break
_BLOCK_SCALAR_HINT = (
    "; a block scalar ('|' or '>') keeps its line break: write the value on the key's line"
)


def _identifier(v: str) -> str:
    """A name that goes into MQTT topics: a broker drops the whole connection (every
    trigger's events) on a topic with a control character, so the whole value must match."""
    if not ID_PATTERN.fullmatch(v):
        hint = _BLOCK_SCALAR_HINT if ID_PATTERN.fullmatch(v.strip()) else ""
        raise ValueError(
            "may only contain letters, digits, '_' and '-' (it is used in MQTT topics "
            f"and Home Assistant ids{hint})"
        )
    return v


def _no_control_characters(v: str) -> str:
    """Text sent to the broker as an MQTT string (client id, user name) or used to reach
    it (host): MQTT forbids control characters there, and mosquitto drops the connection."""
    if any(unicodedata.category(c) == "Cc" for c in v):
        raise ValueError(
            "must not contain control characters such as line breaks, tabs or NUL (the "
            f"broker refuses them{_BLOCK_SCALAR_HINT})"
        )
    return v


def _non_empty_text(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v


UnitFloat = Annotated[float, AfterValidator(_unit_interval)]
PositiveFloat = Annotated[float, AfterValidator(_positive)]
NonNegFloat = Annotated[float, AfterValidator(_non_negative)]
PositiveInt = Annotated[int, AfterValidator(_positive)]
NonNegInt = Annotated[int, AfterValidator(_non_negative)]
Identifier = Annotated[str, AfterValidator(_identifier)]
Text = Annotated[str, AfterValidator(_non_empty_text)]
WireText = Annotated[str, AfterValidator(_no_control_characters)]
#: text that goes to the network and must not be empty (a host name)
WireName = Annotated[Text, AfterValidator(_no_control_characters)]


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are not coerced from text."""

    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True)


#: the newest seconds scored alone (listener/detect/boundary.py); a whole window is no tail
TailSeconds = Annotated[
    NonNegFloat, at_most(5.0, "must be at most 5 (the newest part of a 10-s window)")
]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
