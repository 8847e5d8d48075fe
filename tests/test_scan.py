"""`listener scan` as a user runs it: a subprocess, real files, exit codes, output shapes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import assert_clean_error, run_cli, write_config

SR = 48000
EVENT_KEYS = {"type", "id", "trigger", "score", "peak_score", "match", "window_start",
              "window_end", "time", "model", "clip", "details", "stream"}


def noise(seconds: float, rate: int = SR, channels: int = 1, seed: int = 0) -> np.ndarray:
    x = 0.03 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))
    return x.astype(np.float32)


def scan_config(tmp_path: Path, model_dir: Path, *triggers: dict[str, Any]) -> Path:
    return write_config(
        tmp_path, model_dir, list(triggers),
        model={"precision": "int8"},
        state_dir=tmp_path / "state",
        source=f"file:{tmp_path / 'gone.wav'}",  # ignored by scan, even when missing
        defaults={"on_threshold": 0.5, "off_threshold": 0.4, "margin": 0.0},
    )


def listener(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, timeout=120)


@pytest.fixture
def example(tmp_path) -> Path:
    p = tmp_path / "ours.wav"
    sf.write(p, noise(2.0, seed=3)[:, 0], SR)
    return p


def test_missing_and_undecodable_files(tmp_path, tiny_model_dir):
    cfg = scan_config(tmp_path, tiny_model_dir, {"name": "t", "prompts": ["a dog"]})
    assert_clean_error(listener("scan", tmp_path / "nope.wav", "--config", cfg, cwd=tmp_path),
                       "nope.wav does not exist", alone=True)
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"\x00\x01garbage" * 500)
    assert_clean_error(listener("scan", bad, "--config", cfg, cwd=tmp_path),
                       "cannot decode", "broken.flac", alone=True)


def test_file_without_samples_exits_2(tmp_path, tiny_model_dir):
    cfg = scan_config(tmp_path, tiny_model_dir, {"name": "t", "prompts": ["a dog"]})
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    assert_clean_error(listener("scan", empty, "--config", cfg, cwd=tmp_path),
                       f"{empty} has no audio samples", alone=True)


def test_truncated_wav_is_scanned_with_a_warning(tmp_path, tiny_model_dir):
    """A WAV cut short (header: 6 s, data: 2.5 s): a warning on stderr naming the file
    and both lengths, then the 2.5 s that are there are scanned as usual."""
    cfg = scan_config(tmp_path, tiny_model_dir, {"name": "t", "prompts": ["a dog"]})
    cut = tmp_path / "cut.wav"
    sf.write(cut, noise(6.0)[:, 0], SR, subtype="PCM_16")
    cut.write_bytes(cut.read_bytes()[: 44 + int(2.5 * SR) * 2])
    r = listener("scan", cut, "--config", cfg, "--jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warning = [ln for ln in r.stderr.splitlines() if ln.startswith("listener: warning: ")]
    assert len(warning) == 1, r.stderr
    assert f"{cut} is truncated" in warning[0]
    assert "announces 6.00 s" in warning[0] and "ends after 2.50 s" in warning[0]
    assert "2.5 s scanned" in r.stderr and "3 windows" in r.stderr


def test_short_example_is_a_clear_error(tmp_path, tiny_model_dir):
    short = tmp_path / "blip.wav"
    sf.write(short, noise(0.2)[:, 0], SR)
    cfg = scan_config(tmp_path, tiny_model_dir, {"name": "t", "examples": [short]})
    audio = tmp_path / "a.wav"
    sf.write(audio, noise(3.0)[:, 0], SR)
    assert_clean_error(listener("scan", audio, "--config", cfg, cwd=tmp_path),
                       "blip.wav is only 0.20 s long", "at least 0.5 s", "listener enroll",
                       alone=True)


def test_jsonl_scores_and_events_of_a_441k_stereo_flac(tmp_path, tiny_model_dir, example):
    cfg = scan_config(tmp_path, tiny_model_dir, {"name": "ours", "examples": [example]},
                      {"name": "dog", "prompts": ["a dog barking"], "on_threshold": 1.0})
    audio = tmp_path / "stereo.flac"
    sf.write(audio, noise(4.0, rate=44100, channels=2, seed=3), 44100)
    r = listener("scan", audio, "--config", cfg, "--jsonl", "--scores", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(s) for s in r.stdout.splitlines()]
    scores = [d for d in lines if d["type"] == "scores"]
    events = [d for d in lines if d["type"] != "scores"]
    assert [d["window_end"] for d in scores] == [1.0, 2.0, 3.0, 4.0]
    # tail_scores: only on windows whose tail was scored (a trigger on or about to start)
    assert all(d["file"] == str(audio) for d in lines)  # every line says its file
    assert all(set(d) - {"tail_scores"} == {"file", "type", "stream", "window_start",
                                            "window_end", "level_dbfs", "scores"}
               for d in scores)
    assert all(set(d["scores"]) == {"ours", "dog"} for d in scores)
    assert all(set(d.get("tail_scores", {})) <= {"ours", "dog"} for d in scores)
    assert [d["type"] for d in events] == ["start", "end"]
    start, end = events
    assert set(start) == EVENT_KEYS | {"file"}
    assert set(end) == EVENT_KEYS | {"duration", "file"}
    assert start["id"] == end["id"] and start["match"] == "ours.wav"
    assert start["window_end"] == 1.0 and end["duration"] == pytest.approx(4.0)
    assert "4.0 s scanned, 1 event(s)" in r.stderr


def test_timeline_and_no_events_exit_zero(tmp_path, tiny_model_dir):
    cfg = scan_config(tmp_path, tiny_model_dir,
                      {"name": "dog", "prompts": ["a dog barking"], "on_threshold": 1.0})
    audio = tmp_path / "quiet16k.wav"
    sf.write(audio, noise(2.5, rate=16000)[:, 0], 16000)
    r = listener("scan", audio, "--config", cfg, "--scores", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("00:00:01.0") and "dog=" in out[0] and "dBFS" in out[0]
    assert "2.5 s scanned, 0 event(s), 3 windows" in out[-1]


def test_config_without_triggers(tmp_path, tiny_model_dir):
    cfg = tmp_path / "empty.yaml"
    cfg.write_text(f"model:\n  dir: {tiny_model_dir}\n")
    audio = tmp_path / "a.wav"
    sf.write(audio, noise(1.0)[:, 0], SR)
    assert_clean_error(listener("scan", audio, "--config", cfg, cwd=tmp_path),
                       "no triggers configured", alone=True)


def test_enroll_cuts_an_example_from_a_file(tmp_path):
    src = tmp_path / "long.wav"
    sf.write(src, noise(5.0, rate=44100, channels=2)[:, :], 44100)
    r = listener("enroll", "door", "--from", src, "--start", "1", "--end", "3.5",
                 "--out", tmp_path / "ex" / "door.wav", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data, rate = sf.read(tmp_path / "ex" / "door.wav")
    assert rate == SR and abs(len(data) / SR - 2.5) < 0.01
    r = listener("enroll", "door", "--from", src, "--start", "1", "--end", "1.2", cwd=tmp_path)
    assert_clean_error(r, "only 0.20 s", alone=True)
    assert_clean_error(listener("enroll", "door", cwd=tmp_path), "--seconds N", alone=True)
