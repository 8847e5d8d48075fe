"""The novelty gate on the trained hearing model: skips only what cannot change a decision.

Real pipeline (build_pipeline, real onnxruntime, real streaming log-mel) over generated
home audio: a steady hum + ventilation background in which the gate skips the tower,
with sounds entering and leaving it. Each stream also runs with the gate off, so what
the gate skipped is compared with what the tower would have said.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from listener.audio.sources import ArraySource
from listener.config.schema import Config
from listener.service.assemble import build_pipeline
from tests.hearing import sounds
from tests.helpers import config_data

SR = sounds.SR
SEED = sounds.FRESH_SEED_BASE + 18_000
TEXT = {"on_threshold": 0.8, "off_threshold": 0.7, "margin": 0.05}
NEAR = 0.1


class WindowSink:
    """Every scored window: end, reused, scores, and the trigger states after it."""

    def __init__(self) -> None:
        self.windows: list = []
        self.events: list = []

    def on_result(self, result) -> None:
        self.events.extend(result.events)
        if result.window is not None:
            self.windows.append((result.window, result.triggers))

    def close(self) -> None:
        pass

    def at(self, end: float):
        return next(w for w, _ in self.windows if abs(w.end - end) < 1e-6)


def steady(seconds: float) -> np.ndarray:
    """Appliance hum + ventilation hiss over room noise: the same sound for the whole run."""
    out = sounds.background(seconds, SEED, -58.0).astype(np.float64)
    out += sounds.render("hum", SEED, seconds, -42.0)
    out += sounds.render("hiss", SEED + 1, seconds, -46.0)
    return out


def insert(out: np.ndarray, cls: str, at: float, seconds: float, dbfs: float) -> np.ndarray:
    ev = sounds.render(cls, SEED + 7, seconds, dbfs)
    a = round(at * SR)
    out = out.copy()
    out[a:a + ev.size] += ev
    return out


def run(model_dir: Path, tmp_path: Path, audio: np.ndarray, triggers: list[str],
        novelty: bool = True) -> tuple[WindowSink, dict]:
    cfg = Config.model_validate(config_data(
        model_dir,
        [{"name": c, "prompts": [sounds.TEST_CAPTIONS[c][0]], **TEXT} for c in triggers],
        model={"precision": "int8", "threads": 1},
        state_dir=tmp_path / "state",
        audio={"hop_seconds": 1.0, "window_seconds": 10.0,
               "novelty": {"enabled": novelty, "near_threshold": NEAR}},
        defaults={"on_windows": 1, "off_seconds": 2.0, "cooldown_seconds": 5.0},
        background=[sounds.TEST_CAPTIONS["quiet"][0]],
    ))
    sink = WindowSink()
    pipe = build_pipeline(cfg, [sink], source=ArraySource(audio.astype(np.float32), SR))
    pipe.open()
    pipe.run(threading.Event())
    return sink, pipe.stats()


@pytest.mark.parametrize("cls,dbfs", [("siren", -28.0), ("knocking", -34.0)])
def test_a_sound_entering_a_steady_background_is_scored_on_its_first_hop(
        hearing_model_dir, tmp_path, cls, dbfs):
    audio = insert(steady(40.0), cls, 25.3, 2.5, dbfs)  # first in the window ending at 26
    on, stats = run(hearing_model_dir, tmp_path, audio, [cls])
    off, _ = run(hearing_model_dir, tmp_path, audio, [cls], novelty=False)
    # the gate was skipping the steady background just before the sound came
    assert any(on.at(float(t)).reused for t in range(21, 26))
    assert stats["novelty_gated_windows"] > 10
    assert stats["scored_windows"] + stats["novelty_gated_windows"] == stats["windows"]
    first = on.at(26.0)
    assert not first.reused
    np.testing.assert_allclose(first.similarities, off.at(26.0).similarities, atol=1e-5)
    # and the event is the one the ungated run reports, to the window
    starts = [(e.trigger, e.window_end) for e in on.events if e.type == "start"]
    assert starts == [(e.trigger, e.window_end) for e in off.events if e.type == "start"]
    assert starts and starts[0][1] <= 27.0


def test_a_sound_leaving_the_window_is_noticed_within_window_seconds(
        hearing_model_dir, tmp_path):
    # chirps (no trigger of their own) play 12.0-14.5 s: gone from every window ending
    # after 24.5 s; the scores must be the tower's fresh ones again by 34.5 s at the latest
    audio = insert(steady(50.0), "chirps", 12.0, 2.5, -30.0)
    on, _ = run(hearing_model_dir, tmp_path, audio, ["alarm"])
    off, _ = run(hearing_model_dir, tmp_path, audio, ["alarm"], novelty=False)
    gone = 24.5
    fresh = [w for w, _ in on.windows if gone < w.end <= gone + 10.0 and not w.reused]
    assert fresh, "no window was scored within window_seconds of the chirps leaving"
    np.testing.assert_allclose(fresh[0].similarities, off.at(fresh[0].end).similarities,
                               atol=1e-5)
    # and at no time does a reused score lag the tower's by more than window_seconds
    last_scored = 0.0
    for w, _ in on.windows:
        if not w.reused:
            last_scored = w.end
        assert w.end - last_scored < 10.0


def test_an_active_or_near_trigger_is_never_gated(hearing_model_dir, tmp_path):
    # knocking for 8 s in the steady background: the knocking trigger is on from its
    # start until off_seconds after the tail hears it stop (about 10 windows), and
    # nothing may be skipped meanwhile,
    # nor next to any window whose score was near a threshold; before and after, the
    # gate skips the steady background
    audio = insert(steady(70.0), "knocking", 20.0, 8.0, -34.0)
    sink, stats = run(hearing_model_dir, tmp_path, audio, ["knocking", "siren"])
    starts = [e for e in sink.events if e.type == "start"]
    assert [e.trigger for e in starts] == ["knocking"]
    active = [w for w, states in sink.windows if any(s.active for s in states)]
    assert len(active) >= 8 and not any(w.reused for w in active)
    # on or counting: the next window is scored; a score near the threshold: the next
    # window_seconds of windows are
    hot_until = float("-inf")
    for w, states in sink.windows:
        if w.end < hot_until - 1e-6:
            assert not w.reused, f"window ending {w.end} was gated next to a decision"
        if any(s.active or s.run > 0 for s in states):
            hot_until = max(hot_until, w.end + 1.0 + 1e-3)
        if not w.reused and any(s.score >= s.settings.on_threshold - NEAR for s in states):
            hot_until = max(hot_until, w.end + 10.0)
    assert any(w.reused for w, _ in sink.windows if w.end < 20.0)
    assert any(w.reused for w, _ in sink.windows if w.end > 45.0)
    assert stats["novelty_gated_windows"] > 20


def test_a_reload_switches_the_gate_off_and_on(hearing_model_dir, tmp_path):
    from listener.service.assemble import configured_enabled, load_model
    from listener.service.reload import apply_config
    from listener.service.switches import SwitchStore

    def cfg(enabled: bool) -> Config:
        return Config.model_validate(config_data(
            hearing_model_dir, [{"name": "siren", "prompts": [sounds.TEST_CAPTIONS["siren"][0]],
                                 **TEXT}],
            model={"precision": "int8", "threads": 1}, state_dir=tmp_path / "state",
            audio={"novelty": {"enabled": enabled}}))

    on, off = cfg(True), cfg(False)
    switches = SwitchStore(None, configured_enabled(on))
    stack = load_model(on)
    sink = WindowSink()
    pipe = build_pipeline(on, [sink], source=ArraySource(steady(40.0).astype(np.float32), SR),
                          switches=switches, stack=stack)
    real = sink.on_result

    def on_result(result) -> None:
        real(result)
        if result.window is not None and abs(result.window.end - 25.0) < 1e-6:
            apply_config(pipe, switches, stack, on, off)

    sink.on_result = on_result
    pipe.open()
    pipe.run(threading.Event())
    assert any(w.reused for w, _ in sink.windows if w.end <= 25.0)
    assert not any(w.reused for w, _ in sink.windows if w.end > 25.0)
    assert pipe.detector.novelty is None
