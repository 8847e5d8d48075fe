"""`listener scan` over several files and directories: the trained hearing model finds
each sound in its own file, one summary per file plus a total, JSON lines say their file."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures_daemon import DEFAULTS, make_stream, trigger
from tests.helpers import assert_clean_error, run_cli, write_config


def config(d: Path, model: Path) -> Path:
    return write_config(d, model, [trigger("alarm"), trigger("siren")], defaults=DEFAULTS,
                        audio={"hop_seconds": 1.0}, mqtt={"enabled": False},
                        state_dir="state")


def test_a_directory_is_scanned_file_by_file_with_a_total(tmp_path: Path,
                                                          hearing_model_dir: Path):
    rec = tmp_path / "recordings"
    (rec / "day2").mkdir(parents=True)
    make_stream(rec, "a_alarm.wav", [("alarm", 4.0)], 12.0)
    make_stream(rec / "day2", "b_siren.wav", [("siren", 4.0)], 12.0)
    make_stream(rec, ".hidden.wav", [("alarm", 4.0)], 12.0)
    (rec / "notes.txt").write_text("not audio")
    config(tmp_path, hearing_model_dir)
    r = run_cli("scan", "recordings", "--config", "config.yaml", "--jsonl", cwd=tmp_path,
                timeout=180)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(s) for s in r.stdout.splitlines()]
    starts = {(d["file"], d["trigger"]) for d in lines if d["type"] == "start"}
    assert starts == {("recordings/a_alarm.wav", "alarm"),
                      ("recordings/day2/b_siren.wav", "siren")}
    summaries = [s for s in r.stderr.splitlines() if " s scanned, " in s]
    assert [s.split(":")[0] for s in summaries] == [
        "recordings/a_alarm.wav", "recordings/day2/b_siren.wav", "total"]
    assert summaries[-1].startswith("total: 2 files, 24.0 s scanned, 2 event(s)")
    assert "recordings: 1 file(s) that are not audio left out" in r.stderr


def test_several_files_in_the_order_given(tmp_path: Path, hearing_model_dir: Path):
    make_stream(tmp_path, "siren.wav", [("siren", 4.0)], 12.0)
    make_stream(tmp_path, "alarm.wav", [("alarm", 4.0)], 12.0)
    config(tmp_path, hearing_model_dir)
    r = run_cli("scan", "siren.wav", "alarm.wav", "--config", "config.yaml", cwd=tmp_path,
                timeout=180)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.index("siren.wav: 12.0 s scanned") < out.index("alarm.wav: 12.0 s scanned")
    assert "total: 2 files, 24.0 s scanned, 2 event(s)" in out
    assert "START  siren" in out and "START  alarm" in out


def test_empty_directory_and_missing_file_are_clear_errors(tmp_path: Path,
                                                         hearing_model_dir: Path):
    config(tmp_path, hearing_model_dir)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("nothing to hear")
    r = run_cli("scan", "empty", "--config", "config.yaml", cwd=tmp_path)
    assert_clean_error(r, "empty: no audio file in this directory")
    make_stream(tmp_path, "alarm.wav", [("alarm", 4.0)], 12.0)
    r = run_cli("scan", "alarm.wav", "gone.wav", "--config", "config.yaml", cwd=tmp_path)
    assert_clean_error(r, "gone.wav does not exist")
    assert r.stdout == ""  # refused before anything was scanned
    r = run_cli("scan", "alarm.wav", "alarm.wav", "--plot", "x.png", "--config",
                "config.yaml", cwd=tmp_path)
    assert_clean_error(r, "give one FILE")
