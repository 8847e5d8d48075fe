"""Event times of a scanned file: the recording's own clock when it is known (the file's
date tag, or ``--start-time``), else said to be relative; events printed in time order;
a file without samples is a clear error.

Real parts: the CLI in a subprocess on the demo model and sample that ship in
listener/assets/demo, real FLAC/WAV files with and without a date tag.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from listener.cli.demo import DEMO_DIR
from listener.cli.scan import ScanSink
from listener.detect.detector import DetectorResult, ScoredWindow
from tests.helpers import assert_clean_error, run_cli
from tests.mqtt_driver import make_pair

SAMPLE = DEMO_DIR / "sample.ogg"
CONFIG = DEMO_DIR / "config.yaml"


def _copy(dst: Path, date: str | None) -> Path:
    """The demo sample as another file, with ``date`` as its date tag."""
    audio, rate = sf.read(SAMPLE, dtype="float32")
    with sf.SoundFile(dst, "w", rate, 1) as f:
        if date is not None:
            f.date = date
        f.write(audio)
    return dst


def _scan(*args: object) -> tuple[list[dict], str]:
    r = run_cli("scan", *args, "-c", CONFIG, "--jsonl")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()], r.stderr


def test_times_come_from_the_files_date_tag(tmp_path: Path) -> None:
    events, err = _scan(_copy(tmp_path / "rec.flac", "2026-12-03T14:00:00Z"))
    assert events and all(e["time"] == f"2026-12-03T14:00:{e['window_end']:06.3f}Z"
                          for e in events), events
    assert "the recording started at 2026-12-03T14:00:00.000Z (the file's date tag)" in err


def test_start_time_option_wins_and_bad_values_are_refused(tmp_path: Path) -> None:
    path = _copy(tmp_path / "rec.wav", "2026-12-03 14:00:00+01:00")
    events, err = _scan(path, "--start-time", "2025-01-02T03:04:00Z")
    assert events[0]["time"] == f"2025-01-02T03:04:{events[0]['window_end']:06.3f}Z"
    assert "(--start-time)" in err
    bad = run_cli("scan", path, "-c", CONFIG, "--start-time", "yesterday")
    assert bad.returncode == 2 and "usage: listener scan" in bad.stderr
    assert "'yesterday' is not a date and time like 2026-12-03T14:00:00Z" in bad.stderr


def test_without_a_start_time_the_times_are_said_to_be_relative(tmp_path: Path) -> None:
    for path in (SAMPLE, _copy(tmp_path / "dated.flac", "2026")):  # a bare year: no time
        r = run_cli("scan", path, "-c", CONFIG)
        assert r.returncode == 0, r.stderr
        assert "times: relative to the start of the file" in r.stdout, r.stdout


def _window(end: float) -> ScoredWindow:
    return ScoredWindow(end - 10.0, end, -30.0, -30.0, False, None)


def test_events_are_printed_in_time_order() -> None:
    """An end is decided up to off_seconds after its time: a start decided meanwhile
    with a later time must still be printed after it."""
    (start_a, end_a), (start_b, _) = make_pair("a", 0.0), make_pair("b", 4.0)
    # decided: a starts (10), b starts (14), a's end (13) only at 16
    out = io.StringIO()
    sink = ScanSink(out, jsonl=True, scores=False, hold_seconds=4.0)
    for end, events in ((10.0, (start_a,)), (14.0, (start_b,)), (16.0, (end_a,)),
                        (17.0, ())):
        sink.on_result(DetectorResult(_window(end), (), events))
    assert [json.loads(x)["window_end"] for x in out.getvalue().splitlines()] == [10.0, 13.0]
    sink.close()  # the rest at the end of the stream
    order = [json.loads(x)["window_end"] for x in out.getvalue().splitlines()]
    assert order == [10.0, 13.0, 14.0]


def test_a_file_without_samples_is_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 48000)
    assert_clean_error(run_cli("scan", empty, "-c", CONFIG), f"{empty.name} has no audio "
                       "samples", alone=True)


def test_score_lines_and_events_share_one_time_order() -> None:
    (start_a, end_a) = make_pair("a", 0.0)
    out = io.StringIO()
    sink = ScanSink(out, jsonl=True, scores=True, hold_seconds=4.0)
    for end, events in ((10.0, (start_a,)), (11.0, ()), (12.0, ()), (13.0, ()),
                        (16.0, (end_a,))):
        sink.on_result(DetectorResult(_window(end), (), events))
    sink.close()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    times = [x["window_end"] for x in lines]
    assert times == sorted(times), lines
    assert [x["type"] for x in lines if x["window_end"] == 13.0] == ["scores", "end"]
