"""A real mosquitto for tests: started on a free loopback port, stoppable for outages.

Fixtures (registered by tests/conftest.py):

- ``mosquitto``: a running anonymous broker (:class:`Mosquitto`) with ``.host``, ``.port``,
  ``.stop()``, ``.start()`` (same port, so clients reconnect by themselves) and
  ``.log_text()``. Persistence is on, so persistent client sessions and retained
  messages survive ``stop()``/``start()`` like a real broker restart.
- ``mosquitto_factory``: ``make(users={"u": "pw"}, tls=True, anonymous=False)`` for
  brokers with a password file (``mosquitto_passwd -b -c``) and/or TLS with a
  self-signed CA and server cert generated with the ``openssl`` CLI
  (``broker.tls.ca_file`` is the CA to trust; the cert is valid for 127.0.0.1).
- ``mqtt_subscriber``: ``sub = mqtt_subscriber(broker, "listener/#", ...)`` -> a connected
  :class:`Subscriber` collecting every message; ``sub.wait_for(predicate, timeout)``
  polls under a condition variable (bounded, no sleeps). Its session is persistent
  (clean_session False, QoS 1), so messages published while the broker restarts
  and the subscriber is reconnecting are not missed.
- ``mqtt_config(broker, **overrides)`` (plain function): a MqttConfig pointing at the broker,
  with short reconnect backoff for tests.

Every started broker and subscriber is stopped at teardown.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from listener.config.schema import MqttConfig
from tests.helpers import free_port

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "mosquitto_passwd"
HOST = "127.0.0.1"


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A self-signed CA and a server certificate for 127.0.0.1/localhost (openssl CLI)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d, timeout=30)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=listener test CA")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
    return TlsFiles(d / "ca.crt", d / "server.crt", d / "server.key")


@dataclass
class Mosquitto:
    """One mosquitto process with a generated config in ``workdir``."""

    workdir: Path
    port: int = 0
    users: dict[str, str] | None = None
    tls: TlsFiles | None = None
    anonymous: bool = True
    host: str = HOST
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            "log_type all",
            "connection_messages true",
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
        ]
        if self.users:
            pw = self.workdir / "passwd"
            for i, (user, password) in enumerate(self.users.items()):
                flags = ["-b", "-c"] if i == 0 else ["-b"]
                subprocess.run([MOSQUITTO_PASSWD, *flags, str(pw), user, password],
                               check=True, capture_output=True, timeout=30)
            lines.append(f"password_file {pw}")
        if self.tls:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
            ]
        self.conf = self.workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart, on the same port) and wait until it accepts connections."""
        assert not self.running, "broker already running"
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

        def accepting() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"mosquitto exited: {err}\n{self.log_text()[-2000:]}")
            with socket.socket() as s:
                s.settimeout(0.2)
                return s.connect_ex((self.host, self.port)) == 0

        wait_until(accepting, timeout, f"mosquitto to listen on {self.host}:{self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly (SIGTERM: mosquitto saves sessions and retained messages)."""
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()

    def log_text(self) -> str:
        p = self.workdir / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


_ids = itertools.count()


class Subscriber:
    """A paho client that records every message it receives, for assertions."""

    def __init__(self, broker: Mosquitto, *topics: str, username: str | None = None,
                 password: str | None = None, persistent: bool = True) -> None:
        self.topics = topics or ("#",)
        self.messages: list[Message] = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self._subscribed_mid: int | None = None
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{os.getpid()}-{next(_ids)}",
            clean_session=not persistent,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if broker.tls is not None:
            self.client.tls_set(ca_certs=str(broker.tls.ca_file), cert_reqs=ssl.CERT_REQUIRED)
        self.client.reconnect_delay_set(0.05, 0.2)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, 30)
        self.client.loop_start()
        wait_until(self.connected.is_set, 10, "the test subscriber to connect and subscribe")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    props: Any) -> None:
        if not reason.is_failure:
            _, self._subscribed_mid = client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      props: Any) -> None:
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain),
                                         msg.qos))
            self.cond.notify_all()

    def on(self, topic: str) -> list[Message]:
        with self.cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[list[Message]], Any], timeout: float = 10.0,
                 what: str = "messages") -> Any:
        """Wait (bounded) until ``predicate(messages)`` is truthy and return its value."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate(list(self.messages))
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    topics = sorted({m.topic for m in self.messages})
                    raise AssertionError(
                        f"timed out after {timeout} s waiting for {what}; "
                        f"{len(self.messages)} messages on {topics}"
                    )
                self.cond.wait(min(remaining, 0.2))

    def wait_topic(self, topic: str, timeout: float = 10.0,
                   accept: Callable[[Message], bool] = lambda m: True) -> Message:
        """The first message on ``topic`` that ``accept`` likes."""
        return self.wait_for(
            lambda ms: next((m for m in ms if m.topic == topic and accept(m)), None),
            timeout, what=f"a message on {topic}",
        )

    def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_config(broker: Mosquitto, **overrides: Any) -> MqttConfig:
    """A MqttConfig for ``broker`` with fast reconnects (overrides are MqttConfig fields)."""
    data: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "device_id": "testdev",
        "reconnect_min_seconds": 0.1,
        "reconnect_max_seconds": 0.5,
        "keepalive": 10,
    }
    if broker.tls is not None:
        data["tls"] = {"enabled": True, "ca_file": str(broker.tls.ca_file)}
    data.update(overrides)
    return MqttConfig.model_validate(data)


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    brokers: list[Mosquitto] = []

    def make(users: dict[str, str] | None = None, tls: bool = False,
             anonymous: bool | None = None, start: bool = True) -> Mosquitto:
        d = tmp_path / f"broker{len(brokers)}"
        files = make_tls_files(d / "tls") if tls else None
        b = Mosquitto(d, users=users, tls=files,
                      anonymous=(not users) if anonymous is None else anonymous)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make
    for b in brokers:
        with contextlib.suppress(Exception):
            b.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A running anonymous mosquitto on a free loopback port (see module docstring)."""
    return mosquitto_factory()


@pytest.fixture
def mqtt_subscriber() -> Iterator[Callable[..., Subscriber]]:
    subs: list[Subscriber] = []

    def make(broker: Mosquitto, *topics: str, **kwargs: Any) -> Subscriber:
        s = Subscriber(broker, *topics, **kwargs)
        subs.append(s)
        return s

    yield make
    for s in subs:
        with contextlib.suppress(Exception):
            s.close()
