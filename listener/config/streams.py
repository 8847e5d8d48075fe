"""Streams: several audio sources heard by one process with one model (issue 15).

A config names its audio either the old way, one top-level ``source:`` (one stream
called ``default`` whose MQTT topics and Home Assistant entities stay exactly what they
were, so existing installs do not break), or as a ``streams:`` list, each stream with a
``name`` (used in topics, entity ids and the switches file), its ``source``, an optional
``label`` and ``suggested_area`` (its Home Assistant device) and the ``triggers`` that
apply to it (default: all). The cross-key rules live here, so schema.py stays the list
of keys; :func:`streams_of` is the one place that turns either form into
:class:`Stream` values everything else iterates over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from listener.config.types import at_key
from listener.detect.events import DEFAULT_STREAM
from listener.errors import UserError

if TYPE_CHECKING:
    from listener.config.schema import Config, SourceConfig

@dataclass(frozen=True)
class Stream:
    """One stream as the service runs it. ``named`` is False for the single-source form:
    its topics, entities and switches keep the pre-streams shape."""

    name: str
    source: SourceConfig
    triggers: tuple[str, ...]  # the trigger names that apply, in config order
    label: str
    suggested_area: str | None = None
    named: bool = True


def check_streams(config: Config) -> None:
    """``source:`` and ``streams:`` together, duplicate names, unknown trigger names:
    ValueError tagged with the key to change (config/problems.py adds file:line)."""
    if config.streams and "source" in config.model_fields_set:
        raise at_key("streams", "and 'source:' cannot both be set: a single 'source:' is "
                     "one stream; with 'streams:' give each stream its own 'source:'")
    known = [t.name for t in config.triggers]
    seen: dict[str, int] = {}
    for i, s in enumerate(config.streams):
        if s.name in seen:
            raise at_key(f"streams[{i}].name", f"duplicate stream name '{s.name}' (already "
                         f"used by streams[{seen[s.name]}]): names must be unique")
        seen[s.name] = i
        for j, name in enumerate(s.triggers or ()):
            if name not in known:
                raise at_key(f"streams[{i}].triggers[{j}]", f"unknown trigger '{name}'; "
                             f"triggers: {', '.join(known) or '(none configured)'}")


def streams_of(config: Config) -> list[Stream]:
    """Every stream of the config, in order (the single-source form: one, unnamed)."""
    every = tuple(t.name for t in config.triggers)
    if not config.streams:
        return [Stream(DEFAULT_STREAM, config.source, every, config.mqtt.device_name,
                       config.mqtt.suggested_area, named=False)]
    return [Stream(s.name, s.source,
                   every if s.triggers is None else tuple(n for n in every if n in s.triggers),
                   s.label or s.name, s.suggested_area)
            for s in config.streams]


def select_stream(config: Config, name: str | None) -> Config:
    """`top --stream`, `calibrate --stream`: the config as one source, the stream's, with
    the stream's triggers. Without a name a config with one stream gives that one; with
    several, the user must choose (UserError, exit 2, naming them)."""
    if not config.streams:
        if name is not None and name != DEFAULT_STREAM:
            raise UserError(f"--stream {name}: the config has one 'source:', no 'streams:' "
                            "(leave --stream out)")
        return config
    names = [s.name for s in config.streams]
    if name is None and len(names) == 1:
        name = names[0]
    if name not in names:
        what = "no such stream" if name is not None else "the config lists several streams"
        raise UserError(f"--stream{f' {name}' if name else ''}: {what}; choose one of: "
                        f"{', '.join(names)} (--stream NAME)")
    chosen = next(s for s in config.streams if s.name == name)
    cfg = config.model_copy(deep=True)
    cfg.source, cfg.streams = chosen.source, []
    if chosen.triggers is not None:
        cfg.triggers = [t for t in cfg.triggers if t.name in chosen.triggers]
    return cfg
