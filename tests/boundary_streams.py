"""Streams with sounds of known edges, for the boundary tests and benchmarks/bench_boundaries.py.

Why a module: the test that pins when events end and the benchmark that measures it
must hear the same kinds of sound, built the same way from the hearing model's
generators (tests/hearing/sounds.py, imported, never edited). Besides the generator
classes there is ``beeping``: an alarm switched 1 s on / 1 s off, the gapped sound that
must stay one event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.hearing import sounds

SR = sounds.SR
#: sound kind -> (generator class, trigger that should fire on it)
KINDS = {"alarm": ("alarm", "alarm"), "knocking": ("knocking", "knocking"),
         "siren": ("siren", "siren"), "speech": ("babble", "babble"),
         "beeping": ("alarm", "alarm")}
#: the text triggers: one per class above, plus chirps (the alarm's look-alike)
TRIGGERS = ("alarm", "knocking", "siren", "babble", "chirps")
LEAD = 12.0  # noise before the first sound: the first window is full of room
GAP = 25.0  # noise after each sound: the window clears it and the cooldown passes
BACKGROUND_DBFS = -50.0


@dataclass(frozen=True)
class Truth:
    kind: str
    trigger: str
    start: float
    end: float


def beeping(seed: int, seconds: float, level_dbfs: float) -> tuple[np.ndarray, float]:
    """An alarm beeping 1 s on, 1 s off, for ``seconds``; returns the audio and when its
    last beep ends (seconds from its start)."""
    x = sounds.render("alarm", seed, seconds, level_dbfs)
    t = np.arange(x.size) / SR
    ramp = int(0.005 * SR)
    env = np.convolve(((t % 2.0) < 1.0).astype(np.float64), np.ones(ramp) / ramp, mode="same")
    last_on = float(np.floor((seconds - 1e-9) / 2.0) * 2.0 + 1.0)
    return (x * env).astype(np.float32), min(seconds, last_on)


def make_stream(kinds: list[str], seconds_each: float, seed: int, snr_db: float,
                spacing: float | None = None) -> tuple[np.ndarray, list[Truth]]:
    """Room noise with one sound of each kind in turn, ``spacing`` (default: its length +
    ``GAP``) apart; each starts a seeded fraction of a second off the hop grid."""
    step = spacing if spacing is not None else seconds_each + GAP
    total = LEAD + step * len(kinds) + 2.0
    out = sounds.background(total, seed, BACKGROUND_DBFS).astype(np.float64)
    truth: list[Truth] = []
    for i, kind in enumerate(kinds):
        cls, trigger = KINDS[kind]
        start = LEAD + i * step + (0.37 * (i + seed)) % 1.0
        level = BACKGROUND_DBFS + snr_db
        if kind == "beeping":
            ev, length = beeping(seed * 100 + i, seconds_each, level)
        else:
            ev, length = sounds.render(cls, seed * 100 + i, seconds_each, level), seconds_each
        a = round(start * SR)
        out[a:a + ev.size] += ev
        truth.append(Truth(kind, trigger, a / SR, a / SR + length))
    return out.astype(np.float32), truth
