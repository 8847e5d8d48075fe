"""MqttPublisher: the detector's results as MQTT messages and Home Assistant entities.

Why it is built this way:

- The audio path must never wait for the network. ``on_result`` only writes events to
  the SQLite spool (listener/mqtt/spool.py; held in memory while the disk refuses,
  listener/mqtt/holdback.py), notes what changed in the outbox
  (listener/mqtt/outbox.py) and wakes one worker thread, which is the only code that
  publishes. paho's callbacks (listener/mqtt/client.py) only record and wake, so no
  lock is held across a call into paho.
- Nothing is lost to outages: spooled events are published QoS 1 in spool order and
  deleted when the broker's PUBACK arrives. paho keeps unacknowledged messages across
  reconnects; after a restart the worker re-sends the whole spool, with the events'
  original ids and timestamps. Events the spool could not take are published after
  the spooled ones, without durability, or spooled late when the disk takes them again.
- State topics reflect the present: every state change an event makes is published in
  order (a short detection in a fast file scan still shows ON then OFF), and on every
  (re)connect the worker publishes availability, discovery and the *current* state and
  enabled of every trigger, read from the newest result. It keeps no trigger state of
  its own: the detector owns that, the switch store owns ``enabled``.
- Scores and level are rate-limited: published only when they moved by more than
  ``score_delta`` / ``level_delta_db``.
- Commands (``<base>/<trigger>/enabled/set``) are handed to ``on_command`` (the
  daemon's command handler, listener/service/commands.py); Home Assistant's
  ``online`` re-sends discovery after a short random delay (logged at info once per
  :data:`HA_ONLINE_LOG_WINDOW`, the repeats in between at debug).
- Retained state of removed triggers is cleared whenever discovery is sent: after a
  reload and at start-up, from the triggers the discovery memory file remembers.
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
from listener.mqtt.client import MqttClient
from listener.mqtt.discovery import DeviceInfo
from listener.mqtt.discovery_memory import (
    Published,
    load_published,
    next_discovery,
    save_published,
)
from listener.mqtt.holdback import Holdback
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
HA_ONLINE_LOG_WINDOW = 60.0  # Home Assistant's "online" is logged at info once per window
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
                 on_command: OnCommand | None = None,
                 configuration_url: str | None = None,
                 via_device: str | None = None) -> None:
        self.config = config
        self.model_id = model_id
        # configuration_url: the device's web page in Home Assistant, when listener serves one
        # via_device: a stream's device names its host's (listener/mqtt/streams.py)
        self.device_info = DeviceInfo(model_id, configuration_url, via_device)
        self.discovery_path = Path(discovery_path)
        self._on_command = on_command
        self._base = base_topic(config)

        self._outbox = Outbox(config, triggers)

        # Worker-only state: what was published on this connection.
        self._pub_state: dict[str, bool] = {}
        self._pub_enabled: dict[str, bool] = {}
        self._inflight: dict[int, int] = {}  # mid -> spool seq
        self._unremoved: list[int] = []  # acknowledged, not yet deleted (the disk refused)
        self._submitted_upto = 0
        self._published: Published | None = None  # discovery of this run (worker only)
        self._ha_online_logged: float | None = None  # paho's thread only
        self._ha_online_repeats = 0

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
        # SpoolUnavailable (a UserError, exit 2) when the disk cannot take it
        self._spool = Spool(spool_path, config.spool.max_events, config.spool.max_age_days)
        self._intake = Holdback(self._spool)
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
        for ev in result.events:
            self._intake.add(ev.id, ev.trigger, _event_json(ev))
        self._outbox.add_result(result)
        self._wake.set()

    def publish_stats(self, stats: dict[str, Any]) -> None:
        data = dict(stats)
        try:
            data.setdefault("spool_depth", self._spool.count() + len(self._intake))
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
                if not len(self._intake) and self._spool.count() == 0:
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
        self._intake.retry(now=True)
        lost = len(self._intake)
        if lost:
            log.error("events the spool refused (the disk is full or read-only) were not "
                      "delivered and are lost at exit", events=lost, path=str(self._spool.path))
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
                self._log_ha_online()
                self._outbox.discovery_after(random.uniform(0.0, HA_STATUS_MAX_DELAY))
                self._wake.set()
            return
        command = parse_command(self.config, topic)
        if command is not None and self._on_command is not None:
            self._on_command(command[0], command[1], payload, topic)

    def _log_ha_online(self) -> None:
        """Info once per HA_ONLINE_LOG_WINDOW, debug in between: a flapping or chatty
        Home Assistant must not flood the log (discovery is re-sent each time anyway)."""
        now = time.monotonic()
        last = self._ha_online_logged
        if last is not None and now - last < HA_ONLINE_LOG_WINDOW:
            self._ha_online_repeats += 1
            log.debug("Home Assistant came online again; re-sending discovery")
            return
        self._ha_online_logged = now
        repeats, self._ha_online_repeats = self._ha_online_repeats, 0
        log.info("Home Assistant came online; re-sending discovery",
                 **({"repeats_since_last_logged": repeats} if repeats else {}))

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
                    self._prune()
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

    def _prune(self) -> None:
        try:
            self._spool.prune()
        except sqlite3.Error as exc:  # a full disk: the holdback reports that once
            log.debug("cannot prune the event spool now", error=str(exc))

    def _reap(self) -> None:
        """Delete acknowledged events from the spool (kept for the next step when the
        disk refuses the delete: they are not sent again in this run)."""
        with self._mid_lock:
            acked, self._acked = self._acked, []
        seqs = self._unremoved + [self._inflight.pop(m) for m in acked if m in self._inflight]
        if not seqs:
            return
        try:
            self._spool.remove(seqs)
        except sqlite3.Error as exc:
            self._unremoved = seqs
            log.debug("cannot delete acknowledged events from the spool yet", error=str(exc),
                      events=len(seqs))
            return
        self._unremoved = []
        with self._flushed:
            self._flushed.notify_all()

    def _step(self) -> None:
        self._reap()
        self._intake.retry()
        if not self._client.is_connected():
            return
        p = self._outbox.take()
        cfg = self.config
        if p.new_connection:
            self._pub_state.clear()
            self._pub_enabled.clear()
            self._publish(availability_topic(cfg), "online", qos=1, retain=True)
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
        if self._submit_spool():  # the spool's backlog is out: held events may follow
            held = self._intake.take()
            for _, trigger, text, _ in held:
                self._publish(trigger_topic(cfg, trigger, "event"), text, qos=1)
            if held:
                with self._flushed:
                    self._flushed.notify_all()

    def _publish_state(self, name: str, leaf: str, on: bool, published: dict[str, bool],
                       force: bool = False) -> None:
        """Retained ON/OFF on ``<trigger>/<leaf>`` unless already published (or ``force``)."""
        if force or published.get(name) != on:
            self._publish(trigger_topic(self.config, name, leaf), "ON" if on else "OFF", qos=1,
                          retain=True)
            published[name] = on

    def _publish_discovery(self, triggers: list[TriggerConfig]) -> None:
        """Discovery for ``triggers`` (listener/mqtt/discovery_memory.py says in which
        order and why); entities and retained state of triggers published before (this
        run or, per the memory file, an earlier one) are cleared."""
        before = self._published or load_published(self.discovery_path)
        messages, now = next_discovery(self.config, triggers, self.device_info, before)
        for name in sorted(before.triggers - now.triggers):
            self._clear_trigger(name)
        for msg in messages:
            self._publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
        removed = before.topics - now.topics
        if removed:
            log.info("removed Home Assistant discovery configs", count=len(removed),
                     form=now.form)
        self._published = now
        try:
            save_published(self.discovery_path, now)
        except OSError as exc:
            log.warning(
                "cannot remember the published discovery topics; entities of triggers "
                "removed while the listener is down may linger in Home Assistant",
                path=str(self.discovery_path), error=str(exc),
            )
        log.debug("published Home Assistant discovery", configs=len(now.topics),
                  form=now.form)

    def _clear_trigger(self, name: str) -> None:
        """Empty retained state and enabled of a trigger that is gone."""
        self._pub_state.pop(name, None)
        self._pub_enabled.pop(name, None)
        self._publish(trigger_topic(self.config, name, "state"), b"", qos=1, retain=True)
        self._publish(trigger_topic(self.config, name, "enabled"), b"", qos=1, retain=True)

    def _submit_spool(self) -> bool:
        """Hand the next spooled events to paho; True when none is left to hand over."""
        room = MAX_INFLIGHT - len(self._inflight)
        if room <= 0:
            return False
        rows = self._spool.pending(after_seq=self._submitted_upto, limit=room)
        for row in rows:
            info = self._publish(trigger_topic(self.config, row.trigger, "event"), row.payload,
                                 qos=1)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                return False
            # Recorded before the ack can be reaped: only this thread reaps.
            self._inflight[info.mid] = row.seq
            self._submitted_upto = row.seq
        return len(rows) < room


def _event_json(event: Event) -> str:
    """An event's payload: its fields plus ``event_type`` (compact JSON)."""
    return json.dumps({**event.to_dict(), "event_type": event.type}, separators=(",", ":"))
