"""Thresholds follow the model; check-config shows every trigger's resolved settings and
refuses a config without triggers, like `run` and `scan`.

A model directory's listener.json may recommend on_threshold/off_threshold/margin (its
score scale); they apply where the config sets none (listener/detect/settings.py).
Real parts: the demo model that ships in listener/assets/demo (the small test model
that hears), real scans of generated speech, the CLI in a subprocess.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from listener.audio.decode import write_wav
from listener.cli.demo import DEMO_DIR
from listener.config.loader import parse_config
from listener.model.modeldir import MANIFEST
from tests.hearing import sounds
from tests.helpers import assert_clean_error, copy_dir, run_cli, write_config

TRIGGER = {"name": "alarm", "prompts": ["an alarm beeping"]}
#: a sound the test model does not know: its prompt scores ~0.55 on anything
UNKNOWN = {"name": "glass", "prompts": ["glass breaking"]}


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A copy of the demo model (it recommends on 0.75, off 0.65, margin 0.05)."""
    return copy_dir(DEMO_DIR / "model", tmp_path / "model")


def _recommend(model: Path, recommended: object) -> None:
    manifest = json.loads((model / MANIFEST).read_text())
    manifest["recommended"] = recommended
    (model / MANIFEST).write_text(json.dumps(manifest))


def _settings(model: Path, text: str):
    cfg = parse_config(f"model:\n  dir: {model}\n{text}").config
    return {t.name: cfg.trigger_settings(t) for t in cfg.triggers}


def test_layers_trigger_then_defaults_then_model_then_built_in(model: Path) -> None:
    s = _settings(model, """\
defaults:
  off_threshold: 0.5
triggers:
  - {name: own, prompts: [a siren], on_threshold: 0.9, margin: 0.2}
  - {name: inherits, prompts: [a siren]}
""")
    assert (s["own"].on_threshold, s["own"].off_threshold, s["own"].margin) == (0.9, 0.5, 0.2)
    assert (s["inherits"].on_threshold, s["inherits"].off_threshold,
            s["inherits"].margin) == (0.75, 0.5, 0.05)
    assert s["inherits"].on_windows == 2  # timings are never the model's: built-in
    (model / MANIFEST).unlink()  # no manifest: the built-in CLAP values
    s = _settings(model, "triggers:\n  - {name: inherits, prompts: [a siren]}\n")
    assert (s["inherits"].on_threshold, s["inherits"].off_threshold) == (0.30, 0.25)


def test_speech_fires_with_clap_defaults_but_not_with_the_models(model: Path,
                                                                tmp_path: Path) -> None:
    """The trial: on the test model, CLAP's 0.30 fired a trigger on speech for the whole
    file; the model's own recommendation keeps it quiet."""
    speech = tmp_path / "speech.wav"
    audio, _ = sounds.stream([("babble", 1.0)], seconds=12.0, seed=sounds.FRESH_SEED_BASE + 3,
                             event_seconds=10.0)
    write_wav(speech, audio)
    config = write_config(tmp_path, model, [UNKNOWN], mqtt={"enabled": False},
                          state_dir=tmp_path / "state")
    quiet = run_cli("scan", speech, "-c", config, "--jsonl")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "", quiet.stdout
    _recommend(model, {})  # the model recommends nothing: the built-in CLAP values apply
    noisy = run_cli("scan", speech, "-c", config, "--jsonl")
    assert noisy.returncode == 0, noisy.stderr
    assert [json.loads(line)["type"] for line in noisy.stdout.splitlines()] == ["start", "end"]


def test_check_config_shows_resolved_settings_and_where_they_come_from(model: Path,
                                                                      tmp_path: Path) -> None:
    config = write_config(tmp_path, model, [{**TRIGGER, "margin": 0.1}],
                          defaults={"on_windows": 3})
    r = run_cli("check-config", "-c", config)
    assert r.returncode == 0, r.stderr
    block = r.stdout.split("triggers:", 1)[1]
    for line in ("on_threshold: 0.75  # from model", "off_threshold: 0.65 # from model",
                 "on_windows: 3 # from defaults", "off_seconds: 3.0 # from built-in",
                 "margin: 0.1\n"):
        assert line.replace(" ", "") in block.replace(" ", ""), (line, block)


def test_model_and_config_thresholds_that_cross_are_a_config_error(model: Path,
                                                                   tmp_path: Path) -> None:
    config = write_config(tmp_path, model, [TRIGGER, {**TRIGGER, "name": "b",
                                                       "on_threshold": 0.5}])
    for command in ("check-config", "run"):
        r = run_cli(command, "-c", config)
        assert_clean_error(r, "config.yaml:10 triggers[1].on_threshold: off_threshold 0.65 "
                              "(from model) must not exceed on_threshold 0.5 (from trigger) "
                              "for trigger 'b'")


def test_a_malformed_recommendation_names_the_file(model: Path, tmp_path: Path) -> None:
    _recommend(model, {"on_threshold": 3})
    config = write_config(tmp_path, model, [TRIGGER])
    r = run_cli("check-config", "-c", config)
    assert_clean_error(r, f"{model / MANIFEST}: 'recommended' must map")


def test_check_config_refuses_no_triggers_like_run_and_scan(model: Path,
                                                            tmp_path: Path) -> None:
    config = write_config(tmp_path, model, [], mqtt={"enabled": False})
    wav = tmp_path / "a.wav"
    write_wav(wav, sounds.background(2.0, 1))
    for args in (["check-config"], ["run"], ["scan", wav]):
        r = run_cli(*args, "-c", config)
        assert_clean_error(r, "triggers: no triggers configured, nothing to listen for")
