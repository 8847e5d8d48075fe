"""`listener top`: what the model hears right now, redrawn every hop.

Split in three so the view is testable without a terminal or a microphone:

- :class:`TopTracker` (a sink) keeps the detector's newest result and turns it into an
  immutable :class:`TopSnapshot`: every trigger's score, thresholds, state, run and
  cooldown as the detector reports them (nothing is recomputed here), and the
  best-matching single prompts from the row similarities of the window;
- :func:`render_frame` is a pure function ``(snapshot, width, ansi) -> str``;
- :func:`run_top` wires a real pipeline to them and writes frames: on a TTY the
  frame redraws in place with plain ANSI escapes (works over SSH, no curses);
  otherwise plain frames separated by a blank line, so ``top | tee log`` works.

Ad-hoc ``--prompts`` are scored as probes of the trigger set: extra rows of the same
matrix, embedded through the prompt cache like any other prompt, ranked among the
configured prompts and example recordings. They belong to no trigger and fire nothing.
"""

from __future__ import annotations

import math
import shutil
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from listener.detect.detector import DetectorResult
from listener.errors import UserError

LEVEL_FLOOR = -90.0  # dBFS at the left end of the level meter
TOP_PROMPTS = 5

# ANSI: only SGR colours, cursor home and clear-to-end; nothing terminfo-specific.
_RESET, _BOLD, _DIM = "\x1b[0m", "\x1b[1m", "\x1b[2m"
_RED, _GREEN, _YELLOW, _CYAN = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[36m"
HOME_CLEAR = "\x1b[H\x1b[J"
CLEAR_EOL = "\x1b[K"


@dataclass(frozen=True)
class TriggerView:
    name: str
    score: float
    on_threshold: float
    off_threshold: float
    active: bool
    cooldown_left: float  # seconds left of cooldown (0 when none)
    enabled: bool = True
    run: int = 0  # consecutive windows at/over on_threshold (towards on_windows)
    on_windows: int = 1


@dataclass(frozen=True)
class PromptView:
    text: str
    score: float
    owner: str  # trigger name, or "ad hoc"


@dataclass(frozen=True)
class TopSnapshot:
    time: float  # end of the newest window, seconds since start
    level_dbfs: float
    gate_dbfs: float
    triggers: tuple[TriggerView, ...]
    prompts: tuple[PromptView, ...]  # best first
    windows: int
    skipped_windows: int
    gated_windows: int
    novelty_gated_windows: int
    inference_ms: float
    real_time_factor: float
    model: str
    score_scale: float = 1.0
    title: str = "listener top"


def _scale(on_thresholds: Sequence[float]) -> float:
    """Right end of the score bars: room above the highest on threshold (0.5 .. 1)."""
    top = max(on_thresholds, default=0.3)
    return min(1.0, max(0.5, math.ceil(top * 1.5 * 10 - 1e-9) / 10))


def prompt_views(result: DetectorResult) -> list[PromptView]:
    """Single prompts, examples and probes of the newest window, best first."""
    w = result.window
    if w is None:
        return []
    sims = w.similarities if w.similarities is not None else np.zeros(len(result.rows))
    seen: set[str] = set()
    views = []
    for row, score in zip(result.rows, sims.tolist(), strict=True):
        if row.kind not in ("prompt", "example", "probe"):
            continue
        text = f"example {row.label}" if row.kind == "example" else row.label
        if text in seen or not math.isfinite(score):
            continue
        seen.add(text)
        views.append(PromptView(text, float(score), row.owner or "ad hoc"))
    return sorted(views, key=lambda p: (-p.score, p.text))


class TopTracker:
    """Sink that keeps the newest result; ``snapshot()`` is cheap and thread-safe."""

    def __init__(self, gate_dbfs: float = -70.0, model: str = "", title: str = "listener top",
                 stats: Callable[[], dict[str, Any]] | None = None,
                 on_update: Callable[[TopSnapshot], None] | None = None) -> None:
        self.gate_dbfs = gate_dbfs
        self.model = model
        self.title = title
        self.stats = stats
        self.on_update = on_update
        self._lock = threading.Lock()
        self._result: DetectorResult | None = None  # the newest step
        self._window: DetectorResult | None = None  # the newest scored window
        self._windows = 0
        self._last_stats: dict[str, Any] = {}

    def on_result(self, result: DetectorResult) -> None:
        stats = self.stats() if self.stats is not None else None
        with self._lock:
            self._result = result
            if result.window is not None:
                self._window = result
                self._windows += 1
            if stats is not None:
                self._last_stats = dict(stats)
        if self.on_update is not None and result.window is not None:
            self.on_update(self.snapshot())

    def close(self) -> None:
        pass

    def snapshot(self) -> TopSnapshot:
        with self._lock:
            result, window, st = self._result, self._window, self._last_stats
            windows = self._windows
        states = result.triggers if result is not None else ()
        w = window.window if window is not None else None
        views = tuple(
            TriggerView(name=s.name, score=s.score, on_threshold=s.settings.on_threshold,
                        off_threshold=s.settings.off_threshold, active=s.active,
                        cooldown_left=s.cooldown_left, enabled=s.enabled, run=s.run,
                        on_windows=s.settings.on_windows)
            for s in states
        )
        return TopSnapshot(
            time=w.end if w else 0.0,
            level_dbfs=w.level_dbfs if w else -120.0,
            gate_dbfs=self.gate_dbfs,
            triggers=views,
            prompts=tuple(prompt_views(window)[:TOP_PROMPTS]) if window else (),
            windows=int(st.get("windows", windows)),
            skipped_windows=int(st.get("skipped_windows", 0)),
            gated_windows=int(st.get("gated_windows", 0)),
            novelty_gated_windows=int(st.get("novelty_gated_windows", 0)),
            inference_ms=float(st.get("inference_ms", math.nan)),
            real_time_factor=float(st.get("real_time_factor", math.nan)),
            model=str(st.get("model", self.model)),
            score_scale=_scale([s.settings.on_threshold for s in states]),
            title=self.title,
        )


# --- rendering ------------------------------------------------------------------------------


def _paint(text: str, code: str, ansi: bool) -> str:
    return f"{code}{text}{_RESET}" if ansi and code else text


def _bar(value: float, lo: float, hi: float, width: int, marks: Sequence[tuple[float, str]]) -> str:
    """``[#####....|...:....]``: filled up to value, threshold marks drawn over the track."""
    width = max(4, width)
    cells = ["."] * width
    frac = 0.0 if not math.isfinite(value) else (value - lo) / (hi - lo)
    filled = round(min(1.0, max(0.0, frac)) * width)
    for i in range(filled):
        cells[i] = "#"
    for pos, ch in marks:
        i = round((pos - lo) / (hi - lo) * width)
        i = min(width - 1, max(0, i))
        cells[i] = ch
    return "[" + "".join(cells) + "]"


def _num(x: float, fmt: str) -> str:
    return format(x, fmt) if math.isfinite(x) else "-"


def _header(snap: TopSnapshot, width: int, ansi: bool) -> list[str]:
    head = (
        f"{snap.title}  t={snap.time:.1f} s  windows {snap.windows}  "
        f"skipped {snap.skipped_windows}  gated {snap.gated_windows}  "
        f"inference {_num(snap.inference_ms, '.0f')} ms  RTF {_num(snap.real_time_factor, '.2f')}"
    )
    rows = [_paint(head[:width], _BOLD, ansi)]
    # why the tower did not run: below the level gate, or nothing new (novelty gate)
    gates = f"gated {snap.gated_windows} quiet, {snap.novelty_gated_windows} nothing new"
    rows.append(((f"model {snap.model}  " if snap.model else "") + gates)[:width])
    # level meter: -90 .. 0 dBFS, '|' marks the gate (windows below it are not scored)
    label = f"level {snap.level_dbfs:6.1f} dBFS "
    tail = f" gate {snap.gate_dbfs:.0f}"
    bw = width - len(label) - len(tail) - 2
    bar = _bar(snap.level_dbfs, LEVEL_FLOOR, 0.0, bw, [(snap.gate_dbfs, "|")])
    gated = snap.level_dbfs < snap.gate_dbfs
    return [*rows, label + _paint(bar, _DIM if gated else _CYAN, ansi) + tail, ""]


def _state(t: TriggerView) -> tuple[str, str]:
    """The state column and its colour."""
    if not t.enabled:
        return "disabled", _DIM
    if t.active:
        return "ON", _RED + _BOLD
    if t.cooldown_left > 0:
        return f"cooling {t.cooldown_left:.0f}s", _YELLOW
    if t.run > 0:
        return f"arming {t.run}/{t.on_windows}", _YELLOW
    return "off", ""


def _trigger_rows(snap: TopSnapshot, width: int, ansi: bool) -> list[str]:
    name_w = max([len("trigger")] + [len(t.name) for t in snap.triggers])
    name_w = min(name_w, max(8, width // 4))
    state_w = 14
    bw = width - name_w - 1 - 6 - 1 - 2 - 1 - state_w
    scale = snap.score_scale
    rows = [
        f"{'trigger':<{name_w}} {'score':>6} "
        + f"0{'':<{max(0, bw + 1 - len(format(scale, 'g')))}}{scale:g}"
        + f"  {'state':<{state_w}}"
    ]
    for t in snap.triggers:
        state, code = _state(t)
        bar = _bar(t.score, 0.0, scale, bw, [(t.off_threshold, ":"), (t.on_threshold, "|")])
        over = math.isfinite(t.score) and t.score >= t.on_threshold
        rows.append(
            f"{t.name[:name_w]:<{name_w}} {_num(t.score, '6.3f'):>6} "
            + _paint(bar, _RED if over else _GREEN, ansi)
            + "  "
            + _paint(f"{state:<{state_w}}", code, ansi)
        )
    rows.append(f"{'':<{name_w}}        ('|' on threshold, ':' off threshold)"[:width])
    return rows


def _prompt_rows(snap: TopSnapshot, width: int) -> list[str]:
    rows = ["", "best-matching prompts now"]
    if not snap.prompts:
        rows.append("  (none scored yet)")
    for p in snap.prompts:
        owner = f"({p.owner})"
        text_w = width - 2 - 6 - 2 - len(owner) - 1
        text = p.text if len(p.text) <= text_w else p.text[: max(1, text_w - 3)] + "..."
        rows.append(f"  {p.score:6.3f}  {text:<{text_w}} {owner}")
    return rows


def render_frame(snap: TopSnapshot, width: int = 80, ansi: bool = False) -> str:
    """The whole view as text, ``width`` columns wide (no trailing newline).

    Pure: the same snapshot and width always give the same string. ``ansi`` adds
    colour only; the plain text is identical apart from the escape codes.
    """
    width = max(50, width)
    rows = [*_header(snap, width, ansi), *_trigger_rows(snap, width, ansi),
            *_prompt_rows(snap, width)]
    return "\n".join(r[:width].rstrip() if not ansi else r for r in rows)


# --- live loop ------------------------------------------------------------------------------


class FrameWriter:
    """Writes frames to a stream: in place on a TTY, else plain and blank-line separated."""

    def __init__(self, out: TextIO, tty: bool | None = None, width: int | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.width = width
        self._first = True
        self._lock = threading.Lock()

    def _width(self) -> int:
        if self.width:
            return self.width
        return shutil.get_terminal_size((80, 24)).columns if self.tty else 80

    def write(self, snap: TopSnapshot) -> None:
        frame = render_frame(snap, self._width(), ansi=self.tty)
        with self._lock:
            if self.tty:
                body = frame.replace("\n", CLEAR_EOL + "\n")
                self.out.write(HOME_CLEAR if self._first else "\x1b[H")
                self.out.write(body + CLEAR_EOL + "\n\x1b[J")
            else:
                if not self._first:
                    self.out.write("\n")
                self.out.write(frame + "\n")
            self._first = False
            self.out.flush()


def run_top(
    config: Any,
    prompts: Sequence[str] = (),
    out: TextIO | None = None,
    stop: threading.Event | None = None,
    width: int | None = None,
    tty: bool | None = None,
    realtime: bool | None = None,
) -> int:
    """Run the live view until the source ends or ``stop`` is set (Ctrl-C).

    A file source is paced like a microphone unless ``realtime=False`` is given.
    """
    from listener.service.assemble import build_pipeline

    if any(not p.strip() for p in prompts):
        raise UserError("--prompts: a prompt must not be empty")
    out = out or sys.stdout
    stop = stop or threading.Event()
    cfg = config.model_copy(deep=True)
    cfg.clips.enabled = False
    writer = FrameWriter(out, tty=tty, width=width)
    tracker = TopTracker(gate_dbfs=cfg.audio.min_level_dbfs, on_update=writer.write)
    if realtime is None and cfg.source.type == "file":
        realtime = True
    pipe = build_pipeline(cfg, [tracker], realtime=realtime, probes=list(prompts))
    tracker.stats = pipe.stats
    tracker.model = pipe.model_id
    pipe.open()
    try:
        pipe.run(stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        if writer.tty:
            out.write(_RESET + "\n")
            out.flush()
    return 0
