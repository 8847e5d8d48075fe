"""What was published to Home Assistant, remembered between runs, and the messages that
take Home Assistant from that to what this run publishes.

The memory is a file in the state directory (listener/service/state_files.py,
``published_discovery``): the retained config topics, the trigger names, the discovery
form, the components of a device config and whether unique_ids are the legacy
unprefixed ones. From it :func:`plan` derives, in the order Home Assistant needs them:

1. moving between forms: ``{"migrate_discovery": true}`` on the configs of the old form
   that the new one carries on (same discovery id and unique_id), so Home Assistant
   (>= 2024.11) hands each entity over with its history and settings instead of
   deleting it;
2. a device config that drops components first lists them with their platform only
   (Home Assistant's way to delete a component of a device config);
3. the configs of this run (retained);
4. empty retained payloads on every config topic published before and not now (the
   other form's, removed triggers', an old prefix's), so Home Assistant shows no
   duplicates and the broker keeps no stale configs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from listener.config.schema import MqttConfig, TriggerConfig
from listener.files import atomic_write
from listener.mqtt.discovery import (
    DEVICE_FORM,
    ENTITY_FORM,
    PLATFORMS,
    SOUND,
    DeviceInfo,
    components_of,
    device_form,
    encode,
    entities,
    entity_form,
)

MIGRATE = encode({"migrate_discovery": True})


@dataclass(frozen=True)
class Published:
    """What a run published: config topics, trigger names, form, device components."""

    topics: frozenset[str] = frozenset()
    triggers: frozenset[str] = frozenset()
    form: str | None = None  # None: nothing published yet (a new install)
    components: dict[str, str] = field(default_factory=dict)  # device form: oid -> platform
    legacy_ids: bool = False  # unique_ids without the ``listener_`` prefix

    @property
    def device_topics(self) -> frozenset[str]:
        return frozenset(t for t in self.topics if _is_device_topic(t))


class Message(NamedTuple):
    topic: str
    payload: bytes
    retain: bool


def load_published(path: Path) -> Published:
    """What an earlier run published (empty when unknown or unreadable).

    Files written before the form was remembered hold per-entity topics published with
    unprefixed unique_ids (``legacy_ids``); before the trigger names were remembered,
    they are read from the topics of the triggers' sound sensors.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        topics = frozenset(str(t) for t in data.get("topics", []))
        names = data.get("triggers")
        form = data.get("form")
        components = {str(k): str(v) for k, v in (data.get("components") or {}).items()}
        ids = data.get("ids")
    except (OSError, ValueError, AttributeError, TypeError):
        return Published()
    if isinstance(names, list):
        triggers = frozenset(str(n) for n in names)
    else:
        triggers = frozenset(filter(None, map(_sound_trigger, topics)))
    if form not in (DEVICE_FORM, ENTITY_FORM):
        form = (DEVICE_FORM if any(map(_is_device_topic, topics)) else ENTITY_FORM) \
            if topics else None
    legacy = ids == "legacy" if ids in ("legacy", "listener") else bool(topics)
    return Published(topics, triggers, form, components, legacy)


def save_published(path: Path, published: Published) -> None:
    """Atomically remember what is now published (0600: the trigger names say what the
    household listens for)."""
    data: dict[str, Any] = {
        "form": published.form, "ids": "legacy" if published.legacy_ids else "listener",
        "topics": sorted(published.topics), "triggers": sorted(published.triggers),
        "components": dict(sorted(published.components.items())),
    }
    atomic_write(path, json.dumps(data, indent=1), mode=0o600)


def next_discovery(cfg: MqttConfig, triggers: Iterable[TriggerConfig], info: DeviceInfo,
                   before: Published) -> tuple[list[Message], Published]:
    """The messages that publish discovery for ``triggers`` after ``before``, and what is
    published then. The form is the config's, or (``auto``) the one published before,
    device for a new install; unique_ids stay as ``before`` chose them."""
    names = frozenset(t.name for t in triggers)
    if not cfg.discovery.enabled:
        now = Published(frozenset(), names, before.form, {}, before.legacy_ids)
        return plan(before, now, {}), now
    form = (before.form or DEVICE_FORM) if cfg.discovery.form == "auto" else cfg.discovery.form
    ents = entities(cfg, triggers, before.legacy_ids, stream=info.via_device is not None)
    if form == DEVICE_FORM:
        configs, components = device_form(cfg, ents, info), components_of(ents)
    else:
        configs, components = entity_form(cfg, ents, info), {}
    now = Published(frozenset(configs), names, form, components, before.legacy_ids)
    dropped = dropped_components(before, now)
    stubbed = {t: encode(p) for t, p in device_form(cfg, ents, info, dropped).items()} \
        if dropped else None
    return plan(before, now, {t: encode(p) for t, p in configs.items()}, stubbed), now


def plan(before: Published, now: Published, configs: dict[str, bytes],
         stubbed: dict[str, bytes] | None = None) -> list[Message]:
    """The messages from ``before`` to ``now``: ``configs`` maps this run's config topics
    to payloads; ``stubbed`` is the device config that still lists the dropped
    components by platform (:func:`listener.mqtt.discovery.device_form`'s ``removed``)."""
    out = [Message(t, MIGRATE, False) for t in sorted(_handed_over(before, now))]
    out += [Message(t, p, True) for t, p in (stubbed or {}).items()]
    out += [Message(t, p, True) for t, p in configs.items()]
    out += [Message(t, b"", True) for t in sorted(before.topics - now.topics)]
    return out


def dropped_components(before: Published, now: Published) -> dict[str, str]:
    """Components a device config listed before and not now, on the same device topic."""
    if before.form != DEVICE_FORM or now.form != DEVICE_FORM or \
            not (before.device_topics & now.device_topics):
        return {}
    return {oid: p for oid, p in before.components.items() if oid not in now.components}


def _handed_over(before: Published, now: Published) -> set[str]:
    """Configs of the old form whose entities the new form carries on."""
    if before.form == now.form or before.form is None:
        return set()
    if now.form == DEVICE_FORM:  # entity -> device: per-entity topics of kept entities
        kept = {(p, oid) for oid, p in now.components.items()}
        device_nodes = {_device_node(t) for t in now.device_topics}
        return {t for t in before.topics if _entity_key(t) in kept
                and _entity_node(t) in device_nodes}
    # device -> entity: the device config, when this run's entities live under it
    nodes = {_entity_node(t) for t in now.topics}
    return {t for t in before.device_topics if _device_node(t) in nodes}


def _is_device_topic(topic: str) -> bool:
    """``<prefix>/device/<id>/config``, not ``<prefix>/<platform>/device/<oid>/config``
    (the per-entity topic of a listener whose device_id is ``device``)."""
    parts = topic.split("/")
    return len(parts) >= 4 and parts[-3] == "device" and parts[-4] not in PLATFORMS


def _device_node(topic: str) -> str:
    """``<prefix>/device/<id>/config`` -> ``<prefix> <id>``."""
    parts = topic.split("/")
    return f"{'/'.join(parts[:-3])} {parts[-2]}"


def _entity_node(topic: str) -> str:
    """``<prefix>/<platform>/<id>/<oid>/config`` -> ``<prefix> <id>``."""
    parts = topic.split("/")
    return f"{'/'.join(parts[:-4])} {parts[-3]}"


def _entity_key(topic: str) -> tuple[str, str]:
    parts = topic.split("/")
    return (parts[-4], parts[-2]) if len(parts) >= 5 else ("", "")


def _sound_trigger(topic: str) -> str | None:
    """The trigger of a sound sensor's per-entity config topic."""
    parts = topic.split("/")
    if len(parts) >= 5 and parts[-4] == "binary_sensor" and parts[-2].endswith(SOUND):
        return parts[-2][: -len(SOUND)] or None
    return None
