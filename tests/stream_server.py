"""A real ``ffmpeg`` serving a test recording on loopback, for the network source tests.

:class:`StreamServer` plays a WAV in a loop at real time (``-re -stream_loop -1``),
encoded as AAC at 44.1 kHz stereo (so the source's decoding, downmix and resampling
all run), and serves it over HTTP (``-listen 1``: one client; it exits when the
client goes). ``kill()`` and ``start()`` again on the same port are a server restart.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.helpers import HOST


class StreamServer:
    def __init__(self, wav: Path, port: int, path: str = "live.aac") -> None:
        self.wav = wav
        self.port = port
        self.url = f"http://{HOST}:{port}/{path}"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
                "-stream_loop", "-1", "-i", str(self.wav), "-ar", "44100", "-ac", "2",
                "-c:a", "aac", "-f", "adts", "-listen", "1", self.url]

    def start(self) -> StreamServer:
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
