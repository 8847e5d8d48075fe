"""The finer time scale: the newest seconds of a window scored alone (the *tail*).

Why: the 10-s window is what makes CLAP recognise a sound, but it keeps hearing a sound
for up to 10 s after it stopped, so a trigger decided on windows alone turns off about
a window late. The tail (``tail_seconds``, 2 s by default) is cut from the end of the
same window and padded to the model's input length the way the model pads short clips
(``repeatpad`` for unfused CLAP: listener/model/logmel.py ``LogMel.prepare``), then scored
against the same trigger rows. A tail below ``off_threshold`` says the sound was absent
for all of those seconds, which dates its end to within a hop; a tail at
``on_threshold`` corroborates a start before ``on_windows`` windows have passed.

A start needs more care than an end: the first fraction of a second of a sound is
easily heard as something else (the onset of a siren is a chirp to a small model),
and a tail that holds only that fraction, repeated, is that something else. So the
tail's score carries how long it has been sounding by level (:func:`sounding_for`),
and an early start needs at least hysteresis's ``MIN_EARLY_START_SECONDS`` of it; where the sound
is not louder than the room, starts simply wait for ``on_windows`` as before.

It costs one extra tower run per window, and only for windows whose tail can change a
decision (:meth:`listener.detect.hysteresis.Hysteresis.wants_tail`: a trigger that is on,
or one about to start), so a day of ordinary background costs no more than before.
The threshold comparisons stay in hysteresis.py; this module only produces the scores.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np

from listener.detect.hysteresis import TailScore
from listener.detect.triggers import TriggerSet

#: a frame counts as sounding this far above the window's median frame level (room noise
#: frames of 50 ms stay within about 7 dB of it)
SOUNDING_DB = 10.0
FRAME_SECONDS = 0.05


def sounding_for(audio: np.ndarray, tail_samples: int, rate: int) -> float:
    """Seconds from the tail's first frame standing ``SOUNDING_DB`` above the window's
    median frame level to the tail's end: how long a sound louder than the room has been
    going on (at the start of a sound most of the window is still room). From the first
    loud frame rather than counting loud frames, so knocks with pauses count in full."""
    frame = max(1, round(FRAME_SECONDS * rate))
    n = audio.size // frame
    if n == 0:
        return 0.0
    x = np.asarray(audio[audio.size - n * frame:], np.float64).reshape(n, frame)
    db = 10.0 * np.log10(np.mean(x * x, axis=1) + 1e-20)
    floor = float(np.median(db))
    tail = db[-max(1, min(n, tail_samples // frame)):]
    loud = np.flatnonzero(tail >= floor + SOUNDING_DB)
    return 0.0 if loud.size == 0 else (tail.size - int(loud[0])) * frame / rate


class ClipEmbedder(Protocol):
    """A short clip -> L2-normalised embedding, padded as the model pads short input."""

    def embed_clip(self, audio: np.ndarray) -> np.ndarray: ...


class TailScorer:
    """Scores the tail of a window for the triggers that asked, one tower run per window."""

    def __init__(self, embedder: ClipEmbedder, rate: int) -> None:
        self.embedder = embedder
        self.rate = rate
        #: extra tower runs so far (what the finer time scale costs)
        self.runs = 0

    def scores(self, triggers: TriggerSet, audio: np.ndarray, wanted: Iterable[str]
               ) -> dict[str, TailScore]:
        """Tail scores of the triggers in ``wanted`` (no tower run when none is)."""
        names = list(wanted)
        if not names:
            return {}
        seconds = {t.name: t.settings.tail_seconds for t in triggers.specs}
        out: dict[str, TailScore] = {}
        # triggers with the same tail length share one run (normally all of them)
        for length in sorted({seconds[n] for n in names}):
            samples = max(1, round(length * self.rate))
            self.runs += 1
            emb = self.embedder.embed_clip(audio[-samples:])
            scored = triggers.score(triggers.similarities(emb))
            heard = sounding_for(audio, samples, self.rate)
            for n in names:
                if seconds[n] == length:
                    out[n] = TailScore(scored[n].score, scored[n].margin_ok, heard)
        return out
