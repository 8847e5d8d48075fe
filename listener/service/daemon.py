"""The `listener run` service: wiring, signals, reloads, systemd, shutdown.

Start-up wires everything once, in the order the data flows (listener/service/
assemble.py): switch store, model stack, detector, sinks (log, MQTT), pipeline.

Threads: the main thread owns signals (Python delivers them there), config
reloads, the stats timer and systemd status; one worker thread per stream runs its
``Pipeline.run``, which reads audio, scores windows and calls the sinks (listener/
service/streams.py). The workers' heartbeat is the systemd watchdog ping (and the
state directory's heartbeat file a container health check reads: service/
heartbeat.py), so a stuck processing loop stops the pings and systemd restarts the
service, while a healthy but idle one keeps pinging once per hop.

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
from listener.config.streams import streams_of
from listener.detect.events import Event
from listener.errors import UserError
from listener.logs import get_logger, setup_logging
from listener.service.assemble import (
    configured_enabled,
    load_model,
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
from listener.service.streams import StreamRunner, build_streams
from listener.service.switches import SwitchStore, switch_key

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
        self.pipeline: Pipeline | None = None  # the first stream's (the web page's)
        self.runner: StreamRunner | None = None
        self.mqtt: Any = None
        self.stack: Any = None
        self.switches: SwitchStore | None = None
        self.open_events: OpenEvents | None = None
        self.history: Any = None  # listener/history/sink.py, while web.history is kept
        self.live: Any = None  # listener/web/live.py, while the page is on
        self.web: Any = None
        self.web_app: Any = None
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
        streams = streams_of(cfg)
        log.info("starting", config=str(self.loaded.path), model=str(cfg.model.dir),
                 source=",".join(f"{s.name}:{s.source.shown}" if s.named else s.source.shown
                                 for s in streams),
                 triggers=[t.name for t in cfg.triggers], pid=os.getpid())
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
        if cfg.mqtt.enabled:
            from listener.mqtt.streams import make_mqtt
            from listener.web.server import page_url

            self.mqtt = make_mqtt(cfg, self.stack.model_id, state, self.commands.handle,
                                  page_url(cfg.web) if cfg.web.enabled else None)
            self.sinks.add(self.mqtt)
        self._add_history_sinks(state)
        runs = build_streams(cfg, self.stack, self.switches, self.sinks, self.heartbeat.beat)
        self.runner = StreamRunner(runs, self.stop)
        self.pipeline = runs[0].pipeline
        if self.history is not None:
            self.history.wall_time = self.pipeline.wall_time
            self.history.clocks = {r.stream.name: r.pipeline.wall_time for r in runs}
        # the present state before any window, with the ends a crashed run still owed
        owed = self._recover_open_events(state) if state.path.is_dir() else []
        for run in runs:
            mine = tuple(e for e in owed if e.stream == run.stream.name or len(runs) == 1)
            run.pipeline.sink.on_result(replace(run.pipeline.detector.snapshot(),
                                                events=mine, stream=run.stream.name))
        if self.mqtt is not None:
            self.mqtt.start()
        self.runner.open()
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

            # several streams: the page follows the first (its triggers, its switches)
            first = self.config.streams[0].name if self.config.streams else None
            self.live = LiveFeed(first)
            self.sinks.add(self.live)

    def _start_web(self, state: StateDir) -> None:
        """The page, served from its own threads (listener/web/server.py)."""
        from listener.mqtt.client import read_password
        from listener.web.app import WebApp, WebContext
        from listener.web.server import WebServer

        cfg = self.config
        assert self.pipeline is not None
        pipeline, stack = self.pipeline, self.stack
        named = pipeline.stream if cfg.streams else None  # the page's stream, when named
        ctx = WebContext(
            live=self.live, commands=self.commands,
            history=state.history if self.history is not None else None,
            clips_dir=(cfg.clips.dir or state.clips) if cfg.clips.enabled else None,
            embed_text=lambda text: stack.embed_texts([text])[0],
            embed_audio=stack.embed_example,
            trigger_set=lambda: pipeline.detector.triggers, stats=self.stats,
            pending=self.history.pending if self.history is not None else list,
            model_id=stack.model_id, stream=pipeline.stream,
            switch_key=lambda name: switch_key(named, name))
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
        if self.runner is not None:
            self.runner.apply_switches()

    # --- running --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        try:
            return self.runner.stats() if self.runner is not None else {}
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
            if self.config.streams or new.config.streams:
                log.warning("reload: a config with 'streams:' is applied at the next "
                            "start; restart listener to apply it")
                return
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

    def _loop(self, worker: StreamRunner) -> int | None:
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
            if worker.ended_since_last_look():  # a stream's connectivity: off at once
                next_stats = now
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
        assert self.runner is not None
        self.runner.start()
        self.notifier.ready(self.summary())
        log.info("listening", triggers=[t.name for t in self.config.triggers],
                 **({} if self.config.streams else {"source": self.config.source.shown}),
                 streams=[r.stream.name for r in self.runner.runs if r.error is None])
        if self._loop(self.runner) is not None:
            self.shutdown()
            return 1
        error = self.runner.error
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
    if source is not None and loaded.config.streams:
        raise UserError("--source replaces the config's single 'source:', but this config "
                        "lists 'streams:'; edit a stream's source instead")
    if source is not None:
        loaded.config.source = source
    setup_logging(log_level or loaded.config.logging.level, loaded.config.logging.format)
    require_triggers(loaded.config, loaded.path)
    return Daemon(loaded, log_level=log_level, source=source).run()
