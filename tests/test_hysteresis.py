"""Hysteresis properties on synthetic score sequences (hypothesis) plus worked examples.

Why: the state machine is what turns noisy window scores into clean start/end pairs;
a bug here means flapping entities or events that never end.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from listener.detect.hysteresis import Hysteresis, Transition
from listener.detect.settings import TriggerSettings

HOP = 1.0


@st.composite
def scenario(draw):
    on = draw(st.floats(0.2, 0.9))
    off = draw(st.floats(0.0, on))
    s = TriggerSettings(
        on_threshold=on,
        off_threshold=off,
        on_windows=draw(st.integers(1, 4)),
        off_seconds=float(draw(st.integers(0, 5))),
        cooldown_seconds=float(draw(st.integers(0, 8))),
        margin=0.05,
    )
    n = draw(st.integers(0, 80))
    # scores cluster around the thresholds, where flapping would happen
    pool = st.sampled_from([0.0, off - 0.01, off, (off + on) / 2, on, on + 0.01, 1.0])
    scores = draw(st.lists(st.one_of(pool, st.floats(0.0, 1.0)), min_size=n, max_size=n))
    margin_ok = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return s, scores, margin_ok


def run(s: TriggerSettings, scores: list[float], margin_ok: list[bool]):
    h = Hysteresis(s)
    out: list[Transition] = []
    for i, (score, m) in enumerate(zip(scores, margin_ok, strict=True)):
        end = (i + 1) * HOP
        tr = h.update(max(0.0, end - 10.0), end, score, margin_ok=m)
        if tr:
            out.append(tr)
    tr = h.finish(len(scores) * HOP)
    if tr:
        out.append(tr)
    return out, h


def score_at(scores: list[float], t: float) -> float:
    return scores[round(t / HOP) - 1]


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_every_start_has_exactly_one_end(sc):
    s, scores, margin_ok = sc
    out, h = run(s, scores, margin_ok)
    kinds = [t.kind for t in out]
    assert kinds == ["start", "end"] * (len(kinds) // 2)
    assert not h.active


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_on_windows_respected(sc):
    s, scores, margin_ok = sc
    out, _ = run(s, scores, margin_ok)
    for t in out:
        if t.kind != "start":
            continue
        # onset is the first of on_windows consecutive qualifying windows
        assert abs((t.confirmed_at - t.window.end) - (s.on_windows - 1) * HOP) < 1e-9
        k = round(t.window.end / HOP)
        for j in range(k, k + s.on_windows):
            assert scores[j - 1] >= s.on_threshold and margin_ok[j - 1]


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_no_flapping_between_thresholds(sc):
    """An end needs off_seconds of scores below off_threshold; nothing in between toggles."""
    s, scores, margin_ok = sc
    out, _ = run(s, scores, margin_ok)
    for t in out:
        if t.kind == "end" and t.reason == "threshold":
            assert t.confirmed_at - t.window.end >= s.off_seconds - 1e-9
            k0, k1 = round(t.window.end / HOP), round(t.confirmed_at / HOP)
            assert all(scores[j - 1] < s.off_threshold for j in range(k0, k1 + 1))
            # the window just before the off run was at or above off_threshold (else the
            # run would have started earlier)
        decided = scores[round(t.confirmed_at / HOP) - 1] if t.reason == "threshold" else None
        if decided is not None and s.off_threshold <= decided < s.on_threshold:
            raise AssertionError(f"transition on an in-between score {decided}: {t}")


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_cooldown_respected(sc):
    s, scores, margin_ok = sc
    out, _ = run(s, scores, margin_ok)
    for prev, nxt in itertools.pairwise(out):
        if prev.kind == "end" and nxt.kind == "start":
            # every window of the new run lies after the cooldown
            assert nxt.window.end >= prev.confirmed_at + s.cooldown_seconds - 1e-9


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_starts_when_it_should(sc):
    """Liveness: on_windows qualifying windows in a row, off cooldown, do start an event."""
    s, scores, margin_ok = sc
    out, _ = run(s, scores, margin_ok)
    active_spans = []
    cooldown_until = float("-inf")
    starts = [t for t in out if t.kind == "start"]
    ends = [t for t in out if t.kind == "end"]
    for a, b in zip(starts, ends, strict=True):
        active_spans.append((a.confirmed_at, b.confirmed_at))
    run_len = 0
    for i, score in enumerate(scores):
        t = (i + 1) * HOP
        inside = any(a <= t <= b for a, b in active_spans)
        for _a, b in active_spans:
            if b < t:
                cooldown_until = max(cooldown_until, b + s.cooldown_seconds)
        if inside:
            run_len = 0
            continue
        ok = score >= s.on_threshold and margin_ok[i] and t >= cooldown_until - 1e-9
        run_len = run_len + 1 if ok else 0
        assert run_len < s.on_windows, f"missed start at t={t}"


def test_worked_example():
    s = TriggerSettings(on_threshold=0.5, off_threshold=0.3, on_windows=2, off_seconds=2.0,
                        cooldown_seconds=3.0, margin=0.05)
    scores = [0.1, 0.6, 0.2, 0.6, 0.7, 0.4, 0.2, 0.4, 0.2, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9]
    out, _ = run(s, scores, [True] * len(scores))
    got = [(t.kind, t.window.end, t.confirmed_at, t.reason) for t in out]
    assert got == [
        ("start", 4.0, 5.0, "threshold"),  # 0.6 at 2 s alone is not enough (on_windows 2)
        ("end", 9.0, 11.0, "threshold"),  # 0.4 at 8 s (between thresholds) reset the off run
        ("start", 14.0, 15.0, "threshold"),  # cooldown until 14 s: 12 and 13 s do not count
        ("end", 16.0, 16.0, "end_of_stream"),
    ]
    assert out[1].peak == 0.7


def test_margin_blocks_start():
    s = TriggerSettings(0.5, 0.3, 1, 0.0, 0.0, 0.05)
    out, _ = run(s, [0.9, 0.9, 0.9], [False, False, False])
    assert out == []
