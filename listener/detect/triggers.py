"""Trigger scoring: one audio embedding -> every trigger's score, match and margin.

A trigger's positives are its prompt embeddings (text tower, via the prompt bank) and
its example embeddings (the audio tower on the user's recordings, computed once).
Its score is the best cosine over positives; ``match`` names the winner (prompt
text or example file name). Look-alikes are its ``negatives`` plus the global
``background`` prompts: the relative score is ``score - best look-alike cosine``
and must reach ``margin`` (``margin_ok``). Without look-alikes the margin does not
apply. Triggers compete (``compete``, on by default): another trigger's prompt is a
look-alike too, so a trigger whose sound another trigger's prompt describes as well or
better does not fire on it. Only prompts compete with prompts (a text-audio cosine is
not comparable with an audio-audio one), so a trigger with examples only never does.
Whether a score is high enough is not decided here: thresholds belong to the
hysteresis (listener/detect/hysteresis.py).

All vectors sit in one matrix, so scoring every trigger costs one matrix-vector
product per window. The same product scores ``probes``: extra prompts that belong to
no trigger (`listener top --prompts`), so every row's similarity is available to
whoever wants to rank single prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from listener.detect.settings import TriggerSettings

RowKind = Literal["prompt", "example", "negative", "background", "probe"]


@dataclass(frozen=True)
class TriggerSpec:
    """What one trigger listens for, with its effective settings (plain data).

    Two specs are equal when the definition and settings are: a reload keeps the
    state of a trigger whose spec did not change. Whether it is enabled is not part of
    it: that belongs to the switch store (listener/service/switches.py).
    """

    name: str
    label: str
    settings: TriggerSettings
    prompts: tuple[str, ...] = ()
    examples: tuple[Path, ...] = ()
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    """One vector of the matrix: what it is, and whose (a trigger name, or "" for shared)."""

    label: str  # prompt text, or the example's file name
    kind: RowKind
    owner: str


@dataclass(frozen=True)
class TriggerScore:
    score: float
    match: str
    relative: float | None
    best_negative: str | None
    best_negative_score: float | None
    margin_ok: bool
    rival: str | None = None  # the competing trigger whose prompt is the best look-alike

    def details(self) -> dict[str, Any]:
        return {
            "best_negative_trigger": self.rival,
            "relative_score": None if self.relative is None else round(self.relative, 4),
            "best_negative": self.best_negative,
            "best_negative_score": (
                None if self.best_negative_score is None else round(self.best_negative_score, 4)
            ),
        }


SILENT = TriggerScore(0.0, "", None, None, None, False)


@dataclass(frozen=True)
class _Slices:
    spec: TriggerSpec
    pos: slice
    neg: slice
    rivals: np.ndarray  # row indices of the prompts of the triggers it competes with


class TriggerSet:
    """All triggers, with their embeddings stacked for one product per window."""

    def __init__(
        self,
        specs: Sequence[TriggerSpec],
        background: Sequence[str],
        embed_texts: Callable[[list[str]], np.ndarray],
        embed_example: Callable[[Path], np.ndarray],
        probes: Sequence[str] = (),
    ) -> None:
        self.specs = tuple(specs)
        self.background_prompts = tuple(background)
        texts = [s for t in specs for s in (*t.prompts, *t.negatives)]
        texts += [*background, *probes]
        unique = list(dict.fromkeys(texts))
        vectors = np.asarray(embed_texts(unique), np.float32) if unique else None
        text_emb = {s: vectors[i] for i, s in enumerate(unique)} if vectors is not None else {}
        vecs: list[np.ndarray] = []
        rows: list[Row] = []

        def add(vec: np.ndarray, row: Row) -> None:
            vecs.append(np.asarray(vec, np.float32).reshape(-1))
            rows.append(row)

        self._slices: list[_Slices] = []
        for t in specs:
            p0 = len(rows)
            for s in t.prompts:
                add(text_emb[s], Row(s, "prompt", t.name))
            for e in t.examples:
                add(embed_example(Path(e)), Row(Path(e).name, "example", t.name))
            p1 = len(rows)
            for s in t.negatives:
                add(text_emb[s], Row(s, "negative", t.name))
            self._slices.append(_Slices(t, slice(p0, p1), slice(p1, len(rows)),
                                        np.zeros(0, np.intp)))
        b0 = len(rows)
        for s in background:
            add(text_emb[s], Row(s, "background", ""))
        self.background = slice(b0, len(rows))
        for s in probes:
            add(text_emb[s], Row(s, "probe", ""))
        self.rows: tuple[Row, ...] = tuple(rows)
        self._slices = [_Slices(sl.spec, sl.pos, sl.neg, self._rivals(sl.spec))
                        for sl in self._slices]
        dim = vecs[0].shape[0] if vecs else 1
        self.matrix = np.stack(vecs) if vecs else np.zeros((0, dim), np.float32)

    def _rivals(self, spec: TriggerSpec) -> np.ndarray:
        """Rows of other triggers' prompts this trigger competes with (none when it opts
        out or has no prompt; a prompt it shares is not a rival)."""
        if not spec.settings.compete or not spec.prompts:
            return np.zeros(0, np.intp)
        own = set(spec.prompts)
        return np.array([i for i, r in enumerate(self.rows) if r.kind == "prompt"
                         and r.owner != spec.name and r.label not in own], np.intp)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.specs]

    def similarities(self, embedding: np.ndarray) -> np.ndarray:
        """Cosine of every row with one L2-normalised embedding [D] -> [rows]."""
        return self.matrix @ np.asarray(embedding, dtype=np.float32).reshape(-1)

    def score(self, sims: np.ndarray) -> dict[str, TriggerScore]:
        """Every trigger's score from the row similarities of one window."""
        bg = sims[self.background]
        bg_best = int(np.argmax(bg)) if bg.size else -1
        out: dict[str, TriggerScore] = {}
        for sl in self._slices:
            pos = sims[sl.pos]
            i = int(np.argmax(pos))
            score = float(pos[i])
            best_neg: str | None = None
            best_neg_score: float | None = None
            neg = sims[sl.neg]
            if neg.size:
                j = int(np.argmax(neg))
                best_neg, best_neg_score = self.rows[sl.neg.start + j].label, float(neg[j])
            if bg.size and (best_neg_score is None or float(bg[bg_best]) > best_neg_score):
                best_neg = self.rows[self.background.start + bg_best].label
                best_neg_score = float(bg[bg_best])
            rival: str | None = None
            if sl.rivals.size:
                k = int(sl.rivals[int(np.argmax(sims[sl.rivals]))])
                if best_neg_score is None or float(sims[k]) > best_neg_score:
                    best_neg, best_neg_score = self.rows[k].label, float(sims[k])
                    rival = self.rows[k].owner
            relative = None if best_neg_score is None else score - best_neg_score
            out[sl.spec.name] = TriggerScore(
                score=score,
                match=self.rows[sl.pos.start + i].label,
                relative=relative,
                best_negative=best_neg,
                best_negative_score=best_neg_score,
                margin_ok=relative is None or relative >= sl.spec.settings.margin - 1e-9,
                rival=rival,
            )
        return out

    def silence(self) -> dict[str, TriggerScore]:
        """Scores of a gated (too quiet) window: 0 everywhere."""
        return {t.name: SILENT for t in self.specs}
