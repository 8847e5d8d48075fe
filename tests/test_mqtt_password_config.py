"""An unquoted number as ``mqtt.password`` logs in to a real mosquitto with what was typed.

YAML reads ``password: 0123`` as the number 123; the config loader takes the text as
written instead, so the broker (which knows the user by the password ``0123`` and lets
no anonymous client in) accepts the connection.
"""

from __future__ import annotations

from pathlib import Path

from listener.config.loader import parse_config
from tests.fixtures_broker import wait_until
from tests.mqtt_driver import started

USER, PASSWORD = "listener", "0123"


def test_unquoted_numeric_password_authenticates(mosquitto_factory, tmp_path: Path) -> None:
    broker = mosquitto_factory(users={USER: PASSWORD})
    text = (
        f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n  device_id: testdev\n"
        f"  username: {USER}\n  password: {PASSWORD}\n"
        "  reconnect_min_seconds: 0.1\n  reconnect_max_seconds: 0.5\n"
    )
    cfg = parse_config(text, check_files=False).config.mqtt
    sink, _ = started(cfg, ["smoke"], tmp_path / "state")
    try:
        wait_until(lambda: sink.connected, 10, "the broker to accept the password")
    finally:
        sink.close()
    assert "not authorised" not in broker.log_text()
