"""`script/run` on a fresh machine with no internet and no microphone: the demo instead of
an error, events within a minute, exit 0 (README, "Offline first run").

Real parts: the real script/run and config.example.yaml in a copy of the checkout's
top level, whose ``.venv`` holds this interpreter and a ``listener`` that runs this
checkout; the hub is unreachable (HF_HUB_OFFLINE); this machine has no microphone.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from listener.cli.demo import BANNER
from tests.helpers import ROOT, cli_env, free_port, running


def _checkout(tmp_path: Path) -> Path:
    """script/run + config.example.yaml, and a .venv that runs this checkout's listener."""
    tree = tmp_path / "listener"
    (tree / "script").mkdir(parents=True)
    shutil.copy2(ROOT / "script" / "run", tree / "script" / "run")
    example = (ROOT / "config.example.yaml").read_text()
    assert "\n  # port: 1883\n" in example
    # the user's broker: nothing answers there (a broker that does is test_demo.py's)
    (tree / "config.example.yaml").write_text(
        example.replace("\n  # port: 1883\n", f"\n  port: {free_port()}\n"))
    bin_ = tree / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "activate").write_text(f'export PATH="{bin_}:$PATH"\n')
    for name, command in (("python", ""), ("listener", " -m listener")):
        shim = bin_ / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}"{command} "$@"\n')
        shim.chmod(0o755)
    return tree


def _start(tree: Path) -> subprocess.Popen[str]:
    env = cli_env({"HF_HUB_OFFLINE": "1", "HOME": str(tree)})
    return subprocess.Popen([str(tree / "script" / "run")], cwd=tree, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_no_model_and_no_microphone_each_get_the_demo(tmp_path: Path) -> None:
    no_model = _checkout(tmp_path / "a")
    no_mic = _checkout(tmp_path / "b")
    (no_mic / "models" / "clap-htsat-unfused").mkdir(parents=True)  # "pulled" already
    t0 = time.monotonic()
    with running(_start(no_model)) as a, running(_start(no_mic)) as b:
        out_a, err_a = a.communicate(timeout=90)
        out_b, err_b = b.communicate(timeout=90)
    took = time.monotonic() - t0
    assert (a.returncode, b.returncode) == (0, 0), (err_a, err_b)
    assert took < 60, took  # both, side by side, within a minute
    assert "could not get the model, so here is the offline demo instead" in err_a
    assert "no microphone found" in err_b
    for out in (out_a, out_b):
        assert out.startswith(BANNER), out
        assert "events are printed only" in out
        for trigger in ("smoke_alarm", "door_knock", "siren"):
            assert f"START  {trigger}" in out, out
