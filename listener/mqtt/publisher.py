"""MqttSink: events, states, scores and Home Assistant discovery over MQTT.

Why it is built this way:

- The audio path must never wait for the network. ``on_scores``/``on_event`` only
  record what changed (events also go to the SQLite spool first, see
  :mod:`listener.mqtt.spool`) and wake one worker thread, which is the only code that calls
  ``publish``. paho's callbacks (its own network thread) only set flags, so no lock is
  ever held across a call into paho and the two threads cannot deadlock.
- Nothing is lost to outages: spooled events are published QoS 1 in spool order and
  deleted when the broker's PUBACK arrives (``on_publish`` with the mid). paho keeps
  unacknowledged messages across reconnects and re-sends them; after a restart the
  worker re-sends the whole spool, with the events' original ids and timestamps.
- State topics reflect the present: on every (re)connect the worker publishes
  availability, discovery, and the *current* state/enabled of every trigger, not the
  history; scores and level are rate-limited (once per hop, only on real change).
- A broker that refuses us (bad password, not authorised) gets one clear error line
  naming the broker and the reason; the retries with backoff after it are quiet.

Topics (``<base>`` = ``<topic_prefix>/<device_id>``): ``<base>/availability``,
``<base>/<trigger>/{state,event,score,enabled,enabled/set}``, ``<base>/level``,
``<base>/stats``; discovery under ``<discovery prefix>/<component>/<device_id>/...``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from listener.config.schema import MqttConfig, TriggerConfig
from listener.detect.events import Event, ScoreLine
from listener.errors import ConfigError, UserError
from listener.mqtt.discovery import (
    availability_topic,
    base_topic,
    discovery_configs,
    encode,
    load_published,
    save_published,
    status_topic,
    trigger_topic,
)
from listener.mqtt.spool import SPOOL_FILE, Spool
from listener.service.switches import Switches, parse_switch

log = structlog.get_logger("listener.mqtt")

MAX_INFLIGHT = 100  # spooled events handed to paho at once (the rest wait in SQLite)
CLOSE_FLUSH_SECONDS = 2.0
HA_STATUS_MAX_DELAY = 0.5  # random delay before re-sending discovery when HA comes online
PRUNE_INTERVAL = 600.0
MAX_TRANSITIONS = 256  # state changes kept between two worker steps
_AUTH_CODES = {134, 135}  # bad user name or password, not authorized


def _preview(payload: bytes, limit: int = 40) -> str:
    text = payload[:limit].decode("utf-8", errors="replace")
    return text + ("..." if len(payload) > limit else "")


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


class _Client(mqtt.Client):
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


class MqttSink:
    """A Sink that never blocks the audio path and never loses an event.

    - ``MqttSink(config, triggers, state_dir, model_id, on_enabled=None, hop_seconds=1.0)``
    - ``start()``: connect in the background (paho loop thread); returns at once even when the
      broker is down; reconnects with capped exponential backoff.
    - ``on_scores``/``on_event``/``close``: the Sink protocol. ``on_event`` writes the event to
      the SQLite spool (state_dir/spool.sqlite3) before publishing; removed on PUBACK.
    - ``publish_stats(stats)``: the JSON stats topic (the daemon calls it every 30 s).
    - ``update_triggers(triggers)``: after a config reload: discovery for new triggers, empty
      retained configs for removed ones.
    - ``enabled``: dict name -> bool, the runtime switches persisted in state_dir (they survive
      restarts); ``on_enabled(name, enabled)`` is called when a command arrives. The daemon
      applies ``enabled`` to the pipeline at start-up (a stored choice beats the config's
      ``enabled``).
    - ``flush(timeout) -> bool``: wait (bounded) until the spool is empty.
    - ``close()``: flush briefly, publish availability offline, disconnect.
    """

    enabled: dict[str, bool]

    def __init__(
        self,
        config: MqttConfig,
        triggers: list[TriggerConfig],
        state_dir: Path,
        model_id: str,
        on_enabled: Callable[[str, bool], None] | None = None,
        hop_seconds: float = 1.0,
    ) -> None:
        self.config = config
        self.state_dir = Path(state_dir)
        self.model_id = model_id
        self.hop_seconds = hop_seconds
        self._on_enabled = on_enabled
        self._broker = f"{config.host}:{config.port}"
        self._base = base_topic(config)

        self._lock = threading.Lock()  # guards the shared state below; never held in paho
        self._triggers = list(triggers)
        self._switches = Switches(self.state_dir)
        self.enabled = {t.name: self._switches.get(t.name, t.enabled) for t in triggers}
        self._active: dict[str, bool] = {t.name: False for t in triggers}
        # Every ON/OFF transition in order, so a short detection in a fast file scan still
        # shows ON then OFF; replaced by the present state on each (re)connect.
        self._transitions: list[tuple[str, bool]] = []
        self._last_score: dict[str, float] = {}
        self._pending_scores: dict[str, float] = {}
        self._last_level: float | None = None
        self._pending_level: float | None = None
        self._pending_stats: dict[str, Any] | None = None
        self._volatile: list[tuple[str, str]] = []  # events the spool could not store
        self._removed: set[str] = set()
        self._conn_gen = 0
        self._discovery_due: float | None = None

        # Worker-only state.
        self._seen_gen = 0
        self._pub_state: dict[str, bool] = {}
        self._pub_enabled: dict[str, bool] = {}
        self._inflight: dict[int, int] = {}  # mid -> spool seq
        self._submitted_upto = 0
        self._published_topics: set[str] = set()

        # Filled by paho's on_publish, drained by the worker.
        self._mid_lock = threading.Lock()
        self._acked: list[int] = []

        # Connection log state (paho thread only): log once per kind of trouble.
        self._refused_reason: str | None = None
        self._unreachable_logged = False
        self._connected = False

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flushed = threading.Condition()
        self._started = False
        self._closed = False

        self._client = self._make_client()
        spool_path = self.state_dir / SPOOL_FILE
        try:
            self._spool = Spool(spool_path, config.spool.max_events, config.spool.max_age_days)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(
                f"cannot open the MQTT event spool {spool_path}: {exc}; make state_dir "
                "(or $STATE_DIRECTORY) a writable directory for the listener user"
            ) from None
        self._worker = threading.Thread(target=self._run, name="listener-mqtt", daemon=True)

    # --- setup -----------------------------------------------------------------------

    def _make_client(self) -> _Client:
        cfg = self.config
        client = _Client(
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

    def start(self) -> None:
        """Connect in the background; returns at once, also when the broker is down."""
        if self._started:
            return
        self._started = True
        log.info(
            "mqtt connecting", broker=self._broker, tls=self.config.tls.enabled,
            topic=self._base, spooled=self._spool.count(),
        )
        self._client.connect_async(self.config.host, self.config.port, self.config.keepalive)
        self._client.loop_start()
        self._worker.start()

    # --- Sink protocol (pipeline thread) ---------------------------------------------

    def on_scores(self, line: ScoreLine, active: dict[str, bool]) -> None:
        delta = self.config.score_delta
        with self._lock:
            for name, score in line.scores.items():
                if name not in self._active:
                    continue
                score = float(score)
                last = self._last_score.get(name)
                if last is None or abs(score - last) > delta:
                    self._last_score[name] = score
                    self._pending_scores[name] = score
            level = float(line.level_dbfs)
            last_level = self._last_level
            if last_level is None or abs(level - last_level) > self.config.level_delta_db:
                self._last_level = level
                self._pending_level = level
            for name, on in active.items():
                self._set_active(name, bool(on))
        self._wake.set()

    def _set_active(self, name: str, on: bool) -> None:
        """Record a trigger's ON/OFF (caller holds ``_lock``)."""
        if name in self._active and self._active[name] != on:
            self._active[name] = on
            self._transitions.append((name, on))
            if len(self._transitions) > MAX_TRANSITIONS:
                del self._transitions[: len(self._transitions) - MAX_TRANSITIONS]

    def on_event(self, event: Event) -> None:
        payload = {**event.to_dict(), "event_type": event.type}
        text = json.dumps(payload, separators=(",", ":"))
        volatile = False
        try:
            self._spool.add(event.id, event.trigger, text)
        except sqlite3.Error as exc:
            volatile = True
            log.error(
                "cannot write the event to the spool; publishing it without durability "
                "(check free space and permissions of the state directory)",
                path=str(self._spool.path), error=str(exc), event_id=event.id,
            )
        with self._lock:
            if volatile:
                self._volatile.append((event.trigger, text))
            self._set_active(event.trigger, event.type == "start")
        self._wake.set()

    def publish_stats(self, stats: dict[str, Any]) -> None:
        data = dict(stats)
        try:
            data.setdefault("spool_depth", self._spool.count())
        except sqlite3.Error:
            data.setdefault("spool_depth", None)
        with self._lock:
            self._pending_stats = data
        self._wake.set()

    def update_triggers(self, triggers: list[TriggerConfig]) -> None:
        with self._lock:
            old = {t.name for t in self._triggers}
            new = {t.name for t in triggers}
            self._triggers = list(triggers)
            for t in triggers:
                if t.name not in self.enabled:
                    self.enabled[t.name] = self._switches.get(t.name, t.enabled)
                self._active.setdefault(t.name, False)
            for name in old - new:
                self.enabled.pop(name, None)
                self._active.pop(name, None)
                self._last_score.pop(name, None)
                self._pending_scores.pop(name, None)
            self._removed |= old - new
            self._removed -= new
            self._discovery_due = time.monotonic()
        self._wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait until every spooled event is acknowledged; False when ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._flushed:
            while True:
                with self._lock:
                    volatile = bool(self._volatile)
                if not volatile and self._spool.count() == 0:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._flushed.wait(min(remaining, 0.1))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:
            if self._client.is_connected():
                self.flush(CLOSE_FLUSH_SECONDS)
            self._stop.set()
            self._wake.set()
            self._worker.join(timeout=5.0)
            if self._client.is_connected():
                try:
                    info = self._client.publish(
                        availability_topic(self.config), "offline", qos=1, retain=True
                    )
                    info.wait_for_publish(1.0)
                except (RuntimeError, ValueError):
                    pass
            self._client.disconnect()
            self._client.loop_stop()
        left = self._spool.count()
        self._spool.close()
        log.info("mqtt closed", broker=self._broker, undelivered_events=left)

    # --- paho callbacks (paho's network thread): record and wake, nothing more -------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        try:
            if reason.is_failure:
                text = str(reason)
                if text != self._refused_reason:
                    self._refused_reason = text
                    hint = (
                        "check mqtt.username and mqtt.password/password_file and the broker's "
                        "ACL" if getattr(reason, "value", None) in _AUTH_CODES
                        else "check the broker's log"
                    )
                    log.error(
                        f"mqtt broker {self._broker} refused the connection: {text}; "
                        "retrying with backoff (events are spooled meanwhile)",
                        broker=self._broker, reason=text, reason_code=reason.value, hint=hint,
                    )
                else:
                    log.debug("mqtt connection refused again", broker=self._broker, reason=text)
                return
            self._refused_reason = None
            self._unreachable_logged = False
            self._connected = True
            log.info("mqtt connected", broker=self._broker, spooled=self._spool.count())
            subs = [(trigger_topic(self.config, "+", "enabled/set"), 1)]
            if self.config.discovery.enabled:
                subs.append((status_topic(self.config), 1))
            client.subscribe(subs)
            with self._lock:
                self._conn_gen += 1
                self._last_score.clear()
                self._last_level = None
                self._discovery_due = time.monotonic()
            self._wake.set()
        except Exception:
            log.exception("mqtt on_connect handler failed")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        exc = self._client.last_error
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown"
        if isinstance(exc, ssl.SSLError):
            if reason != self._refused_reason:
                self._refused_reason = reason
                log.error(
                    f"TLS handshake with mqtt broker {self._broker} failed: {exc}; "
                    "retrying with backoff (events are spooled meanwhile)",
                    broker=self._broker, reason=reason,
                    hint="check mqtt.tls.ca_file (the CA that signed the broker's certificate), "
                    "the broker's host name, and mqtt.tls.insecure",
                )
            else:
                log.debug("mqtt TLS handshake failed again", broker=self._broker, reason=reason)
        elif not self._unreachable_logged:
            self._unreachable_logged = True
            log.warning(
                f"mqtt broker {self._broker} is unreachable ({reason}); detection continues, "
                "events are spooled, retrying with backoff",
                broker=self._broker, reason=reason,
            )
        else:
            log.debug("mqtt broker still unreachable", broker=self._broker, reason=reason)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        if self._connected:
            self._connected = False
            if not self._stop.is_set():
                log.warning(
                    "mqtt connection lost; retrying with backoff (events are spooled meanwhile)",
                    broker=self._broker, reason=str(reason),
                )
        self._wake.set()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        with self._mid_lock:
            self._acked.append(mid)
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
            if self.config.discovery.enabled and topic == status_topic(self.config):
                if msg.payload.strip().lower() == b"online":
                    log.info("Home Assistant came online; re-sending discovery")
                    with self._lock:
                        self._discovery_due = time.monotonic() + random.uniform(
                            0.0, HA_STATUS_MAX_DELAY
                        )
                    self._wake.set()
                return
            prefix, suffix = self._base + "/", "/enabled/set"
            if topic.startswith(prefix) and topic.endswith(suffix):
                self._command_enabled(topic, topic[len(prefix) : -len(suffix)], msg.payload)
        except Exception:
            log.exception("mqtt message handler failed", topic=msg.topic)

    def _command_enabled(self, topic: str, name: str, payload: bytes) -> None:
        with self._lock:
            known = name in self.enabled
            names = sorted(self.enabled)
        if not known:
            log.warning("ignoring command for an unknown trigger", topic=topic, known=names)
            return
        value = parse_switch(payload)
        if value is None:
            log.warning(
                "ignoring malformed command: payload must be ON or OFF (or true/false, 1/0)",
                topic=topic, payload=_preview(payload),
            )
            return
        with self._lock:
            self.enabled[name] = value
        try:
            self._switches.set(name, value)
        except OSError as exc:
            log.error(
                "cannot store the trigger switch; it will not survive a restart",
                path=str(self._switches.path), error=str(exc),
            )
        log.info("trigger switched by MQTT command", trigger=name, enabled=value)
        if self._on_enabled is not None:
            try:
                self._on_enabled(name, value)
            except Exception:
                log.exception("on_enabled callback failed", trigger=name, enabled=value)
        self._wake.set()

    # --- worker thread: the only publisher -------------------------------------------

    def _run(self) -> None:
        last_prune = time.monotonic()
        failures: set[str] = set()  # log each kind of worker failure once, with traceback
        while not self._stop.is_set():
            with self._lock:
                due = self._discovery_due
            timeout = 0.5 if due is None else max(0.0, min(0.5, due - time.monotonic()))
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._step()
                if time.monotonic() - last_prune > PRUNE_INTERVAL:
                    last_prune = time.monotonic()
                    self._spool.prune()
            except Exception as exc:
                kind = f"{type(exc).__name__}: {exc}"
                if kind not in failures:
                    failures.add(kind)
                    log.exception("mqtt worker step failed; will retry", error=kind)
                else:
                    log.debug("mqtt worker step failed again", error=kind)
        try:
            self._reap()
        except Exception:
            log.exception("mqtt worker final step failed")

    def _publish(self, topic: str, payload: str | bytes, qos: int = 0,
                 retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    def _reap(self) -> None:
        with self._mid_lock:
            acked, self._acked = self._acked, []
        seqs = [self._inflight.pop(m) for m in acked if m in self._inflight]
        if seqs:
            self._spool.remove(seqs)
            with self._flushed:
                self._flushed.notify_all()

    def _step(self) -> None:
        self._reap()
        if not self._client.is_connected():
            return
        cfg = self.config
        now = time.monotonic()
        with self._lock:
            new_conn = self._conn_gen != self._seen_gen
            self._seen_gen = self._conn_gen
            discovery = self._discovery_due is not None and now >= self._discovery_due
            if discovery:
                self._discovery_due = None
            triggers = list(self._triggers)
            active = dict(self._active)
            transitions, self._transitions = self._transitions, []
            enabled = dict(self.enabled)
            removed, self._removed = self._removed, set()
            scores, self._pending_scores = self._pending_scores, {}
            level, self._pending_level = self._pending_level, None
            stats, self._pending_stats = self._pending_stats, None
            volatile, self._volatile = self._volatile, []

        if new_conn:
            self._pub_state.clear()
            self._pub_enabled.clear()
            self._publish(availability_topic(cfg), "online", qos=1, retain=True)
        for name in removed:
            # Clear the retained state of a trigger that no longer exists.
            self._pub_state.pop(name, None)
            self._pub_enabled.pop(name, None)
            self._publish(trigger_topic(cfg, name, "state"), b"", qos=1, retain=True)
            self._publish(trigger_topic(cfg, name, "enabled"), b"", qos=1, retain=True)
        if discovery:
            self._publish_discovery(triggers)
        if not new_conn:
            for name, on in transitions:
                if name in active:
                    self._publish(trigger_topic(cfg, name, "state"), "ON" if on else "OFF",
                                  qos=1, retain=True)
                    self._pub_state[name] = on
        for name, on in active.items():
            if self._pub_state.get(name) != on:
                self._publish(trigger_topic(cfg, name, "state"), "ON" if on else "OFF",
                              qos=1, retain=True)
                self._pub_state[name] = on
        for name, on in enabled.items():
            if self._pub_enabled.get(name) != on:
                self._publish(trigger_topic(cfg, name, "enabled"), "ON" if on else "OFF",
                              qos=1, retain=True)
                self._pub_enabled[name] = on
        for name, score in scores.items():
            self._publish(trigger_topic(cfg, name, "score"), f"{score:.4f}")
        if level is not None:
            self._publish(f"{self._base}/level", f"{level:.1f}")
        if stats is not None:
            self._publish(f"{self._base}/stats", json.dumps(stats, separators=(",", ":")),
                          retain=True)
        for trigger, text in volatile:
            self._publish(trigger_topic(cfg, trigger, "event"), text, qos=1)
        if volatile:
            with self._flushed:
                self._flushed.notify_all()
        self._submit_spool()

    def _publish_discovery(self, triggers: list[TriggerConfig]) -> None:
        configs = discovery_configs(self.config, triggers, self.model_id)
        stale = (load_published(self.state_dir) | self._published_topics) - configs.keys()
        for topic in sorted(stale):
            self._publish(topic, b"", qos=1, retain=True)
        if stale:
            log.info("removed Home Assistant entities", count=len(stale))
        for topic, payload in configs.items():
            self._publish(topic, encode(payload), qos=1, retain=True)
        self._published_topics = set(configs)
        try:
            save_published(self.state_dir, configs)
        except OSError as exc:
            log.warning(
                "cannot remember the published discovery topics; entities of triggers "
                "removed while the listener is down may linger in Home Assistant",
                path=str(self.state_dir), error=str(exc),
            )
        log.debug("published Home Assistant discovery", entities=len(configs))

    def _submit_spool(self) -> None:
        room = MAX_INFLIGHT - len(self._inflight)
        if room <= 0:
            return
        for row in self._spool.pending(after_seq=self._submitted_upto, limit=room):
            info = self._publish(trigger_topic(self.config, row.trigger, "event"), row.payload,
                                 qos=1)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                break
            # Recorded before the ack can be reaped: only this thread reaps.
            self._inflight[info.mid] = row.seq
            self._submitted_upto = row.seq
