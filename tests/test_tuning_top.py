"""`listener top`: a recorded score sequence renders to the same plain text every time."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from listener.detect.detector import DetectorResult, ScoredWindow, TriggerState
from listener.detect.settings import TriggerSettings
from listener.detect.triggers import Row, TriggerSet, TriggerSpec
from listener.tuning.top import FrameWriter, TopTracker, prompt_views, render_frame
from tests.test_tuning_calibrate import E2E_OFF, E2E_ON

# (scores of smoke_alarm, doorbell, the three prompt rows), level, smoke_alarm's state
SEQUENCE = [
    ((0.12, 0.20, 0.12, 0.20, 0.05), -41.0, dict(run=0)),
    ((0.33, 0.21, 0.33, 0.21, 0.07), -30.5, dict(run=1)),  # arming 1/2
    ((0.41, 0.19, 0.41, 0.19, 0.31), -28.0, dict(active=True)),
    ((0.18, 0.22, 0.18, 0.22, 0.30), -35.2, dict(cooldown_left=10.0)),  # ended: cooling
]
SETTINGS = {"smoke_alarm": TriggerSettings(0.30, 0.25, 2, 3.0, 10.0, 0.05),
            "doorbell": TriggerSettings(0.35, 0.30, 1, 3.0, 5.0, 0.05)}
ROWS = (Row("smoke alarm beeping", "prompt", "smoke_alarm"),
        Row("a doorbell ringing", "prompt", "doorbell"), Row("a dog barking", "probe", ""))
STATS = {"windows": 4, "skipped_windows": 1, "gated_windows": 0, "novelty_gated_windows": 2,
         "inference_ms": 84.6,
         "real_time_factor": 0.0846, "model": "clap-test-int8"}


def _state(name: str, score: float, **kw) -> TriggerState:
    base = dict(relative=None, match="", qualifies=False, run=0, active=False, enabled=True,
                cooldown_left=0.0)
    return TriggerState(name=name, score=score, settings=SETTINGS[name], **{**base, **kw})


def _results() -> list[DetectorResult]:
    """What the detector hands `top` for the sequence (test data)."""
    out = []
    for i, (scores, level, smoke) in enumerate(SEQUENCE):
        t = float(i + 1)
        states = (_state("smoke_alarm", scores[0], **smoke), _state("doorbell", scores[1]))
        window = ScoredWindow(t - 10.0, t, level, level, False, np.array(scores[2:]))
        out.append(DetectorResult(window, states, (), ROWS))
    return out


def _tracker(writer: FrameWriter | None = None) -> TopTracker:
    return TopTracker(gate_dbfs=-70.0, stats=lambda: STATS,
                      on_update=writer.write if writer else None)


def _play(tracker: TopTracker) -> None:
    for result in _results():
        tracker.on_result(result)


GOLDEN_LAST = """\
listener top  t=4.0 s  windows 4  skipped 1  gated 0  inference 85 ms  RTF 0.08
model clap-test-int8  gated 0 quiet, 2 nothing new
level  -35.2 dBFS [###########|###################....................] gate -70

trigger      score 0                                          0.6  state
smoke_alarm  0.180 [#############.....:...|.....................]  cooling 10s
doorbell     0.220 [################......:...|.................]  off
                   ('|' on threshold, ':' off threshold)

best-matching prompts now
   0.300  a dog barking                                                 (ad hoc)
   0.220  a doorbell ringing                                          (doorbell)
   0.180  smoke alarm beeping                                      (smoke_alarm)"""


def test_frame_from_recorded_sequence_is_golden() -> None:
    tr = _tracker()
    _play(tr)
    snap = tr.snapshot()
    assert render_frame(snap, 80) == GOLDEN_LAST
    assert render_frame(snap, 80) == render_frame(tr.snapshot(), 80)  # pure, repeatable
    assert all(len(line) <= 80 for line in render_frame(snap, 80).splitlines())
    assert all(len(line) <= 60 for line in render_frame(snap, 60).splitlines())


def test_non_tty_stream_gets_plain_frames_separated_by_blank_lines() -> None:
    out = io.StringIO()
    _play(_tracker(FrameWriter(out, tty=False, width=80)))
    text = out.getvalue()
    assert "\x1b" not in text
    frames = text.split("\n\nlistener top")
    assert len(frames) == 4
    assert text.endswith(GOLDEN_LAST + "\n")
    second = "listener top" + frames[1]
    assert "smoke_alarm  0.330 [" in second and "arming 1/2" in second
    third = "listener top" + frames[2]
    assert "smoke_alarm  0.410 [" in third and "  ON" in third
    assert "   0.410  smoke alarm beeping" in third.splitlines()[-3]


def test_tty_stream_redraws_in_place_with_ansi() -> None:
    out = io.StringIO()
    _play(_tracker(FrameWriter(out, tty=True, width=80)))
    text = out.getvalue()
    assert text.startswith("\x1b[H\x1b[J")  # home + clear once, then redraw from home
    assert text.count("\x1b[H") == 4
    assert "\x1b[31m\x1b[1mON" in text  # active state highlighted


def test_probes_are_rows_ranked_with_prompts_and_examples(tmp_path) -> None:
    """Ad-hoc prompts are extra rows of the one matrix; the view ranks single prompts,
    examples and probes by their own cosine, each once, naming its trigger."""
    texts = ["a dog barking", "a dog growling", "a doorbell", "silence", "a baby crying"]
    vecs = {s: v for s, v in zip(texts, np.eye(len(texts) + 1, dtype=np.float32), strict=False)}
    example = tmp_path / "our_bell.wav"
    settings = TriggerSettings(0.3, 0.25, 1, 1.0, 0.0, 0.0)
    ts = TriggerSet(
        [TriggerSpec("dog", "Dog", settings, prompts=("a dog barking", "a dog growling")),
         TriggerSpec("bell", "Bell", settings, prompts=("a doorbell",), examples=(example,))],
        background=["silence"], embed_texts=lambda ps: np.stack([vecs[s] for s in ps]),
        embed_example=lambda p: np.eye(len(texts) + 1, dtype=np.float32)[-1],
        probes=["a baby crying", "a doorbell"],
    )
    assert [(r.kind, r.owner) for r in ts.rows] == [
        ("prompt", "dog"), ("prompt", "dog"), ("prompt", "bell"), ("example", "bell"),
        ("background", ""), ("probe", ""), ("probe", ""),
    ]
    emb = np.array([0.1, 0.5, 0.2, 0.0, 0.3, 0.4], np.float32)  # cosines by construction
    sims = ts.similarities(emb)
    assert ts.score(sims)["dog"].score == pytest.approx(0.5)
    window = ScoredWindow(0.0, 10.0, -20.0, -20.0, False, sims)
    views = prompt_views(DetectorResult(window, (), (), ts.rows))
    assert [(v.text, v.owner) for v in views] == [
        ("a dog growling", "dog"), ("example our_bell.wav", "bell"), ("a baby crying", "ad hoc"),
        ("a doorbell", "bell"), ("a dog barking", "dog"),
    ]


# --- end to end: the real pipeline over a file, with the model that hears -------------------

TOP_CONFIG = """\
model:
  dir: {model}
state_dir: {state}
source: file:{wav}
defaults:
  on_threshold: {on}
  off_threshold: {off}
  on_windows: 1
triggers:
  - name: smoke_alarm
    prompts: ["smoke alarm beeping", "the beeping of a fire alarm"]
  - name: knock
    prompts: ["someone knocking on the door"]
mqtt:
  enabled: false
"""


def _frame_rows(frame: str) -> tuple[float, dict[str, tuple[float, str]], list[tuple]]:
    """(time, {trigger: (score, state)}, [(prompt score, text, owner)]) of one plain frame."""
    t = float(re.search(r"t=([\d.]+) s", frame).group(1))
    trig = {m[0]: (float(m[1]), m[2]) for m in re.findall(
        r"^(\w+) +([-\d.]+) \[[^\]]*\]  (.+)$", frame, re.M)}
    prompts = [(float(m[0]), m[1], m[2]) for m in re.findall(
        r"^   *([-\d.]+)  (.+?) +\((.+)\)$", frame.split("best-matching prompts now")[1], re.M)]
    return t, trig, prompts


def test_top_shows_what_the_pipeline_computes(hearing_model_dir, tmp_path, capsys) -> None:
    """Frame by frame, the view equals `scan --scores` of the same file, ad-hoc prompts
    are ranked among the configured ones, and a trigger's score is its best prompt's."""
    import json

    from listener.__main__ import main
    from listener.audio.decode import write_wav
    from listener.config.loader import load_config
    from listener.tuning.top import run_top
    from tests.hearing import sounds

    audio, _ = sounds.stream([("alarm", 6.0)], seconds=16.0,
                             seed=sounds.FRESH_SEED_BASE + 72_000, event_seconds=4.0)
    wav = tmp_path / "alarm.wav"
    write_wav(wav, audio)
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(TOP_CONFIG.format(model=hearing_model_dir, state=tmp_path / "state",
                                          wav=wav, on=E2E_ON, off=E2E_OFF))
    assert main(["scan", str(wav), "--config", str(cfg_path), "--jsonl", "--scores"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    truth = {round(d["window_end"], 1): d["scores"] for d in lines if d["type"] == "scores"}

    out = io.StringIO()
    cfg = load_config(cfg_path).config
    assert run_top(cfg, prompts=["a bird chirping", "siren"], out=out, tty=False, width=80,
                   realtime=False) == 0
    text = out.getvalue()
    assert "\x1b" not in text and "__top_p" not in text
    assert all(len(ln) <= 80 for ln in text.splitlines())
    frames = ["listener top" + f for f in text.split("listener top")[1:]]
    assert len(frames) == len(truth) >= 16  # one frame per hop
    states = set()
    for frame in frames:
        t, trig, prompts = _frame_rows(frame)
        assert set(trig) == {"smoke_alarm", "knock"}
        for name, (score, state) in trig.items():
            assert score == pytest.approx(truth[round(t, 1)][name], abs=1e-3), (t, name)
            states.add((name, state.split()[0]))
        assert len(prompts) == 5  # 3 configured + 2 ad hoc, best first
        assert [p[0] for p in prompts] == sorted((p[0] for p in prompts), reverse=True)
        assert {p[2] for p in prompts} == {"smoke_alarm", "knock", "ad hoc"}
        best = {o: max(p[0] for p in prompts if p[2] == o) for o in ("smoke_alarm", "knock")}
        for name, score in best.items():
            assert trig[name][0] == pytest.approx(score, abs=1e-3)
    assert ("smoke_alarm", "ON") in states  # the over-sensitive trigger fired
