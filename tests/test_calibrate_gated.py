"""`listener calibrate` on audio the level gate kept from the model: it says so, for
every trigger, instead of printing a distribution of zeros.

Real parts: the CLI in-process on the demo model that ships in listener/assets/demo,
real WAV files, the real pipeline and level gate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from listener.audio.decode import write_wav
from listener.cli.demo import DEMO_DIR
from tests.hearing import sounds
from tests.helpers import run_main, write_config

TRIGGERS = [{"name": "alarm", "prompts": ["an alarm beeping"]},
            {"name": "knock", "prompts": ["someone knocking on the door"]}]


def _config(tmp_path: Path) -> Path:
    return write_config(tmp_path, DEMO_DIR / "model", TRIGGERS, mqtt={"enabled": False},
                        state_dir=tmp_path / "state")


def test_all_gated_audio_is_named_for_every_trigger(tmp_path: Path, capsys) -> None:
    quiet = tmp_path / "quiet.wav"
    write_wav(quiet, sounds.background(20.0, 5, -90.0))  # far below min_level_dbfs (-70)
    r = run_main(capsys, "calibrate", "-c", _config(tmp_path), "--from", quiet)
    assert r.returncode == 0, r.stderr
    assert ("caveat (alarm, knock): all windows were below audio.min_level_dbfs (-70 dBFS), "
            "so none was scored") in r.stdout, r.stdout
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith(("alarm ", "knock "))]
    assert len(rows) == 2 and all("(all gated)" in ln and "0.000" not in ln for ln in rows), rows


def test_partly_gated_audio_says_how_much(tmp_path: Path, capsys) -> None:
    audio = np.concatenate([sounds.background(12.0, 6, -90.0), sounds.background(12.0, 7, -45.0)])
    mixed = tmp_path / "mixed.wav"
    write_wav(mixed, audio)
    r = run_main(capsys, "calibrate", "-c", _config(tmp_path), "--from", mixed)
    assert r.returncode == 0, r.stderr
    assert "windows were below audio.min_level_dbfs (-70 dBFS) and not scored" in r.stdout, \
        r.stdout
    assert "(all gated)" not in r.stdout
