"""The `listener run` service: wiring, signals, reloads, systemd, shutdown.

Start-up wires everything once, in the order the data flows (listener/service/
assemble.py): switch store, model stack, detector, sinks (log, MQTT), pipeline.

Threads: the main thread owns signals (Python delivers them there), config
reloads, the stats timer and systemd status; one worker thread runs
``Pipeline.run``, which reads audio, scores windows and calls the sinks. The
worker's heartbeat is the systemd watchdog ping (and the state directory's heartbeat
file a container health check reads: service/heartbeat.py), so a stuck processing
loop stops the pings and systemd restarts the service, while a healthy but idle one
keeps pinging once per hop.

Signals only set events; the main loop acts on them:

- SIGTERM/SIGINT: stop reading audio; the pipeline finishes the window in flight
  and ends active triggers; the spool is flushed to the broker for a few seconds;
  availability goes ``offline``; exit 0.
- SIGHUP: reload the config file (listener/service/reload.py). An invalid file is
  rejected (the log lists every problem) and the old config keeps running.

A file source ends by itself: ``run`` exits 0 once the file is processed and its
events are delivered (or, with the broker down, safely in the spool).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import threading
import time
from dataclasses import replace
from typing import Any

from listener.config.loader import LoadedConfig, load_config
from listener.config.schema import SourceConfig
from listener.detect.events import Event
from listener.errors import UserError
from listener.logs import get_logger, setup_logging
from listener.service.assemble import (
    build_detector,
    configured_enabled,
    load_model,
    make_clips,
    make_source,
    require_triggers,
    state_dir,
)
from listener.service.commands import Commands
from listener.service.heartbeat import Heartbeat
from listener.service.open_events import OpenEvents
from listener.service.pipeline import Pipeline
from listener.service.reload import read_config, reload_running
from listener.service.sdnotify import Notifier
from listener.service.sinks import FanOut, LogSink
from listener.service.state_files import StateDir
from listener.service.switches import SwitchStore

FLUSH_SECONDS = 5.0  # how long shutdown waits for the spool to reach the broker
STATUS_SECONDS = 10.0  # how often STATUS= is refreshed
STOP_GRACE_SECONDS = 15.0  # how long shutdown waits for the window in flight

log = get_logger("listener.daemon")


def _release_startup_memory() -> None:
    """Give the memory start-up used only once (config parsing, model loading, prompt
    cache) back to the OS: collect garbage, then glibc's malloc_trim returns the free
    pages inside the heap, which a plain free() keeps. No-op off glibc."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class Daemon:
    """One run of the service; :meth:`run` returns the exit code."""

    def __init__(self, loaded: LoadedConfig, log_level: str | None = None,
                 source: SourceConfig | None = None) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.log_level = log_level
        self.source_override = source  # `run --source`: kept when the config is reloaded
        self.stop = threading.Event()
        self.hup = threading.Event()
        self.notifier = Notifier()
        self.heartbeat = Heartbeat(None, self.notifier.watchdog)
        self.sinks = FanOut([LogSink()])
        self.pipeline: Pipeline | None = None
        self.mqtt: Any = None
        self.stack: Any = None
        self.switches: SwitchStore | None = None
        self.open_events: OpenEvents | None = None
        self.history: Any = None  # listener/history/sink.py, while web.history is kept
        self.live: Any = None  # listener/web/live.py, while the page is on
        self.web: Any = None
        self.web_app: Any = None
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

    # --- start-up -----------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        self.notifier.status("loading model")
        log.info("starting", config=str(self.loaded.path), model=str(cfg.model.dir),
                 source=cfg.source.shown, triggers=[t.name for t in cfg.triggers],
                 pid=os.getpid())
        state = self._state_dir()
        if state.path.is_dir():
            self.heartbeat = Heartbeat(state.heartbeat, self.notifier.watchdog)
        t0 = time.monotonic()
        self.stack = load_model(cfg)
        log.info("model loaded", model=self.stack.model_id,
                 seconds=round(time.monotonic() - t0, 2))
        # runtime switches are set over MQTT or the web page; without them, the config's
        # `enabled` applies
        self.switches = SwitchStore(
            state.switches if cfg.mqtt.enabled or cfg.web.enabled else None,
            configured_enabled(cfg))
        self.commands = Commands(self.switches, apply=self._apply_switches)
        detector = build_detector(cfg, self.stack, self.switches)
        if cfg.mqtt.enabled:
            from listener.mqtt.publisher import MqttPublisher
            from listener.web.server import page_url

            self.mqtt = MqttPublisher(
                cfg.mqtt, cfg.triggers, self.stack.model_id, state.spool,
                state.published_discovery, on_command=self.commands.handle,
                configuration_url=page_url(cfg.web) if cfg.web.enabled else None)
            self.sinks.add(self.mqtt)
        self._add_history_sinks(state)
        self.pipeline = Pipeline(cfg.audio, make_source(cfg.source), detector, self.sinks,
                                 clips=make_clips(cfg), heartbeat=self.heartbeat.beat)
        if self.history is not None:
            self.history.wall_time = self.pipeline.wall_time
        # the present state before any window, with the ends a crashed run still owed
        owed = self._recover_open_events(state) if state.path.is_dir() else []
        self.sinks.on_result(replace(detector.snapshot(), events=tuple(owed)))
        if self.mqtt is not None:
            self.mqtt.start()
        self.pipeline.open()
        if self.mqtt is not None:
            # fresh figures replace the previous run's retained stats as soon as the
            # broker answers, instead of after the first stats interval
            self.mqtt.publish_stats(self.stats())
        if cfg.web.enabled:
            self._start_web(state)
        _release_startup_memory()

    def _add_history_sinks(self, state: StateDir) -> None:
        """The history database and the live feed of the web page, when configured."""
        cfg = self.config.web
        if cfg.keeps_history and state.path.is_dir():
            from listener.history.sink import history_sink

            self.history = history_sink(state.history, cfg.history)
            self.sinks.add(self.history)
        if cfg.enabled:
            from listener.web.live import LiveFeed

            self.live = LiveFeed()
            self.sinks.add(self.live)

    def _start_web(self, state: StateDir) -> None:
        """The page, served from its own threads (listener/web/server.py)."""
        from listener.history.sink import DEFAULT_STREAM
        from listener.mqtt.client import read_password
        from listener.web.app import WebApp, WebContext
        from listener.web.server import WebServer

        cfg = self.config
        assert self.pipeline is not None
        pipeline, stack = self.pipeline, self.stack
        ctx = WebContext(
            live=self.live, commands=self.commands,
            history=state.history if self.history is not None else None,
            clips_dir=(cfg.clips.dir or state.clips) if cfg.clips.enabled else None,
            embed_text=lambda text: stack.embed_texts([text])[0],
            embed_audio=stack.embed_example,
            trigger_set=lambda: pipeline.detector.triggers, stats=self.stats,
            pending=self.history.pending if self.history is not None else list,
            model_id=stack.model_id, stream=DEFAULT_STREAM)
        self.web_app = WebApp(ctx)
        self.web = WebServer(cfg.web, self.web_app.app, read_password(cfg.web, "web"))
        try:
            self.web.start()
        except OSError as exc:
            raise UserError(
                f"web: cannot listen on {cfg.web.host}:{cfg.web.port} ({exc.strerror or exc}); "
                "set web.port to a free port or web.host to an address of this machine"
            ) from None

    def _state_dir(self) -> StateDir:
        """The state directory, made private before anything is written into it. MQTT
        cannot work without it (the spool); without MQTT the prompt cache and the record of
        open events are lost, nothing else."""
        state = state_dir(self.config)
        try:
            return state.ensure()
        except UserError:
            if self.config.mqtt.enabled:
                raise
            log.warning("no state directory: prompt embeddings are not cached and events "
                        "open at a crash are not ended at the next start",
                        path=str(state.path))
            return state

    def _recover_open_events(self, state: StateDir) -> list[Event]:
        """End events for starts a crashed run left open; from now on, record them."""
        self.open_events = OpenEvents(state.open_events)
        owed = self.open_events.recover()
        self.sinks.add(self.open_events)
        return owed

    def _apply_switches(self) -> None:
        if self.pipeline is not None:
            self.pipeline.apply_switches()

    # --- running --------------------------------------------------------------------------

    def _work(self) -> None:
        assert self.pipeline is not None
        try:
            self.pipeline.run(self.stop)
        except BaseException as exc:  # reported by the main thread
            self._worker_error = exc

    def stats(self) -> dict[str, Any]:
        try:
            return self.pipeline.stats() if self.pipeline is not None else {}
        except Exception:
            return {}

    def summary(self) -> str:
        st = self.stats()
        n = len(self.config.triggers)
        ms = st.get("inference_ms")
        ms_text = f"{ms:.0f} ms/window" if isinstance(ms, int | float) else "- ms/window"
        return (
            f"listening: {n} trigger{'s' if n != 1 else ''}, {ms_text}, "
            f"{st.get('skipped_windows', 0)} skipped"
        )

    def reload(self) -> None:
        """SIGHUP: re-read the config file and apply what can change while listening."""
        self.notifier.notify("RELOADING=1")
        log.info("reloading config", config=str(self.loaded.path))
        try:
            new = read_config(self.loaded.path)
            if new is None or self.pipeline is None or self.switches is None:
                return
            if self.source_override is not None:
                new.config.source = self.source_override
            if not reload_running(self.pipeline, self.switches, self.stack, self.config,
                                  new.config):
                return
            if self.mqtt is not None:
                self.mqtt.update_triggers(new.config.triggers)
            old_logging = self.config.logging
            self.loaded, self.config = new, new.config
            if new.config.logging != old_logging:
                setup_logging(self.log_level or new.config.logging.level,
                              new.config.logging.format)
        finally:
            self.notifier.notify(f"READY=1\nSTATUS={self.summary()}")

    def shutdown(self) -> None:
        self.notifier.stopping("stopping: flushing events")
        if self.mqtt is not None:
            try:
                self.mqtt.publish_stats(self.stats())
            except Exception:
                log.exception("final stats not published")
            if not self.mqtt.flush(FLUSH_SECONDS):
                log.warning(
                    "broker not reachable: undelivered events stay in the spool and are sent "
                    "after the next start",
                    seconds=FLUSH_SECONDS,
                )
        self._stop_web()
        self.sinks.close()
        self.heartbeat.clear()
        self.notifier.close()

    def _stop_web(self) -> None:
        if self.web_app is not None:
            self.web_app.stopping.set()
        if self.live is not None:
            self.live.close()
        if self.web is not None:
            self.web.close()

    def _loop(self, worker: threading.Thread) -> int | None:
        """The main thread while the worker runs: reloads, stats, status, stop grace."""
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
                self.mqtt.publish_stats(self.stats())
            if now >= next_status:
                next_status = now + STATUS_SECONDS
                self.notifier.status(self.summary())
            if self.open_events is not None:
                self.open_events.alive()
            if self.stop.is_set():
                if stop_seen_at is None:
                    stop_seen_at = now
                    log.info("stopping", signal=",".join(self._signals_received))
                    self.notifier.stopping("stopping: finishing the window in flight")
                elif now - stop_seen_at > STOP_GRACE_SECONDS:
                    log.error("processing loop did not stop in time; exiting anyway")
                    return 1
        return None

    def run(self) -> int:
        self.install_signals()
        try:
            self.start()
        except BaseException:
            self._stop_web()
            self.sinks.close()
            raise
        if self.stop.is_set():
            log.info("stopped before listening", signal=",".join(self._signals_received))
            self.shutdown()
            return 0
        worker = threading.Thread(target=self._work, name="listener-pipeline", daemon=True)
        worker.start()
        self.notifier.ready(self.summary())
        log.info("listening", triggers=[t.name for t in self.config.triggers],
                 source=self.config.source.shown)
        if self._loop(worker) is not None:
            self.shutdown()
            return 1
        error = self._worker_error
        if error is not None and not isinstance(error, UserError):
            log.error("processing loop failed", exc_info=error)
            self.shutdown()
            return 1
        windows = self.stats().get("windows")
        if error is None and not self.stop.is_set():
            log.info("end of stream", windows=windows)
        self.shutdown()
        if error is not None:
            raise error
        log.info("stopped", windows=windows)
        return 0


def run_daemon(config_path: str | None, log_level: str | None = None,
               source: SourceConfig | None = None) -> int:
    """Entry point of `listener run`: user mistakes raise UserError (exit 2). ``source``
    (`run --source`) replaces the config's source, also across reloads."""
    loaded = load_config(config_path)
    if source is not None:
        loaded.config.source = source
    setup_logging(log_level or loaded.config.logging.level, loaded.config.logging.format)
    require_triggers(loaded.config, loaded.path)
    return Daemon(loaded, log_level=log_level, source=source).run()
