"""`listener demo`: the daemon on the shipped demo model and sample, offline, no microphone.

Real parts: the CLI in a subprocess (the daemon path: model stack, detector, sinks,
MQTT with its spool), the model and sample that ship in listener/assets/demo, a real
mosquitto. The demo needs no network (HF_HUB_OFFLINE) and no microphone (none here).
"""

from __future__ import annotations

import json
from pathlib import Path

from listener.cli.demo import BANNER, DEMO_DEVICE, DEMO_DIR
from listener.model.modeldir import ModelDir, recommended_settings
from tests.helpers import free_port, run_cli

OFFLINE = {"HF_HUB_OFFLINE": "1", "LISTENER_CONFIG": "/nonexistent/listener.yaml"}
#: what the sample holds (script/make-demo): every sound becomes one event
HEARD = {"smoke_alarm", "door_knock", "siren"}


def _mqtt_config(d: Path, port: int) -> Path:
    path = d / "config.yaml"
    path.write_text(f"mqtt:\n  host: 127.0.0.1\n  port: {port}\n")
    return path


def _events(stdout: str) -> list[tuple[str, str]]:
    return [(line.split()[1], line.split()[2]) for line in stdout.splitlines()
            if " START " in line or " END " in line]


def test_demo_ships_inside_the_package_with_its_own_thresholds() -> None:
    model = ModelDir(DEMO_DIR / "model")
    assert model.verify_hashes()  # every file listed in its listener.json, intact
    assert recommended_settings(model.path) == {"on_threshold": 0.75, "off_threshold": 0.65,
                                                "margin": 0.05}
    assert (DEMO_DIR / "sample.ogg").is_file() and (DEMO_DIR / "config.yaml").is_file()


def test_demo_offline_without_broker_prints_events_and_exits_0(tmp_path: Path) -> None:
    config = _mqtt_config(tmp_path, free_port())  # nothing listens there
    r = run_cli("demo", "--fast", "-c", config, cwd=tmp_path, env=OFFLINE, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(BANNER), r.stdout
    assert "no MQTT broker answers" in r.stdout
    events = _events(r.stdout)
    assert {t for kind, t in events if kind == "START"} == HEARD, r.stdout
    assert {t for kind, t in events if kind == "END"} == HEARD, r.stdout
    assert "Traceback" not in r.stderr


def test_demo_publishes_to_the_configured_broker(tmp_path: Path, mosquitto,
                                                 mqtt_subscriber) -> None:
    sub = mqtt_subscriber(mosquitto, f"listener/{DEMO_DEVICE}/#")
    config = _mqtt_config(tmp_path, mosquitto.port)
    r = run_cli("demo", "--fast", "-c", config, cwd=tmp_path, env=OFFLINE, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"publishing to the MQTT broker at 127.0.0.1:{mosquitto.port}" in r.stdout

    def starts(msgs):
        found = {m.topic.split("/")[2] for m in msgs if m.topic.endswith("/event")
                 and json.loads(m.payload)["event_type"] == "start"}
        return found if found == HEARD else None

    assert sub.wait_for(starts, timeout=30, what="a start event per demo trigger") == HEARD
    assert f"listener-{DEMO_DEVICE}" in mosquitto.log_text()  # its own client id


def test_demo_stays_off_the_broker_when_the_config_switches_mqtt_off(tmp_path: Path,
                                                                      mosquitto) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"mqtt:\n  enabled: false\n  host: 127.0.0.1\n  port: {mosquitto.port}\n")
    r = run_cli("demo", "--fast", "-c", config, cwd=tmp_path, env=OFFLINE, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "MQTT is off in your config; events are printed only" in r.stdout
    assert f"listener-{DEMO_DEVICE}" not in mosquitto.log_text()  # its client id


def test_demo_model_is_the_committed_test_model() -> None:
    """One model: the demo ships a copy of tests/assets/hearing_model's int8 half; after a
    rebuild of that model, `python script/make-demo` copies it again."""
    committed = Path(__file__).resolve().parent / "assets" / "hearing_model"
    for rel in ("config.json", "preprocessor_config.json", "tokenizer.json",
                "onnx/audio_model_quantized.onnx", "onnx/text_model_quantized.onnx"):
        assert (DEMO_DIR / "model" / rel).read_bytes() == (committed / rel).read_bytes(), rel


def test_demo_on_a_first_run_without_any_config_says_nothing_about_config_problems(
        tmp_path: Path, monkeypatch, capsys) -> None:
    # a fresh machine has no config anywhere: that is not "your config has problems"
    from listener.cli.demo import _user_mqtt

    monkeypatch.delenv("LISTENER_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert _user_mqtt(None) is None
    assert capsys.readouterr().err == ""
    (tmp_path / "config.yaml").write_text("mqtt: [not, a, mapping]\n")
    assert _user_mqtt(None) is None  # a broken one is reported and skipped
    assert "your config has problems" in capsys.readouterr().err
