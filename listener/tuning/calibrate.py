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

The config edit (:func:`write_thresholds`) changes only the bytes of the values
it sets: ruamel.yaml's round-trip loader locates every key and value, and the
text is spliced at those positions, so comments, order, quoting, indentation
and unrelated keys stay byte-for-byte (a full ruamel re-dump can re-flow
indentation and long lines).
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from listener.detect.hysteresis import Hysteresis
from listener.detect.settings import TriggerSettings
from listener.errors import ConfigError, UserError

DAY = 86400.0
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


@dataclass(frozen=True)
class Distribution:
    windows: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, scores: np.ndarray) -> Distribution:
        s = np.asarray(scores, dtype=np.float64)
        s = s[np.isfinite(s)]
        if s.size == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        p50, p90, p99 = np.percentile(s, [50, 90, 99])
        return cls(int(s.size), float(p50), float(p90), float(p99), float(s.max()))


@dataclass(frozen=True)
class Proposal:
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


def propose(
    trigger: str,
    streams: Sequence[Stream],
    current: TriggerSettings,
    hop_seconds: float,
    rate_per_day: float = 1.0,
    margin: float = 0.02,
    max_on_windows: int = 3,
) -> Proposal:
    """Propose on/off thresholds and on_windows for one trigger from background streams."""
    if rate_per_day < 0:
        raise UserError(f"--false-alarms-per-day must be 0 or more, got {rate_per_day}")
    all_scores = (
        np.concatenate([st.scores for st in streams]) if streams else np.zeros(0, np.float64)
    )
    dist = Distribution.of(all_scores)
    observed = float(sum(len(st.scores) for st in streams)) * hop_seconds
    budget = rate_per_day * observed / DAY
    allowed = math.floor(budget + 1e-9)
    gap = max(0.0, current.on_threshold - current.off_threshold)
    starts_current = total_starts(streams, current)
    if dist.windows == 0:
        raise UserError(f"no background windows were scored for trigger '{trigger}'")

    lo = max(0.0, dist.p50)
    best: tuple[float, float, int] | None = None  # (cost, on, k)
    ks = sorted({*range(1, max(max_on_windows, 1) + 1), current.on_windows})
    for k in ks:
        on = _lowest_on(streams, current, gap, k, allowed, lo, hop_seconds, dist.p90)
        if on is None:
            continue
        cost = on + WINDOW_PRICE * (k - 1)
        if best is None or cost < best[0] - 1e-9 or (
            abs(cost - best[0]) < 1e-9 and k == current.on_windows
        ):
            best = (cost, on, k)
    caveat = None
    if best is None:  # not even 1.0 fits (impossible for cosine <= 1, kept for safety)
        on, k = 1.0, max(ks)
    else:
        _, on, k = best
    on = _q(on + margin)
    short = budget < 1.0
    if short:
        above_max = _q(dist.max + max(margin, 0.05))
        if above_max > on:
            # above every background score the window count no longer matters: keep the
            # user's on_windows (no needless latency)
            on, k = above_max, current.on_windows
        need_days = 3.0 / rate_per_day if rate_per_day > 0 else math.inf
        caveat = (
            f"only {_span(observed)} of background: at {rate_per_day:g} false start(s)/day "
            f"the budget for that span is {budget:.3g} starts, so this audio cannot show the "
            f"rate; the threshold is set {max(margin, 0.05):.2f} above the highest background "
            f"score. Record at least {_span(need_days * DAY)} for a 95%-confident proposal."
        )
    if on < current.on_threshold:
        # Background audio can only show how HIGH a threshold must be: it holds none of the
        # target sounds, so it cannot show that a lower one still tells them apart from
        # look-alikes it did not contain. Never lower the user's threshold from it.
        lower = on
        on, k = current.on_threshold, current.on_windows
        note = (
            f"the background never came near the current on_threshold {current.on_threshold:g} "
            f"(it would allow {lower:g}); kept as is: lower it only after `listener scan` of "
            "recordings that contain the target sound"
        )
        caveat = f"{caveat} {note}" if caveat else note
    if on > 1.0:
        on = 1.0
        extra = "background scores reach the top of the scale; the prompt cannot be separated"
        caveat = f"{caveat} {extra}" if caveat else extra
    proposed = _with(current, on, gap, k, dist.p90)
    starts_proposed = total_starts(streams, proposed)
    bound = _rate_bound(starts_proposed, observed)
    return Proposal(
        trigger=trigger,
        current=current,
        proposed=proposed,
        distribution=dist,
        observed_seconds=observed,
        budget_starts=budget,
        allowed_starts=allowed,
        starts_current=starts_current,
        starts_proposed=starts_proposed,
        rate_bound_per_day=bound,
        caveat=caveat,
    )


def _rate_bound(events: int, seconds: float) -> float:
    """95% upper bound on a Poisson rate per day (exact for 0: rule of three; else approx)."""
    if seconds <= 0:
        return math.inf
    days = seconds / DAY
    if events == 0:
        return 3.0 / days
    # Wilson-Hilferty approximation of the chi-square quantile for the upper bound
    k = events + 1
    z = 1.6449
    upper = k * (1 - 1 / (9 * k) + z / (3 * math.sqrt(k))) ** 3
    return upper / days


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * DAY:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY:.1f} days"


# --- report -----------------------------------------------------------------------------


def format_report(proposals: Sequence[Proposal], rate_per_day: float) -> str:
    """The human table plus the YAML snippet to paste (or to --write)."""
    if not proposals:
        return "no triggers to calibrate\n"
    obs = proposals[0].observed_seconds
    out = io.StringIO()
    out.write(
        f"background observed: {_span(obs)} ({proposals[0].distribution.windows} windows); "
        f"budget {rate_per_day:g} false start(s)/day = {proposals[0].budget_starts:.3g} "
        f"over this span\n\n"
    )
    head = (
        f"{'trigger':<20} {'p50':>6} {'p90':>6} {'p99':>6} {'max':>6} | "
        f"{'now on/off/k':>16} {'starts':>6} | {'proposed on/off/k':>17} {'starts':>6} "
        f"{'<=/day(95%)':>11}"
    )
    out.write(head + "\n" + "-" * len(head) + "\n")
    for p in proposals:
        d, c, n = p.distribution, p.current, p.proposed
        out.write(
            f"{p.trigger[:20]:<20} {d.p50:6.3f} {d.p90:6.3f} {d.p99:6.3f} {d.max:6.3f} | "
            f"{f'{c.on_threshold:.3f}/{c.off_threshold:.3f}/{c.on_windows}':>16} "
            f"{p.starts_current:>6} | "
            f"{f'{n.on_threshold:.3f}/{n.off_threshold:.3f}/{n.on_windows}':>17} "
            f"{p.starts_proposed:>6} {_fmt_rate(p.rate_bound_per_day):>11}\n"
        )
    caveats = [p for p in proposals if p.caveat]
    if caveats:
        out.write("\n")
        seen: set[str] = set()
        for p in caveats:
            assert p.caveat is not None
            if p.caveat in seen:
                continue
            seen.add(p.caveat)
            out.write(f"caveat ({p.trigger}): {p.caveat}\n")
    out.write("\nproposed settings (paste into the triggers of your config, or rerun with "
              "--write):\n\n")
    out.write(yaml_snippet(proposals))
    return out.getvalue()


def _fmt_rate(r: float) -> str:
    if not math.isfinite(r):
        return "inf"
    return f"{r:.0f}" if r >= 100 else f"{r:.3g}"


def yaml_snippet(proposals: Sequence[Proposal]) -> str:
    lines = ["triggers:"]
    for p in proposals:
        n = p.proposed
        lines += [
            f"  - name: {p.trigger}",
            f"    on_threshold: {_num(n.on_threshold)}",
            f"    off_threshold: {_num(n.off_threshold)}",
            f"    on_windows: {n.on_windows}",
        ]
    return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    s = f"{x:.3f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


# --- config write -----------------------------------------------------------------------

_TOKEN = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s,\]}#]+)""")
KEYS = ("on_threshold", "off_threshold", "on_windows")


def _offsets(text: str) -> list[int]:
    """Offset of the first character of each line (lines end at '\\n', as ruamel counts)."""
    return [0] + [m.end() for m in re.finditer("\n", text)]


def apply_thresholds(text: str, values: dict[str, dict[str, float | int]], where: str) -> str:
    """Return ``text`` with ``triggers[name].key = value`` set for each given value.

    Existing keys get only their value's bytes replaced; missing keys are inserted
    as new lines right after the trigger's ``name:`` line, at the mapping's indentation.
    Everything else stays byte-for-byte.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    root = YAML(typ="rt").load(io.StringIO(text))
    triggers = root.get("triggers") if isinstance(root, CommentedMap) else None
    if triggers is None:
        raise ConfigError(f"{where}: has no 'triggers' section to write thresholds into")
    by_name = {
        str(t.get("name")): t for t in triggers if isinstance(t, CommentedMap) and "name" in t
    }
    line_start = _offsets(text)
    replacements: list[tuple[int, int, str]] = []  # (start, end, new text)
    for name, kv in values.items():
        t = by_name.get(name)
        if t is None:
            raise ConfigError(f"{where}: no trigger named '{name}' under 'triggers'")
        if t.fa.flow_style():
            line = t.lc.line + 1
            raise ConfigError(
                f"{where}:{line} triggers '{name}' is written in flow style {{...}}; "
                "rewrite it as a block mapping (one key per line) or paste the proposed "
                "values by hand"
            )
        missing: list[str] = []
        for key, val in kv.items():
            new = str(val) if isinstance(val, int) else _num(float(val))
            if key in t:
                vline, vcol = t.lc.value(key)
                start = line_start[vline] + vcol
                m = _TOKEN.match(text, start)
                if m is None or text[start:start + 1] in ("|", ">", "&", "*", "!"):
                    raise ConfigError(
                        f"{where}:{vline + 1} triggers '{name}'.{key}: cannot edit this value "
                        "form in place; write a plain number there"
                    )
                replacements.append((m.start(), m.end(), new))
            else:
                missing.append(f"{key}: {new}")
        if missing:
            kline, kcol = t.lc.key("name")
            insert_at = line_start[kline + 1] if kline + 1 < len(line_start) else len(text)
            nl = "\r\n" if text[line_start[kline]:insert_at].endswith("\r\n") else "\n"
            prefix = "" if text[:insert_at].endswith(("\n", "\r")) or not text else nl
            block = prefix + "".join(" " * kcol + item + nl for item in missing)
            replacements.append((insert_at, insert_at, block))
    out = text
    for start, end, new in sorted(replacements, key=lambda r: (r[0], r[1]), reverse=True):
        out = out[:start] + new + out[end:]
    return out


def write_thresholds(path: Path, proposals: Sequence[Proposal], now: float | None = None) -> Path:
    """Back the config up to ``<path>.bak-<UTC timestamp>``, then write it in place.

    The new text is validated (parsed with the project's loader) before anything is
    replaced; the replacement is atomic (temp file + rename) and keeps the file mode.
    Returns the backup path.
    """
    from listener.config.loader import parse_config

    text = path.read_bytes().decode("utf-8")  # keep CRLF line ends as they are
    values = {
        p.trigger: {
            "on_threshold": p.proposed.on_threshold,
            "off_threshold": p.proposed.off_threshold,
            "on_windows": p.proposed.on_windows,
        }
        for p in proposals
    }
    new_text = apply_thresholds(text, values, str(path))
    parse_config(new_text, where=str(path), base=path.resolve().parent, check_files=False)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    backup = path.with_name(f"{path.name}.bak-{stamp}")
    n = 1
    while backup.exists():
        backup = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        n += 1
    shutil.copy2(path, backup)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(new_text)
        f.flush()
        os.fsync(f.fileno())
    shutil.copymode(path, tmp)
    os.replace(tmp, path)
    return backup


# --- collecting background scores through the real engine -------------------------------


def streams_from_recording(rec, names: Sequence[str]) -> dict[str, Stream]:
    """Per-trigger Streams from one Recording (one continuous source)."""
    starts = np.array([ln.window_start for ln in rec.lines], dtype=np.float64)
    ends = np.array([ln.window_end for ln in rec.lines], dtype=np.float64)
    return {n: Stream(starts, ends, rec.scores(n)) for n in names}


def collect(
    config,
    files: Sequence[str | Path] = (),
    seconds: float | None = None,
    stop=None,
    on_progress=None,
) -> dict[str, list[Stream]]:
    """Score background audio through the Pipeline; returns per-trigger streams.

    ``files``: each file is its own stream (no window spans two files); every file is
    opened (checked) before the model loads. ``seconds``: the configured live source
    (the microphone unless the config says stdin), stopped once ``seconds`` of audio
    have been scored. Hysteresis runs as usual inside the detector but is irrelevant:
    only raw scores are kept, and clips are switched off so calibration writes nothing.
    """
    import threading

    from listener.audio.sources import FileSource
    from listener.config.schema import SourceConfig
    from listener.service.assemble import build_pipeline, load_model, require_triggers
    from listener.tuning.recorder import ScoreRecorder

    require_triggers(config, None)
    names = [t.name for t in config.triggers]
    stop = stop or threading.Event()
    cfg = config.model_copy(deep=True)
    cfg.clips.enabled = False
    sources: list[object | None] = []
    if files:
        for f in files:
            src = FileSource(Path(f), realtime=False)
            src.open()  # a missing or undecodable file fails before any scoring
            sources.append(src)
    else:
        if seconds is None or seconds <= 0:
            raise UserError(f"--seconds must be greater than 0, got {seconds}")
        if cfg.source.type == "file":
            cfg.source = SourceConfig(type="mic")
        sources.append(None)  # the configured live source
    out: dict[str, list[Stream]] = {n: [] for n in names}
    stack = None  # the model, loaded once for every file

    def progress(result) -> None:
        line = result.score_line()
        if on_progress is not None:
            on_progress(line)
        if seconds is not None and line.window_end >= seconds - 1e-9:
            stop.set()

    for src in sources:
        if stop.is_set():
            if src is not None:
                src.close()  # type: ignore[attr-defined]
            continue
        rec = ScoreRecorder(on_update=progress)
        stack = stack or load_model(cfg)
        pipe = build_pipeline(cfg, [rec], source=src, stack=stack)  # type: ignore[arg-type]
        pipe.open()
        try:
            pipe.run(stop)
        except KeyboardInterrupt:  # Ctrl-C ends a live recording early: keep what we have
            stop.set()
        rec.close()
        for n, st in streams_from_recording(rec.recording(), names).items():
            if len(st.scores):
                out[n].append(st)
    return out


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
        )
        for t in config.triggers
    ]
