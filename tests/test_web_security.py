"""The web page's guards, against a real daemon: a password on every request beyond
loopback (page, API, live stream, clips), never in a log; clip ids cannot leave the
clips directory; the config refuses a wide bind without a password."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from pathlib import Path

from listener.detect.events import Event
from listener.history.store import HistoryWriter
from listener.web.app import MAX_LIVE
from tests.fixtures_daemon import make_stream
from tests.helpers import assert_clean_error, free_port, run_cli
from tests.test_web_page import get_json, page_daemon, wait_for, web_config

SECRET = "correct-horse-battery"


def status(url: str, password: str | None = None, bearer: bool = False,
           method: str = "GET") -> int:
    req = urllib.request.Request(url, method=method)
    if password is not None:
        value = (f"Bearer {password}" if bearer else
                 "Basic " + base64.b64encode(f"me:{password}".encode()).decode())
        req.add_header("Authorization", value)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read(1)
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_beyond_loopback_every_request_needs_the_password(
        tmp_path: Path, hearing_model_dir: Path, procs):
    (tmp_path / "web-password").write_text(SECRET + "\n")
    p, base = page_daemon(tmp_path, hearing_model_dir, procs, [("alarm", 3.0)], 20.0,
                          host="0.0.0.0", password_file="web-password")
    ok = lambda: status(base + "/api/events?type=end", SECRET) == 200 and get_ends(base)  # noqa: E731
    ev = wait_for(ok, 40, "an ended event")[0]
    paths = ["/", "/static/app.js", "/api/status", "/api/events", f"/api/events/{ev['id']}",
             f"/api/events/{ev['id']}/clip.wav", "/api/search?q=beep", "/api/try?q=beep"]
    for path in paths:
        assert status(base + path) == 401, path
        assert status(base + path, "wrong") == 401, path
        assert status(base + path, SECRET) == 200, path
    assert status(base + "/api/events", SECRET, bearer=True) == 200
    assert status(base + "/api/triggers/alarm/enabled", method="POST") == 401
    # the live stream too (checked before it starts streaming)
    assert status(base + "/api/live") == 401
    p.kill()
    assert SECRET not in p.text()


def get_ends(base: str) -> list:
    req = urllib.request.Request(base + "/api/events?type=end")
    req.add_header("Authorization", "Bearer " + SECRET)
    with urllib.request.urlopen(req, timeout=10) as r:
        import json
        return [e for e in json.loads(r.read())["events"] if e.get("clip")]


def test_clip_ids_cannot_leave_the_clips_directory(
        tmp_path: Path, hearing_model_dir: Path, procs):
    _, base = page_daemon(tmp_path, hearing_model_dir, procs, [("alarm", 3.0)], 20.0)
    ev = wait_for(lambda: [e for e in get_json(base + "/api/events?type=end")["events"]
                           if e.get("clip")], 40, "an event with a clip")[0]
    assert status(base + f"/api/events/{ev['id']}/clip.wav") == 200
    # a history row naming a file outside the clips directory (a damaged or forged row)
    secret_file = tmp_path / "not-a-clip.wav"
    secret_file.write_bytes(b"RIFF private")
    forged = Event(type="end", id="f" * 32, trigger="alarm", score=0.1, peak_score=0.9,
                   match="x", window_start=0, window_end=1, time=ev["time"], model="m",
                   clip=str(tmp_path / "state" / "clips" / ".." / ".." / "not-a-clip.wav"))
    writer = HistoryWriter(tmp_path / "state" / "history.sqlite3")
    writer.add([(forged, "default")], [])
    writer.close()
    assert status(base + f"/api/events/{'f' * 32}/clip.wav") == 403
    for bad in ("..%2F..%2Fnot-a-clip", "../../not-a-clip", "%2e%2e", "ABC", ev["id"] + "0",
                "..%252F..%252Fnot-a-clip"):
        assert status(base + f"/api/events/{bad}/clip.wav") in (400, 404), bad
    assert status(base + "/static/..%2F..%2Fconfig%2Fschema.py") in (403, 404)


def test_loopback_page_refuses_other_host_names_and_too_many_live_pages(
        tmp_path: Path, hearing_model_dir: Path, procs):
    """DNS rebinding: a site pointing its name at 127.0.0.1 gets nothing; live streams are
    capped so the API keeps server threads."""
    _, base = page_daemon(tmp_path, hearing_model_dir, procs, [], 30.0)
    req = urllib.request.Request(base + "/api/status", headers={"Host": "evil.example"})
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("served a foreign Host")
    except urllib.error.HTTPError as exc:
        assert exc.code == 403
    assert status(base.replace("127.0.0.1", "localhost") + "/api/status") == 200
    streams = [urllib.request.urlopen(base + "/api/live", timeout=10) for _ in range(MAX_LIVE)]
    try:
        assert status(base + "/api/live") == 503
        assert status(base + "/api/status") == 200
    finally:
        for s in streams:
            s.close()


def test_a_wide_bind_without_a_password_is_a_config_error(tmp_path: Path,
                                                          hearing_model_dir: Path):
    wav = make_stream(tmp_path, "stream.wav", [], 12.0)
    web_config(tmp_path, hearing_model_dir, wav, free_port(), host="0.0.0.0")
    r = run_cli("check-config", "--config", "config.yaml", cwd=tmp_path)
    assert_clean_error(r, "config.yaml:", "web.host", "web.password")


def test_home_assistant_device_links_to_the_page(mosquitto, mqtt_subscriber, tmp_path: Path):
    import json

    from listener.config.schema import WebConfig
    from listener.mqtt.publisher import MqttPublisher
    from listener.service.state_files import StateDir
    from listener.web.server import page_url
    from tests.fixtures_broker import mqtt_config
    from tests.mqtt_driver import trigger

    sub = mqtt_subscriber(mosquitto, "homeassistant/#")
    url = page_url(WebConfig(enabled=True, port=8800))
    assert url == "http://127.0.0.1:8800/"
    files = StateDir(tmp_path)
    pub = MqttPublisher(mqtt_config(mosquitto), [trigger("smoke")], "m", files.spool,
                        files.published_discovery, configuration_url=url)
    pub.start()
    try:
        configs = sub.wait_for(
            lambda ms: [json.loads(m.payload) for m in ms
                        if m.topic.endswith("/config") and m.payload] or None,
            10, "discovery configs")
    finally:
        pub.close()
    assert all(c["device"]["configuration_url"] == url for c in configs)
