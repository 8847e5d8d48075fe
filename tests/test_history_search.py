"""The history and `listener search`: the daemon records events and window embeddings
(real SQLite, the trained test model), search finds an inserted sound by words and by
its clip, and retention bounds the file by age and size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from listener.audio.decode import SAMPLE_RATE as RATE
from listener.audio.decode import load_audio, write_wav
from listener.detect.events import Event, utc_iso
from listener.history.search import Scored, merge_spans
from listener.history.store import HistoryReader, HistoryWriter, WindowRow, iso_ts
from tests.fixtures_daemon import DEFAULTS, Proc, file_source, make_stream, trigger
from tests.helpers import assert_clean_error, assert_no_traceback, run_cli, write_config

SIREN_AT = 14.0


def recorded(tmp_path: Path, model: Path) -> tuple[float, dict]:
    """A daemon run over a file with a siren at SIREN_AT; history kept, page off.
    Returns the wall time of the siren and its end event."""
    wav = make_stream(tmp_path, "stream.wav", [("siren", SIREN_AT)], 30.0)
    write_config(tmp_path, model, [trigger("siren")], source=file_source(wav, False),
                 audio={"hop_seconds": 1.0}, defaults=DEFAULTS, mqtt={"enabled": False},
                 clips={"enabled": True}, web={"history": {"enabled": True}},
                 logging={"level": "info"}, state_dir="state")
    p = Proc(tmp_path)
    assert p.wait(90) == 0, p.text()[-3000:]
    reader = HistoryReader(tmp_path / "state" / "history.sqlite3")
    try:
        rows = [e for _, e in reversed(reader.events())]
        blocks = list(reader.window_blocks(0))
    finally:
        reader.close()
    # every window scored is stored, as float16; both events kept whole
    assert sum(b.ts.size for b in blocks) >= 25
    assert blocks[0].emb.dtype == np.float16 and blocks[0].emb.shape[1] == 128
    start = next(r for r in rows if r["type"] == "start")
    end = next(r for r in rows if r["type"] == "end")
    assert start["id"] == end["id"] and end["clip"]
    return iso_ts(start["time"]) - start["window_end"] + SIREN_AT, end


def test_search_by_words_and_by_clip_finds_the_sound(tmp_path: Path, hearing_model_dir: Path):
    siren, end = recorded(tmp_path, hearing_model_dir)
    r = run_cli("search", "a siren wailing", "-c", "config.yaml", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    best = json.loads(r.stdout)["spans"][0]
    assert best["start_ts"] - 1.0 <= siren <= best["end_ts"] + 1.0, (best, siren)
    assert best["clip_event"] == end["id"]
    # by example: a 10-s recording holding the siren finds the windows that hold it
    audio = load_audio(tmp_path / "stream.wav")
    excerpt = audio[int((SIREN_AT - 2) * RATE):int((SIREN_AT + 8) * RATE)]
    write_wav(tmp_path / "example.wav", excerpt)
    r = run_cli("search", "-c", "config.yaml", "--example", "example.wav", "--jsonl",
                "--top", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    spans = [json.loads(line) for line in r.stdout.splitlines()]
    assert 1 <= len(spans) <= 3
    assert spans[0]["start_ts"] - 1.0 <= siren <= spans[0]["end_ts"] + 1.0, (spans[0], siren)
    # an event's clip is an example too (shorter than a window: padded like any example)
    r = run_cli("search", "-c", "config.yaml", "--clip", end["id"], "--json", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["spans"], r.stderr
    r = run_cli("search", "a siren wailing", "-c", "config.yaml", cwd=tmp_path)
    assert r.returncode == 0 and "score" in r.stdout.splitlines()[0]
    r = run_cli("search", "x", "-c", "config.yaml", "--since", "soon", cwd=tmp_path)
    assert r.returncode == 2 and "'soon' is not a duration" in r.stderr, r.stderr
    assert_no_traceback(r.stderr)
    assert_clean_error(run_cli("search", "-c", "config.yaml", cwd=tmp_path), "--example")


def test_retention_by_age_and_size(tmp_path: Path):
    path = tmp_path / "history.sqlite3"
    dim, now = 512, 1_800_000_000.0
    block_bytes = 25 * (dim * 2 + 8 + 4 + 4) + 64  # a row of 25 windows
    writer = HistoryWriter(path, events_max_age_days=1.0, events_max_rows=3,
                           embeddings_hours=1.0, embeddings_max_mb=4 * block_bytes / 1e6)
    vec = np.ones(dim, np.float32) / np.sqrt(dim)
    writer.add([], [WindowRow(now - 7200 + i, "default", 10.0, -40.0, vec) for i in range(50)])
    for first in range(0, 150, 25):  # six blocks of 25 recent windows
        writer.add([], [WindowRow(now - 300 + first + i, "default", 10.0, -40.0, vec)
                        for i in range(25)])
    windows: list[WindowRow] = []
    events = [(Event(type="start", id=f"{i:032x}", trigger="t", score=0.9, peak_score=0.9,
                     match="m", window_start=0, window_end=1, time=utc_iso(now - age),
                     model="m"), "default") for i, age in enumerate([3 * 86400, 60, 50, 40, 30])]
    writer.add(events, windows)
    writer.retain(now)
    writer.close()
    reader = HistoryReader(path)
    try:
        kept = list(reader.window_blocks(0))
        assert sum(b.ts.size for b in kept) == 100  # the size cap keeps the newest blocks
        assert min(b.ts.min() for b in kept) == now - 300 + 50
        assert [e["id"] for _, e in reader.events()] == [f"{i:032x}" for i in (4, 3, 2)]
    finally:
        reader.close()
    assert path.stat().st_mode & 0o077 == 0


def test_spans_merge_neighbours_and_skip_tails():
    ts = np.arange(100, dtype=np.float64)
    scores = np.full(100, 0.1)
    scores[20:25] = [0.80, 0.90, 0.88, 0.70, 0.60]  # one moment with a fading tail
    scores[60] = 0.5
    scored = Scored(ts, np.asarray(["a"] * 100, object), np.full(100, 10.0), scores)
    spans = merge_spans(scored, top=3)
    assert spans[0].score == 0.9 and spans[0].windows == 2  # 21..22 (within 0.05)
    assert spans[0].peak_time == 21.0
    assert spans[1].score == 0.5  # the tail 20, 23, 24 is not a new moment
    assert spans[1].peak_time == 60.0
