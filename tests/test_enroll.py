"""`listener enroll`: the printed ``examples:`` line works in the config it names, and an
existing file is never replaced silently.

Real parts: the CLI in a subprocess, real WAV files, the config loader resolving the
printed path against the config file's directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import soundfile as sf

from listener.audio.decode import SAMPLE_RATE
from listener.config.loader import load_config
from tests.hearing import sounds
from tests.helpers import assert_clean_error, run_cli


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "long.wav"
    sf.write(src, sounds.render("knocking", 5, 4.0, -20.0), SAMPLE_RATE)
    return src


def test_examples_path_is_relative_to_the_configs_directory(tmp_path: Path) -> None:
    conf_dir, work = tmp_path / "etc", tmp_path / "recordings"
    conf_dir.mkdir()
    work.mkdir()
    config = conf_dir / "config.yaml"
    config.write_text("model:\n  dir: /nonexistent\n")
    r = run_cli("enroll", "door", "--from", _source(tmp_path), "--start", "0", "--end", "2",
                "-c", config, cwd=work)
    assert r.returncode == 0, r.stderr
    printed = re.search(r"examples: \[(.+)\]", r.stdout)
    assert printed and printed.group(1) == "../recordings/door.wav", r.stdout
    assert f"of {config}" in r.stdout
    config.write_text("triggers:\n  - name: door\n    examples: [" + printed.group(1) + "]\n")
    loaded = load_config(config, check_model=False).config
    assert loaded.triggers[0].examples == [conf_dir / "../recordings/door.wav"]
    assert loaded.triggers[0].examples[0].resolve() == (work / "door.wav").resolve()


def test_an_existing_file_is_kept_without_force(tmp_path: Path) -> None:
    src = _source(tmp_path)
    out = tmp_path / "door.wav"
    out.write_bytes(b"mine")
    cut = ("enroll", "door", "--from", src, "--start", "0", "--end", "2", "--out", out)
    r = run_cli(*cut, cwd=tmp_path, env={"LISTENER_CONFIG": str(tmp_path / "none.yaml")})
    assert_clean_error(r, f"enroll: {out} already exists; pass --force to replace it",
                       alone=True)
    assert out.read_bytes() == b"mine"
    r = run_cli(*cut, "--force", cwd=tmp_path,
                env={"LISTENER_CONFIG": str(tmp_path / "none.yaml")})
    assert r.returncode == 0, r.stderr
    assert abs(sf.info(out).duration - 2.0) < 0.01
    assert f"examples: [{out.resolve()}]" in r.stdout  # no config found: an absolute path
