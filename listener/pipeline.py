"""Pipeline: source -> ring buffer -> windows -> engine -> sinks, for scan, run and top.

STUB: contract only, to be implemented (issue 3). `listener scan`, `listener run`
(daemon) and `listener top` all drive audio through this one class, so a scan of
a file behaves exactly like the daemon listening to the same sound.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from listener.config import Config
from listener.sinks import Sink


class Pipeline:
    """Owns the source, ring buffer, scheduler, LogMel, AudioTower, PromptBank and triggers.

    - ``Pipeline(config, sinks, realtime=None, heartbeat=None)``: loads the model (AudioTower,
      PromptBank for prompts/negatives/background, example embeddings) and opens nothing yet.
      ``realtime`` overrides ``config.source.realtime`` for file sources.
      ``heartbeat`` is called from the processing loop at least once per hop (systemd watchdog).
    - ``open()``: opens the source (mic/file/stdin); raises AudioError/UserError on failure.
    - ``run(stop)``: processes audio until the source ends (file/stdin EOF) or ``stop`` is set;
      on stop it finishes the window in flight; at end of stream every active trigger gets its
      end event. Calls ``sink.on_scores`` after every hop and ``sink.on_event`` per event.
    - ``reload(config)``: apply a new validated config between windows; triggers whose
      definition did not change keep their hysteresis state.
    - ``set_enabled(name, enabled)``: runtime switch; a disabled trigger emits no events
      (an active one is ended first) and scores are still computed.
    - ``stats()``: dict with inference_ms (mean of last windows), real_time_factor,
      windows, skipped_windows, gated_windows, overflows, bad_samples, uptime_s, model.
    - ``model_id``, ``trigger_names``.
    """

    def __init__(
        self,
        config: Config,
        sinks: list[Sink],
        realtime: bool | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        raise NotImplementedError

    def open(self) -> None:
        raise NotImplementedError

    def run(self, stop: threading.Event) -> None:
        raise NotImplementedError

    def reload(self, config: Config) -> None:
        raise NotImplementedError

    def set_enabled(self, name: str, enabled: bool) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        raise NotImplementedError
