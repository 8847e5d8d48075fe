"""The finer time scale: the newest seconds of a window scored alone (the *tail*).

Why: the 10-s window is what makes CLAP recognise a sound, but it keeps hearing a sound
for up to 10 s after it stopped, so a trigger decided on windows alone turns off about
a window late. The tail (``tail_seconds``, 2 s by default) is cut from the end of the
same window and padded to the model's input length the way the model pads short clips
(``repeatpad`` for unfused CLAP: listener/model/logmel.py ``LogMel.prepare``), then scored
against the same trigger rows. A tail below ``off_threshold`` says the sound was absent
for all of those seconds, which dates its end to within a hop; a tail at
``on_threshold`` corroborates a start before ``on_windows`` windows have passed.

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
            clip = audio[-max(1, round(length * self.rate)):]
            self.runs += 1
            scored = triggers.score(triggers.similarities(self.embedder.embed_clip(clip)))
            for n in names:
                if seconds[n] == length:
                    out[n] = TailScore(scored[n].score, scored[n].margin_ok)
        return out
