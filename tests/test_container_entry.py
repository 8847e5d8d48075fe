"""The container image's entry point (listener/container.py), outside any container.

``python -m listener.container ARGS`` is the image's ENTRYPOINT: before `run` it pulls a
missing model, then it execs `listener ARGS`. Here the "hub" is a closed loopback port
(HF_ENDPOINT), so the first-start pull fails at once, as it does without internet, and
must say how else to get a model; with the model there, the entry point becomes the
`listener` command itself (exec: same process, same exit code, same output).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.helpers import HOST, assert_clean_error, free_port, run_cli, write_config

TRIGGERS = [{"name": "alarm", "prompts": ["an alarm beeping"]}]


def entry(*args: str | Path, cwd: Path):
    bin_dir = str(Path(sys.executable).parent)  # where `listener` (the script) lives
    env = {"HF_ENDPOINT": f"http://{HOST}:{free_port()}",
           "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    return run_cli(*args, cwd=cwd, env=env, module="listener.container")


def test_a_missing_model_is_pulled_first_and_a_failed_pull_says_what_else(tmp_path: Path):
    write_config(tmp_path, tmp_path / "models" / "clap", TRIGGERS, mqtt={"enabled": False})
    result = entry("run", "--config", tmp_path / "config.yaml", cwd=tmp_path)
    assert_clean_error(result, "is missing; pulling Xenova/clap-htsat-unfused",
                       "or mount a model directory at")
    assert not (tmp_path / "models" / "clap" / "onnx").exists()


def test_with_the_model_there_it_becomes_listener(tmp_path: Path, hearing_model_dir: Path):
    write_config(tmp_path, hearing_model_dir, TRIGGERS, mqtt={"enabled": False})
    result = entry("check-config", "--config", tmp_path / "config.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "valid. Resolved configuration" in result.stdout


def test_a_broken_config_is_left_to_listener_run_to_report(tmp_path: Path):
    (tmp_path / "config.yaml").write_text("model:\n  precison: int8\n")
    result = entry("run", "--config", tmp_path / "config.yaml", cwd=tmp_path)
    assert_clean_error(result, "config.yaml:2 model.precison")
