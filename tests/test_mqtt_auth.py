"""TLS and password authentication against a mosquitto with a self-signed CA."""

from __future__ import annotations

import json

from structlog.testing import capture_logs

from tests.fixtures_broker import mqtt_config, wait_until
from tests.helpers import assert_no_traceback, running, stop
from tests.mqtt_driver import Feed, make_pair, publisher, start_driver

BASE = "listener/testdev"
USER, PASSWORD = "listener", "s3cret-Pw"


def test_tls_and_password_file(mosquitto_factory, mqtt_subscriber, tmp_path) -> None:
    broker = mosquitto_factory(users={USER: PASSWORD}, tls=True)
    sub = mqtt_subscriber(broker, f"{BASE}/#", username=USER, password=PASSWORD)
    pw_file = tmp_path / "mqtt-password"
    pw_file.write_text(PASSWORD + "\n")
    cfg = mqtt_config(broker, username=USER, password_file=str(pw_file))
    assert cfg.tls.enabled and cfg.tls.ca_file is not None
    sink = publisher(cfg, ["smoke"], tmp_path / "state")
    sink.start()
    try:
        start, _ = make_pair("smoke", 0.0)
        sink.on_result(Feed(["smoke"]).events(start))
        ev = sub.wait_topic(f"{BASE}/smoke/event")
        assert json.loads(ev.payload)["id"] == start.id
        assert sink.flush(5)
    finally:
        sink.close()


def test_tls_verifies_the_broker_by_default(mosquitto_factory, tmp_path) -> None:
    broker = mosquitto_factory(tls=True)
    # No ca_file: the system CAs, which did not sign the test broker -> no connection.
    cfg = mqtt_config(broker, tls={"enabled": True})
    with capture_logs() as logs:
        sink = publisher(cfg, ["smoke"], tmp_path)
        sink.start()
        try:
            wait_until(lambda: len([e for e in logs if "TLS" in e["event"]]) >= 2, 10,
                       "two failed TLS handshakes")
            assert not sink.connected
        finally:
            sink.close()
    assert not [e for e in logs if e["event"] == "mqtt connected"]
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1, errors  # then quiet retries
    assert "CERTIFICATE_VERIFY_FAILED" in errors[0]["event"]
    assert "ca_file" in errors[0]["hint"]


def test_wrong_password_one_clear_error_then_quiet_retries(mosquitto_factory, tmp_path) -> None:
    broker = mosquitto_factory(users={USER: PASSWORD}, tls=True)
    wrong = "not-the-password-42"
    cfg = {"host": broker.host, "port": broker.port, "device_id": "testdev", "username": USER,
           "password": wrong, "reconnect_min_seconds": 0.1, "reconnect_max_seconds": 0.2,
           "tls": {"enabled": True, "ca_file": str(broker.tls.ca_file)}}
    with running(start_driver(tmp_path, cfg)) as proc:
        wait_until(lambda: broker.log_text().count("not authorised") >= 4
                   or proc.poll() is not None, 30, "four refused connection attempts")
        assert proc.poll() is None, "the driver died instead of retrying"
        code, _, err = stop(proc, timeout=15)
    assert code == 0, err
    assert_no_traceback(err)
    assert wrong not in err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    errors = [r for r in records if r["level"] == "error"]
    assert len(errors) == 1, errors
    assert f"{broker.host}:{broker.port}" in errors[0]["event"]
    assert errors[0]["reason"] == "Not authorized" and errors[0]["reason_code"] == 135
    assert len([r for r in records if "refused again" in r["event"]]) >= 3
