"""Long home-like test streams for benchmarks/bench_novelty.py (issue 18).

Built only from the hearing test model's generators (tests/hearing/sounds.py, imported,
never edited) so the trained test model hears the inserted sounds:

- ``steady``: an hour of appliance hum + ventilation hiss over room noise;
- ``tv``: an hour whose minutes 10-50 hold TV/speech-like babble (a new stretch of
  speech every 20 s, level varying), room noise around it;
- ``quiet``: an hour of a quiet room with footsteps (trains of low thumps) and doors
  (short rumbles) every few minutes.

Each gets target sounds (alarm, siren, chirps, knocking, ticking) at known times: some
short (1 s), some quiet (8 dB over the local background), some overlapping a change of
background (the TV starting or stopping, a door). Backgrounds are built in 60-s pieces
that are repeated with a 50-ms cross-fade, so an hour costs seconds, not minutes.
"""

from __future__ import annotations

import numpy as np

from tests.hearing import sounds

SR = sounds.SR
TARGETS = ("alarm", "siren", "chirps", "knocking", "ticking")
PIECE = 60.0
XFADE = round(0.05 * SR)


def _tile(piece: np.ndarray, n: int) -> np.ndarray:
    """``piece`` repeated to ``n`` samples, each joint cross-faded over 50 ms."""
    body = piece[:-XFADE].astype(np.float64)
    tail, head = piece[-XFADE:].astype(np.float64), piece[:XFADE].astype(np.float64)
    ramp = np.linspace(0.0, 1.0, XFADE)
    body = body.copy()
    body[:XFADE] = head * ramp + tail * (1.0 - ramp)
    reps = -(-n // body.size)
    return np.tile(body, reps)[:n]


def _room(seconds: float, seed: int, dbfs: float) -> np.ndarray:
    return _tile(sounds.background(PIECE + 0.05, seed, dbfs), round(seconds * SR))


def _add(out: np.ndarray, x: np.ndarray, at: float) -> None:
    a = round(at * SR)
    b = min(out.size, a + x.size)
    out[a:b] += x[: b - a]


def _local_level(out: np.ndarray, at: float) -> float:
    a = round(at * SR)
    return sounds.level(out[max(0, a - 2 * SR):a + 2 * SR].astype(np.float32))


def _targets(out: np.ndarray, plan: list[tuple[str, float, float, float]], seed: int
             ) -> list[tuple[str, float, float]]:
    """Insert (class, start s, duration s, dB over the local background); the truth."""
    truth = []
    for i, (cls, at, dur, snr) in enumerate(plan):
        level = min(-6.0, _local_level(out, at) + snr)
        ev = sounds.render(cls, sounds.FRESH_SEED_BASE + seed * 100 + i, dur, level)
        _add(out, ev, at)
        truth.append((cls, at, at + ev.size / SR))
    return truth


def _plan(seconds: float, changes: list[float]) -> list[tuple[str, float, float, float]]:
    """Targets every ~6 minutes: mixed lengths and levels, some on a background change."""
    plan = []
    times = list(np.arange(150.0, seconds - 60.0, 360.0))
    for i, t in enumerate(times):
        cls = TARGETS[i % len(TARGETS)]
        dur = (1.0, 2.5, 4.0)[i % 3]
        snr = (20.0, 8.0, 14.0)[i % 3]  # some loud, some quiet
        plan.append((cls, float(t), dur, snr))
    for j, c in enumerate(changes):  # on a change of background
        if 30.0 < c < seconds - 30.0:
            plan.append((TARGETS[(j + 2) % len(TARGETS)], c + 0.5, 2.5, 14.0))
    return sorted(plan, key=lambda p: p[1])


def steady(seconds: float, seed: int = 1) -> tuple[np.ndarray, list]:
    n = round(seconds * SR)
    out = _room(seconds, seed, -58.0)
    out += _tile(sounds.render("hum", seed, PIECE + 0.05, -42.0), n)
    out += _tile(sounds.render("hiss", seed + 1, PIECE + 0.05, -46.0), n)
    return out, _targets(out, _plan(seconds, []), seed)


def tv(seconds: float, seed: int = 2) -> tuple[np.ndarray, list]:
    out = _room(seconds, seed, -55.0)
    on, off = min(600.0, seconds / 6), min(3000.0, seconds * 5 / 6)
    rng = np.random.default_rng(seed)
    t = on
    while t < off:  # a new stretch of speech every 20 s, level varying like a programme
        piece = sounds.render("babble", seed * 1000 + int(t), min(20.0, off - t),
                              float(rng.uniform(-36.0, -28.0)))
        _add(out, piece, t)
        t += 20.0
    return out, _targets(out, _plan(seconds, [on, off]), seed)


def _footsteps(rng: np.random.Generator, dbfs: float) -> np.ndarray:
    """A train of 6-10 low thumps, 0.5 s apart (someone walking past)."""
    steps = int(rng.integers(6, 11))
    out = np.zeros(round((steps * 0.5 + 0.3) * SR))
    for k in range(steps):
        thump = sounds.render("rumble", int(rng.integers(1, 10**6)), 0.12, dbfs)
        _add(out, thump, k * 0.5)
    return out


def quiet(seconds: float, seed: int = 3) -> tuple[np.ndarray, list]:
    out = _room(seconds, seed, -62.0)
    rng = np.random.default_rng(seed)
    doors = []
    t = 40.0
    while t < seconds - 20.0:
        if rng.random() < 0.5:
            _add(out, _footsteps(rng, -40.0), t)
        else:
            _add(out, sounds.render("rumble", int(rng.integers(1, 10**6)), 1.0, -32.0), t)
            doors.append(t)
        t += float(rng.uniform(120.0, 300.0))
    return out, _targets(out, _plan(seconds, doors[:3]), seed)


STREAMS = {"steady": steady, "tv": tv, "quiet": quiet}
