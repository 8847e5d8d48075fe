"""Hop scheduler: which window to score next, and which stale ones to skip.

Windows end on multiples of the hop (absolute sample index ``k * hop``). When
inference keeps up, every window is scored. When it falls behind, only the
NEWEST due window is scored and the ones in between are counted as skipped:
nothing is ever queued, so memory stays flat and the newest audio wins
(:meth:`HopScheduler.take_newest`, for live sources). Scans of files take every due
window in order instead (:meth:`HopScheduler.take_next`).
"""

from __future__ import annotations


class HopScheduler:
    def __init__(self, hop_samples: int) -> None:
        if hop_samples <= 0:
            raise ValueError("hop_samples must be positive")
        self.hop = int(hop_samples)
        self.next_end = self.hop
        self.skipped = 0

    def due(self, total: int) -> bool:
        return total >= self.next_end

    def take_newest(self, total: int) -> int | None:
        """End index of the newest due window (skipping older due ones), or None."""
        if total < self.next_end:
            return None
        newest = (total // self.hop) * self.hop
        self.skipped += (newest - self.next_end) // self.hop
        self.next_end = newest + self.hop
        return newest

    def take_next(self, total: int) -> int | None:
        """End index of the oldest due window (no skipping), or None."""
        if total < self.next_end:
            return None
        end = self.next_end
        self.next_end += self.hop
        return end

    def final(self, total: int) -> int | None:
        """At end of stream: a last window for a trailing partial hop, if any audio is new."""
        last = self.next_end - self.hop
        if total > last:
            self.next_end = total + self.hop
            return total
        return None
