"""Pipeline plumbing on the tiny random export (real onnxruntime, real log-mel).

Random weights hear nothing, but every window embedding is almost the same, so an
example-based trigger made from the stream itself scores about 1 everywhere: that
is enough to test windows, gating, events, clips, reload, switches and skipping.
Detection quality is tested with the trained model in test_detection.py.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from structlog.testing import capture_logs

from listener.audio.sources import ArraySource
from listener.config.schema import Config
from listener.errors import ConfigError
from listener.service.assemble import build_pipeline, configured_enabled, load_model
from listener.service.reload import apply_config
from listener.service.switches import SwitchStore
from tests.helpers import config_data

SR = 48000


class ListSink:
    def __init__(self) -> None:
        self.lines = []
        self.events = []
        self.actives = []
        self.on_line = None

    def on_result(self, result):
        self.events.extend(result.events)
        if result.window is None:
            return
        line = result.score_line()
        self.lines.append(line)
        self.actives.append(result.active)
        if self.on_line:
            self.on_line(line)

    def close(self):
        pass


def noise(seconds: float, dbfs: float = -30.0, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    return (x * 10 ** (dbfs / 20)).astype(np.float32)


def make_config(model_dir: Path, tmp_path: Path, triggers: list[dict], **sections) -> Config:
    return Config.model_validate(config_data(
        model_dir, triggers,
        model={"precision": "fp32", "threads": 1},
        state_dir=tmp_path / "state",
        defaults={"on_threshold": 0.5, "off_threshold": 0.4, "on_windows": 2,
                  "off_seconds": 2.0, "cooldown_seconds": 0.0, "margin": 0.0},
        **sections,
    ))


@pytest.fixture
def example(tmp_path) -> Path:
    p = tmp_path / "our_sound.wav"
    sf.write(p, noise(2.0, seed=7), SR)
    return p


def scan(cfg: Config, audio: np.ndarray, sink: ListSink | None = None, **kw) -> tuple:
    sink = sink or ListSink()
    pipe = build_pipeline(cfg, [sink], source=ArraySource(audio, SR, **kw))
    pipe.open()
    pipe.run(threading.Event())
    return pipe, sink


def test_windows_every_hop_from_start_up(tiny_model_dir, tmp_path):
    cfg = make_config(tiny_model_dir, tmp_path, [{"name": "t", "prompts": ["a dog barking"]}])
    pipe, sink = scan(cfg, noise(12.5))
    ends = [round(line.window_end, 3) for line in sink.lines]
    # the first window comes after one hop (padded as the model's config says)
    assert ends == [float(i) for i in range(1, 13)] + [12.5]
    assert sink.lines[0].window_start == 0.0 and sink.lines[11].window_start == 2.0
    assert all(set(line.scores) == {"t"} for line in sink.lines)
    assert all(abs(line.level_dbfs + 30.0) < 0.5 for line in sink.lines)
    st = pipe.stats()
    assert st["windows"] == 13 and st["skipped_windows"] == 0 and st["gated_windows"] == 0
    assert st["model"] == pipe.model_id and pipe.trigger_names == ["t"]


def test_level_gate_skips_tower_and_scores_silence(tiny_model_dir, tmp_path):
    cfg = make_config(tiny_model_dir, tmp_path, [{"name": "t", "prompts": ["a dog barking"]}],
                      audio={"min_level_dbfs": -60.0})
    audio = np.concatenate([np.zeros(4 * SR, np.float32), noise(3.0)])
    pipe, sink = scan(cfg, audio)
    gated = [line for line in sink.lines if line.window_end <= 4.0]
    assert len(gated) == 4 and all(line.scores["t"] == 0.0 for line in gated)
    assert all(line.level_dbfs == -120.0 for line in gated)
    assert pipe.stats()["gated_windows"] == 4
    assert any(line.scores["t"] != 0.0 for line in sink.lines[4:])


def test_nan_inf_never_reach_the_model(tiny_model_dir, tmp_path):
    cfg = make_config(tiny_model_dir, tmp_path, [{"name": "t", "prompts": ["a dog barking"]}])
    audio = noise(3.0)
    audio[1000:1100] = np.nan
    audio[50000] = np.inf
    audio[60000] = -np.inf
    sink = ListSink()
    pipe = build_pipeline(cfg, [sink], source=ArraySource(audio, SR))
    seen = []
    tower = pipe.detector.embedder.tower
    real = tower.embed

    def checked(features):
        seen.append(bool(np.isfinite(features).all()))
        return real(features)

    tower.embed = checked
    pipe.open()
    pipe.run(threading.Event())
    assert seen == [True, True, True]
    assert pipe.stats()["bad_samples"] == 102
    assert all(np.isfinite(line.scores["t"]) for line in sink.lines)


def test_tower_runs_once_per_window_for_many_triggers(tiny_model_dir, tmp_path, example):
    triggers = [{"name": f"t{i}", "prompts": [f"sound number {i}", "a dog"]} for i in range(6)]
    triggers.append({"name": "ex", "examples": [str(example)], "negatives": ["a cat"]})
    cfg = make_config(tiny_model_dir, tmp_path, triggers, background=["silence", "speech"])
    sink = ListSink()
    pipe = build_pipeline(cfg, [sink], source=ArraySource(noise(5.0), SR))
    calls = []
    tower = pipe.detector.embedder.tower
    real = tower.embed
    tower.embed = lambda f: (calls.append(f.shape[0]), real(f))[1]
    pipe.open()
    pipe.run(threading.Event())
    # one run per window, plus at most one on its tail (listener/detect/boundary.py) for
    # all the triggers that are on or about to start, however many triggers there are
    tails = pipe.detector.stats.tail_runs
    assert tails <= 5 and calls == [1] * (5 + tails) and len(sink.lines) == 5
    assert all(len(line.scores) == 7 for line in sink.lines)


def test_example_trigger_events_and_clip(tiny_model_dir, tmp_path, example):
    clips = tmp_path / "clips"
    cfg = make_config(
        tiny_model_dir, tmp_path,
        [{"name": "ours", "examples": [str(example)], "negatives": ["a cat meowing"]},
         {"name": "never", "prompts": ["a dog barking"], "on_threshold": 1.0}],
        background=["silence"],
        clips={"enabled": True, "dir": str(clips), "pre_seconds": 1.0, "post_seconds": 1.0},
    )
    pipe, sink = scan(cfg, noise(6.0, seed=7))
    starts = [e for e in sink.events if e.type == "start"]
    ends = [e for e in sink.events if e.type == "end"]
    assert len(starts) == 1 and len(ends) == 1
    s, e = starts[0], ends[0]
    assert s.id == e.id and s.trigger == "ours" and s.match == "our_sound.wav"
    assert s.window_end == 1.0 and s.details["confirmed_at"] == 2.0  # onset, on_windows 2
    assert s.model == pipe.model_id and s.time.endswith("Z")
    assert e.details["reason"] == "end_of_stream" and e.window_end == 6.0
    assert e.duration == pytest.approx(6.0)
    d = s.details
    assert d["on_threshold"] == 0.5 and d["off_threshold"] == 0.4 and d["margin"] == 0.0
    assert d["best_negative"] in ("a cat meowing", "silence") and "relative_score" in d
    assert d["settings"]["on_windows"] == 2
    assert e.clip == str(clips / f"{e.id}.wav") and Path(e.clip).is_file()
    clip, rate = sf.read(e.clip)
    assert rate == SR and abs(len(clip) / SR - 6.0) < 0.01  # pre clamped at 0, end of stream
    assert "duration" not in s.to_dict() and e.to_dict()["duration"] == 6.0
    assert sink.actives[0]["ours"] is False and sink.actives[1]["ours"] is True


def test_switch_and_reload_keep_or_end_state(tiny_model_dir, tmp_path, example):
    trig = {"name": "ours", "examples": [str(example)], "on_windows": 1}
    cfg = make_config(tiny_model_dir, tmp_path, [trig])
    cfg2 = make_config(tiny_model_dir, tmp_path,
                       [trig, {"name": "other", "prompts": ["a dog barking"]}])
    sink = ListSink()
    switches = SwitchStore(None, configured_enabled(cfg))
    stack = load_model(cfg)
    pipe = build_pipeline(cfg, [sink], source=ArraySource(noise(9.0, seed=7), SR),
                          switches=switches, stack=stack)

    def control(line):
        if line.window_end == 3.0:  # the unchanged trigger keeps its open event
            apply_config(pipe, switches, stack, cfg, cfg2)
        elif line.window_end == 5.0:
            switches.set("ours", False)
            pipe.apply_switches()
        elif line.window_end == 7.0:
            switches.set("ours", True)
            pipe.apply_switches()

    sink.on_line = control
    pipe.open()
    pipe.run(threading.Event())
    got = [(e.type, e.window_end, e.details["reason"]) for e in sink.events]
    assert got == [
        ("start", 1.0, "threshold"),
        ("end", 5.0, "disabled"),
        ("start", 8.0, "threshold"),
        ("end", 9.0, "end_of_stream"),
    ]
    assert pipe.trigger_names == ["ours", "other"]
    assert set(sink.lines[-1].scores) == {"ours", "other"}
    with pytest.raises(KeyError, match="unknown trigger 'nope'"):
        switches.set("nope", True)


def test_reload_applies_enabled_from_config(tiny_model_dir, tmp_path, example):
    trig = {"name": "ours", "examples": [str(example)], "on_windows": 1}
    cfg = make_config(tiny_model_dir, tmp_path, [trig])
    off = make_config(tiny_model_dir, tmp_path, [{**trig, "enabled": False}])
    sink = ListSink()
    switches = SwitchStore(None, configured_enabled(cfg))
    stack = load_model(cfg)
    pipe = build_pipeline(cfg, [sink], source=ArraySource(noise(4.0, seed=7), SR),
                          switches=switches, stack=stack)
    sink.on_line = lambda line: (apply_config(pipe, switches, stack, cfg, off)
                                 if line.window_end == 2.0 else None)
    pipe.open()
    pipe.run(threading.Event())
    got = [(e.type, e.window_end, e.details["reason"]) for e in sink.events]
    assert got == [("start", 1.0, "threshold"), ("end", 2.0, "disabled")]
    assert not switches.enabled("ours") and len(sink.lines) == 4


def test_example_shorter_than_half_a_second_is_a_clear_error(tiny_model_dir, tmp_path):
    short = tmp_path / "tiny_clip.wav"
    sf.write(short, noise(0.3), SR)
    cfg = make_config(tiny_model_dir, tmp_path, [{"name": "t", "examples": [str(short)]}])
    with pytest.raises(ConfigError, match=r"tiny_clip.wav is only 0.30 s long.*at least 0.5 s"):
        build_pipeline(cfg, [ListSink()])


class SlowTower:
    """A real AudioTower that takes longer than real time (hop 0.1 s, 0.25 s per window)."""

    def __init__(self, tower, delay: float) -> None:
        self.tower = tower
        self.delay = delay
        self.threads: set[int] = set()

    def embed(self, features):
        self.threads.add(threading.get_ident())
        time.sleep(self.delay)  # simulated slow hardware, not synchronisation
        return self.tower.embed(features)


def test_slow_tower_skips_stale_windows_and_memory_stays_flat(tiny_model_dir, tmp_path):
    cfg = make_config(tiny_model_dir, tmp_path, [{"name": "t", "prompts": ["a dog barking"]}],
                      audio={"hop_seconds": 0.1})
    sink = ListSink()
    seconds = 6.0
    src = ArraySource(noise(seconds), SR, block_seconds=0.02, realtime=True)
    pipe = build_pipeline(cfg, [sink], source=src)
    slow = SlowTower(pipe.detector.embedder.tower, 0.25)
    pipe.detector.embedder.tower = slow
    samples: list[tuple[float, int]] = []
    pipe.heartbeat = lambda: samples.append((time.monotonic(), tracemalloc.get_traced_memory()[0]))
    reader_threads = set()
    blocks = src.blocks

    def spy():
        for b in blocks():
            reader_threads.add(threading.get_ident())
            yield b

    src.blocks = spy
    tracemalloc.start()
    try:
        pipe.open()
        t0 = time.monotonic()
        with capture_logs() as logs:
            pipe.run(threading.Event())
        wall = time.monotonic() - t0
    finally:
        tracemalloc.stop()
    st = pipe.stats()
    assert wall < seconds + 2.0  # kept pace with the source instead of queueing
    assert st["skipped_windows"] > 10
    # said in the log, once (rate-limited), with the real-time factor and what to change
    lag = [e for e in logs if e["event"].startswith("falling behind real time")]
    assert len(lag) == 1 and lag[0]["log_level"] == "warning", logs
    assert lag[0]["real_time_factor"] > 1.0 and "hop_seconds" in lag[0]["event"]
    assert st["windows"] + st["skipped_windows"] == pytest.approx(seconds / 0.1, abs=2)
    assert len(sink.lines) == st["windows"]
    # inference ran on a different thread from reading
    assert slow.threads and reader_threads and not (slow.threads & reader_threads)
    # memory flat: what is allocated late in the run is no more than early on (+ slack);
    # queueing the skipped windows would have held ~1.9 MB each
    early = max(m for t, m in samples if t - samples[0][0] < 2.0)
    late = max(m for t, m in samples if t - samples[0][0] >= seconds - 2.0)
    assert late - early < 8 * 2**20, (early, late)


def test_clip_longer_than_ring_is_accumulated_and_retention_applies(tmp_path):
    import os

    from listener.audio.ringbuffer import RingBuffer
    from listener.config.schema import ClipsConfig
    from listener.service.clips import ClipRecorder

    rate = 1000
    ring = RingBuffer(3 * rate)  # holds 3 s; the event lasts 10 s
    cfg = ClipsConfig(enabled=True, pre_seconds=1.0, post_seconds=2.0, max_total_mb=0.05,
                      max_age_days=1.0)
    rec = ClipRecorder(cfg, tmp_path, rate)
    signal = np.arange(20 * rate, dtype=np.float32) / (20 * rate)
    path = None
    for i in range(0, 20 * rate, 100):
        ring.write(signal[i : i + 100])
        if ring.total == 4 * rate:
            rec.begin("ev1", 3 * rate, ring)  # sound started at 3 s -> clip from 2 s
        if ring.total == 14 * rate:
            path = rec.end("ev1", 13 * rate, ring)  # sound ended at 13 s -> clip to 15 s
            assert path == tmp_path / "ev1.wav" and not path.exists()  # post not arrived
        rec.pull(ring)
    assert path is not None and path.exists()
    clip, r = sf.read(path, dtype="float32")
    assert r == rate and len(clip) == 13 * rate
    np.testing.assert_allclose(clip, signal[2 * rate : 15 * rate], atol=1e-4)
    # retention: an old clip goes by age, then the oldest go until under the size budget
    old = tmp_path / "old.wav"
    sf.write(old, np.zeros(rate, np.float32), rate)
    os.utime(old, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    big = [tmp_path / f"b{i}.wav" for i in range(3)]
    for i, p in enumerate(big):
        sf.write(p, np.zeros(10 * rate, np.float32), rate, subtype="PCM_16")  # ~20 kB each
        os.utime(p, (time.time() - 100 + i, time.time() - 100 + i))
    removed = rec.retention()
    assert old in removed and not old.exists()
    left = sorted(p.name for p in tmp_path.glob("*.wav"))
    total = sum(p.stat().st_size for p in tmp_path.glob("*.wav"))
    assert total <= 0.05 * 1024 * 1024 and "ev1.wav" in left and "b0.wav" not in left
