"""Log-mel features of a sliding window, computing only the STFT frames that are new.

Why: the daemon scores a 10-s window every hop (1 s by default), so most of a
window's frames were already computed for the previous one. Frames are a function
of the samples they cover only, so interior frames can be reused after a shift of
whole hops; frames that reach into the reflect padding (see the frame geometry in
:mod:`listener.model.logmel`) depend on the window's edges and are recomputed.
The result equals a full :class:`~listener.model.logmel.LogMel` call.
"""

from __future__ import annotations

import numpy as np

from listener.model.logmel import LogMel


class StreamingLogMel:
    """Features of a sliding window, computing only the STFT frames that are new.

    ``features(window, end_sample)``: ``window`` is exactly n_samples ending at absolute
    sample index ``end_sample``. When the previous call's window ended ``k * hop_length``
    samples earlier, interior frames are reused and only new + edge frames computed; the
    result equals ``LogMel.__call__(window)``.

    Memory: one [n_frames, n_mels] float32 cache, shifted in place. Counters:
    ``frames_computed`` (total), ``last_frames_computed``, ``full_computes``,
    ``incremental_computes``.
    """

    def __init__(self, logmel: LogMel) -> None:
        self.logmel = logmel
        self._cache = np.empty((logmel.n_frames, logmel.n_mels), dtype=np.float32)
        self._end: int | None = None
        self.frames_computed = 0
        self.last_frames_computed = 0
        self.full_computes = 0
        self.incremental_computes = 0

    def reset(self) -> None:
        """Forget the cache (a new source, a seek): the next call computes every frame."""
        self._end = None

    def features(self, window: np.ndarray, end_sample: int) -> np.ndarray:
        """float32 [C, n_frames, n_mels] of the window ending at absolute ``end_sample``.

        Samples are trusted to come from one continuous stream: call :meth:`reset` when
        the source changes or sample numbering restarts. A window shorter than n_samples
        (start-up) is padded like ``LogMel.__call__`` and not cached; a longer one is cut
        to its newest n_samples. The returned array is a fresh copy.
        """
        lm = self.logmel
        x = np.asarray(window)
        if x.ndim != 1:
            raise ValueError(f"window must be mono 1-D samples, got shape {x.shape}")
        if x.shape[0] < lm.n_samples:  # start-up: not yet a full window -> padded, uncached
            self._end = None
            out = lm(x)
            self._count(lm.n_frames, full=True)
            return out
        x = lm.prepare(x)  # the newest n_samples, float dtype
        shift = end_sample - self._end if self._end is not None else -1
        k, rem = divmod(shift, lm.hop_length) if shift >= 0 else (-1, 1)
        reuse_hi = lm.interior_hi - k  # new frames [interior_lo, reuse_hi) come from the cache
        cache = self._cache
        self._end = None  # an exception below must not leave a half-updated cache "valid"
        if rem or k < 0 or reuse_hi <= lm.interior_lo:
            lm.frames_into(x, [(0, lm.n_frames)], cache)
            self._count(lm.n_frames, full=True)
        else:
            lo = lm.interior_lo
            if k:
                cache[lo:reuse_hi] = cache[lo + k : reuse_hi + k]
            lm.frames_into(x, [(0, lo), (reuse_hi, lm.n_frames)], cache)
            self._count(lo + lm.n_frames - reuse_hi, full=False)
        self._end = end_sample
        return lm.expand(cache)

    def _count(self, frames: int, full: bool) -> None:
        self.frames_computed += frames
        self.last_frames_computed = frames
        if full:
            self.full_computes += 1
        else:
            self.incremental_computes += 1

