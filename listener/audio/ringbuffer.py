"""RingBuffer: the newest audio, preallocated once, addressed by absolute sample index.

The reader thread writes blocks; the processing thread copies windows and clip
spans out. Positions are absolute sample counts since the stream started, so a
window is named by the index of its last sample + 1 (``end``) and stays valid
as long as it has not been overwritten. One lock guards the copy in and the
copy out; nothing is allocated per block.
"""

from __future__ import annotations

import threading

import numpy as np


class RingBuffer:
    """Fixed-capacity float32 ring with an absolute sample counter (``total``)."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self._total = 0
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        """Samples written since the start (absolute index of the next sample)."""
        return self._total

    @property
    def oldest(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self._total - self.capacity)

    def write(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        n = block.size
        if n == 0:
            return
        with self._lock:
            if n >= self.capacity:
                block = block[-self.capacity :]
                start = (self._total + n - self.capacity) % self.capacity
                first = self.capacity - start
                self._buf[start:] = block[:first]
                self._buf[:start] = block[first:]
            else:
                start = self._total % self.capacity
                first = min(n, self.capacity - start)
                self._buf[start : start + first] = block[:first]
                if first < n:
                    self._buf[: n - first] = block[first:]
            self._total += n

    def read(self, start: int, end: int) -> np.ndarray:
        """Copy of absolute samples [start, end), clamped to what is still held.

        The result is shorter than ``end - start`` when the beginning was already
        overwritten (or never written); it never contains samples past ``total``.
        """
        with self._lock:
            end = min(int(end), self._total)
            start = max(int(start), self._total - self.capacity, 0)
            if end <= start:
                return np.zeros(0, dtype=np.float32)
            n = end - start
            i = start % self.capacity
            if i + n <= self.capacity:
                return self._buf[i : i + n].copy()
            first = self.capacity - i
            return np.concatenate((self._buf[i:], self._buf[: n - first]))

    def latest(self, n: int) -> np.ndarray:
        """The newest ``n`` samples (fewer if fewer exist)."""
        with self._lock:
            total = self._total
        return self.read(total - n, total)
