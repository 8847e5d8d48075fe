"""Effective trigger settings: the one place a trigger's thresholds and timings are decided.

A trigger may set any of these keys itself; the keys it leaves out come from the
config's ``defaults:`` section. :func:`resolve` is the only code that merges those
layers (the config checks the result once, listener/config/schema.py), and everything
downstream (detector, hysteresis, `top`, `calibrate`, the plot) reads the resulting
:class:`TriggerSettings` instead of working the values out again.

Plain data, no pydantic: the detector and hysteresis read these on every window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class TriggerSettings:
    """What one trigger's hysteresis and margin use (see listener/detect/hysteresis.py)."""

    on_threshold: float
    off_threshold: float
    on_windows: int
    off_seconds: float
    cooldown_seconds: float
    margin: float
    #: the newest seconds scored alone to find the sound's edges (0: the window only),
    #: listener/detect/boundary.py
    tail_seconds: float = 2.0
    #: other triggers' prompts count as look-alikes (listener/detect/triggers.py)
    compete: bool = True


#: every key a trigger can set itself or inherit from ``defaults:``
KEYS: tuple[str, ...] = tuple(f.name for f in fields(TriggerSettings))


def resolve(*layers: Mapping[str, Any]) -> TriggerSettings:
    """Merge layers, most specific first: the first layer that sets a key (not None) wins.

    Called as ``resolve(trigger's own keys, defaults)``; the last layer must set every key.
    """
    values: dict[str, Any] = {}
    for key in KEYS:
        for layer in layers:
            value = layer.get(key)
            if value is not None:
                values[key] = value
                break
        else:
            raise KeyError(f"no layer sets {key!r}")
    return TriggerSettings(**values)
