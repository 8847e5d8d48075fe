"""MqttPublisher: the detector's results as MQTT messages and Home Assistant entities.

Why it is built this way:

- The audio path must never wait for the network. ``on_result`` only writes events to
  the SQLite spool (listener/mqtt/spool.py), notes what changed in the outbox
  (listener/mqtt/outbox.py) and wakes one worker thread, which is the only code that
  publishes. paho's callbacks (listener/mqtt/client.py) only record and wake, so no
  lock is held across a call into paho.
- Nothing is lost to outages: spooled events are published QoS 1 in spool order and
  deleted when the broker's PUBACK arrives. paho keeps unacknowledged messages across
  reconnects; after a restart the worker re-sends the whole spool, with the events'
  original ids and timestamps.
- State topics reflect the present: every state change an event makes is published in
  order (a short detection in a fast file scan still shows ON then OFF), and on every
  (re)connect the worker publishes availability, discovery and the *current* state and
  enabled of every trigger, read from the newest result. It keeps no trigger state of
  its own: the detector owns that, the switch store owns ``enabled``.
- Scores and level are rate-limited: published only when they moved by more than
  ``score_delta`` / ``level_delta_db``.
- Commands (``<base>/<trigger>/enabled/set``) are handed to ``on_command`` (the
  daemon's command handler, listener/service/commands.py); Home Assistant's
  ``online`` re-sends discovery after a short random delay.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog

from listener.config.schema import MqttConfig, TriggerConfig
from listener.detect.detector import DetectorResult
from listener.detect.events import Event
from listener.errors import UserError
from listener.mqtt.client import MqttClient
from listener.mqtt.discovery import discovery_configs, encode, load_published, save_published
from listener.mqtt.outbox import Outbox
from listener.mqtt.spool import Spool
from listener.mqtt.topics import (
    availability_topic,
    base_topic,
    command_subscriptions,
    level_topic,
    parse_command,
    stats_topic,
    status_topic,
    trigger_topic,
)

log = structlog.get_logger("listener.mqtt")

MAX_INFLIGHT = 100  # spooled events handed to paho at once (the rest wait in SQLite)
CLOSE_FLUSH_SECONDS = 2.0
HA_STATUS_MAX_DELAY = 0.5  # random delay before re-sending discovery when HA comes online
PRUNE_INTERVAL = 600.0

OnCommand = Callable[[str, str, bytes, str], None]  # trigger, command, payload, topic


class MqttPublisher:
    """A sink that never blocks the audio path and never loses an event.

    - ``start()`` connects in the background and returns at once, also when the broker
      is down; ``close()`` flushes briefly, publishes ``offline`` and disconnects.
    - ``on_result(result)``: the sink interface (listener/service/sinks.py).
    - ``publish_stats(stats)``: the retained JSON stats topic.
    - ``update_triggers(triggers)``: after a reload: discovery for new triggers, empty
      retained configs and states for removed ones.
    - ``flush(timeout) -> bool``: wait (bounded) until every spooled event is acknowledged.
    """

    def __init__(self, config: MqttConfig, triggers: Sequence[TriggerConfig], model_id: str,
                 spool_path: Path, discovery_path: Path,
                 on_command: OnCommand | None = None) -> None:
        self.config = config
        self.model_id = model_id
        self.discovery_path = Path(discovery_path)
        self._on_command = on_command
        self._base = base_topic(config)

        self._outbox = Outbox(config, triggers)

        # Worker-only state: what was published on this connection.
        self._pub_state: dict[str, bool] = {}
        self._pub_enabled: dict[str, bool] = {}
        self._inflight: dict[int, int] = {}  # mid -> spool seq
        self._submitted_upto = 0
        self._published_topics: set[str] = set()

        self._mid_lock = threading.Lock()  # filled by paho's on_publish, drained by the worker
        self._acked: list[int] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flushed = threading.Condition()
        self._started = self._closed = False

        subs = command_subscriptions(config)
        if config.discovery.enabled:
            subs.append(status_topic(config))
        self._client = MqttClient(config, subs, on_connected=self._connected,
                                  on_message=self._message, on_acked=self._acked_mid)
        try:
            self._spool = Spool(spool_path, config.spool.max_events, config.spool.max_age_days)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(
                f"cannot open the MQTT event spool {spool_path}: {exc}; make state_dir "
                "(or $STATE_DIRECTORY) a writable directory for the listener user"
            ) from None
        self._worker = threading.Thread(target=self._run, name="listener-mqtt", daemon=True)

    def start(self) -> None:
        """Connect in the background; returns at once, also when the broker is down."""
        if self._started:
            return
        self._started = True
        log.info("mqtt connecting", broker=self._client.broker, tls=self.config.tls.enabled,
                 topic=self._base, spooled=self._spool.count())
        self._client.start()
        self._worker.start()

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    # --- the sink interface (pipeline thread) -------------------------------------------

    def on_result(self, result: DetectorResult) -> None:
        payloads = [(ev, json.dumps({**ev.to_dict(), "event_type": ev.type},
                                    separators=(",", ":"))) for ev in result.events]
        volatile = [(ev.trigger, text) for ev, text in payloads if not self._spooled(ev, text)]
        self._outbox.add_result(result, volatile)
        self._wake.set()

    def _spooled(self, event: Event, text: str) -> bool:
        """Write one event to the spool (durable on return); False if the disk refused."""
        try:
            self._spool.add(event.id, event.trigger, text)
            return True
        except sqlite3.Error as exc:
            log.error(
                "cannot write the event to the spool; publishing it without durability "
                "(check free space and permissions of the state directory)",
                path=str(self._spool.path), error=str(exc), event_id=event.id,
            )
            return False

    def publish_stats(self, stats: dict[str, Any]) -> None:
        data = dict(stats)
        try:
            data.setdefault("spool_depth", self._spool.count())
        except sqlite3.Error:
            data.setdefault("spool_depth", None)
        self._outbox.add_stats(data)
        self._wake.set()

    def update_triggers(self, triggers: Sequence[TriggerConfig]) -> None:
        self._outbox.set_triggers(triggers)
        self._wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait until every spooled event is acknowledged; False when ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._flushed:
            while True:
                if not self._outbox.has_volatile() and self._spool.count() == 0:
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
            self._client.stop()
        left = self._spool.count()
        self._spool.close()
        log.info("mqtt closed", broker=self._client.broker, undelivered_events=left)

    # --- from the client (paho's network thread): record and wake ------------------------

    def _connected(self) -> None:
        log.info("mqtt connected", broker=self._client.broker, spooled=self._spool.count())
        self._outbox.connected()
        self._wake.set()

    def _acked_mid(self, mid: int) -> None:
        with self._mid_lock:
            self._acked.append(mid)
        self._wake.set()

    def _message(self, topic: str, payload: bytes) -> None:
        if self.config.discovery.enabled and topic == status_topic(self.config):
            if payload.strip().lower() == b"online":
                log.info("Home Assistant came online; re-sending discovery")
                self._outbox.discovery_after(random.uniform(0.0, HA_STATUS_MAX_DELAY))
                self._wake.set()
            return
        command = parse_command(self.config, topic)
        if command is not None and self._on_command is not None:
            self._on_command(command[0], command[1], payload, topic)

    # --- the worker thread: the only publisher -------------------------------------------

    def _run(self) -> None:
        last_prune = time.monotonic()
        failures: set[str] = set()  # log each kind of worker failure once, with traceback
        while not self._stop.is_set():
            due = self._outbox.seconds_to_discovery()
            timeout = 0.5 if due is None else min(0.5, due)
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
        p = self._outbox.take()
        cfg = self.config
        if p.new_connection:
            self._pub_state.clear()
            self._pub_enabled.clear()
            self._publish(availability_topic(cfg), "online", qos=1, retain=True)
        for name in p.removed:  # clear the retained state of a trigger that is gone
            self._pub_state.pop(name, None)
            self._pub_enabled.pop(name, None)
            self._publish(trigger_topic(cfg, name, "state"), b"", qos=1, retain=True)
            self._publish(trigger_topic(cfg, name, "enabled"), b"", qos=1, retain=True)
        if p.discovery:
            self._publish_discovery(p.triggers)
        if not p.new_connection:
            for name, on in p.transitions:
                self._publish_state(name, "state", on, self._pub_state, force=True)
        for name, (active, enabled) in p.states.items():
            self._publish_state(name, "state", active, self._pub_state)
            self._publish_state(name, "enabled", enabled, self._pub_enabled)
        for name, score in p.scores.items():
            self._publish(trigger_topic(cfg, name, "score"), f"{score:.4f}")
        if p.level is not None:
            self._publish(level_topic(cfg), f"{p.level:.1f}")
        if p.stats is not None:
            self._publish(stats_topic(cfg), json.dumps(p.stats, separators=(",", ":")),
                          retain=True)
        for trigger, text in p.volatile:
            self._publish(trigger_topic(cfg, trigger, "event"), text, qos=1)
        if p.volatile:
            with self._flushed:
                self._flushed.notify_all()
        self._submit_spool()

    def _publish_state(self, name: str, leaf: str, on: bool, published: dict[str, bool],
                       force: bool = False) -> None:
        """Retained ON/OFF on ``<trigger>/<leaf>`` unless already published (or ``force``)."""
        if force or published.get(name) != on:
            self._publish(trigger_topic(self.config, name, leaf), "ON" if on else "OFF", qos=1,
                          retain=True)
            published[name] = on

    def _publish_discovery(self, triggers: list[TriggerConfig]) -> None:
        configs = discovery_configs(self.config, triggers, self.model_id)
        stale = (load_published(self.discovery_path) | self._published_topics) - configs.keys()
        for topic in sorted(stale):
            self._publish(topic, b"", qos=1, retain=True)
        if stale:
            log.info("removed Home Assistant entities", count=len(stale))
        for topic, payload in configs.items():
            self._publish(topic, encode(payload), qos=1, retain=True)
        self._published_topics = set(configs)
        try:
            save_published(self.discovery_path, configs)
        except OSError as exc:
            log.warning(
                "cannot remember the published discovery topics; entities of triggers "
                "removed while the listener is down may linger in Home Assistant",
                path=str(self.discovery_path), error=str(exc),
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
