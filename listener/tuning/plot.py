"""`listener scan FILE --plot OUT.png`: a recording's score timeline, readable at a glance.

One panel per trigger (score over time, the tail's score where it was scored, dashed
on/off thresholds, shaded spans from each event's estimated sound start to its
estimated sound end, start/end markers where each was decided) and a level track (dBFS, with the
level gate) at the bottom, sharing the time axis. matplotlib is an optional
extra (``listener[plot]``): it is imported here, lazily, with the Agg backend
(no display needed), so the daemon never pays for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from listener.detect.settings import TriggerSettings
from listener.errors import MissingExtraError, UserError
from listener.tuning.recorder import Recording, ScoreRecorder

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DPI = 100
LEVEL_PX = 130  # height of the level track


@dataclass(frozen=True)
class PlotResult:
    path: Path
    width_px: int
    height_px: int
    trigger_panels: int
    axes: int  # trigger panels + the level track


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError("scan --plot", "plot", "matplotlib") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _spans(times: np.ndarray, active: np.ndarray, hop: float) -> list[tuple[float, float]]:
    """Runs of active windows -> (from, to) in seconds; a window covers (end - hop, end]."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for t, a in zip(times.tolist(), active.tolist(), strict=True):
        if a and start is None:
            start = t - hop
        elif not a and start is not None:
            spans.append((start, t - hop))
            start = None
    if start is not None and times.size:
        spans.append((start, float(times[-1])))
    return spans


def sound_spans(events, name: str) -> list[tuple[float, float]] | None:
    """(start, end) per event of ``name``: the sound as the events estimate it
    (``details.sound_start`` to ``details.sound_end``; window ends for older records)."""
    mine = [e for e in events if e.trigger == name]
    if not mine:
        return None
    opened: dict[str, float] = {}
    spans = []
    for e in mine:
        if e.type == "start":
            opened[e.id] = float(e.details.get("sound_start", e.window_end))
        elif e.id in opened:
            spans.append((opened.pop(e.id), float(e.details.get("sound_end", e.window_end))))
    spans += [(a, a) for a in opened.values()]
    return spans


def decided_at(events, name: str, kind: str) -> list[float]:
    """When each ``kind`` event of ``name`` was decided (``details.confirmed_at``)."""
    return [float(e.details.get("confirmed_at", e.window_end)) for e in events
            if e.type == kind and e.trigger == name]


def at_key(t: np.ndarray, s: np.ndarray, xs: Sequence[float]) -> list[float]:
    ok = np.isfinite(s)
    if not ok.any():
        return [0.0] * len(xs)
    return [float(v) for v in np.interp(xs, t[ok], s[ok])]


def plot_recording(
    rec: Recording,
    out: str | Path,
    settings: Mapping[str, TriggerSettings],
    title: str,
    hop_seconds: float = 1.0,
    gate_dbfs: float | None = None,
    labels: Mapping[str, str] | None = None,
    width_px: int = 1200,
    panel_px: int = 180,
    triggers: Sequence[str] | None = None,
) -> PlotResult:
    """Draw ``rec`` to ``out`` (PNG). Height grows with the number of triggers."""
    plt = _matplotlib()
    names = list(triggers) if triggers is not None else [
        n for n in rec.trigger_names if n in settings
    ]
    if not rec.lines:
        raise UserError(f"{title}: nothing to plot (no windows were scored)")
    labels = labels or {}
    t = rec.times()
    n = len(names)
    height_px = 80 + panel_px * n + LEVEL_PX + 50
    fig = plt.figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    gs = fig.add_gridspec(n + 1, 1, height_ratios=[panel_px] * n + [LEVEL_PX], hspace=0.35)
    axes = []
    for i, name in enumerate(names):
        axes.append(fig.add_subplot(gs[i], sharex=axes[0] if axes else None))
        _trigger_panel(axes[-1], rec, t, name, settings[name], labels.get(name, name),
                       hop_seconds)
    axes.append(fig.add_subplot(gs[n], sharex=axes[0] if axes else None))
    _level_panel(axes[-1], t, rec.levels(), gate_dbfs)
    fig.suptitle(title, x=0.01, y=1 - 12 / height_px, ha="left", va="top", fontsize=13,
                 fontweight="bold")
    fig.subplots_adjust(left=0.07, right=0.86, top=1 - 75 / height_px,
                        bottom=50 / height_px)
    path = Path(out)
    try:
        fig.savefig(path, dpi=DPI, format="png")
    except OSError as exc:
        raise UserError(f"cannot write plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return PlotResult(path, width_px, height_px, n, len(axes))


def _trigger_panel(
    ax: Axes, rec: Recording, t: np.ndarray, name: str, st: TriggerSettings, label: str,
    hop_seconds: float,
) -> None:
    """One trigger: shaded on-spans, the score, dashed on/off thresholds, start/end markers."""
    s = rec.scores(name)
    spans = sound_spans(rec.events, name)
    if spans is None:  # no events recorded: fall back to the on/off state per window
        spans = _spans(t, rec.active_of(name), hop_seconds)
    for a, b in spans:
        ax.axvspan(a, b, color="tab:red", alpha=0.15, lw=0)
    ax.plot(t, s, color="tab:blue", lw=1.4, label="score")
    tail = rec.tail_scores(name)
    if np.isfinite(tail).any():
        ax.plot(t, tail, color="tab:purple", marker=".", ms=4, lw=0.8, ls=":",
                label="tail score")
    ax.axhline(st.on_threshold, color="tab:red", ls="--", lw=1.1,
               label=f"on {st.on_threshold:.2f}")
    ax.axhline(st.off_threshold, color="tab:orange", ls="--", lw=1.1,
               label=f"off {st.off_threshold:.2f}")
    starts = decided_at(rec.events, name, "start")
    ends = decided_at(rec.events, name, "end")
    for xs, marker, color in ((starts, "^", "tab:green"), (ends, "v", "black")):
        if xs:  # on the curve, when it was decided
            ax.plot(xs, at_key(t, s, xs), marker=marker, color=color, ms=9, ls="none", zorder=5)
    finite = s[np.isfinite(s)]
    lo = min([0.0, *(finite.min(keepdims=True) if finite.size else [])])
    hi = max([st.on_threshold, *(finite.max(keepdims=True) if finite.size else [])])
    ax.set_ylim(lo - 0.02, hi + 0.08 * max(0.1, hi - lo))
    ax.set_ylabel("score\n(cosine)")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{label}  ({len(starts)} event{'s' if len(starts) != 1 else ''})",
                 loc="left", fontsize=10, fontweight="bold")
    _trigger_legend(ax)
    ax.tick_params(labelbottom=False)


def _trigger_legend(ax: Axes) -> None:
    """The drawn lines' labels plus the shading and the markers, right of the panel."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Patch(color="tab:red", alpha=0.15, label="sound (estimated)"),
        Line2D([], [], marker="^", color="tab:green", ls="none", label="start decided"),
        Line2D([], [], marker="v", color="black", ls="none", label="end decided"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8,
              frameon=False)


def _level_panel(ax: Axes, t: np.ndarray, lv: np.ndarray, gate_dbfs: float | None) -> None:
    """The level track (dBFS) with the level gate; it carries the shared time axis."""
    ax.fill_between(t, -120, lv, color="tab:gray", alpha=0.35, step="pre", lw=0)
    ax.plot(t, lv, color="dimgray", lw=1.0, drawstyle="steps-pre", label="level")
    if gate_dbfs is not None:
        ax.axhline(gate_dbfs, color="tab:purple", ls=":", lw=1.1,
                   label=f"gate {gate_dbfs:.0f} dBFS")
    finite = lv[np.isfinite(lv)]
    lo = float(finite.min()) if finite.size else -90.0
    if gate_dbfs is not None:
        lo = min(lo, gate_dbfs)
    ax.set_ylim(max(-120.0, lo - 5), 0)
    ax.set_ylabel("level\n(dBFS)")
    ax.set_xlabel("time since start of file (s)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    x_end = float(t[-1]) if t.size else 1.0
    ax.set_xlim(0.0, max(x_end, 1.0))


def plot_scan(rec: Recording, out: str | Path, config, file_name: str) -> PlotResult:
    """Convenience for `scan --plot`: thresholds, labels and gate from the config."""
    settings = {t.name: config.trigger_settings(t) for t in config.triggers}
    labels = {t.name: t.display_name + (f"  [{t.name}]" if t.label else "")
              for t in config.triggers}
    names = [t.name for t in config.triggers]
    return plot_recording(
        rec, out, settings, title=f"listener scan: {file_name}",
        hop_seconds=config.audio.hop_seconds, gate_dbfs=config.audio.min_level_dbfs,
        labels=labels, triggers=names,
    )


class ScanPlot(ScoreRecorder):
    """The sink `scan --plot` adds: checks the extra and the output path before the scan
    (a missing matplotlib fails in a second, not after minutes of scoring), records
    everything, and ``save`` draws it."""

    def __init__(self, out: str | Path) -> None:
        super().__init__()
        _matplotlib()
        self.out = Path(out)
        parent = self.out.parent if str(self.out.parent) else Path(".")
        if not parent.is_dir():
            raise UserError(f"--plot {self.out}: directory {parent} does not exist")
        if self.out.suffix.lower() != ".png":
            raise UserError(f"--plot {self.out}: the plot is a PNG; name the file *.png")

    def save(self, config, file_name: str | Path) -> PlotResult:
        return plot_scan(self.recording(), self.out, config, Path(file_name).name)
