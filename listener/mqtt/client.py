"""The MQTT transport: a paho client set up from the config, and its connection story.

paho runs its own network thread; its callbacks here only log and hand over (a
topic and payload, an acknowledged message id, "connected") to the publisher, which
owns what to send. A broker that refuses us (bad password, not authorised, TLS
verification failed) gets one clear error line naming the broker, the reason and what
to check; the retries with backoff after it are quiet. The last will says
``offline`` on the availability topic, so Home Assistant marks the entities
unavailable when the process dies.

A broker that accepts the TCP connection and never answers the MQTT handshake
(CONNACK) would otherwise be invisible: paho bounds only the TCP and TLS connect
(``connect_timeout``) and waits for CONNACK until the keepalive runs out, logging
nothing. The same bound applies to the handshake here (:class:`_Paho`): the attempt is
dropped, a warning names the broker, and paho retries with its backoff.

Every failed attempt is logged with the wait before the next one (paho doubles it from
``reconnect_min_seconds`` up to ``reconnect_max_seconds``): the first of a kind at
warning or error, repeats at info once per :data:`RETRY_INFO_INTERVAL`, the rest at
debug.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from listener.config.schema import MqttConfig, WebConfig
from listener.errors import ConfigError
from listener.mqtt.topics import availability_topic

log = structlog.get_logger("listener.mqtt")

_AUTH_CODES = {134, 135}  # bad user name or password, not authorized
HANDSHAKE_TIMEOUT = 5.0  # seconds for TCP connect, TLS and CONNACK each (paho's default)
RETRY_INFO_INTERVAL = 60.0  # repeated connection failures: info at most this often


def read_password(cfg: MqttConfig | WebConfig, section: str = "mqtt") -> str | None:
    """The password from the config or the first line of ``password_file`` (never logged);
    the web page's password (``section`` "web") is read the same way."""
    if cfg.password is not None:
        return cfg.password.get_secret_value()
    if cfg.password_file is None:
        return None
    try:
        text = Path(cfg.password_file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{section}.password_file {cfg.password_file}: cannot read it ({exc.strerror}); "
            "check the path and that the listener user may read it"
        ) from None
    lines = text.splitlines()
    return lines[0] if lines else ""


class _Paho(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed, and bounding
    the wait for the broker's CONNACK.

    paho's ``on_connect_fail`` does not say why; the reason (refused, unreachable,
    TLS verification failed) is what a user needs to fix the config. A CONNECT that
    is not answered within ``connect_timeout`` gets its socket shut down from paho's
    own thread (``loop_misc`` runs there after every select), so paho sees the
    connection lost, calls ``on_disconnect`` and retries with its backoff.
    """

    last_error: BaseException | None = None
    handshake_since: float | None = None  # CONNECT sent, no CONNACK yet (monotonic)
    handshake_timed_out = False
    failure_logged = False  # this attempt's failure was logged (a refusal, then the close)

    def reconnect(self) -> mqtt.MQTTErrorCode:
        self.handshake_since = None
        self.handshake_timed_out = self.failure_logged = False
        try:
            rc = super().reconnect()
        except OSError as exc:
            self.last_error = exc
            raise
        self.handshake_since = time.monotonic()
        return rc

    def loop_misc(self) -> mqtt.MQTTErrorCode:
        rc = super().loop_misc()
        since = self.handshake_since
        if since is not None and not self.is_connected() and \
                time.monotonic() - since > self.connect_timeout:
            self.handshake_since = None
            self.handshake_timed_out = True
            sock = self.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        return rc


def _tls(client: mqtt.Client, cfg: MqttConfig) -> None:
    tls = cfg.tls
    try:
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"mqtt.tls: cannot load the CA file or client certificate/key ({exc}); "
            "check mqtt.tls.ca_file, cert_file and key_file (PEM files)"
        ) from None
    client.tls_insecure_set(tls.insecure)


class _Failures:
    """Consecutive failed connection attempts (paho-thread only): the wait before the
    next one, mirroring paho's backoff, and when a repeat was last logged at info."""

    def __init__(self, min_delay: float, max_delay: float) -> None:
        self.min_delay, self.max_delay = float(min_delay), float(max_delay)
        self.count = 0
        self.kind: str | None = None
        self.logged_at = 0.0

    def reset(self) -> None:
        self.count, self.kind = 0, None

    def add(self) -> float:
        """One more failure; the seconds paho waits before the next attempt."""
        self.count += 1
        return min(self.min_delay * 2 ** min(self.count - 1, 30), self.max_delay)


class MqttClient:
    """Connects in the background, reconnects with capped backoff, reports what happened.

    - ``on_connected()``: a (re)connection succeeded and ``subscriptions`` are requested;
    - ``on_message(topic, payload)``: a message on one of them;
    - ``on_acked(mid)``: the broker acknowledged a QoS 1 publish.
    All three run on paho's network thread and must only record and wake.
    """

    def __init__(self, cfg: MqttConfig, subscriptions: Sequence[str], *,
                 on_connected: Callable[[], None], on_message: Callable[[str, bytes], None],
                 on_acked: Callable[[int], None]) -> None:
        self.config = cfg
        self.broker = f"{cfg.host}:{cfg.port}"
        self._subscriptions = list(subscriptions)
        self._on_connected = on_connected
        self._on_message_cb = on_message
        self._on_acked = on_acked
        # paho-thread-only state: log once per kind of trouble
        self._failures = _Failures(cfg.reconnect_min_seconds, cfg.reconnect_max_seconds)
        self._connected = False
        self._ready = False  # on_connected() has run for this connection (any thread reads)
        self._stopping = False
        self._paho = self._make()

    def _make(self) -> _Paho:
        cfg = self.config
        client = _Paho(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"listener-{cfg.device_id}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.suppress_exceptions = True
        client.connect_timeout = HANDSHAKE_TIMEOUT
        password = read_password(cfg)
        if cfg.username is not None or password is not None:
            client.username_pw_set(cfg.username or "", password)
        if cfg.tls.enabled:
            _tls(client, cfg)
        client.will_set(availability_topic(cfg), "offline", qos=1, retain=True)
        client.reconnect_delay_set(
            min_delay=cfg.reconnect_min_seconds,  # type: ignore[arg-type]
            max_delay=cfg.reconnect_max_seconds,  # type: ignore[arg-type]
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    # --- used by the publisher ---------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; returns at once, also when the broker is down."""
        self._paho.connect_async(self.config.host, self.config.port, self.config.keepalive)
        self._paho.loop_start()

    def is_connected(self) -> bool:
        """Connected, and ``on_connected`` has run: paho reports the connection before its
        callback does, and a publisher that acted in between would publish the present
        state twice (once as if nothing had changed, once for the new connection)."""
        return self._ready and self._paho.is_connected()

    def publish(self, topic: str, payload: str | bytes, qos: int = 0,
                retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self._paho.publish(topic, payload, qos=qos, retain=retain)

    def stop(self) -> None:
        """Say ``offline`` (when connected), disconnect and stop the network thread."""
        self._stopping = True
        if self._paho.is_connected():
            try:
                info = self._paho.publish(availability_topic(self.config), "offline", qos=1,
                                          retain=True)
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError):
                pass
        self._paho.disconnect()
        self._paho.loop_stop()

    # --- paho callbacks (paho's network thread) ------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        try:
            self._paho.handshake_since = None
            if reason.is_failure:
                self._log_refused(reason)
                return
            self._failures.reset()
            self._connected = True
            if self._subscriptions:
                client.subscribe([(t, 1) for t in self._subscriptions])
            self._on_connected()
            self._ready = True
        except Exception:
            log.exception("mqtt on_connect handler failed")

    def _failed(self, kind: str, level: str, message: str, again: str, **fields: Any) -> None:
        """Log one failed attempt with the wait before the next: ``message`` at ``level``
        when this kind of trouble is new, else ``again`` at info once per
        RETRY_INFO_INTERVAL and at debug in between."""
        self._paho.failure_logged = True
        failures = self._failures
        retry_in = round(failures.add(), 3)
        now = time.monotonic()
        fields = {"broker": self.broker, "retry_in": retry_in, **fields}
        if kind != failures.kind:
            failures.kind, failures.logged_at = kind, now
            getattr(log, level)(f"{message}; retrying in {retry_in:g} s, then with backoff "
                                "(detection continues, events are spooled meanwhile)", **fields)
        elif now - failures.logged_at >= RETRY_INFO_INTERVAL:
            failures.logged_at = now
            log.info(again, attempts=failures.count, **fields)
        else:
            log.debug(again, attempts=failures.count, **fields)

    def _log_refused(self, reason: Any) -> None:
        text = str(reason)
        hint = (
            "check mqtt.username and mqtt.password/password_file and the broker's ACL"
            if getattr(reason, "value", None) in _AUTH_CODES else "check the broker's log"
        )
        self._failed(f"refused: {text}", "error",
                     f"mqtt broker {self.broker} refused the connection: {text}",
                     "mqtt connection refused again",
                     reason=text, reason_code=reason.value, hint=hint)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        exc = self._paho.last_error
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown"
        if isinstance(exc, ssl.SSLError):
            self._failed(f"tls: {reason}", "error",
                         f"TLS handshake with mqtt broker {self.broker} failed: {exc}",
                         "mqtt TLS handshake failed again", reason=reason,
                         hint="check mqtt.tls.ca_file (the CA that signed the broker's "
                         "certificate), the broker's host name, and mqtt.tls.insecure")
        else:
            self._failed("unreachable", "warning",
                         f"mqtt broker {self.broker} is unreachable ({reason})",
                         "mqtt broker still unreachable", reason=reason)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self._ready = False
        if self._stopping:
            self._connected = False
            return
        if self._connected:
            self._connected = False
            self._failed("lost", "warning", "mqtt connection lost",
                         "mqtt connection lost again", reason=str(reason))
        elif self._paho.handshake_timed_out:
            timeout = self._paho.connect_timeout
            self._failed("silent", "warning",
                         f"mqtt broker {self.broker} accepted the connection but did not "
                         f"answer the MQTT handshake (CONNACK) within {timeout:g} s; is it an "
                         "MQTT broker, and is it overloaded?",
                         "mqtt broker still not answering the MQTT handshake",
                         timeout_seconds=timeout)
        elif not self._paho.failure_logged:
            self._failed("closed", "warning",
                         f"mqtt broker {self.broker} closed the connection during the MQTT "
                         f"handshake ({reason}); check the broker's log",
                         "mqtt broker closed the handshake again", reason=str(reason))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        self._on_acked(mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._on_message_cb(msg.topic, msg.payload)
        except Exception:
            log.exception("mqtt message handler failed", topic=msg.topic)
