"""The add-on folder (addon/) against Home Assistant's documented add-on format.

The schema below is a subset of the developer documentation's "Add-on configuration"
page, written down here as data: https://developers.home-assistant.io/docs/add-ons/configuration
(source: github.com/home-assistant/developers.home-assistant, docs/add-ons/configuration.md,
commit f7666ff145c5c78a43ce2ea52e02451d18841e72). It covers the required keys and the
types of the optional keys the manifest uses, the option-schema type grammar (``str``,
``int(min,max)``, ``match(REGEX)``, ``list(a|b)``, a trailing ``?`` for optional),
nesting of at most two levels, the translations file's shape, and build.yaml. On top of
the format: every option has a schema entry its default satisfies and a translation,
and the options are exactly what listener/addon.py maps (so neither can drift).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from listener.addon import OPTION_KEYS, REQUIRED, TRIGGER_LISTS
from tests.helpers import ROOT

ADDON = ROOT / "addon"
ARCHES = {"armhf", "armv7", "aarch64", "amd64", "i386"}
REQUIRED_KEYS = {"name": str, "version": str, "slug": str, "description": str, "arch": list}
OPTIONAL_KEYS: dict[str, type | tuple[type, ...]] = {
    "machine": list, "url": str, "startup": str, "webui": str, "boot": str, "ports": dict,
    "ports_description": dict, "host_network": bool, "devices": list, "homeassistant": str,
    "hassio_role": str, "hassio_api": bool, "homeassistant_api": bool, "map": list,
    "environment": dict, "audio": bool, "video": bool, "usb": bool, "uart": bool,
    "options": dict, "schema": (dict, bool), "image": str, "timeout": int, "tmpfs": bool,
    "discovery": list, "services": list, "ingress": bool, "ingress_port": int,
    "ingress_entry": str, "panel_icon": str, "panel_title": str, "panel_admin": bool,
    "backup": str, "backup_exclude": list, "advanced": bool, "stage": str, "init": bool,
    "watchdog": str, "apparmor": (bool, str),
}
CHOICES = {
    "startup": {"initialize", "system", "services", "application", "once"},
    "boot": {"auto", "manual", "manual_only"},
    "stage": {"stable", "experimental", "deprecated"},
    "backup": {"hot", "cold"},
}
SERVICE = re.compile(r"^[a-z]+:(provide|want|need)$")
_RANGE = r"(\((-?[0-9.]*),(-?[0-9.]*)\))?"
OPTION_TYPE = re.compile(
    rf"^(?:(?P<kind>str|int|float){_RANGE}|bool|email|url|password|port"
    r"|match\((?P<regex>.+)\)|list\((?P<choices>[^)]+)\)|device(\(.+\))?)(?P<optional>\?)?$"
)


def manifest() -> dict[str, Any]:
    return yaml.safe_load((ADDON / "config.yaml").read_text())


def depth(value: Any) -> int:
    """Levels of list/dict nesting below an option (a plain value is 0)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def satisfies(value: Any, type_text: str) -> bool:
    """Whether a default value passes the Supervisor's check for ``type_text``."""
    m = OPTION_TYPE.match(type_text)
    assert m, type_text
    kind = m["kind"] or type_text.split("(")[0].rstrip("?")
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("int", "float"):
        ok = isinstance(value, int if kind == "int" else (int, float)) and not isinstance(
            value, bool)
        lo, hi = m.group(3), m.group(4)
        return ok and (not lo or value >= float(lo)) and (not hi or value <= float(hi))
    if kind == "match":
        return isinstance(value, str) and re.fullmatch(m["regex"], value) is not None
    if kind == "list":
        return value in m["choices"].split("|")
    return isinstance(value, str)


def check_option(value: Any, schema: Any, where: str) -> None:
    if isinstance(schema, list):
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            check_option(item, schema[0], f"{where}[{i}]")
    elif isinstance(schema, dict):
        assert isinstance(value, dict), where
        assert set(value) <= set(schema), (where, set(value) - set(schema))
        for key, sub in schema.items():
            if key in value:
                check_option(value[key], sub, f"{where}.{key}")
            else:
                assert str(sub).endswith("?"), f"{where}.{key} is required"
    else:
        assert satisfies(value, schema), (where, value, schema)


def test_required_keys_and_types():
    m = manifest()
    for key, kind in REQUIRED_KEYS.items():
        assert isinstance(m.get(key), kind), key
    for key, value in m.items():
        assert key in REQUIRED_KEYS or key in OPTIONAL_KEYS, f"undocumented key {key}"
        if key in OPTIONAL_KEYS:
            assert isinstance(value, OPTIONAL_KEYS[key]), key
        if key in CHOICES:
            assert value in CHOICES[key], (key, value)
    assert set(m["arch"]) <= ARCHES
    assert re.fullmatch(r"[a-z0-9_]+", m["slug"])
    assert all(SERVICE.match(s) for s in m["services"])


def test_what_listener_needs_from_the_supervisor():
    m = manifest()
    assert m["arch"] == ["aarch64", "amd64"]
    assert m["audio"] is True
    assert "mqtt:need" in m["services"]
    assert m["timeout"] >= 30  # SIGTERM flushes the spool (systemd's TimeoutStopSec)
    assert "ingress" in m  # the web page's place (issue 17)


def test_option_schema_types_and_nesting():
    schema = manifest()["schema"]

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            assert len(node) == 1, where
            walk(node[0], f"{where}[]")
        else:
            assert OPTION_TYPE.match(str(node)), f"{where}: unknown type {node!r}"

    for key, node in schema.items():
        assert depth(node) <= 2, f"{key} nests deeper than the Supervisor supports"
        walk(node, key)


def test_option_defaults_satisfy_their_schema():
    m = manifest()
    assert set(m["options"]) <= set(m["schema"])
    for key, node in m["schema"].items():
        if key in m["options"]:
            check_option(m["options"][key], node, key)
        else:
            assert str(node).endswith("?"), f"{key}: required but has no default"


def test_options_are_the_ones_the_start_script_maps():
    schema = manifest()["schema"]
    assert set(schema) == set(OPTION_KEYS) | set(REQUIRED)
    trigger = schema["triggers"][0]
    for key in TRIGGER_LISTS:
        assert str(trigger[key]).rstrip("?") == "str"  # "a; b": lists cannot nest deeper


def test_every_option_is_translated():
    m = manifest()
    translations = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text())
    assert set(translations) <= {"configuration", "network"}
    conf = translations["configuration"]
    assert set(conf) == set(m["schema"])
    for key, node in m["schema"].items():
        assert conf[key]["name"] and conf[key]["description"], key
        fields = node[0] if isinstance(node, list) and isinstance(node[0], dict) else None
        if fields:
            assert set(conf[key]["fields"]) == set(fields), key
            for sub in fields:
                assert conf[key]["fields"][sub]["name"], (key, sub)


def test_build_file_and_dockerfile():
    build = yaml.safe_load((ADDON / "build.yaml").read_text())
    assert set(build) <= {"build_from", "args", "labels", "codenotary"}
    assert set(build["build_from"]) == set(manifest()["arch"])
    dockerfile = (ADDON / "Dockerfile").read_text()
    assert re.search(r"^ARG BUILD_FROM$", dockerfile, re.M)
    assert re.search(r"^FROM \$\{?BUILD_FROM\}?$", dockerfile, re.M)
    run = (ADDON / "run.sh").read_text()
    assert run.startswith("#!/bin/sh") and "python3 -m listener.addon" in run
    assert (ADDON / "run.sh").stat().st_mode & 0o111


@pytest.mark.parametrize("name", ["DOCS.md", "CHANGELOG.md", "icon.png"])
def test_documentation_and_icon_are_there(name: str):
    path: Path = ADDON / name
    data = path.read_bytes()
    if name == "icon.png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width == height >= 128
    else:
        assert len(data) > 200
    if name == "CHANGELOG.md":
        assert f"## {manifest()['version']}" in data.decode()
