"""Many streams in one process: a pipeline per stream, each in its own thread, one model.

Why a thread per stream: each pipeline already is a complete stream (ring buffer,
hop scheduler, log-mel state, detector with hysteresis, clips, stats; service/
pipeline.py), and a live one already waits for its audio and takes the NEWEST due
window of its own stream, counting the older ones as skipped (per stream): nothing
queues, so memory stays flat under overload. The one thing the streams share, the
model stack's audio tower, runs their windows on as many worker threads as the cores
hold, first come, first served (model/audio_tower.py): a stream cannot starve the
others, since each has at most one window waiting there. Windows of different streams
are never batched together: the int8 tower quantises its activations with one scale
per batch, so a batch would change each window's embedding.

A stream whose source ends (a file) or fails (a device that vanished) ends alone: its
triggers get their end events, the error is logged with the stream's name, and the
others go on; the daemon runs while any stream runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from listener.config.schema import Config
from listener.config.streams import Stream, streams_of
from listener.errors import UserError
from listener.logs import get_logger
from listener.model.stack import ModelStack
from listener.service.assemble import build_detector, make_clips, make_source
from listener.service.heartbeat import JointBeat
from listener.service.pipeline import Pipeline
from listener.service.sinks import Sink
from listener.service.switches import SwitchStore

log = get_logger("listener.streams")

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
#: figures of the streams' stats that add up to the process's
SUMMED = ("windows", "skipped_windows", "gated_windows", "novelty_gated_windows",
          "scored_windows", "overflows", "bad_samples", "clipped_samples")


@dataclass
class StreamRun:
    """One stream while the daemon runs: its pipeline, its thread, how it ended."""

    stream: Stream
    pipeline: Pipeline
    thread: threading.Thread | None = None
    error: BaseException | None = None
    beats: JointBeat | None = None  # the streams' shared heartbeat (several streams)

    def retire(self) -> None:
        """This stream is over: the heartbeat no longer waits for it."""
        if self.beats is not None:
            self.beats.retire(self.stream.name)


def bound_thread_heaps() -> None:
    """Keep glibc from holding freed window-sized buffers per thread: with a fixed mmap
    threshold, buffers of 256 KiB and more (a window's audio, log-mel temporaries) go back
    to the OS when freed instead of staying in each pipeline thread's malloc arena.
    Measured with the full-size tower: peak RSS per added stream 7.2 MB instead of
    7.7-11.8 (and steadier), for about 0.01 CPU-s more per audio-s per stream
    (benchmarks/README.md). A no-op off glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 256 * 1024)


def build_streams(config: Config, stack: ModelStack, switches: SwitchStore, sink: Sink,
                  heartbeat: Callable[[], None] | None = None) -> list[StreamRun]:
    """A pipeline per configured stream around the one model stack (sources not opened)."""
    if len(config.streams) > 1:
        stack.tower.use_workers()
        bound_thread_heaps()
    streams = streams_of(config)
    beats = (JointBeat(heartbeat, [s.name for s in streams])
             if heartbeat is not None and len(streams) > 1 else None)
    runs = []
    for s in streams:
        detector = build_detector(config, stack, switches, stream=s)
        pipeline = Pipeline(config.audio, make_source(s.source), detector, sink,
                            clips=make_clips(config),
                            heartbeat=beats.member(s.name) if beats else heartbeat,
                            stream=s.name)
        runs.append(StreamRun(s, pipeline, beats=beats))
    return runs


class StreamRunner:
    """Runs every stream's pipeline in a thread of its own until it ends or ``stop``."""

    def __init__(self, runs: list[StreamRun], stop: threading.Event) -> None:
        self.runs = runs
        self.stop = stop
        self._ended_seen = 0

    def open(self) -> None:
        """Open every source. With several streams, one that cannot be opened ends alone
        (logged); with one, its error is the daemon's (as before streams existed)."""
        for run in self.runs:
            try:
                run.pipeline.open()
            except UserError as exc:
                if len(self.runs) == 1:
                    raise
                run.error = exc
                run.retire()
                log.error("stream not started: its source cannot be opened; the other "
                          "streams go on", stream=run.stream.name, error=str(exc))
        if all(r.error is not None for r in self.runs):
            raise UserError("no stream could be started: " + "; ".join(
                f"{r.stream.name}: {r.error}" for r in self.runs))

    def start(self) -> None:
        for run in self.runs:
            if run.error is None:
                run.thread = threading.Thread(target=self._work, args=(run,), daemon=True,
                                              name=f"listener-pipeline-{run.stream.name}")
                run.thread.start()

    def _work(self, run: StreamRun) -> None:
        try:
            run.pipeline.run(self.stop)
        except BaseException as exc:  # reported by the main thread (one stream) or here
            run.retire()
            run.error = exc
            if len(self.runs) > 1:
                log.error("stream ended by an error; the other streams go on",
                          stream=run.stream.name, error=str(exc),
                          exc_info=None if isinstance(exc, UserError) else exc)
        else:
            run.retire()
            if len(self.runs) > 1 and not self.stop.is_set():
                log.info("stream ended", stream=run.stream.name,
                         windows=run.pipeline.detector.stats.windows)

    def ended_since_last_look(self) -> bool:
        """Whether a stream ended since the previous call (its stats are due at once)."""
        ended = sum(r.thread is not None and not r.thread.is_alive() for r in self.runs)
        changed, self._ended_seen = ended != self._ended_seen, ended
        return changed

    def is_alive(self) -> bool:
        return any(r.thread is not None and r.thread.is_alive() for r in self.runs)

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the first running stream to end."""
        for run in self.runs:
            if run.thread is not None and run.thread.is_alive():
                run.thread.join(timeout)
                return

    @property
    def error(self) -> BaseException | None:
        """The daemon's error: the single stream's; with several, one only when every
        stream failed (one that failed while others ran was logged and is over)."""
        errors = [r.error for r in self.runs if r.error is not None]
        if len(self.runs) == 1 or len(errors) == len(self.runs):
            return errors[0] if errors else None
        return None

    def apply_switches(self) -> None:
        for run in self.runs:
            run.pipeline.apply_switches()

    def stats(self) -> dict[str, Any]:
        """The single stream's stats; with several, the sums, the slowest window time and
        each stream's own figures under ``streams``."""
        per = {r.stream.name: r.pipeline.stats() for r in self.runs}
        if len(self.runs) == 1:
            return next(iter(per.values()))
        out: dict[str, Any] = {k: sum(s[k] for s in per.values()) for k in SUMMED}
        first = next(iter(per.values()))
        out["inference_ms"] = max(s["inference_ms"] for s in per.values())
        out["real_time_factor"] = max(s["real_time_factor"] for s in per.values())
        out.update(uptime_s=first["uptime_s"], model=first["model"],
                   streams_running=sum(r.thread is not None and r.thread.is_alive()
                                       for r in self.runs), streams=per)
        return out
