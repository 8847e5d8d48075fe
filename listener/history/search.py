"""Search the past: rank stored window embeddings against a query, merge into spans.

The query is an embedding: a text's (the prompt bank, so a repeated query never runs
the text tower twice) or a recording's (the audio tower). Every stored window since
``since`` gets its cosine with it (one matrix product per block of windows), and the
best windows grow into spans: from the best remaining window, neighbours in time
whose score stays within ``drop`` of its peak join it; windows already in a span are
not used again. A span's times say where the sound most likely was, the way the
detector estimates an event's sound (the hop where it entered the newest window to
the hop where it left the oldest one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from listener.detect.events import utc_iso
from listener.history.store import BLOCK_WINDOWS, HistoryReader, WindowRow, Windows

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
CANDIDATES = 50  # windows looked at per span asked for
GROUP = 1024  # windows per conversion + matrix product (float32 copy stays in cache)
DROP = 0.05  # a neighbour joins a span while its score is within this of the peak


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``24h``, ``2d`` (or plain seconds) -> seconds; ValueError says how."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a duration: write e.g. 90s, 30m, 24h or 2d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


@dataclass(frozen=True)
class Span:
    stream: str
    start: float  # UNIX seconds: where the sound most likely began
    end: float
    peak_time: float  # end of the best window
    score: float  # the best window's cosine
    windows: int

    def to_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "start": utc_iso(self.start), "end": utc_iso(self.end),
                "start_ts": round(self.start, 3), "end_ts": round(self.end, 3),
                "peak_time": utc_iso(self.peak_time), "score": round(self.score, 4),
                "windows": self.windows}


@dataclass(frozen=True)
class Scored:
    """Every stored window's score against one query, ordered by stream then time."""

    ts: np.ndarray
    streams: np.ndarray
    seconds: np.ndarray
    scores: np.ndarray


def score_windows(reader: HistoryReader, query: np.ndarray, since: float,
                  stream: str | None = None, pending: Sequence[WindowRow] = ()) -> Scored:
    """``pending``: windows not written yet (the daemon's page adds them). Blocks are
    scored ``GROUP`` windows at a time: one conversion and one matrix product each."""
    q = np.asarray(query, np.float32).ravel()
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    recent = [w for w in pending if w.ts >= since and stream in (None, w.stream)]
    stored = reader.window_blocks(since, stream)
    ts, codes, seconds, scores, embs = [], [], [], [], []
    names: dict[str, int] = {}

    def score_group() -> None:
        if embs:
            scores.append(np.concatenate(embs).astype(np.float32) @ q)
            embs.clear()
    for block in [*stored, Windows.of(recent)] if recent else stored:
        if block.emb.shape[1] != q.size:
            raise ValueError(f"stored embeddings have {block.emb.shape[1]} dimensions, the "
                             f"query {q.size}: the history was made with another model")
        ts.append(block.ts)
        first = block.streams[0] if block.streams else ""
        if all(n == first for n in block.streams):  # a stored block is one stream's
            codes.append(np.full(len(block.streams), names.setdefault(first, len(names))))
        else:
            codes.append(np.asarray([names.setdefault(n, len(names)) for n in block.streams]))
        seconds.append(block.seconds)
        embs.append(block.emb)
        if len(embs) * BLOCK_WINDOWS >= GROUP:
            score_group()
    score_group()
    if not ts:
        empty = np.zeros(0)
        return Scored(empty, np.zeros(0, object), empty, empty)
    all_ts, all_codes = np.concatenate(ts), np.concatenate(codes)
    order = np.lexsort((all_ts, all_codes))  # stream, then time (pending ones come last)
    streams = np.asarray(list(names), object)[all_codes[order]]
    return Scored(all_ts[order], streams, np.concatenate(seconds)[order],
                  np.concatenate(scores)[order])


def _hop(ts: np.ndarray) -> float:
    d = np.diff(ts)
    d = d[d > 0]
    return float(np.median(d)) if d.size else 1.0


def merge_spans(scored: Scored, top: int = 10, drop: float = DROP,
                min_score: float | None = None) -> list[Span]:
    """The ``top`` best spans, best first (see the module docstring)."""
    n = scored.scores.size
    if n == 0:
        return []
    hop = _hop(scored.ts)
    # a window continues its neighbour when it is the same stream and about one hop later
    joined = ((scored.streams[1:] == scored.streams[:-1])
              & (np.diff(scored.ts) <= 1.5 * hop)).tolist()
    sc, used = scored.scores.tolist(), bytearray(n)
    # the best few hundred windows are enough to find the best spans (and bound the loop)
    m = min(n, top * CANDIDATES)
    best = np.argpartition(-scored.scores, m - 1)[:m]
    spans: list[Span] = []
    for i in best[np.argsort(-scored.scores[best], kind="stable")].tolist():
        peak = sc[i]
        if len(spans) >= top or (min_score is not None and peak < min_score):
            break
        if used[i]:
            continue
        lo = hi = i
        while lo > 0 and joined[lo - 1] and not used[lo - 1] and sc[lo - 1] >= peak - drop:
            lo -= 1
        while hi < n - 1 and joined[hi] and not used[hi + 1] and sc[hi + 1] >= peak - drop:
            hi += 1
        # a window next to a span already found is that span's tail, not a new moment
        tail = (lo > 0 and joined[lo - 1] and used[lo - 1]) or \
            (hi < n - 1 and joined[hi] and used[hi + 1])
        used[lo:hi + 1] = b"\x01" * (hi - lo + 1)
        if tail:
            continue
        first_end, last_end = float(scored.ts[lo]), float(scored.ts[hi])
        start = first_end - hop
        end = max(min(last_end - float(scored.seconds[hi]) + hop, last_end), start)
        spans.append(Span(str(scored.streams[i]), start, end, float(scored.ts[i]), peak,
                          hi - lo + 1))
    return spans


def timeline(scored: Scored, points: int = 600) -> dict[str, list[float]]:
    """Scores over time for a chart (``try a prompt``): at most ``points`` maxima."""
    if scored.scores.size == 0:
        return {"ts": [], "scores": []}
    order = np.argsort(scored.ts, kind="stable")
    ts, sc = scored.ts[order], scored.scores[order]
    step = max(1, int(np.ceil(ts.size / points)))
    cut = (ts.size // step) * step
    if cut:
        ts_b = ts[:cut].reshape(-1, step)[:, -1]
        sc_b = sc[:cut].reshape(-1, step).max(axis=1)
    else:
        ts_b, sc_b = ts[:0], sc[:0]
    if cut < ts.size:
        ts_b, sc_b = np.append(ts_b, ts[-1]), np.append(sc_b, sc[cut:].max())
    return {"ts": [round(float(t), 3) for t in ts_b], "scores": [round(float(s), 4) for s in sc_b]}
