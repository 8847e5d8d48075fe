"""The Home Assistant add-on's start (listener/addon.py), outside any container.

It runs as the add-on runs it (``python -m listener.addon``, as addon/run.sh does, with
``--check``: stop once the config is written and valid) against a real HTTP server on
loopback standing in for the Supervisor's ``/services/mqtt`` (it checks the bearer
token like the Supervisor). Good options are the manifest's own defaults
(addon/config.yaml), so the add-on as shipped starts; missing and malformed options
and a Supervisor without a broker each stop the start with exit 2, a line naming what
to fix, and no traceback.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from listener.config.loader import load_config
from tests.helpers import HOST, ROOT, assert_clean_error, free_port, run_cli
from tests.supervisor_stub import TOKEN, Supervisor, broker_answer

MANIFEST = ROOT / "addon" / "config.yaml"


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    sup = Supervisor(HOST, free_port())
    yield sup
    sup.close()


def default_options() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())["options"]


def start(data: Path, sup: Supervisor | None, options: dict[str, Any] | str | None,
          token: str | None = TOKEN):
    """The add-on start with ``options`` as /data/options.json (None: no file)."""
    if isinstance(options, dict):
        (data / "options.json").write_text(json.dumps(options))
    elif isinstance(options, str):
        (data / "options.json").write_text(options)
    env = {"SUPERVISOR_TOKEN": token} if token else {}
    url = sup.url if sup else f"http://{HOST}:{free_port()}"
    return run_cli("--data", data, "--supervisor", url, "--check", module="listener.addon",
                   env=env)


def test_the_manifest_defaults_give_a_valid_config_with_the_supervisors_broker(
        tmp_path: Path, supervisor: Supervisor):
    result = start(tmp_path, supervisor, default_options())
    assert result.returncode == 0, result.stderr
    assert "written and valid" in result.stderr
    assert supervisor.requests == ["/services/mqtt"]
    written = tmp_path / "config.yaml"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600  # it holds the broker password
    cfg = load_config(written, check_model=False).config
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.username) == ("core-mosquitto", 1883,
                                                                 "addons")
    assert cfg.mqtt.password is not None
    assert cfg.mqtt.password.get_secret_value() == "s3cret pw"
    assert cfg.mqtt.tls.enabled is False
    assert cfg.state_dir == tmp_path
    assert cfg.model.dir == tmp_path / "models" / "Xenova__clap-htsat-unfused"
    assert cfg.source.type == "mic" and cfg.source.device is None
    smoke = cfg.triggers[0]
    assert smoke.prompts == ["a smoke alarm beeping", "a fire alarm"]
    assert smoke.negatives == ["a microwave beeping"]
    assert cfg.trigger_settings(smoke).on_threshold == 0.35
    assert cfg.defaults.on_threshold == 0.3
    assert "television" in cfg.background[-1]


def test_options_map_onto_listener_keys(tmp_path: Path, supervisor: Supervisor):
    supervisor.answer = broker_answer(host="broker.lan", port=8883, ssl=True)
    options = {**default_options(), "device": "USB", "hop_seconds": 2.0, "clips": True,
               "device_id": "kitchen", "log_level": "debug", "threads": 2}
    result = start(tmp_path, supervisor, options)
    assert result.returncode == 0, result.stderr
    cfg = load_config(tmp_path / "config.yaml", check_model=False).config
    assert (cfg.source.device, cfg.audio.hop_seconds, cfg.clips.enabled) == ("USB", 2.0, True)
    assert (cfg.mqtt.device_id, cfg.logging.level, cfg.model.threads) == ("kitchen", "debug", 2)
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls.enabled) == ("broker.lan", 8883, True)
    assert cfg.mqtt.username is None and cfg.mqtt.password is None


def test_missing_options_file(tmp_path: Path, supervisor: Supervisor):
    assert_clean_error(start(tmp_path, supervisor, None), "options.json does not exist",
                       "add-on page")


def test_malformed_options_json(tmp_path: Path, supervisor: Supervisor):
    result = start(tmp_path, supervisor, '{"model": "x",\n "triggers": [}')
    assert_clean_error(result, "options.json:2: not valid JSON", "Configuration tab")


def test_options_that_are_not_an_object(tmp_path: Path, supervisor: Supervisor):
    assert_clean_error(start(tmp_path, supervisor, "[1, 2]"), "must hold an object")


def test_missing_required_options(tmp_path: Path, supervisor: Supervisor):
    options = {k: v for k, v in default_options().items() if k != "model"}
    options["triggers"] = []
    result = start(tmp_path, supervisor, options)
    assert_clean_error(result, "option 'model' is required", "option 'triggers' is required")
    assert not (tmp_path / "config.yaml").exists()


def test_wrong_values_are_named_by_their_option(tmp_path: Path, supervisor: Supervisor):
    options = default_options()
    options["on_threshold"] = 1.7
    options["triggers"][0]["name"] = "smoke alarm"
    options["triggers"][1]["prompts"] = " ; "
    result = start(tmp_path, supervisor, options)
    assert_clean_error(result, "option on_threshold: must be between 0 and 1, got 1.7",
                       "option triggers[0].name:", "option triggers[1]")


def test_supervisor_without_a_broker(tmp_path: Path, supervisor: Supervisor):
    supervisor.answer = (400, b'{"result": "error", "message": "No mqtt service"}')
    result = start(tmp_path, supervisor, default_options())
    assert_clean_error(result, "no MQTT broker", "HTTP 400", "Mosquitto broker add-on")


def test_supervisor_answer_without_a_broker_address(tmp_path: Path, supervisor: Supervisor):
    supervisor.answer = (200, b'{"result": "ok", "data": {"ssl": false}}')
    assert_clean_error(start(tmp_path, supervisor, default_options()),
                       "has no broker host and port")


def test_supervisor_answer_that_is_not_json(tmp_path: Path, supervisor: Supervisor):
    supervisor.answer = (200, b"<html>bad gateway</html>")
    assert_clean_error(start(tmp_path, supervisor, default_options()),
                       "has no broker host and port", "bad gateway")


def test_without_supervisor_token(tmp_path: Path, supervisor: Supervisor):
    result = start(tmp_path, supervisor, default_options(), token=None)
    assert_clean_error(result, "$SUPERVISOR_TOKEN is not set", "container image")
    assert supervisor.requests == []


def test_unreachable_supervisor(tmp_path: Path):
    assert_clean_error(start(tmp_path, None, default_options()), "cannot reach the Supervisor")


def test_every_problem_is_reported_at_once(tmp_path: Path, supervisor: Supervisor):
    supervisor.answer = (400, b'{"result": "error"}')
    options = {**default_options(), "margin": -1}
    result = start(tmp_path, supervisor, options)
    assert_clean_error(result, "option margin:", "no MQTT broker")
