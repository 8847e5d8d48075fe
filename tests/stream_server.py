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


class RtspPusher:
    """``ffmpeg`` pushing the same loop as RTSP (RTP/AAC over TCP) to a listener at
    ``url``: the source listens (``rtsp_flags: listen``), as for a camera or an
    encoder that pushes its stream. Start it once the listener's port is open
    (:func:`port_listening`)."""

    def __init__(self, wav: Path, url: str) -> None:
        self.wav = wav
        self.url = url
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RtspPusher:
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
             "-stream_loop", "-1", "-i", str(self.wav), "-ar", "44100", "-ac", "2",
             "-c:a", "aac", "-f", "rtsp", "-rtsp_transport", "tcp", self.url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)


def port_listening(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` (read from the kernel's table, without
    connecting: a connection would be the listener's one client)."""
    import psutil

    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
               for c in psutil.net_connections(kind="tcp"))


def rtp_sender(wav: Path, port: int, sdp: Path) -> subprocess.Popen[bytes]:
    """``ffmpeg`` sending the loop as RTP (L16 stereo, 44.1 kHz) to 127.0.0.1:``port``,
    describing the session in ``sdp`` (the file a receiver opens)."""
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-stream_loop",
         "-1", "-i", str(wav), "-ar", "44100", "-ac", "2", "-c:a", "pcm_s16be", "-f", "rtp",
         "-sdp_file", str(sdp), f"rtp://{HOST}:{port}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
