"""Calibrate thresholds to a false-alarm budget from ordinary background audio.

The user records (or points at) audio that contains none of the target sounds.
Every window's raw per-trigger score is collected; any start the real
:class:`~listener.detect.hysteresis.Hysteresis` would make on that audio is a false
start. For candidate ``on_windows`` values we binary-search the lowest
``on_threshold`` whose simulated false starts fit the budget (``R`` per day,
scaled to the observed duration), pick the candidate that loses the least
sensitivity (threshold plus a small price per extra confirmation window, which
costs a hop of latency and misses short sounds), and add a safety margin. A
candidate must also not leave a false start stuck on (a threshold under the
background would start once and never end, which counts as few starts but
blinds the trigger), and off_threshold is kept at or above the background's p90
so a false start ends when the background returns.

Statistics are kept honest: when the budget for the observed span is below one
start (1/day but 10 minutes recorded), zero observed false starts prove nothing
about the daily rate. Then the proposal sits a margin above the loudest
background score and the report says how much audio a real statement needs
(rule of three: 0 events in T bounds the rate below 3/T with 95% confidence).

The budget and rate arithmetic is :mod:`listener.tuning.budget`, the background's
scores come from :mod:`listener.tuning.background`, the printed report
:mod:`listener.tuning.report`; ``--write`` puts the proposal into the config file
through :mod:`listener.config.writeback`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from listener.detect.hysteresis import Hysteresis
from listener.detect.settings import TriggerSettings
from listener.errors import UserError
from listener.tuning.budget import DAY, Budget, Distribution, rate_bound, span_text

GRID = 0.005  # threshold resolution of proposals
WINDOW_PRICE = 0.01  # sensitivity cost of one extra confirmation window, in score units
MIN_BAND = 0.02  # smallest on-off hysteresis band the background floor may squeeze to
STUCK_SECONDS = 30.0  # a false start that stays on longer than this blocks real detections


@dataclass(frozen=True)
class Stream:
    """One continuous background recording: window times and one trigger's scores."""

    starts: np.ndarray  # window start (s)
    ends: np.ndarray  # window end (s)
    scores: np.ndarray
    gated: int = 0  # windows below audio.min_level_dbfs: not scored (their score is 0)


@dataclass(frozen=True)
class Proposal:
    """One trigger's proposed settings and the evidence for them (what the report shows)."""

    trigger: str
    current: TriggerSettings
    proposed: TriggerSettings
    distribution: Distribution
    observed_seconds: float
    budget_starts: float  # R * observed days (may be < 1)
    allowed_starts: int  # floor(budget)
    starts_current: int  # false starts the current settings made on this audio
    starts_proposed: int  # false starts the proposal makes on this audio
    rate_bound_per_day: float  # 95% upper bound on the proposal's daily rate from this audio
    caveat: str | None
    gated_windows: int = 0  # of distribution.windows, below audio.min_level_dbfs (unscored)


def simulate(stream: Stream, settings: TriggerSettings) -> tuple[int, int]:
    """(false starts, windows spent on) of the detector's hysteresis on one stream.

    The margin against look-alikes is assumed satisfied (score lines carry no relative
    score), which can only over-count false starts: the safe side.
    """
    h = Hysteresis(settings)
    starts = active = 0
    for a, b, s in zip(
        stream.starts.tolist(), stream.ends.tolist(), stream.scores.tolist(), strict=True
    ):
        if not math.isfinite(s):
            s = 0.0
        tr = h.update(a, b, s, margin_ok=True)
        if tr is not None and tr.kind == "start":
            starts += 1
        active += h.active
    return starts, active


def count_starts(stream: Stream, settings: TriggerSettings) -> int:
    """False starts the detector's hysteresis makes on one stream."""
    return simulate(stream, settings)[0]


def total_starts(streams: Sequence[Stream], settings: TriggerSettings) -> int:
    """False starts over all streams (each replayed from a fresh hysteresis)."""
    return sum(count_starts(st, settings) for st in streams)


def _fits(streams: Sequence[Stream], settings: TriggerSettings, allowed: int, hop: float) -> bool:
    """At most ``allowed`` false starts, and none of them stuck on.

    Counting starts alone would reward a threshold below the background: the trigger
    turns on once and never ends, so the real sound can no longer start it. Each false
    start may therefore stay on for at most STUCK_SECONDS (or 3 x its off_seconds).
    """
    starts = active = 0
    for st in streams:
        n, w = simulate(st, settings)
        starts += n
        active += w
    per_start = max(STUCK_SECONDS, 3 * (settings.off_seconds + hop))
    return starts <= allowed and active * hop <= allowed * per_start + 1e-9


def _q(x: float) -> float:
    """Round to the proposal grid (up, so a threshold never slides below what was tested)."""
    return round(math.ceil(x / GRID - 1e-6) * GRID, 3)


def _with(
    settings: TriggerSettings, on: float, gap: float, k: int, off_floor: float = 0.0
) -> TriggerSettings:
    """Settings with ``on``; off keeps the user's gap below on, but not below ``off_floor``
    (the background's p90: a false start then ends as soon as the background returns),
    while keeping a band of at least MIN_BAND (or the user's gap, if smaller)."""
    on = min(1.0, max(0.0, round(on, 3)))
    off = max(0.0, round(on - gap, 3))
    if off_floor > off:
        off = max(off, min(_q(off_floor), round(on - min(gap, MIN_BAND), 3)))
    return replace(settings, on_threshold=on, off_threshold=off, on_windows=k)


def _lowest_on(
    streams: Sequence[Stream], base: TriggerSettings, gap: float, k: int, allowed: int,
    lo: float, hop: float, off_floor: float,
) -> float | None:
    """Lowest grid threshold >= lo that fits the budget (binary search; fitting is
    monotone in the threshold: a higher one never adds starts or on-time)."""
    grid = np.round(np.arange(_q(lo), 1.0 + GRID / 2, GRID), 3)

    def ok(i: int) -> bool:
        return _fits(streams, _with(base, float(grid[i]), gap, k, off_floor), allowed, hop)

    if grid.size == 0 or not ok(grid.size - 1):
        return None
    if ok(0):
        return float(grid[0])
    lo_i, hi_i = 0, grid.size - 1  # invariant: grid[hi_i] fits, grid[lo_i] does not
    while hi_i - lo_i > 1:
        mid = (lo_i + hi_i) // 2
        if ok(mid):
            hi_i = mid
        else:
            lo_i = mid
    return float(grid[hi_i])


def _cheapest_fit(
    streams: Sequence[Stream], current: TriggerSettings, gap: float, allowed: int, hop: float,
    dist: Distribution, max_on_windows: int,
) -> tuple[float, int]:
    """(on_threshold, on_windows) that fits the budget at the least sensitivity cost.

    Each candidate on_windows gets its lowest fitting threshold; the cost is that
    threshold plus WINDOW_PRICE per extra window, and a tie goes to the user's own
    on_windows. If nothing fits (impossible for cosine <= 1, kept for safety): (1.0, max).
    """
    lo = max(0.0, dist.p50)
    best: tuple[float, float, int] | None = None  # (cost, on, k)
    ks = sorted({*range(1, max(max_on_windows, 1) + 1), current.on_windows})
    for k in ks:
        on = _lowest_on(streams, current, gap, k, allowed, lo, hop, dist.p90)
        if on is None:
            continue
        cost = on + WINDOW_PRICE * (k - 1)
        if best is None or cost < best[0] - 1e-9 or (
            abs(cost - best[0]) < 1e-9 and k == current.on_windows
        ):
            best = (cost, on, k)
    if best is None:
        return 1.0, max(ks)
    return best[1], best[2]


def _above_background(
    on: float, k: int, current: TriggerSettings, dist: Distribution, margin: float,
    rate_per_day: float, budget: Budget,
) -> tuple[float, int, str]:
    """A budget under one start: zero false starts prove nothing, so sit a margin above the
    loudest background score, and say how much audio a real statement needs."""
    above_max = _q(dist.max + max(margin, 0.05))
    if above_max > on:
        # above every background score the window count no longer matters: keep the
        # user's on_windows (no needless latency)
        on, k = above_max, current.on_windows
    need_days = 3.0 / rate_per_day if rate_per_day > 0 else math.inf
    caveat = (
        f"only {span_text(budget.observed_seconds)} of background: at {rate_per_day:g} false "
        f"start(s)/day the budget for that span is {budget.starts:.3g} starts, so this audio "
        f"cannot show the rate; the threshold is set {max(margin, 0.05):.2f} above the highest "
        f"background score. Record at least {span_text(need_days * DAY)} for a 95%-confident "
        "proposal."
    )
    return on, k, caveat


def _never_lower(on: float, k: int, current: TriggerSettings) -> tuple[float, int, str | None]:
    """Background audio can only show how HIGH a threshold must be: it holds none of the
    target sounds, so it cannot show that a lower one still tells them apart from
    look-alikes it did not contain. Never lower the user's threshold from it."""
    if on >= current.on_threshold:
        return on, k, None
    note = (
        f"the background never came near the current on_threshold {current.on_threshold:g} "
        f"(it would allow {on:g}); kept as is: lower it only after `listener scan` of "
        "recordings that contain the target sound"
    )
    return current.on_threshold, current.on_windows, note


def propose(
    trigger: str,
    streams: Sequence[Stream],
    current: TriggerSettings,
    hop_seconds: float,
    rate_per_day: float = 1.0,
    margin: float = 0.02,
    max_on_windows: int = 3,
    min_level_dbfs: float | None = None,
) -> Proposal:
    """Propose on/off thresholds and on_windows for one trigger from background streams.

    The cheapest (threshold, on_windows) that fits the budget, plus ``margin``; above the
    loudest background score when the span is too short to show the rate; never below
    the user's own threshold; at most 1. Each adjustment leaves its reason in the caveat.
    """
    if rate_per_day < 0:
        raise UserError(f"--false-alarms-per-day must be 0 or more, got {rate_per_day}")
    all_scores = (
        np.concatenate([st.scores for st in streams]) if streams else np.zeros(0, np.float64)
    )
    dist = Distribution.of(all_scores)
    budget = Budget.of(sum(len(st.scores) for st in streams), hop_seconds, rate_per_day)
    gap = max(0.0, current.on_threshold - current.off_threshold)
    starts_current = total_starts(streams, current)
    if dist.windows == 0:
        raise UserError(f"no background windows were scored for trigger '{trigger}'")
    gated = min(sum(st.gated for st in streams), dist.windows)
    gate = f"audio.min_level_dbfs ({min_level_dbfs:g} dBFS)" if min_level_dbfs is not None \
        else "audio.min_level_dbfs"
    if gated == dist.windows:
        return _all_gated(trigger, current, dist, budget, starts_current, gate)

    on, k = _cheapest_fit(streams, current, gap, budget.allowed, hop_seconds, dist,
                          max_on_windows)
    on = _q(on + margin)
    notes: list[str | None] = []
    if budget.starts < 1.0:
        on, k, short = _above_background(on, k, current, dist, margin, rate_per_day, budget)
        notes.append(short)
    on, k, kept = _never_lower(on, k, current)
    notes.append(kept)
    if gated:
        notes.append(f"{gated} of {dist.windows} windows were below {gate} and not scored "
                     "(counted as score 0).")
    if on > 1.0:
        on = 1.0
        notes.append(
            "background scores reach the top of the scale; the prompt cannot be separated"
        )
    proposed = _with(current, on, gap, k, dist.p90)
    starts_proposed = total_starts(streams, proposed)
    return _proposal(trigger, current, proposed, dist, budget, (starts_current, starts_proposed),
                     " ".join(n for n in notes if n) or None, gated)


def _proposal(trigger: str, current: TriggerSettings, proposed: TriggerSettings,
              dist: Distribution, budget: Budget, starts: tuple[int, int],
              caveat: str | None, gated: int) -> Proposal:
    """A Proposal from its parts; ``starts``: (with the current, with the proposed)."""
    return Proposal(
        trigger=trigger, current=current, proposed=proposed, distribution=dist,
        observed_seconds=budget.observed_seconds, budget_starts=budget.starts,
        allowed_starts=budget.allowed, starts_current=starts[0], starts_proposed=starts[1],
        rate_bound_per_day=rate_bound(starts[1], budget.observed_seconds),
        caveat=caveat, gated_windows=gated,
    )


def _all_gated(trigger: str, current: TriggerSettings, dist: Distribution, budget: Budget,
               starts_current: int, gate: str) -> Proposal:
    """Every window was below the level gate: nothing was scored, so the audio says nothing
    about thresholds; the current settings are kept and the caveat says why."""
    return _proposal(trigger, current, current, dist, budget, (starts_current, starts_current),
                     f"all windows were below {gate}, so none was scored and this audio says "
                     "nothing about the thresholds (the current ones are kept): record "
                     "ordinary background at its usual level, or lower min_level_dbfs",
                     dist.windows)


def calibrate(
    config,
    streams: dict[str, list[Stream]],
    rate_per_day: float = 1.0,
    margin: float = 0.02,
) -> list[Proposal]:
    """One Proposal per configured trigger, from its background streams."""
    return [
        propose(
            t.name,
            streams.get(t.name, []),
            config.trigger_settings(t),
            config.audio.hop_seconds,
            rate_per_day=rate_per_day,
            margin=margin,
            min_level_dbfs=config.audio.min_level_dbfs,
        )
        for t in config.triggers
    ]
