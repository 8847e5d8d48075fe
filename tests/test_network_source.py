"""Network streams: a real ffmpeg serves generated sounds over HTTP on loopback.

The daemon on the URL hears the alarm, hears it again after the server is killed and
restarted, keeps retrying an unreachable URL with capped backoff (one warning, no
traceback, SIGTERM exits 0), and never shows the URL's password.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from listener.audio.network import Backoff, UrlSource
from listener.audio.sources import Source
from listener.audio.urls import mask_url, scrub
from listener.config.source import SourceConfig, parse_source
from listener.service.assemble import make_source
from tests.fixtures_daemon import DEFAULTS, Proc, make_stream, trigger
from tests.helpers import (
    HOST,
    ROOT,
    assert_clean_error,
    assert_no_traceback,
    free_port,
    run_cli,
    write_config,
)
from tests.stream_server import RtspPusher, StreamServer, port_listening, rtp_sender

SECRET = "s3cret-pw"


def with_credentials(url: str) -> str:
    return url.replace("://", f"://viewer:{SECRET}@", 1)


def wait_until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return value


@pytest.fixture
def alarm_loop(tmp_path: Path) -> Path:
    """12 s of background with an alarm at 3 s (the server loops it)."""
    return tmp_path / make_stream(tmp_path, "loop.wav", [("alarm", 3.0)], 12.0)


@pytest.fixture
def server(alarm_loop: Path):
    s = StreamServer(alarm_loop, free_port())
    yield s
    s.kill()


def url_config(d: Path, model: Path, url: str, **source: Any) -> Path:
    return write_config(
        d, model, [trigger("alarm")],
        source={"type": "url", "url": url, "stall_seconds": 3, "reconnect_min_seconds": 0.1,
                "reconnect_max_seconds": 0.4, **source},
        audio={"hop_seconds": 1.0}, defaults=DEFAULTS, mqtt={"enabled": False},
        logging={"level": "debug", "format": "json"}, state_dir="state")


def starts_after(p: Proc, index: int) -> list[dict[str, Any]]:
    return [ln for ln in p.lines()[index:] if ln.get("event") == "event start"
            and ln.get("trigger") == "alarm"]


def test_daemon_hears_an_http_stream_and_again_after_the_server_restarts(
        tmp_path: Path, hearing_model_dir: Path, server: StreamServer, procs):
    server.start()
    url_config(tmp_path, hearing_model_dir, with_credentials(server.url))
    p = Proc(tmp_path)
    procs.append(p)
    p.wait_log(lambda ln: ln.get("event") == "stream connected", 60, "connected")
    p.wait_log(lambda ln: ln.get("event") == "event start" and ln.get("trigger") == "alarm",
               60, "the alarm heard over HTTP")
    server.kill()
    p.wait_log(lambda ln: ln.get("event", "").startswith("stream lost"), 30, "the drop")
    server.start()
    back = p.wait_log(lambda ln: ln.get("event") == "stream reconnected", 30, "reconnect")
    assert back["reconnects"] == 1
    index = p.lines().index(back)
    wait_until(lambda: starts_after(p, index), 60, "the alarm heard after the reconnect")
    p.signal(signal.SIGTERM)
    assert p.wait(30) == 0, p.text()[-3000:]
    text = p.text()
    assert SECRET not in text
    assert f"viewer:***@{HOST}" in text
    assert_no_traceback(text)


def test_unreachable_url_is_retried_with_capped_backoff_and_sigterm_exits_0(
        tmp_path: Path, hearing_model_dir: Path, procs):
    url = with_credentials(f"http://{HOST}:{free_port()}/nothing-here")
    url_config(tmp_path, hearing_model_dir, url)
    p = Proc(tmp_path)
    procs.append(p)
    p.wait_log(lambda ln: ln.get("event") == "listening", 60, "listening")
    p.wait_log(lambda ln: ln.get("event") == "stream still unreachable"
               and ln.get("attempts", 0) >= 5, 30, "five attempts")
    lines = p.lines()
    warned = [ln for ln in lines if ln.get("event", "").startswith("stream unreachable")]
    assert len(warned) == 1, "one warning for the state, not one per retry"
    assert warned[0]["level"] == "warning" and warned[0]["reason"] == "Connection refused"
    retries = [ln["retry_in_s"] for ln in lines if "retry_in_s" in ln][:5]
    assert retries == [0.1, 0.2, 0.4, 0.4, 0.4]
    started = time.monotonic()
    p.signal(signal.SIGTERM)
    assert p.wait(30) == 0, p.text()[-3000:]
    assert time.monotonic() - started < 10
    text = p.text()
    assert SECRET not in text and "viewer:***@" in text
    assert_no_traceback(text)


def test_daemon_hears_an_rtsp_stream(tmp_path: Path, hearing_model_dir: Path,
                                     alarm_loop: Path, procs):
    port = free_port()
    url = f"rtsp://{HOST}:{port}/live"
    url_config(tmp_path, hearing_model_dir, url, stall_seconds=30,
               options={"rtsp_flags": "listen", "listen_timeout": 30})
    p = Proc(tmp_path)
    procs.append(p)
    wait_until(lambda: port_listening(port), 60, "the RTSP listener")
    pusher = RtspPusher(alarm_loop, url).start()
    try:
        p.wait_log(lambda ln: ln.get("event") == "stream connected", 30, "connected")
        p.wait_log(lambda ln: ln.get("event") == "event start" and ln.get("trigger") == "alarm",
                   60, "the alarm heard over RTSP")
        p.signal(signal.SIGTERM)
        assert p.wait(30) == 0, p.text()[-3000:]
    finally:
        pusher.kill()
    assert_no_traceback(p.text())


class Reader:
    """Consumes a source's blocks on a thread (as the pipeline's reader does)."""

    def __init__(self, source: Source) -> None:
        self.samples = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.source = source
        self.thread.start()

    def _run(self) -> None:
        for block in self.source.blocks():
            self.samples += len(block)


def test_url_source_reports_connectivity_and_reconnects(alarm_loop: Path, server):
    server.start()
    src = UrlSource(server.url, stall_seconds=3, reconnect_min_seconds=0.1,
                    reconnect_max_seconds=0.4)
    src.open()
    reader = Reader(src)
    try:
        wait_until(lambda: reader.samples >= 48000, 30, "a second of audio at 48 kHz")
        assert src.connected and src.reconnects == 0
        server.kill()
        wait_until(lambda: not src.connected, 30, "the drop noticed")
        server.start()
        before = reader.samples
        wait_until(lambda: src.connected and reader.samples > before + 48000, 30,
                   "audio again after the restart")
        assert src.reconnects == 1
    finally:
        src.close()
    reader.thread.join(5)
    assert not reader.thread.is_alive(), "blocks() ends promptly once the source is closed"


def test_credentials_are_masked_in_urls_and_messages():
    url = "rtsp://admin:hunter2@cam.local:554/stream?token=abc123&channel=1"
    assert mask_url(url) == "rtsp://admin:***@cam.local:554/stream?token=***&channel=1"
    assert mask_url("http://tok@host/x") == "http://***@host/x"
    assert mask_url("http://host/x") == "http://host/x"
    message = f"Connection refused: '{url}' (password hunter2)"
    assert "hunter2" not in scrub(message, url) and "abc123" not in scrub(message, url)


def test_backoff_doubles_up_to_its_cap_and_resets():
    b = Backoff(1.0, 60.0)
    assert [b.next() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    b.reset()
    assert b.next() == 1


def test_short_source_forms():
    assert parse_source("rtsp://cam/stream") == {"type": "url", "url": "rtsp://cam/stream"}
    assert parse_source("cam.sdp") == {"type": "url", "url": "cam.sdp"}
    assert parse_source("file:a.wav") == {"type": "file", "path": "a.wav"}
    cfg = SourceConfig.model_validate(parse_source("rtsp://u:p@cam/s"))
    assert cfg.shown == "rtsp://u:***@cam/s"


def test_check_config_masks_the_url_and_refuses_bad_ones(tmp_path: Path,
                                                         hearing_model_dir: Path):
    url_config(tmp_path, hearing_model_dir, f"rtsp://viewer:{SECRET}@cam.local/live",
               options={"headers": "Authorization: Bearer xyz"})
    r = run_cli("check-config", "--config", "config.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "rtsp://viewer:***@cam.local/live" in r.stdout
    assert SECRET not in r.stdout + r.stderr and "xyz" not in r.stdout
    url_config(tmp_path, hearing_model_dir, f"ftp://viewer:{SECRET}@cam.local/live")
    r = run_cli("check-config", "--config", "config.yaml", cwd=tmp_path)
    assert r.returncode == 2
    assert "config.yaml:" in r.stderr and "source.url: is not a stream URL" in r.stderr
    assert SECRET not in r.stdout + r.stderr
    assert_no_traceback(r.stderr)
    r = run_cli("run", "--config", "config.yaml", "--source", f"gopher://u:{SECRET}@x/",
                cwd=tmp_path)
    assert r.returncode == 2 and SECRET not in r.stderr, r.stderr


def test_without_pyav_a_url_source_is_a_clear_error(tmp_path: Path, hearing_model_dir: Path):
    """The image without the 'network' extra: exit 2 naming the extra, no traceback."""
    shadow = tmp_path / "without_av" / "av"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'av'\")\n")
    url_config(tmp_path, hearing_model_dir, f"rtsp://viewer:{SECRET}@cam.local/live")
    r = run_cli("run", "--config", "config.yaml", cwd=tmp_path,
                env={"PYTHONPATH": f"{shadow.parent}:{ROOT}"})
    assert_clean_error(r, "pip install 'listener[network]'")
    assert SECRET not in r.stderr


def test_a_stalled_stream_is_reopened(alarm_loop: Path, server: StreamServer):
    """The server stops sending (SIGSTOP) but keeps the connection: after stall_seconds
    the source gives up on it, and a fresh server is connected to."""
    server.start()
    src = UrlSource(server.url, stall_seconds=1.0, reconnect_min_seconds=0.1,
                    reconnect_max_seconds=0.4)
    src.open()
    reader = Reader(src)
    with capture_logs() as logs, closing(src):
        wait_until(lambda: reader.samples >= 48000, 30, "a second of audio")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: not src.connected, 30, "the stall noticed")
        lost = wait_until(lambda: [e for e in list(logs)
                                   if e["event"].startswith("stream lost")], 30, "the log line")
        assert lost[0]["reason"] == "no data for 1 s (stalled or not answering)"
        server.proc.send_signal(signal.SIGCONT)
        server.kill()
        server.start()
        wait_until(lambda: src.reconnects == 1, 30, "the reconnect")
    reader.thread.join(5)


def test_rtp_described_by_an_sdp_file(tmp_path: Path, alarm_loop: Path):
    sdp = tmp_path / "cam.sdp"
    sender = rtp_sender(alarm_loop, free_port(), sdp)
    try:
        wait_until(lambda: sdp.exists() and "m=audio" in sdp.read_text(), 30, "the SDP file")
        cfg = SourceConfig.model_validate(parse_source(str(sdp)))
        assert cfg.type == "url"
        src = make_source(cfg)
        src.open()
        reader = Reader(src)
        try:
            wait_until(lambda: reader.samples >= 2 * 48000, 30, "2 s of audio over RTP")
            assert src.connected
        finally:
            src.close()
        reader.thread.join(5)
    finally:
        sender.kill()
        sender.wait(10)
