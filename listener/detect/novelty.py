"""The novelty gate: skip the audio tower when the newest hop brings nothing new.

Why: a home is rarely silent and rarely eventful. A fridge hums, ventilation hisses,
a TV talks for hours; from one hop to the next the 10-s window changes little, yet
the tower (most of the daemon's CPU) used to run on every hop above the level gate.
Scores can only change when the audio does, so a hop whose sound the last scored
window already had can reuse that window's scores.

How "new" is decided, from what the pipeline computes anyway (the window's log-mel
frames, in dB): the last scored window leaves an *envelope*, the loudest value of
every mel band over its frames smoothed across ``smooth_frames`` (30 ms: a click
stays a click, a single noisy frame does not set it). A later hop is new when, in
any of its smoothed frames, at least ``min_bands`` bands rise ``change_db`` above that envelope: a
sound entering a steady background, however narrow-band (a beep) or broad (a
knock), lifts some bands above anything the background reached. Steady noise stays
under its own 10-s maximum; speech-like audio mostly stays under the envelope of
the speech before it. A window can also change without anything entering: the TV
stops and its speech leaves the window hop by hop, revealing a sound it covered. So
the window's mean spectrum is compared too: when it moved ``shift_db`` from the last
scored window's in ``min_bands`` bands (either way), the window is new. And a sound
can grow without getting louder: footsteps or knocks repeat at one level, and a model
may hear "knocking" only once several knocks are in the window. So the window's
*activity* is compared as well: the share of its frames that stand ``change_db`` above
the last scored window's floor (per band, the 20th percentile) in ``min_bands`` bands,
after 0.1-s smoothing (``activity_frames``, so noise flicker does not count);
when it moved ``activity_change`` (0.02: 0.2 s of a 10-s window) either way,
the window is new. Steady noise and continuous speech keep their share; a sound that
starts, repeats, or leaves the window changes it hop by hop.

What the gate never decides alone (the detector asks it only when none applies):
a trigger that is on, counting towards a start, or scored within ``near_threshold``
of its on-threshold in the last ``max_age`` seconds is scored on every hop (scores
swing from hop to hop while a sound is in the window); so is every hop once
the last score is ``max_age`` seconds old (the window length: by then a sound that
left the window, or a change too gradual to rise above the envelope, is noticed),
and every window while the ring is not yet a full window.

Each rule and default comes from a run of benchmarks/bench_novelty.py on hour-long home
streams (what each one fixed, and the table: benchmarks/README.md, issue 18).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-9


@dataclass(frozen=True)
class NoveltySettings:
    """The gate's thresholds (config: ``audio.novelty``; plain data, no pydantic)."""

    change_db: float = 6.0  # a band must rise this far above the last window's envelope
    min_bands: int = 3  # in at least this many mel bands of one smoothed frame
    shift_db: float = 3.0  # or the window's mean spectrum moved this far (either way)
    activity_change: float = 0.02  # or the share of active frames moved this much
    near_threshold: float = 0.1  # score distance below on_threshold that always re-scores
    smooth_frames: int = 3  # frames averaged before comparing (10 ms each: 30 ms)
    activity_frames: int = 10  # frames averaged before counting active ones (0.1 s)


class NoveltyGate:
    """Remembers the last scored window's envelope; tells whether a new hop exceeds it.

    ``frames_per_hop``: how many of a window's newest log-mel frames are the new hop;
    ``max_age``: seconds after which a window is scored whatever the gate says.
    """

    def __init__(self, settings: NoveltySettings, frames_per_hop: int, max_age: float) -> None:
        self.settings = settings
        self.frames_per_hop = max(1, frames_per_hop)
        self.max_age = max_age
        self._envelope: np.ndarray | None = None  # [n_mels] dB
        self._mean: np.ndarray | None = None  # [n_mels] dB, the scored window's mean
        self._floor: np.ndarray | None = None  # [n_mels] dB, its 20th percentile
        self._activity = 0.0  # share of its frames above the floor
        self._scored_at = float("-inf")

    def forget(self) -> None:
        """No reference any more (a gated-quiet window, new triggers): score the next one."""
        self._envelope = None

    def remember(self, mel: np.ndarray, t_end: float) -> None:
        """The window ``mel`` [n_frames, n_mels] ending at ``t_end`` was just scored."""
        smoothed = self._smoothed(mel)
        self._envelope = smoothed.max(axis=0)
        self._mean = mel.mean(axis=0, dtype=np.float64)
        slow = self._smoothed(mel, self.settings.activity_frames)
        self._floor = np.percentile(slow, 20.0, axis=0)
        self._activity = self._active_share(slow)
        self._scored_at = t_end

    def is_new(self, mel: np.ndarray, t_end: float) -> bool:
        """Whether the window ``mel`` ending at ``t_end`` must be scored: no reference, the
        reference is ``max_age`` old, the newest hop rises above the envelope, or the
        window's mean spectrum moved."""
        if (self._envelope is None or self._mean is None
                or t_end - self._scored_at >= self.max_age - EPS):
            return True
        s = self.settings
        hop = self._smoothed(mel[-(self.frames_per_hop + s.smooth_frames - 1):])
        above = hop > self._envelope + s.change_db
        if (above.sum(axis=1) >= s.min_bands).any():
            return True
        moved = np.abs(mel.mean(axis=0, dtype=np.float64) - self._mean) > s.shift_db
        if int(moved.sum()) >= s.min_bands:
            return True
        activity = self._active_share(self._smoothed(mel, s.activity_frames))
        return abs(activity - self._activity) >= s.activity_change - EPS

    def _active_share(self, smoothed: np.ndarray) -> float:
        """Share of frames with ``min_bands`` bands ``change_db`` above the floor."""
        assert self._floor is not None
        s = self.settings
        above = smoothed > self._floor + s.change_db
        return float((above.sum(axis=1) >= s.min_bands).mean())

    def _smoothed(self, mel: np.ndarray, frames: int | None = None) -> np.ndarray:
        """Moving average over ``frames`` (default ``smooth_frames``) frames, valid part
        only, float64."""
        k = min(frames or self.settings.smooth_frames, mel.shape[0])
        c = np.cumsum(mel, axis=0, dtype=np.float64)
        out = c[k - 1:].copy()
        out[1:] -= c[:-k]
        return out / k
