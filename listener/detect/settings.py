"""Effective trigger settings: what a trigger's hysteresis and margin actually use.

Plain data, no pydantic: the detector and hysteresis read these on every window.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TriggerSettings:
    on_threshold: float
    off_threshold: float
    on_windows: int
    off_seconds: float
    cooldown_seconds: float
    margin: float


