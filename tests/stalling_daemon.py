"""`listener run` whose processing loop hangs after N windows, for the watchdog test.

    python -m tests.stalling_daemon N run --config FILE

The daemon itself is unchanged; only the detector's per-window step is wrapped here,
in the test's own process, so it blocks for good after N windows. The systemd
watchdog pings come from that loop, so they must stop while the process lives on.
"""

from __future__ import annotations

import sys
import threading

from listener.__main__ import main
from listener.detect.detector import Detector


def stall_after(n: int) -> None:
    real = Detector.process
    seen = 0

    def process(self, *args, **kwargs):
        nonlocal seen
        seen += 1
        if seen > n:
            print("test hook: processing loop stalled", file=sys.stderr, flush=True)
            threading.Event().wait()
        return real(self, *args, **kwargs)

    Detector.process = process  # type: ignore[method-assign]


if __name__ == "__main__":
    stall_after(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
