"""How close each trigger comes to firing on the other triggers' sounds (`calibrate`).

Why: `calibrate` hears only background, so it cannot see that "birds chirping" scores
0.56 on a siren against its 0.60 threshold. The triggers' own example recordings are
recordings of the other triggers' sounds, already embedded in the trigger set, so
scoring every example against every trigger costs one matrix product and no audio.
For each trigger the report names the other trigger's example that comes closest,
its score, how far below (or above) ``on_threshold`` it is, and whether a window
like it would start the trigger (margin and competition included, decided by the
real hysteresis, the one place thresholds are compared).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from listener.detect.hysteresis import Hysteresis
from listener.detect.settings import TriggerSettings
from listener.detect.triggers import TriggerSet


@dataclass(frozen=True)
class CrossScore:
    """Trigger ``trigger`` scored on one example recording of trigger ``sound_of``."""

    trigger: str
    sound_of: str
    example: str
    score: float
    on_threshold: float
    would_start: bool
    blocked_by: str | None  # the look-alike that holds it back (a negative or a rival)


def _would_start(settings: TriggerSettings, score: float, margin_ok: bool) -> bool:
    """Whether one window scoring like this starts the trigger (no cooldown, one window)."""
    h = Hysteresis(replace(settings, on_windows=1, cooldown_seconds=0.0, tail_seconds=0.0))
    return h.update(0.0, 10.0, score, margin_ok) is not None


def cross_scores(ts: TriggerSet, settings: Mapping[str, TriggerSettings]) -> list[CrossScore]:
    """Every trigger on every other trigger's examples, closest first per trigger."""
    out: list[CrossScore] = []
    for i, row in enumerate(ts.rows):
        if row.kind != "example":
            continue
        scores = ts.score(ts.similarities(ts.matrix[i]))
        for name, sc in scores.items():
            if name == row.owner or name not in settings:
                continue
            st = settings[name]
            out.append(CrossScore(
                name, row.owner, row.label, sc.score, st.on_threshold,
                _would_start(st, sc.score, sc.margin_ok),
                None if sc.margin_ok else sc.best_negative))
    out.sort(key=lambda c: (c.trigger, c.on_threshold - c.score))
    return out


def format_crosstalk(rows: list[CrossScore]) -> str:
    """The closest other sound per trigger, as the `calibrate` report prints it."""
    if not rows:
        return ""
    lines = ["", "Other triggers' sounds (their example recordings), closest per trigger:"]
    seen: set[str] = set()
    for c in rows:
        if c.trigger in seen:
            continue
        seen.add(c.trigger)
        gap = c.on_threshold - c.score
        where = f"{gap:.3f} below on_threshold" if gap > 0 else f"{-gap:.3f} ABOVE on_threshold"
        verdict = ("would START on it" if c.would_start else
                   f"held back by '{c.blocked_by}'" if c.blocked_by else "would not start")
        lines.append(f"  {c.trigger}: {c.sound_of}'s {c.example} scores {c.score:.3f} "
                     f"({where} {c.on_threshold:.3f}); {verdict}")
    if any(c.would_start for c in rows):
        lines.append("  A trigger that would start on another's sound needs a higher "
                     "on_threshold, that sound's words in its negatives, or compete: true.")
    return "\n".join(lines) + "\n"


def crosstalk_report(cfg: Any, settings: Mapping[str, TriggerSettings]) -> str:
    """The report for a loaded config (empty when no trigger has example recordings):
    loads the model and embeds the examples, as the daemon would."""
    if not any(t.examples for t in cfg.triggers):
        return ""
    from listener.service.assemble import build_trigger_set, load_model

    return format_crosstalk(cross_scores(build_trigger_set(cfg, load_model(cfg)), settings))
