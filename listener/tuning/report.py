"""What `listener calibrate` prints: a table per trigger, the caveats, the YAML to paste.

The table puts the background's score distribution next to the current and the
proposed settings, each with the false starts it makes on this audio, so the user
can judge a proposal before taking it. The YAML snippet writes numbers exactly as
``--write`` would put them into the config.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from listener.config.writeback import number_text
from listener.tuning.budget import span_text
from listener.tuning.calibrate import Proposal


def format_report(proposals: Sequence[Proposal], rate_per_day: float) -> str:
    """The human table plus the YAML snippet to paste (or to --write)."""
    if not proposals:
        return "no triggers to calibrate\n"
    first = proposals[0]
    out = io.StringIO()
    out.write(
        f"background observed: {span_text(first.observed_seconds)} "
        f"({first.distribution.windows} windows); "
        f"budget {rate_per_day:g} false start(s)/day = {first.budget_starts:.3g} "
        f"over this span\n\n"
    )
    out.write(_table(proposals))
    out.write(_caveats(proposals))
    out.write("\nproposed settings (paste into the triggers of your config, or rerun with "
              "--write):\n\n")
    out.write(yaml_snippet(proposals))
    return out.getvalue()


def _table(proposals: Sequence[Proposal]) -> str:
    """One row per trigger: distribution | current settings, starts | proposal, starts, bound."""
    head = (
        f"{'trigger':<20} {'p50':>6} {'p90':>6} {'p99':>6} {'max':>6} | "
        f"{'now on/off/k':>16} {'starts':>6} | {'proposed on/off/k':>17} {'starts':>6} "
        f"{'<=/day(95%)':>11}"
    )
    rows = [head, "-" * len(head)]
    for p in proposals:
        d, c, n = p.distribution, p.current, p.proposed
        dist = (f"{d.p50:6.3f} {d.p90:6.3f} {d.p99:6.3f} {d.max:6.3f}"
                if p.gated_windows < d.windows else f"{'(all gated)':>27}")
        rows.append(
            f"{p.trigger[:20]:<20} {dist} | "
            f"{f'{c.on_threshold:.3f}/{c.off_threshold:.3f}/{c.on_windows}':>16} "
            f"{p.starts_current:>6} | "
            f"{f'{n.on_threshold:.3f}/{n.off_threshold:.3f}/{n.on_windows}':>17} "
            f"{p.starts_proposed:>6} {_fmt_rate(p.rate_bound_per_day):>11}"
        )
    return "".join(row + "\n" for row in rows)


def _caveats(proposals: Sequence[Proposal]) -> str:
    """Each distinct caveat once, naming every trigger it applies to, after a blank line
    (nothing when there are none)."""
    by_caveat: dict[str, list[str]] = {}
    for p in proposals:
        if p.caveat:
            by_caveat.setdefault(p.caveat, []).append(p.trigger)
    lines = [f"caveat ({', '.join(names)}): {text}\n" for text, names in by_caveat.items()]
    return "\n" + "".join(lines) if lines else ""


def _fmt_rate(r: float) -> str:
    if not math.isfinite(r):
        return "inf"
    return f"{r:.0f}" if r >= 100 else f"{r:.3g}"


def yaml_snippet(proposals: Sequence[Proposal]) -> str:
    """The ``triggers:`` entries with the proposed values, ready to paste into the config."""
    lines = ["triggers:"]
    for p in proposals:
        n = p.proposed
        lines += [
            f"  - name: {p.trigger}",
            f"    on_threshold: {number_text(n.on_threshold)}",
            f"    off_threshold: {number_text(n.off_threshold)}",
            f"    on_windows: {n.on_windows}",
        ]
    return "\n".join(lines) + "\n"
