"""One CLI grammar: every command has a description and a working --help; every command
that reads a config takes ``-c/--config FILE``; JSON is ``--json``, JSON lines ``--jsonl``;
an unknown argument gets the usage of the command it was given to (exit 2).

Real parts: the parser the entry point builds, the CLI in a subprocess, the demo model
that ships in listener/assets/demo (real onnxruntime sessions).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from listener.__main__ import build_parser, main
from listener.cli.demo import DEMO_DIR
from tests.helpers import run_cli, write_config

#: the commands that read a config file
READ_CONFIG = {"run", "scan", "top", "calibrate", "enroll", "check-config", "embed", "bench",
               "demo"}


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(words, parser) for every command and sub-command under ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _commands(sub, (*prefix, name))


COMMANDS = list(_commands(build_parser()))


def test_every_command_is_walked() -> None:
    names = {" ".join(words) for words, _ in COMMANDS}
    assert {"run", "demo", "devices", "model pull", "model verify", "model info",
            "model export"} <= names


@pytest.mark.parametrize("words", [w for w, _ in COMMANDS], ids=" ".join)
def test_help_of_every_command(words: tuple[str, ...], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*words, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: listener {' '.join(words)}"), out
    assert "%%" not in out and "%(" not in out, out
    sub = dict(COMMANDS)[words]
    assert sub.description and sub.description != "", words  # a description of its own
    if words[0] in READ_CONFIG and len(words) == 1:
        assert "-c FILE, --config FILE" in " ".join(out.split()), out
    assert "CONFIG" not in out.replace("LISTENER_CONFIG", ""), out  # FILE, never CONFIG


def test_scan_help_names_every_format_that_decodes(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fmt in ("wav", "flac", "ogg", "mp3"):
        assert fmt in text, text


def test_an_unknown_argument_shows_the_commands_usage() -> None:
    for words, command in ((["scan", "x.wav"], "scan"), (["model", "info", "d"], "model info"),
                           (["check-config"], "check-config")):
        r = run_cli(*words, "--bogus")
        assert r.returncode == 2, r
        assert r.stderr.startswith(f"usage: listener {command}"), r.stderr
        assert "unrecognized arguments: --bogus" in r.stderr


def test_model_verify_precision_offers_the_choices() -> None:
    r = run_cli("model", "verify", DEMO_DIR / "model", "--precision", "int4")
    assert r.returncode == 2
    assert "invalid choice: 'int4' (choose from" in r.stderr and "fp32" in r.stderr


def test_embed_json_array_jsonl_lines_and_model_from_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, DEMO_DIR / "model", [{"name": "a", "prompts": ["x"]}])
    texts = ["a siren", "a knock"]
    lines = run_cli("embed", "-c", config, "--jsonl", "--text", *texts)
    assert lines.returncode == 0, lines.stderr
    rows = [json.loads(line) for line in lines.stdout.splitlines()]
    array = run_cli("embed", "--model", DEMO_DIR / "model", "--json", "--text", *texts)
    assert array.returncode == 0, array.stderr
    assert json.loads(array.stdout) == rows
    assert [r["input"] for r in rows] == texts and len(rows[0]["embedding"]) == 128


def test_run_takes_source_like_top(tmp_path: Path) -> None:
    """`run --source file:PATH` listens to that file instead of the config's mic."""
    config = write_config(tmp_path, DEMO_DIR / "model",
                          [{"name": "siren", "prompts": ["an ambulance siren wailing"]}],
                          source={"type": "mic"}, mqtt={"enabled": False},
                          state_dir=tmp_path / "state", logging={"format": "json"})
    r = run_cli("run", "-c", config, "--source", f"file:{DEMO_DIR / 'sample.ogg'}")
    assert r.returncode == 0, r.stderr
    starts = [json.loads(line) for line in r.stderr.splitlines()
              if '"event start"' in line]
    assert [s["trigger"] for s in starts] == ["siren"], r.stderr
    bad = run_cli("run", "-c", config, "--source", "radio")
    assert bad.returncode == 2 and "--source 'radio': must be 'mic', 'stdin', 'file:PATH', " \
        "a stream URL" in bad.stderr


def test_bench_text_parts_add_up_and_are_labelled() -> None:
    r = run_cli("bench", "--model", DEMO_DIR / "model", "--runs", "3", "--threads", "1",
                timeout=120)
    assert r.returncode == 0, r.stderr
    m = re.search(r"per window \(mean of 3\) log-mel of a 1-s hop ([\d.]+) ms \+ audio tower "
                  r"([\d.]+) ms = ([\d.]+) ms", r.stdout)
    assert m, r.stdout
    features, tower, total = map(float, m.groups())
    assert abs(features + tower - total) < 0.006, r.stdout
    assert "whole window: median" in r.stdout and "p90" in r.stdout
    j = run_cli("bench", "--model", DEMO_DIR / "model", "--runs", "3", "--threads", "1",
                "--json", timeout=120)
    data = json.loads(j.stdout)
    assert abs(data["features_hop_mean_ms"] + data["tower_mean_ms"]
               - data["window_mean_ms"]) < 1e-6
