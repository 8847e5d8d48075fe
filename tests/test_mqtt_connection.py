"""Connection trouble shows up in the log: a broker that never answers the handshake."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

import listener.mqtt.client as client_module
from listener.config.schema import MqttConfig
from tests.fixtures_broker import HOST, wait_until
from tests.mqtt_driver import publisher

SILENT = "mqtt broker still not answering the MQTT handshake"


@pytest.fixture
def silent_broker() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP listener that accepts connections and never writes a byte: (port, accepted)."""
    server = socket.create_server((HOST, 0))
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=serve, name="silent-broker", daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        done.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()


def test_a_broker_that_never_answers_is_logged_then_retried_with_the_delay_said(
    silent_broker, tmp_path, monkeypatch
) -> None:
    assert client_module.HANDSHAKE_TIMEOUT <= 5.0  # "within a few seconds" by default
    monkeypatch.setattr(client_module, "HANDSHAKE_TIMEOUT", 1.0)  # a shorter test
    port, accepted = silent_broker
    cfg = MqttConfig(host=HOST, port=port, device_id="testdev", keepalive=60,
                     reconnect_min_seconds=0.1, reconnect_max_seconds=0.4)
    with capture_logs() as logs:
        sink = publisher(cfg, ["smoke"], tmp_path)
        t0 = time.monotonic()
        sink.start()
        try:
            first = wait_until(
                lambda: next((e for e in logs if "MQTT handshake" in e["event"]), None),
                5, "the silent broker to be logged")
            seconds = time.monotonic() - t0
            wait_until(lambda: len([e for e in logs if e["event"] == SILENT]) >= 3, 15,
                       "three more attempts")
            assert not sink.connected
        finally:
            sink.close()
    assert seconds < 1.0 + 2.0  # the handshake timeout and paho's 1 s loop, no keepalive
    assert first["log_level"] == "warning"
    assert f"{HOST}:{port}" in first["event"] and "did not answer" in first["event"]
    assert first["retry_in"] == 0.1 and "retrying in 0.1 s" in first["event"]
    repeats = [e for e in logs if e["event"] == SILENT]
    assert [e["retry_in"] for e in repeats[:3]] == [0.2, 0.4, 0.4]  # doubling, capped
    assert all(e["log_level"] == "debug" for e in repeats)  # info at most once a minute
    assert len([e for e in logs if e["log_level"] in ("warning", "error")]) == 1
    assert len(accepted) >= 4  # every attempt was a new connection
