"""Background scores for `listener calibrate`, collected through the real pipeline.

Each file is its own stream (no window spans two files); a live recording is one
stream. Per trigger, a :class:`~listener.tuning.calibrate.Stream` holds every window's
raw score and how many windows the level gate kept from the model, which is all
:func:`~listener.tuning.calibrate.propose` needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from listener.errors import UserError
from listener.tuning.calibrate import Stream


def streams_from_recording(rec, names: Sequence[str], gated: int = 0) -> dict[str, Stream]:
    """Per-trigger Streams from one Recording (one continuous source); ``gated``: how many
    of its windows were below the level gate."""
    starts = np.array([ln.window_start for ln in rec.lines], dtype=np.float64)
    ends = np.array([ln.window_end for ln in rec.lines], dtype=np.float64)
    return {n: Stream(starts, ends, rec.scores(n), gated) for n in names}


def _background_sources(cfg, files: Sequence[str | Path], seconds: float | None) -> list:
    """One FileSource per file, opened (checked) before the model loads; or [None] for
    the configured live source (the microphone unless the config says stdin)."""
    from listener.audio.sources import FileSource
    from listener.config.schema import SourceConfig

    if files:
        sources = [FileSource(Path(f), realtime=False) for f in files]
        for src in sources:
            src.open()  # a missing or undecodable file fails before any scoring
        return sources
    if seconds is None or seconds <= 0:
        raise UserError(f"--seconds must be greater than 0, got {seconds}")
    if cfg.source.type == "file":
        cfg.source = SourceConfig(type="mic")
    return [None]


def collect(
    config,
    files: Sequence[str | Path] = (),
    seconds: float | None = None,
    stop=None,
    on_progress=None,
) -> dict[str, list[Stream]]:
    """Score background audio through the pipeline; returns per-trigger streams.

    ``files``: each file is its own stream (no window spans two files). ``seconds``: the
    configured live source, stopped once ``seconds`` of audio have been scored.
    Hysteresis runs as usual inside the detector but is irrelevant: only raw scores are
    kept, and clips are switched off so calibration writes nothing.
    """
    import threading

    from listener.service.assemble import build_pipeline, load_model, require_triggers
    from listener.tuning.recorder import ScoreRecorder

    require_triggers(config, None)
    names = [t.name for t in config.triggers]
    stop = stop or threading.Event()
    cfg = config.model_copy(deep=True)
    cfg.clips.enabled = False
    # every window's own score: reused scores (novelty gate) would weight the steady
    # stretches of a recording twice in the score distributions thresholds come from
    cfg.audio.novelty.enabled = False
    sources = _background_sources(cfg, files, seconds)
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
                src.close()
            continue
        rec = ScoreRecorder(on_update=progress)
        stack = stack or load_model(cfg)
        pipe = build_pipeline(cfg, [rec], source=src, stack=stack)
        pipe.open()
        try:
            pipe.run(stop)
        except KeyboardInterrupt:  # Ctrl-C ends a live recording early: keep what we have
            stop.set()
        gated = int(pipe.stats()["gated_windows"])
        for n, st in streams_from_recording(rec.recording(), names, gated).items():
            if len(st.scores):
                out[n].append(st)
    return out
