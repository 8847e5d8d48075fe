"""The `listener run` service loop: config -> Pipeline -> sinks, signals, systemd.

Threads: the main thread owns signals (Python delivers them there), config
reloads, the stats timer and systemd status; one worker thread runs
``Pipeline.run``, which reads audio, scores windows and calls the sinks. The
worker's heartbeat is the systemd watchdog ping, so a stuck inference loop stops
the pings and systemd restarts the service, while a healthy but idle one keeps
pinging once per hop.

Signals only set events; the main loop acts on them:

- SIGTERM/SIGINT: stop reading audio; the pipeline finishes the window in flight
  and ends active triggers; the spool is flushed to the broker for a few seconds;
  availability goes ``offline``; exit 0.
- SIGHUP: reload the config file. An invalid file is rejected (the log lists every
  problem) and the old config keeps running; a valid one is applied between
  windows, and triggers whose definition did not change keep their state.

A file source ends by itself: ``run`` exits 0 once the file is processed and its
events are delivered (or, with the broker down, safely in the spool).

Test hook (test-only, undocumented for users): ``LISTENER_TEST_STALL_AFTER=N`` makes
the processing loop block forever after N scored windows, to prove the watchdog
catches a stuck loop.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from listener.config.loader import LoadedConfig, load_config
from listener.config.schema import Config, TriggerConfig
from listener.detect.events import Event, ScoreLine
from listener.errors import ConfigError, UserError
from listener.logs import get_logger, setup_logging
from listener.service.sdnotify import Notifier

FLUSH_SECONDS = 5.0  # how long shutdown waits for the spool to reach the broker
STATUS_SECONDS = 10.0  # how often STATUS= is refreshed
STOP_GRACE_SECONDS = 15.0  # how long shutdown waits for the window in flight

log = get_logger("listener.daemon")


def _release_startup_memory() -> None:
    """Give the memory start-up used only once (config parsing, model loading, prompt
    cache) back to the OS: collect garbage, then glibc's malloc_trim returns the free
    pages inside the heap, which a plain free() keeps (daemon peak RSS -1 MB, 158.96 ->
    157.81/157.82, benchmarks/bench_daemon.py). No-op off glibc."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class LogSink:
    """Logs every event (one structured line each); scores only at debug level."""

    def on_scores(self, line: ScoreLine, active: dict[str, bool]) -> None:
        log.debug("scores", window_end=round(line.window_end, 3), scores=line.to_dict()["scores"])

    def on_event(self, event: Event) -> None:
        d = event.to_dict()
        d.pop("details", None)
        kind = d.pop("type")
        log.info(f"event {kind}", **d)

    def close(self) -> None:
        pass


class FanOut:
    """One sink handed to the Pipeline, forwarding to the daemon's sinks.

    The MQTT sink needs the model id, which is known only once the Pipeline has loaded
    the model; a fan-out lets it join after construction. ``close`` is the daemon's job
    (it flushes MQTT with a deadline), so the Pipeline closing us is a no-op.
    """

    def __init__(self, sinks: list[Any], stall_after: int | None = None) -> None:
        self.sinks = list(sinks)
        self.windows = 0
        self._stall_after = stall_after

    def add(self, sink: Any) -> None:
        self.sinks.append(sink)

    def on_scores(self, line: ScoreLine, active: dict[str, bool]) -> None:
        self.windows += 1
        for sink in self.sinks:
            try:
                sink.on_scores(line, active)
            except Exception:
                log.exception("sink failed on scores", sink=type(sink).__name__)
        if self._stall_after is not None and self.windows >= self._stall_after:
            log.warning("test hook: processing loop stalled", windows=self.windows)
            threading.Event().wait()  # block the processing loop for good

    def on_event(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink.on_event(event)
            except Exception:
                log.exception("sink failed on event", sink=type(sink).__name__)

    def close(self) -> None:
        pass


def _stall_after() -> int | None:
    raw = os.environ.get("LISTENER_TEST_STALL_AFTER", "")
    return int(raw) if raw.isdigit() else None


def _trigger_names(cfg: Config) -> list[str]:
    return [t.name for t in cfg.triggers]


def _require_triggers(loaded: LoadedConfig) -> None:
    if not loaded.config.triggers:
        where = loaded.path or "config"
        msg = (
            f"{where}: triggers: no triggers configured, nothing to listen for "
            "(add at least one; see config.example.yaml)"
        )
        raise ConfigError(msg, [msg])


def _diff_triggers(old: list[TriggerConfig], new: list[TriggerConfig]) -> dict[str, list[str]]:
    before = {t.name: t for t in old}
    after = {t.name: t for t in new}
    return {
        "added": [n for n in after if n not in before],
        "removed": [n for n in before if n not in after],
        "changed": [n for n in after if n in before and after[n] != before[n]],
    }


class Daemon:
    """One run of the service; :meth:`run` returns the exit code."""

    def __init__(self, loaded: LoadedConfig, log_level: str | None = None) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.log_level = log_level
        self.stop = threading.Event()
        self.hup = threading.Event()
        self.notifier = Notifier()
        self.pipeline: Any = None
        self.mqtt: Any = None
        self.fanout = FanOut([LogSink()], stall_after=_stall_after())
        self._worker_error: BaseException | None = None
        self._signals_received: list[str] = []

    # --- signals ---------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGHUP:
            self.hup.set()
        else:
            self._signals_received.append(signal.Signals(signum).name)
            self.stop.set()

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    # --- life cycle ---------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        self.notifier.watchdog()

    def start(self) -> None:
        from listener.service.pipeline import Pipeline

        cfg = self.config
        self.notifier.status("loading model")
        log.info(
            "starting",
            config=str(self.loaded.path),
            model=str(cfg.model.dir),
            source=cfg.source.type,
            triggers=_trigger_names(cfg),
            pid=os.getpid(),
        )
        t0 = time.monotonic()
        self.pipeline = Pipeline(cfg, sinks=[self.fanout], heartbeat=self._heartbeat)
        log.info(
            "model loaded",
            model=getattr(self.pipeline, "model_id", None),
            seconds=round(time.monotonic() - t0, 2),
        )
        if cfg.mqtt.enabled:
            self._start_mqtt()
        self.pipeline.open()
        _release_startup_memory()

    def _start_mqtt(self) -> None:
        from listener.mqtt.publisher import MqttSink

        cfg = self.config
        state_dir = cfg.resolved_state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"cannot create the state directory {state_dir} ({exc.strerror}); set "
                "state_dir in the config or $STATE_DIRECTORY to a writable directory"
            ) from None
        self.mqtt = MqttSink(
            cfg.mqtt,
            cfg.triggers,
            Path(state_dir),
            self.pipeline.model_id,
            on_enabled=self._on_enabled,
            hop_seconds=cfg.audio.hop_seconds,
        )
        self.mqtt.start()
        self._apply_switches()
        self.fanout.add(self.mqtt)

    def _on_enabled(self, name: str, enabled: bool) -> None:
        log.info("trigger switched", trigger=name, enabled=enabled)
        try:
            self.pipeline.set_enabled(name, enabled)
        except KeyError:
            log.warning("switch for an unknown trigger ignored", trigger=name)

    def _apply_switches(self) -> None:
        """Runtime on/off choices made in Home Assistant survive restarts and reloads."""
        if self.mqtt is None:
            return
        names = set(_trigger_names(self.config))
        for name, enabled in dict(self.mqtt.enabled).items():
            if name in names:
                try:
                    self.pipeline.set_enabled(name, bool(enabled))
                except KeyError:
                    log.warning("stored switch for an unknown trigger ignored", trigger=name)

    def _work(self) -> None:
        try:
            self.pipeline.run(self.stop)
        except BaseException as exc:  # reported by the main thread
            self._worker_error = exc

    def summary(self) -> str:
        try:
            st = self.pipeline.stats()
        except Exception:
            st = {}
        n = len(self.config.triggers)
        ms = st.get("inference_ms")
        ms_text = f"{ms:.0f} ms/window" if isinstance(ms, int | float) else "- ms/window"
        return (
            f"listening: {n} trigger{'s' if n != 1 else ''}, {ms_text}, "
            f"{st.get('skipped_windows', 0)} skipped"
        )

    def reload(self) -> None:
        path = self.loaded.path
        log.info("reloading config", config=str(path))
        self.notifier.notify("RELOADING=1")
        try:
            try:
                new = load_config(path)
                _require_triggers(new)
            except ConfigError as exc:
                log.error(
                    "config reload rejected; still running the previous config",
                    config=str(path),
                    errors=exc.errors,
                )
                for line in exc.errors:
                    log.error("config problem", problem=line)
                return
            diff = _diff_triggers(self.config.triggers, new.config.triggers)
            # (the Pipeline itself warns about model/source/window changes it cannot apply)
            old_mqtt = self.config.mqtt.model_dump()
            if self.mqtt is not None and new.config.mqtt.model_dump() != old_mqtt:
                log.warning("'mqtt' connection changes need a restart to take effect")
            try:
                self.pipeline.reload(new.config)
            except UserError as exc:
                log.error(
                    "config reload rejected; still running the previous config", error=str(exc)
                )
                return
            if self.mqtt is not None:
                self.mqtt.update_triggers(new.config.triggers)
            old_logging = self.config.logging
            self.config = new.config
            self.loaded = new
            self._apply_switches()
            if new.config.logging != old_logging:
                setup_logging(self.log_level or new.config.logging.level, new.config.logging.format)
            log.info("config reloaded", triggers=_trigger_names(new.config), **diff)
        finally:
            self.notifier.notify(f"READY=1\nSTATUS={self.summary()}")

    def shutdown(self) -> None:
        self.notifier.stopping("stopping: flushing events")
        if self.mqtt is not None:
            try:
                self.mqtt.publish_stats(self.pipeline.stats())
            except Exception:
                log.exception("final stats not published")
            delivered = self.mqtt.flush(FLUSH_SECONDS)
            if not delivered:
                log.warning(
                    "broker not reachable: undelivered events stay in the spool and are sent "
                    "after the next start",
                    seconds=FLUSH_SECONDS,
                )
            self.mqtt.close()
        for sink in self.fanout.sinks:
            if sink is not self.mqtt:
                sink.close()
        self.notifier.close()

    def run(self) -> int:
        self.install_signals()
        try:
            self.start()
        except BaseException:
            if self.mqtt is not None:
                self.mqtt.close()
            raise
        if self.stop.is_set():
            log.info("stopped before listening", signal=",".join(self._signals_received))
            self.shutdown()
            return 0
        worker = threading.Thread(target=self._work, name="listener-pipeline", daemon=True)
        worker.start()
        self.notifier.ready(self.summary())
        log.info("listening", triggers=_trigger_names(self.config), source=self.config.source.type)
        stats_every = self.config.mqtt.stats_interval_seconds
        next_stats = time.monotonic() + stats_every
        next_status = time.monotonic() + STATUS_SECONDS
        stop_seen_at: float | None = None
        while worker.is_alive():
            worker.join(0.2)
            if self.hup.is_set() and not self.stop.is_set():
                self.hup.clear()
                self.reload()
            now = time.monotonic()
            if self.mqtt is not None and now >= next_stats:
                next_stats = now + self.config.mqtt.stats_interval_seconds
                self.mqtt.publish_stats(self.pipeline.stats())
            if now >= next_status:
                next_status = now + STATUS_SECONDS
                self.notifier.status(self.summary())
            if self.stop.is_set():
                if stop_seen_at is None:
                    stop_seen_at = now
                    log.info("stopping", signal=",".join(self._signals_received))
                    self.notifier.stopping("stopping: finishing the window in flight")
                elif now - stop_seen_at > STOP_GRACE_SECONDS:
                    log.error("processing loop did not stop in time; exiting anyway")
                    self.shutdown()
                    return 1
        error = self._worker_error
        if error is not None and not isinstance(error, UserError):
            log.error("processing loop failed", exc_info=error)
            self.shutdown()
            return 1
        if error is None and not self.stop.is_set():
            log.info("end of stream", windows=self.fanout.windows)
        self.shutdown()
        if error is not None:
            raise error
        log.info("stopped", windows=self.fanout.windows)
        return 0


def run_daemon(config_path: str | None, log_level: str | None = None) -> int:
    """Entry point of `listener run`: user mistakes raise UserError (exit 2)."""
    loaded = load_config(config_path)
    setup_logging(log_level or loaded.config.logging.level, loaded.config.logging.format)
    _require_triggers(loaded)
    return Daemon(loaded, log_level=log_level).run()
