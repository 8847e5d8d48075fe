"""The state directory: the one place that names the files listener keeps between runs.

Which directory is the config's job (``state_dir``, else ``$STATE_DIRECTORY`` under
systemd, else ``$XDG_STATE_HOME/listener``: ``Config.resolved_state_dir``); what lives
in it is decided here, and every other module receives these paths:

- ``spool.sqlite3``: events not yet acknowledged by the broker (listener/mqtt/spool.py)
- ``switches.json``: runtime on/off choices made over MQTT (listener/service/switches.py)
- ``mqtt_discovery.json``: the Home Assistant discovery published last time: config
  topics, trigger names, form, and whether unique_ids are the unprefixed ones of an
  install older than the ``listener_`` prefix (listener/mqtt/discovery_memory.py)
- ``open_events.json``: starts not ended yet, ended at the next start-up after a crash
  (listener/service/open_events.py)
- ``prompt-cache/``: prompt embeddings per text model (listener/model/prompt_bank.py)
- ``model-hashes.json``: sha256 of model files by path, size and mtime (the start-up
  integrity check and the prompt cache's key; listener/model/modeldir.py)
- ``history.sqlite3``: past events and each scored window's embedding, for the web page
  and `listener search` (listener/history/store.py); separate from the spool, which
  forgets an event once the broker has it
- ``clips/``: event clips, unless ``clips.dir`` says otherwise
- ``heartbeat``: touched by the processing loop, read by `listener health` (a container
  HEALTHCHECK; listener/service/heartbeat.py)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from listener.errors import UserError


@dataclass(frozen=True)
class StateDir:
    path: Path

    @property
    def spool(self) -> Path:
        return self.path / "spool.sqlite3"

    @property
    def switches(self) -> Path:
        return self.path / "switches.json"

    @property
    def published_discovery(self) -> Path:
        return self.path / "mqtt_discovery.json"

    def stream_spool(self, stream: str) -> Path:
        """A named stream's own spool (its MQTT device publishes from it)."""
        return self.path / f"spool.{stream}.sqlite3"

    def stream_published_discovery(self, stream: str) -> Path:
        return self.path / f"mqtt_discovery.{stream}.json"

    @property
    def open_events(self) -> Path:
        return self.path / "open_events.json"

    @property
    def prompt_cache(self) -> Path:
        return self.path / "prompt-cache"

    @property
    def model_hashes(self) -> Path:
        return self.path / "model-hashes.json"

    @property
    def history(self) -> Path:
        return self.path / "history.sqlite3"

    @property
    def clips(self) -> Path:
        return self.path / "clips"

    @property
    def heartbeat(self) -> Path:
        return self.path / "heartbeat"

    def ensure(self) -> StateDir:
        """Create the directory, private (0700: it holds events and clips of a household),
        or say clearly why it cannot be (exit 2). An existing directory keeps its mode
        (systemd's StateDirectoryMode decides it there)."""
        try:
            if not self.path.is_dir():
                self.path.mkdir(parents=True, exist_ok=True)
                self.path.chmod(0o700)
        except OSError as exc:
            raise UserError(
                f"cannot create the state directory {self.path} ({exc.strerror}); set "
                "state_dir in the config or $STATE_DIRECTORY to a writable directory"
            ) from None
        return self
