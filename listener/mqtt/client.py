"""The MQTT transport: a paho client set up from the config, and its connection story.

paho runs its own network thread; its callbacks here only log and hand over (a
topic and payload, an acknowledged message id, "connected") to the publisher, which
owns what to send. A broker that refuses us (bad password, not authorised, TLS
verification failed) gets one clear error line naming the broker, the reason and what
to check; the retries with backoff after it are quiet. The last will says
``offline`` on the availability topic, so Home Assistant marks the entities
unavailable when the process dies.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from listener.config.schema import MqttConfig
from listener.errors import ConfigError
from listener.mqtt.topics import availability_topic

log = structlog.get_logger("listener.mqtt")

_AUTH_CODES = {134, 135}  # bad user name or password, not authorized


def read_password(cfg: MqttConfig) -> str | None:
    """The password from the config or the first line of ``password_file`` (never logged)."""
    if cfg.password is not None:
        return cfg.password.get_secret_value()
    if cfg.password_file is None:
        return None
    try:
        text = Path(cfg.password_file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"mqtt.password_file {cfg.password_file}: cannot read it ({exc.strerror}); "
            "check the path and that the listener user may read it"
        ) from None
    lines = text.splitlines()
    return lines[0] if lines else ""


class _Paho(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed.

    paho's ``on_connect_fail`` does not say why; the reason (refused, unreachable,
    TLS verification failed) is what a user needs to fix the config.
    """

    last_error: BaseException | None = None

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            self.last_error = exc
            raise


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
        self._refused_reason: str | None = None
        self._unreachable_logged = False
        self._connected = False
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
        return self._paho.is_connected()

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
            if reason.is_failure:
                self._log_refused(reason)
                return
            self._refused_reason = None
            self._unreachable_logged = False
            self._connected = True
            if self._subscriptions:
                client.subscribe([(t, 1) for t in self._subscriptions])
            self._on_connected()
        except Exception:
            log.exception("mqtt on_connect handler failed")

    def _log_refused(self, reason: Any) -> None:
        text = str(reason)
        if text == self._refused_reason:
            log.debug("mqtt connection refused again", broker=self.broker, reason=text)
            return
        self._refused_reason = text
        hint = (
            "check mqtt.username and mqtt.password/password_file and the broker's ACL"
            if getattr(reason, "value", None) in _AUTH_CODES else "check the broker's log"
        )
        log.error(
            f"mqtt broker {self.broker} refused the connection: {text}; "
            "retrying with backoff (events are spooled meanwhile)",
            broker=self.broker, reason=text, reason_code=reason.value, hint=hint,
        )

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        exc = self._paho.last_error
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown"
        if isinstance(exc, ssl.SSLError):
            if reason == self._refused_reason:
                log.debug("mqtt TLS handshake failed again", broker=self.broker, reason=reason)
                return
            self._refused_reason = reason
            log.error(
                f"TLS handshake with mqtt broker {self.broker} failed: {exc}; "
                "retrying with backoff (events are spooled meanwhile)",
                broker=self.broker, reason=reason,
                hint="check mqtt.tls.ca_file (the CA that signed the broker's certificate), "
                "the broker's host name, and mqtt.tls.insecure",
            )
        elif not self._unreachable_logged:
            self._unreachable_logged = True
            log.warning(
                f"mqtt broker {self.broker} is unreachable ({reason}); detection continues, "
                "events are spooled, retrying with backoff",
                broker=self.broker, reason=reason,
            )
        else:
            log.debug("mqtt broker still unreachable", broker=self.broker, reason=reason)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        if self._connected:
            self._connected = False
            if not self._stopping:
                log.warning(
                    "mqtt connection lost; retrying with backoff (events are spooled meanwhile)",
                    broker=self.broker, reason=str(reason),
                )

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        self._on_acked(mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._on_message_cb(msg.topic, msg.payload)
        except Exception:
            log.exception("mqtt message handler failed", topic=msg.topic)
