"""Event clips: a WAV per event, from ``pre_seconds`` before its start to ``post_seconds``
after its end, named by event id, with retention by age and total size.

It is the stage between the detector and the sinks: :meth:`ClipRecorder.on_events`
begins a clip at each start and gives each end event the path of its clip. The
recorder pulls audio from the ring buffer on the processing thread (never in the
audio callback). At the start it copies what the ring still holds from the
clip's first sample, then accumulates new audio as it arrives, so a clip may be
longer than the ring. A clip is capped at ``MAX_CLIP_SECONDS`` to bound memory.
The end event names the clip path at once; the file is written as soon as the
audio up to ``end + post_seconds`` has arrived (or at end of stream).

A clip that cannot be written (full disk, read-only or missing directory) never stops
detection: the recorder checks room and write access when the event ends (the end
event then says ``clip: null``), logs and counts every failure (``failures``, in the
daemon's stats), and leaves no temporary file behind. Clips hold household audio, so
they are written 0640 in a 0750 directory whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from listener.audio.decode import SAMPLE_RATE, write_wav
from listener.audio.ringbuffer import RingBuffer
from listener.config.schema import ClipsConfig
from listener.detect.events import Event
from listener.logs import get_logger

log = get_logger("listener.clips")

MAX_CLIP_SECONDS = 120.0


@dataclass
class _Clip:
    path: Path
    first: int  # absolute sample of the clip's first sample
    next: int  # next absolute sample to pull
    chunks: list[np.ndarray] = field(default_factory=list)
    size: int = 0
    until: int | None = None  # absolute end sample once the event ended


class ClipRecorder:
    def __init__(self, cfg: ClipsConfig, directory: Path, rate: int = SAMPLE_RATE) -> None:
        self.cfg = cfg
        self.dir = Path(directory)
        self.rate = rate
        self.max_samples = int(MAX_CLIP_SECONDS * rate)
        self._open: dict[str, _Clip] = {}
        self.failures = 0
        self._logged: set[str] = set()  # each kind of failure gets one error line
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Temporary files of clips a crash interrupted (they would never be rotated)."""
        with contextlib.suppress(OSError):
            for p in [*self.dir.glob(".*.tmp"), *self.dir.glob("*.tmp.wav")]:
                p.unlink(missing_ok=True)

    def _failed(self, clip: Path, why: str) -> None:
        self.failures += 1
        kind = why.split(":")[0]
        level = log.debug if kind in self._logged else log.error
        self._logged.add(kind)
        level("clip not written; detection goes on", clip=str(clip), reason=why,
              failures=self.failures, hint="free space or make clips.dir writable")

    def _room_for(self, clip: _Clip) -> str | None:
        """Why ``clip`` cannot be written now (no directory, read-only, full), or None."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o750)
            if not os.access(self.dir, os.W_OK | os.X_OK):
                return f"not writable: {self.dir}"
            st = os.statvfs(self.dir)
        except OSError as exc:
            return f"{exc.strerror or exc}: {self.dir}"
        need = 2 * ((clip.until or clip.next) - clip.first) + 4096  # 16-bit samples + header
        if st.f_bavail * st.f_frsize < need:
            return f"no space: {need} bytes needed in {self.dir}"
        return None

    @property
    def pre_samples(self) -> int:
        return round(self.cfg.pre_seconds * self.rate)

    @property
    def post_samples(self) -> int:
        return round(self.cfg.post_seconds * self.rate)

    def on_events(self, events: Sequence[Event], ring: RingBuffer) -> tuple[Event, ...]:
        """Begin a clip at each start, end it at each end; the end events come back naming
        their clip file (written once the audio up to ``sound_end + post`` has arrived)."""
        out = []
        for ev in events:
            if ev.type == "start":
                self.begin(ev.id, int(ev.sound_start * self.rate), ring)
            else:
                path = self.end(ev.id, int((ev.sound_end or 0.0) * self.rate), ring)
                ev = replace(ev, clip=str(path) if path else None)
            out.append(ev)
        self.pull(ring)
        return tuple(out)

    def begin(self, event_id: str, sound_start: int, ring: RingBuffer) -> None:
        first = max(0, sound_start - self.pre_samples, ring.oldest)
        self._open[event_id] = _Clip(self.dir / f"{event_id}.wav", first, first)
        self.pull(ring)

    def end(self, event_id: str, sound_end: int, ring: RingBuffer) -> Path | None:
        """The clip's path, or None when it cannot be written (the failure is counted)."""
        clip = self._open.get(event_id)
        if clip is None:
            return None
        clip.until = sound_end + self.post_samples
        why = self._room_for(clip)
        if why is not None:
            del self._open[event_id]
            self._failed(clip.path, why)
            return None
        self.pull(ring)
        return clip.path

    def pull(self, ring: RingBuffer) -> None:
        """Append newly arrived audio to every open clip; write the finished ones."""
        total = ring.total
        for eid, clip in list(self._open.items()):
            stop = total if clip.until is None else min(total, clip.until)
            room = self.max_samples - clip.size
            stop = min(stop, clip.next + max(0, room))
            if stop > clip.next:
                start = max(clip.next, ring.oldest)
                data = ring.read(start, stop)
                clip.chunks.append(data)
                clip.size += data.size
                clip.next = stop
            full = clip.size >= self.max_samples
            if clip.until is not None and (clip.next >= clip.until or full):
                self._write(eid)

    def flush(self) -> None:
        """End of stream: write every clip with the audio there is."""
        for eid in list(self._open):
            self._write(eid)

    def _write(self, eid: str) -> None:
        clip = self._open.pop(eid)
        audio = np.concatenate(clip.chunks) if clip.chunks else np.zeros(0, np.float32)
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o750)
            write_wav(clip.path, audio, self.rate, mode=0o640)
        except OSError as exc:  # atomic_write left no temporary file
            self._failed(clip.path, f"{exc.strerror or exc}: {clip.path}")
            return
        self.retention()

    def retention(self, now: float | None = None) -> list[Path]:
        """Delete clips older than max_age_days, then the oldest until under max_total_mb."""
        now = time.time() if now is None else now
        removed: list[Path] = []
        try:
            files = [(p.stat().st_mtime, p.stat().st_size, p) for p in self.dir.glob("*.wav")]
        except OSError:
            return removed
        files.sort()
        max_age = self.cfg.max_age_days * 86400.0
        budget = self.cfg.max_total_mb * 1024 * 1024
        keep = []
        for mtime, size, p in files:
            if now - mtime > max_age:
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
            else:
                keep.append((mtime, size, p))
        total = sum(s for _, s, _ in keep)
        for _mtime, size, p in keep:
            if total <= budget:
                break
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
            total -= size
        return removed
