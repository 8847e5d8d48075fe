"""End to end: `listener scan` finds each inserted sound once, on time, and nothing else.

A stream of room noise gets fresh renditions (seeds never used in training) of several
classes inserted at known times. Triggers are defined by text prompts (wordings never
used verbatim in training) and, separately, by example clips (other fresh renditions).
The real CLI runs the real pipeline on the trained hearing model. Each inserted sound
must give exactly one start/end pair of its own triggers, the start within one hop of
the truth and the end within hop + window length of the sound's end; no trigger fires
in the noise-only stretches or on another class.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from tests.hearing import sounds
from tests.helpers import run_cli, write_config

HOP = 1.0
WINDOW = 10.0
SEED = sounds.FRESH_SEED_BASE + 31_000
# (class, start seconds): 18 s apart, so 10-s windows between them hold noise only
EVENTS = [("alarm", 12.0), ("knocking", 30.0), ("siren", 48.0), ("chirps", 66.0),
          ("babble", 84.0)]
SECONDS = 100.0
PROMPTS = {c: sounds.TEST_CAPTIONS[c][0] for c, _ in EVENTS}
BACKGROUND = sounds.TEST_CAPTIONS["quiet"]

# For this model a window holding the sound scores about 0.9+ against its caption or
# example, noise-only windows up to about 0.65, so 0.8/0.7 sit between the regimes.
# Examples also get a wider margin over their look-alikes: half a second of chirp at
# the edge of a window already resembles one alarm beep to an audio prototype.
TEXT = {"on_threshold": 0.8, "off_threshold": 0.7, "margin": 0.05}
EXAMPLE = {"on_threshold": 0.8, "off_threshold": 0.7, "margin": 0.15}


@pytest.fixture(scope="module")
def scanned(hearing_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("detection")
    audio, truth = sounds.stream(EVENTS, SECONDS, SEED, event_seconds=2.5, snr_db=20.0)
    sf.write(tmp / "stream.flac", audio, sounds.SR)
    triggers = []
    for i, (cls, _start) in enumerate(EVENTS):
        triggers.append({"name": f"{cls}_text", "prompts": [PROMPTS[cls]], **TEXT})
        ex_audio, _ = sounds.window(cls, SEED + 500 + i, seconds=4.0, event_seconds=2.5,
                                    snr_db=20.0, position=0.75)
        ex = tmp / f"{cls}_example.wav"
        sf.write(ex, ex_audio, sounds.SR)
        # the other classes' captions are this example's look-alikes (alarm beeps and
        # chirps sound alike to the small model): the example must beat them by margin
        others = [PROMPTS[c] for c, _ in EVENTS if c != cls]
        triggers.append({"name": f"{cls}_example", "examples": [ex], "negatives": others,
                         **EXAMPLE})
    cfg = write_config(
        tmp, hearing_model_dir, triggers,
        model={"precision": "int8"},
        state_dir=tmp / "state",
        audio={"hop_seconds": HOP, "window_seconds": WINDOW},
        defaults={"on_windows": 1, "off_seconds": 2.0, "cooldown_seconds": 5.0, "margin": 0.05},
        background=BACKGROUND,
    )
    r = run_cli("scan", tmp / "stream.flac", "--config", cfg, "--jsonl", "--scores",
                timeout=300)
    assert r.returncode == 0, r.stderr
    out = [json.loads(s) for s in r.stdout.splitlines()]
    events = [d for d in out if d["type"] in ("start", "end")]
    scores = [d for d in out if d["type"] == "scores"]
    return truth, events, scores


@pytest.mark.parametrize("kind", ["text", "example"])
def test_each_inserted_sound_is_reported_once_on_time(scanned, kind):
    truth, events, _scores = scanned
    mine = [e for e in events if e["trigger"].endswith(f"_{kind}")]
    report = "\n".join(
        f"{e['type']:5} {e['trigger']:18} {e['window_end']:6.1f} score {e['score']:.3f}"
        for e in mine
    )
    for cls, t0, t1 in truth:
        own = [e for e in mine if e["trigger"] == f"{cls}_{kind}"]
        assert [e["type"] for e in own] == ["start", "end"], f"{cls} at {t0}:\n{report}"
        start, end = own
        assert start["id"] == end["id"]
        assert t0 <= start["window_end"] <= t0 + HOP + 1e-6, (cls, t0, start)
        assert start["window_end"] < end["window_end"] <= t1 + HOP + WINDOW + 1e-6, (cls, t1, end)
        expected = PROMPTS[cls] if kind == "text" else f"{cls}_example.wav"
        assert start["match"] == expected
    assert len(mine) == 2 * len(truth), report


def test_nothing_fires_in_noise_only_stretches(scanned):
    """Every start lies on an inserted sound of its own class; noise alone starts nothing."""
    truth, events, scores = scanned
    noise_only = [
        s for s in scores
        if not any(s["window_start"] < t1 and s["window_end"] > t0 for _c, t0, t1 in truth)
    ]
    assert len(noise_only) >= 15  # the stream really has noise-only stretches
    for e in events:
        if e["type"] != "start":
            continue
        cls = e["trigger"].rsplit("_", 1)[0]
        heard = [(t0, t1) for c, t0, t1 in truth
                 if c == cls and e["window_start"] < t1 and e["window_end"] > t0]
        assert heard, f"{e['trigger']} started on a window without its sound: {e}"
