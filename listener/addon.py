"""The Home Assistant add-on's start: add-on options + the Supervisor's MQTT broker -> config.

    python3 -m listener.addon [--check]        (addon/run.sh; the add-on's whole start)

Why a module and not a shell script: what the add-on does before `listener run` is the
part that goes wrong for users (an option typed wrong, no MQTT broker installed), so it
is Python the tests run against a stand-in Supervisor, with the project's clear errors:
what is wrong, which option, how to fix it; exit 2, never a traceback.

1. ``/data/options.json`` (the options the user set on the add-on page; the Supervisor
   writes it) is read and checked for the keys the manifest (addon/config.yaml) declares.
2. The MQTT broker comes from the Supervisor: ``GET http://supervisor/services/mqtt``
   with ``$SUPERVISOR_TOKEN`` (the manifest's ``services: [mqtt:need]`` grants it).
3. Options map onto listener's config keys (:data:`OPTION_KEYS`); a trigger's prompts
   are one text separated by ``;`` (the add-on schema nests at most two levels). The
   config is written to ``/data/config.yaml`` (0600: it holds the broker password) and
   validated exactly like `listener check-config`; a problem is reported under the
   option's name.
4. The model (option ``model``, a published export) is pulled into ``/data/models``
   on the first start (listener/container.py), then the process execs `listener run`.
   ``--check`` stops after step 3.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from listener.errors import ConfigError, UserError

DATA = Path("/data")
SUPERVISOR = "http://supervisor"
#: add-on option -> listener config key (config.example.yaml documents each)
OPTION_KEYS = {
    "device": "source.device",
    "hop_seconds": "audio.hop_seconds",
    "min_level_dbfs": "audio.min_level_dbfs",
    "threads": "model.threads",
    "on_threshold": "defaults.on_threshold",
    "off_threshold": "defaults.off_threshold",
    "on_windows": "defaults.on_windows",
    "off_seconds": "defaults.off_seconds",
    "cooldown_seconds": "defaults.cooldown_seconds",
    "margin": "defaults.margin",
    "background": "background",
    "triggers": "triggers",
    "clips": "clips.enabled",
    "device_id": "mqtt.device_id",
    "log_level": "logging.level",
}
REQUIRED = ("model", "triggers")
TRIGGER_LISTS = ("prompts", "negatives")  # "a; b" in the options, lists in the config


class AddonError(UserError):
    """A problem with the add-on's options or its Supervisor; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def read_options(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AddonError([f"{path} does not exist: the Supervisor writes it when the add-on "
                          "starts; start listener from its add-on page"]) from None
    except OSError as exc:
        raise AddonError([f"{path} cannot be read ({exc.strerror})"]) from None
    try:
        options = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", "?")
        raise AddonError([f"{path}:{line}: not valid JSON ({exc}); save the add-on's "
                          "options again from its Configuration tab"]) from None
    if not isinstance(options, dict):
        raise AddonError([f"{path}: must hold an object of options, got {type(options).__name__}"])
    missing = [k for k in REQUIRED if options.get(k) in (None, "", [])]
    if missing:
        raise AddonError([f"option {k!r} is required: set it on the add-on's Configuration "
                          "tab" for k in missing])
    return options


def fetch_mqtt(supervisor: str, token: str | None) -> dict[str, Any]:
    """The broker the Supervisor knows (host, port, ssl, username, password)."""
    if not token:
        raise AddonError(["$SUPERVISOR_TOKEN is not set: this runs as a Home Assistant "
                          "add-on; elsewhere use the container image with your own config"])
    url = f"{supervisor.rstrip('/')}/services/mqtt"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise AddonError([f"the Supervisor has no MQTT broker for this add-on ({url}: HTTP "
                          f"{exc.code}); install and start the Mosquitto broker add-on"]) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AddonError([f"cannot reach the Supervisor at {url} ({reason})"]) from None
    try:
        data = json.loads(body)["data"]
        service = {"host": str(data["host"]), "port": int(data["port"])}
    except (ValueError, KeyError, TypeError):
        raise AddonError([f"the Supervisor's answer from {url} has no broker host and port: "
                          f"{body[:200]!r}"]) from None
    for key in ("username", "password"):
        if data.get(key):
            service[key] = str(data[key])
    service["ssl"] = bool(data.get("ssl"))
    return service


def _split(text: Any) -> Any:
    """``"a; b"`` -> ``["a", "b"]``; anything else unchanged (the config check names it)."""
    if isinstance(text, str):
        return [part.strip() for part in text.split(";") if part.strip()]
    return text


def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        config = config.setdefault(key, {})
    config[last] = value


def model_dir(options: dict[str, Any], data: Path = DATA) -> Path:
    return data / "models" / str(options["model"]).replace("/", "__")


def build_config(options: dict[str, Any], mqtt: dict[str, Any], data: Path = DATA
                 ) -> dict[str, Any]:
    """listener's config (as plain data) from the options and the Supervisor's broker."""
    config: dict[str, Any] = {"model": {"dir": str(model_dir(options, data))},
                              "source": {"type": "mic"}, "state_dir": str(data)}
    for option, key in OPTION_KEYS.items():
        value = options.get(option)
        if value is None or (option == "device" and value == ""):
            continue
        if option == "triggers" and isinstance(value, list):
            value = [{k: (_split(v) if k in TRIGGER_LISTS else v) for k, v in t.items()
                      if v not in (None, "")} if isinstance(t, dict) else t for t in value]
        _set(config, key, value)
    broker = {k: mqtt[k] for k in ("host", "port", "username", "password") if k in mqtt}
    config["mqtt"] = {**config.get("mqtt", {}), **broker, "tls": {"enabled": mqtt["ssl"]}}
    config.setdefault("logging", {})["format"] = "console"  # the add-on's Log tab
    return config


_PROBLEM = re.compile(r"^(?P<where>\S+?)(?::\d+)? (?P<key>[^\s:]+): (?P<what>.*)$")


def option_problem(line: str) -> str:
    """A config problem (``FILE:LINE key.path: what``) in the add-on's own words."""
    m = _PROBLEM.match(line)
    if m is None:
        return line
    key = m["key"]
    for option, prefix in OPTION_KEYS.items():
        if key == prefix or key.startswith((prefix + ".", prefix + "[")):
            return f"option {option + key[len(prefix):]}: {m['what']}"
    return f"listener config {key}: {m['what']}"


def write_config(config: dict[str, Any], path: Path) -> None:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps no wider mode: it holds the password
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# Written by the add-on from its options at every start; edits are lost.\n")
        yaml.dump(config, f)


def check_config(path: Path) -> None:
    """What `listener check-config` checks, before the model is there (it is pulled next)."""
    from listener.config.loader import load_config

    try:
        load_config(path, check_model=False)
    except ConfigError as exc:
        raise AddonError([option_problem(line) for line in exc.errors]) from None


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Steps 1-3: the options, once the config file is written and valid; or AddonError
    with every problem at once
    (the options are checked even when the Supervisor has no broker to give)."""
    options = read_options(args.options)
    problems: list[str] = []
    try:
        mqtt = fetch_mqtt(args.supervisor, os.environ.get("SUPERVISOR_TOKEN"))
    except AddonError as exc:
        problems += exc.problems
        mqtt = {"host": "localhost", "port": 1883, "ssl": False}  # to check the options
    write_config(build_config(options, mqtt, args.data), args.config)
    try:
        check_config(args.config)
    except AddonError as exc:
        problems = exc.problems + problems
    if problems:
        raise AddonError(problems)
    return options


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python3 -m listener.addon",
                                 description="Start listener as a Home Assistant add-on.")
    ap.add_argument("--data", type=Path, default=DATA, help="the add-on's /data")
    ap.add_argument("--options", type=Path, help="default DATA/options.json")
    ap.add_argument("--config", type=Path, help="config to write, default DATA/config.yaml")
    ap.add_argument("--supervisor", default=os.environ.get("SUPERVISOR_URL", SUPERVISOR))
    ap.add_argument("--check", action="store_true",
                    help="write and validate the config, then exit without starting")
    args = ap.parse_args(argv)
    args.options = args.options or args.data / "options.json"
    args.config = args.config or args.data / "config.yaml"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        options = prepare(args)
        print(f"listener add-on: {args.config} written and valid", file=sys.stderr, flush=True)
        if args.check:
            return 0
        from listener.container import ensure_model

        ensure_model(model_dir(options, args.data))
    except AddonError as exc:
        for problem in exc.problems:
            print(f"listener: {problem}", file=sys.stderr)
        return exc.exit_code
    except UserError as exc:
        print(f"listener: {exc}", file=sys.stderr)
        return exc.exit_code
    os.execvp("listener", ["listener", "run", "--config", str(args.config)])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
