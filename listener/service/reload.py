"""SIGHUP: re-read the config and apply what can change while listening.

A broken file is rejected as a whole (every problem logged) and the running config
stays. A valid one is applied between two windows: new, changed and removed
triggers (unchanged ones keep their state, so an active event is not cut), the
config's ``enabled`` values (an edited one beats a switch stored over MQTT, see
listener/service/switches.py), the level gate, clip settings, logging and Home
Assistant discovery. The model, the source, the window and hop, the MQTT
connection and the web page (its server and history) need a restart: that is logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from listener.config.loader import LoadedConfig, load_config
from listener.config.schema import Config, TriggerConfig
from listener.errors import ConfigError, UserError
from listener.logs import get_logger
from listener.service.assemble import (
    build_trigger_set,
    configured_enabled,
    make_clips,
    novelty_gate,
    require_triggers,
)

if TYPE_CHECKING:
    from listener.model.stack import ModelStack
    from listener.service.pipeline import Pipeline
    from listener.service.switches import SwitchStore

log = get_logger("listener.daemon")


def diff_triggers(old: list[TriggerConfig], new: list[TriggerConfig]) -> dict[str, list[str]]:
    before = {t.name: t for t in old}
    after = {t.name: t for t in new}
    return {
        "added": [n for n in after if n not in before],
        "removed": [n for n in before if n not in after],
        "changed": [n for n in after if n in before and after[n] != before[n]],
    }


def needs_restart(old: Config, new: Config) -> list[str]:
    """Sections that changed but only take effect after a restart."""
    out = [s for s in ("model", "source", "mqtt", "web") if getattr(old, s) != getattr(new, s)]
    if (old.audio.window_seconds, old.audio.hop_seconds) != (
        new.audio.window_seconds, new.audio.hop_seconds
    ):
        out.append("audio.window_seconds/hop_seconds")
    return out


def apply_config(pipeline: Pipeline, switches: SwitchStore, stack: ModelStack, old: Config,
                 new: Config) -> dict[str, bool]:
    """Apply ``new`` to a running pipeline between two windows; returns the triggers whose
    enabled state changed. Raises UserError (nothing applied) when the new triggers
    cannot be built, e.g. an example file that is too short."""
    triggers = build_trigger_set(new, stack)  # outside the lock: may run a tower
    with pipeline.between_windows():
        switched = switches.reload(configured_enabled(new))
        pipeline.reload(triggers, new.audio.min_level_dbfs)
        if new.audio.novelty != old.audio.novelty:
            pipeline.detector.novelty = novelty_gate(new, stack)
        if new.clips != old.clips:
            pipeline.set_clips(make_clips(new))
    return switched


def read_config(path: Path | None) -> LoadedConfig | None:
    """The config file as it is now, or None (every problem logged) when it is rejected."""
    try:
        new = load_config(path)
        require_triggers(new.config, path)
        return new
    except ConfigError as exc:
        log.error("config reload rejected; still running the previous config",
                  config=str(path), errors=exc.errors)
        for line in exc.errors:
            log.error("config problem", problem=line)
        return None


def reload_running(pipeline: Pipeline, switches: SwitchStore, stack: ModelStack, old: Config,
                   new: Config) -> bool:
    """Apply ``new`` to the running pipeline, logging what changed; False if rejected."""
    for section in needs_restart(old, new):
        log.warning(f"reload: '{section}' changed; restart listener to apply it")
    try:
        switched = apply_config(pipeline, switches, stack, old, new)
    except UserError as exc:
        log.error("config reload rejected; still running the previous config", error=str(exc))
        return False
    log.info("config reloaded", triggers=[t.name for t in new.triggers],
             **diff_triggers(old.triggers, new.triggers),
             **({"switched": switched} if switched else {}))
    return True
