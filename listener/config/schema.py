"""The configuration schema: every section, key, default and rule, as pydantic models.

One YAML file describes the model, the audio source, the triggers and the MQTT
connection. This module says what is valid; :mod:`listener.config.loader` reads the
file (with line numbers) and turns each problem into ``file:line key.path: what``.
Value types and the cross-key rules (``at_key``, ``not_above``, ``keeps_order``) live in
:mod:`listener.config.types`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    model_validator,
)

from listener.config.source import SourceConfig, parse_source
from listener.config.streams import check_streams
from listener.config.types import (
    Identifier,
    NonNegFloat,
    NonNegInt,
    PositiveFloat,
    PositiveInt,
    Strict,
    TailSeconds,
    Text,
    UnitFloat,
    WireName,
    WireText,
    at_key,
    at_most,
    is_loopback,
    keeps_order,
    not_above,
)
from listener.detect.settings import CLAP_RECOMMENDED, TriggerSettings, provenance, resolve
from listener.detect.settings import KEYS as SETTING_KEYS
from listener.errors import ConfigError
from listener.model.modeldir import recommended_settings

# --- sections ----------------------------------------------------------------------------


class ModelConfig(Strict):
    dir: Path = Path("models/clap-htsat-unfused")
    precision: Literal["int8", "fp32", "fp16"] = "int8"
    provider: Literal["cpu", "cuda", "tensorrt"] = "cpu"
    # one intra-op thread uses the least CPU per second of audio; a second one shortens
    # a window but costs more CPU in total (0 = one per physical core)
    threads: NonNegInt = 1
    # compare the sha256 of the ONNX files with the model's listener.json at start-up
    # (memoised by size and mtime); file sizes are compared either way
    check_hashes: bool = True


class NoveltyConfig(Strict):
    """The novelty gate (listener/detect/novelty.py): reuse the last scores when the
    newest hop brings nothing new and no trigger is near a decision."""

    enabled: bool = True
    change_db: PositiveFloat = 6.0
    min_bands: PositiveInt = 3
    shift_db: PositiveFloat = 3.0
    activity_change: Annotated[
        PositiveFloat, at_most(1.0, "must be at most 1 (a share of the window's frames)")
    ] = 0.02
    near_threshold: NonNegFloat = 0.1


class AudioConfig(Strict):
    window_seconds: Annotated[
        PositiveFloat, at_most(10.0, "must be at most 10 (the model hears 10-s windows)")
    ] = 10.0
    hop_seconds: PositiveFloat = 1.0
    pre_roll_seconds: NonNegFloat = 5.0
    min_level_dbfs: Annotated[float, at_most(0.0, "must be 0 or below (dBFS)")] = -70.0
    novelty: NoveltyConfig = Field(default_factory=NoveltyConfig)

    _hop_le_window = keeps_order("hop_seconds", "window_seconds")


class TriggerDefaults(Strict):
    """Hysteresis settings every trigger inherits unless it sets its own. Keys set here win
    over the model's recommendations; keys left out fall back to them, then to these
    built-in values (listener/detect/settings.py)."""

    on_threshold: UnitFloat = CLAP_RECOMMENDED["on_threshold"]
    off_threshold: UnitFloat = CLAP_RECOMMENDED["off_threshold"]
    on_windows: PositiveInt = 2
    off_seconds: NonNegFloat = 3.0
    cooldown_seconds: NonNegFloat = 10.0
    margin: NonNegFloat = CLAP_RECOMMENDED["margin"]
    tail_seconds: TailSeconds = 2.0
    compete: bool = True

    @model_validator(mode="after")
    def _off_le_on(self) -> TriggerDefaults:
        """Both set here: checked here, with its line. One left out may come from the model
        (its listener.json), so that pair is checked per trigger (:meth:`Config.band_problem`)."""
        both = {"off_threshold", "on_threshold"} <= self.model_fields_set
        if both and (error := not_above(self, "off_threshold", "on_threshold")) is not None:
            raise error
        return self


class TriggerConfig(Strict):
    name: Identifier
    label: str | None = None
    prompts: list[Text] = Field(default_factory=list)
    examples: list[Path] = Field(default_factory=list)
    negatives: list[Text] = Field(default_factory=list)
    enabled: bool = True
    on_threshold: UnitFloat | None = None
    off_threshold: UnitFloat | None = None
    on_windows: PositiveInt | None = None
    off_seconds: NonNegFloat | None = None
    cooldown_seconds: NonNegFloat | None = None
    margin: NonNegFloat | None = None
    tail_seconds: TailSeconds | None = None
    compete: bool | None = None

    @model_validator(mode="after")
    def _has_something_to_match(self) -> TriggerConfig:
        if not self.prompts and not self.examples:
            raise ValueError("a trigger needs at least one of 'prompts' or 'examples'")
        return self

    def own_settings(self) -> dict[str, Any]:
        """The settings keys this trigger sets itself (the rest come from ``defaults:``)."""
        return {k: getattr(self, k) for k in SETTING_KEYS if getattr(self, k) is not None}

    @property
    def display_name(self) -> str:
        return self.label or self.name.replace("_", " ").replace("-", " ").capitalize()


class ClipsConfig(Strict):
    enabled: bool = False
    dir: Path | None = None
    pre_seconds: NonNegFloat = 2.0
    post_seconds: NonNegFloat = 2.0
    max_age_days: PositiveFloat = 30.0
    max_total_mb: PositiveFloat = 500.0


class TlsConfig(Strict):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    @model_validator(mode="after")
    def _cert_pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            given, missing = (
                ("cert_file", "key_file") if self.key_file is None else ("key_file", "cert_file")
            )
            raise at_key(given,
                         f"needs {missing} too (a client certificate and its key go together)")
        return self


class DiscoveryConfig(Strict):
    enabled: bool = True
    prefix: Identifier = "homeassistant"
    # device: one config per device (HA >= 2024.11); entity: one per entity (older HA);
    # auto: device for a new install, else the form it published before
    form: Literal["auto", "device", "entity"] = "auto"


class SpoolConfig(Strict):
    max_events: PositiveInt = 10000
    max_age_days: PositiveFloat = 7.0


class MqttConfig(Strict):
    enabled: bool = True
    host: WireName = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    client_id: WireText | None = None
    keepalive: PositiveInt = 60
    username: WireText | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: TlsConfig = Field(default_factory=TlsConfig)
    topic_prefix: Identifier = "listener"
    device_id: Identifier = "listener"
    device_name: Text = "Listener"
    suggested_area: str | None = None
    # a stream's device publishes below <base>/<stream> (listener/mqtt/streams.py)
    _topic_base: str | None = PrivateAttr(default=None)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    score_delta: NonNegFloat = 0.01
    level_delta_db: NonNegFloat = 0.5
    stats_interval_seconds: PositiveFloat = 30.0
    reconnect_min_seconds: PositiveFloat = 1.0
    reconnect_max_seconds: PositiveFloat = 60.0

    @model_validator(mode="after")
    def _one_password(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise at_key("password_file", "set either password or password_file, not both")
        return self

    _reconnect_in_order = keeps_order("reconnect_min_seconds", "reconnect_max_seconds")


class HistoryConfig(Strict):
    """What the daemon keeps for the web page and `listener search` (history.sqlite3)."""

    # None: kept while the web page is on
    enabled: bool | None = None
    events_max_age_days: PositiveFloat = 30.0
    events_max_rows: PositiveInt = 100000
    # one float16 embedding (1 KiB at 512 dimensions) per scored window
    embeddings_hours: PositiveFloat = 24.0
    embeddings_max_mb: PositiveFloat = 200.0


class WebConfig(Strict):
    enabled: bool = False
    host: WireName = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8765
    password: SecretStr | None = None
    password_file: Path | None = None
    history: HistoryConfig = Field(default_factory=HistoryConfig)

    @model_validator(mode="after")
    def _password_beyond_loopback(self) -> WebConfig:
        if self.password is not None and self.password_file is not None:
            raise at_key("password_file", "set either password or password_file, not both")
        if (self.enabled and not is_loopback(self.host) and self.password is None
                and self.password_file is None):
            raise at_key("host", f"listening on {self.host} (beyond this machine) needs "
                         "web.password or web.password_file; or keep host: 127.0.0.1")
        return self

    @property
    def keeps_history(self) -> bool:
        return self.enabled if self.history.enabled is None else self.history.enabled


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"


class StreamConfig(Strict):
    """One of several audio sources (listener/config/streams.py has the rules)."""

    name: Identifier
    source: Annotated[SourceConfig, BeforeValidator(parse_source)]
    label: Text | None = None
    suggested_area: Text | None = None
    triggers: list[Identifier] | None = None  # None: every trigger


class Config(Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    source: Annotated[SourceConfig, BeforeValidator(parse_source)] = Field(
        default_factory=SourceConfig
    )
    streams: list[StreamConfig] = Field(default_factory=list)
    audio: AudioConfig = Field(default_factory=AudioConfig)
    defaults: TriggerDefaults = Field(default_factory=TriggerDefaults)
    background: list[Text] = Field(default_factory=list)
    triggers: list[TriggerConfig] = Field(default_factory=list)
    clips: ClipsConfig = Field(default_factory=ClipsConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    state_dir: Path | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: dict[str, int] = {}
        for i, t in enumerate(self.triggers):
            if t.name in seen:
                raise at_key(
                    f"triggers[{i}].name",
                    f"duplicate trigger name '{t.name}' (already used by triggers[{seen[t.name]}]):"
                    " names must be unique",
                )
            seen[t.name] = i
        check_streams(self)
        return self

    @model_validator(mode="after")
    def _hop_not_below_block(self) -> Config:
        """A live source hands over audio a block at a time, and the scheduler scores only
        the newest due window: with a hop shorter than a block, the windows in between are
        skipped while the CPU waits. Refused rather than changing the block size behind
        the user's back (the block is the source's latency and overhead trade-off)."""
        hop = self.audio.hop_seconds
        block = max([self.source.block_seconds] + [s.source.block_seconds for s in self.streams])
        if hop < block:
            raise at_key(
                "audio.hop_seconds",
                f"must be at least source.block_seconds ({block}), got {hop}: audio arrives "
                "one block at a time, so a shorter hop skips windows; raise hop_seconds or "
                "lower source.block_seconds",
            )
        return self

    def settings_layers(self, trigger: TriggerConfig) -> list[tuple[str, dict[str, Any]]]:
        """Where a trigger's settings come from, most specific first: its own keys, the keys
        ``defaults:`` sets, the model's ``recommended`` (listener.json), built-in defaults."""
        return [("trigger", trigger.own_settings()),
                ("defaults", self.defaults.model_dump(exclude_unset=True)),
                ("model", recommended_settings(self.model.dir)),
                ("built-in", TriggerDefaults().model_dump())]

    def band_problem(self, i: int) -> tuple[tuple[Any, ...], str] | None:
        """(key path, message) when trigger ``i``'s effective off_threshold is above its
        on_threshold, wherever each comes from (e.g. the trigger sets on_threshold 0.5 and
        the model recommends off_threshold 0.65), else None. The path is where the config
        sets the lower key (else the upper one, else the trigger). The loader reports it
        with its line (listener/config/loader.py)."""
        return _band_problem(i, self.triggers[i], self.settings_layers(self.triggers[i]))

    def trigger_settings(self, trigger: TriggerConfig) -> TriggerSettings:
        """The trigger's effective settings (:meth:`settings_layers`, merged by ``resolve``);
        a ConfigError for a :meth:`band_problem` (a config that bypassed the loader)."""
        layers = self.settings_layers(trigger)
        i = next((n for n, t in enumerate(self.triggers) if t is trigger), 0)
        problem = _band_problem(i, trigger, layers)
        if problem is not None:
            from listener.config.problems import loc_text  # problems imports this module

            msg = f"{loc_text(problem[0])}: {problem[1]}"
            raise ConfigError(msg, [msg])
        return resolve(*(values for _, values in layers))

    @property
    def resolved_state_dir(self) -> Path:
        """Where spool, prompt cache and clips live: config, then $STATE_DIRECTORY, then XDG."""
        if self.state_dir is not None:
            return self.state_dir
        env = os.environ.get("STATE_DIRECTORY")
        if env:
            return Path(env.split(":")[0])
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "listener"


def _band_problem(i: int, trigger: TriggerConfig, layers: list[tuple[str, dict[str, Any]]]
                  ) -> tuple[tuple[Any, ...], str] | None:
    """:meth:`Config.band_problem` for trigger ``i`` and its settings layers."""
    settings = resolve(*(values for _, values in layers))
    if settings.off_threshold <= settings.on_threshold:
        return None
    src = provenance(*layers)
    loc: tuple[Any, ...] = ("triggers", i)
    for key in ("off_threshold", "on_threshold"):
        if src[key] in ("trigger", "defaults"):
            loc = (*loc, key) if src[key] == "trigger" else ("defaults", key)
            break
    return loc, (f"off_threshold {settings.off_threshold} (from {src['off_threshold']}) "
                 f"must not exceed on_threshold {settings.on_threshold} (from "
                 f"{src['on_threshold']}) for trigger '{trigger.name}'; set both "
                 "thresholds where you set one")
