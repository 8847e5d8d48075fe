"""Effective trigger settings: the one place a trigger's thresholds and timings are decided.

A trigger may set any of these keys itself; the keys it leaves out come from the
config's ``defaults:`` section, then from the model's recommendations (its
``listener.json`` may carry ``recommended: {on_threshold, off_threshold, margin}``:
score scales differ between models, real CLAP sits near 0.3, the small test model near
0.9), then from the built-in defaults (:data:`CLAP_RECOMMENDED` and the timings in
listener/config/schema.py). :func:`resolve` is the only code that merges those layers
(the config checks the result, listener/config/schema.py), and everything
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

#: the keys a model may recommend: those that depend on its score scale (timings do not)
MODEL_KEYS: tuple[str, ...] = ("on_threshold", "off_threshold", "margin")

#: what suits real CLAP (laion/clap-htsat-*, Xenova/clap-htsat-unfused): the built-in
#: defaults, and what `listener model pull` records in a pulled model's listener.json
CLAP_RECOMMENDED: dict[str, float] = {"on_threshold": 0.30, "off_threshold": 0.25,
                                      "margin": 0.05}


def resolve(*layers: Mapping[str, Any]) -> TriggerSettings:
    """Merge layers, most specific first: the first layer that sets a key (not None) wins.

    Called as ``resolve(trigger's own keys, config defaults, model recommendations,
    built-in defaults)``; the last layer must set every key.
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


def provenance(*layers: tuple[str, Mapping[str, Any]]) -> dict[str, str]:
    """Which named layer sets each key (the first that sets it, as :func:`resolve` picks)."""
    out: dict[str, str] = {}
    for key in KEYS:
        for name, layer in layers:
            if layer.get(key) is not None:
                out[key] = name
                break
    return out
