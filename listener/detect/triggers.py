"""Trigger scoring: one audio embedding -> every trigger's score, match and margin.

A trigger's positives are its prompt embeddings (text tower, via PromptBank) and
its example embeddings (the audio tower on the user's recordings, computed once).
Its score is the best cosine over positives; ``match`` names the winner (prompt
text or example file name). Look-alikes are its ``negatives`` plus the global
``background`` prompts: the relative score is ``score - best look-alike cosine``
and must reach ``margin`` for the trigger to qualify. Without look-alikes the
margin does not apply. All vectors sit in one matrix, so scoring every trigger
costs one matrix-vector product per window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from listener.config.schema import TriggerConfig, TriggerDefaults
from listener.detect.settings import TriggerSettings
from listener.errors import ConfigError

MIN_EXAMPLE_SECONDS = 0.5


@dataclass(frozen=True)
class TriggerScore:
    score: float
    match: str
    relative: float | None
    best_negative: str | None
    best_negative_score: float | None
    qualifies: bool

    def details(self) -> dict[str, Any]:
        return {
            "relative_score": None if self.relative is None else round(self.relative, 4),
            "best_negative": self.best_negative,
            "best_negative_score": (
                None if self.best_negative_score is None else round(self.best_negative_score, 4)
            ),
        }


@dataclass
class Trigger:
    config: TriggerConfig
    settings: TriggerSettings
    pos: slice
    neg: slice  # this trigger's negatives (background is shared)
    labels: list[str]

    @property
    def name(self) -> str:
        return self.config.name

    def signature(self) -> str:
        """Identity for reloads: same definition and settings keep hysteresis state."""
        return self.config.model_dump_json(exclude={"enabled"}) + repr(asdict(self.settings))


class TriggerSet:
    """All triggers of a config, with their embeddings stacked for one product per window."""

    def __init__(
        self,
        triggers: list[TriggerConfig],
        defaults: TriggerDefaults,
        background: list[str],
        embed_texts: Callable[[list[str]], np.ndarray],
        embed_example: Callable[[Path], np.ndarray],
    ) -> None:
        texts: list[str] = []
        for t in triggers:
            texts += t.prompts + t.negatives
        texts += background
        unique = list(dict.fromkeys(texts))
        text_emb = (
            {s: v for s, v in zip(unique, _rows(embed_texts(unique)), strict=True)}
            if unique else {}
        )
        rows: list[np.ndarray] = []
        labels: list[str] = []
        self.triggers: list[Trigger] = []
        for t in triggers:
            settings = t.settings(defaults)
            if settings.off_threshold > settings.on_threshold:
                raise ConfigError(
                    f"trigger '{t.name}': off_threshold ({settings.off_threshold}) must not "
                    f"exceed on_threshold ({settings.on_threshold})"
                )
            p0 = len(rows)
            for s in t.prompts:
                rows.append(text_emb[s])
                labels.append(s)
            for e in t.examples:
                rows.append(embed_example(Path(e)))
                labels.append(Path(e).name)
            p1 = len(rows)
            for s in t.negatives:
                rows.append(text_emb[s])
                labels.append(s)
            self.triggers.append(Trigger(t, settings, slice(p0, p1), slice(p1, len(rows)),
                                         labels))
        b0 = len(rows)
        for s in background:
            rows.append(text_emb[s])
            labels.append(s)
        self.background = slice(b0, len(rows))
        self.labels = labels
        dim = rows[0].shape[0] if rows else 1
        self.matrix = (np.stack(rows).astype(np.float32) if rows
                       else np.zeros((0, dim), np.float32))

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.triggers]

    def score(self, embedding: np.ndarray) -> dict[str, TriggerScore]:
        """Scores of every trigger for one L2-normalised embedding [D]."""
        sims = self.matrix @ np.asarray(embedding, dtype=np.float32).reshape(-1)
        bg = sims[self.background]
        bg_best = int(np.argmax(bg)) if bg.size else -1
        out: dict[str, TriggerScore] = {}
        for t in self.triggers:
            pos = sims[t.pos]
            i = int(np.argmax(pos))
            score = float(pos[i])
            neg = sims[t.neg]
            best_neg: str | None = None
            best_neg_score: float | None = None
            if neg.size:
                j = int(np.argmax(neg))
                best_neg, best_neg_score = self.labels[t.neg.start + j], float(neg[j])
            if bg.size and (best_neg_score is None or float(bg[bg_best]) > best_neg_score):
                best_neg = self.labels[self.background.start + bg_best]
                best_neg_score = float(bg[bg_best])
            relative = None if best_neg_score is None else score - best_neg_score
            margin_ok = relative is None or relative >= t.settings.margin - 1e-9
            out[t.name] = TriggerScore(
                score=score,
                match=self.labels[t.pos.start + i],
                relative=relative,
                best_negative=best_neg,
                best_negative_score=best_neg_score,
                qualifies=margin_ok and score >= t.settings.on_threshold,
            )
        return out

    def silence(self) -> dict[str, TriggerScore]:
        """Scores of a gated (too quiet) window: 0 everywhere."""
        return {
            t.name: TriggerScore(0.0, "", None, None, None, False) for t in self.triggers
        }


def _rows(m: np.ndarray) -> list[np.ndarray]:
    m = np.asarray(m, dtype=np.float32)
    return [m[i] for i in range(m.shape[0])]


def check_example_length(path: Path, samples: np.ndarray, rate: int) -> None:
    secs = len(samples) / rate
    if secs < MIN_EXAMPLE_SECONDS:
        raise ConfigError(
            f"example file {path} is only {secs:.2f} s long: examples must be at least "
            f"{MIN_EXAMPLE_SECONDS} s of the sound (record one with 'listener enroll NAME "
            "--seconds 3' or cut one with 'listener enroll NAME --from FILE --start S --end E')"
        )
