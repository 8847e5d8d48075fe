"""The configuration schema: every section, key, default and rule, as pydantic models.

One YAML file describes the model, the audio source, the triggers and the MQTT
connection. This module says what is valid; :mod:`listener.config.loader` reads the
file (with line numbers) and turns each problem into ``file:line key.path: what``.
Rules that involve several keys raise through :func:`_at` (:func:`not_above` for two
keys that must keep an order), which names the key the user must change, so the
message points at its line.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from listener.detect.settings import KEYS as SETTING_KEYS
from listener.detect.settings import TriggerSettings, resolve

#: what a name used in MQTT topics and Home Assistant ids may hold: matched against the
#: WHOLE value (``fullmatch``), so a trailing line break from a YAML block scalar fails it
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")


# --- small validated types -------------------------------------------------------------


def _at(path: str, message: str) -> ValueError:
    """A cross-field error that belongs to one key (``path`` like ``triggers[2].name``).

    pydantic reports a model validator's error at the section; the tag lets the
    formatter point at the line of the key the user must change instead.
    """
    return ValueError(f"<<{path}>>{message}")


def not_above(section: object, low_key: str, high_key: str, at: str = "",
              note: str = "") -> ValueError | None:
    """The error for ``low_key`` set above ``high_key`` in one section, or None if it is not.

    Several pairs of keys must keep an order (a hop no longer than the window, the
    shortest reconnect delay no longer than the longest); every such rule says the same
    thing the same way, at the line of the lower key: ``must not exceed window_seconds
    (2.0), got 5.0``. A validator raises what this returns. ``at`` prefixes the key path
    (``"triggers[2]."``) and ``note`` is appended to the message.
    """
    low, high = getattr(section, low_key), getattr(section, high_key)
    if low > high:
        return _at(at + low_key, f"must not exceed {high_key} ({high}), got {low}{note}")
    return None


def keeps_order(low_key: str, high_key: str) -> Any:
    """A section's validator: ``low_key`` must not exceed ``high_key`` (:func:`not_above`)."""

    def check(self: Any) -> Any:
        if (error := not_above(self, low_key, high_key)) is not None:
            raise error
        return self

    return model_validator(mode="after")(check)


def _unit_interval(v: float) -> float:
    if not 0.0 <= v <= 1.0:
        raise ValueError("must be between 0 and 1")
    return v


def _positive(v: float) -> float:
    if v <= 0:
        raise ValueError("must be greater than 0")
    return v


def _non_negative(v: float) -> float:
    if v < 0:
        raise ValueError("must be 0 or more")
    return v


#: why a value that looks right is refused: YAML's block scalars end with a line break
_BLOCK_SCALAR_HINT = (
    "; a block scalar ('|' or '>') keeps its line break: write the value on the key's line"
)


def _identifier(v: str) -> str:
    """A name that goes into MQTT topics: a broker drops the whole connection (every
    trigger's events) on a topic with a control character, so the whole value must match."""
    if not ID_PATTERN.fullmatch(v):
        hint = _BLOCK_SCALAR_HINT if ID_PATTERN.fullmatch(v.strip()) else ""
        raise ValueError(
            "may only contain letters, digits, '_' and '-' (it is used in MQTT topics "
            f"and Home Assistant ids{hint})"
        )
    return v


def _no_control_characters(v: str) -> str:
    """Text sent to the broker as an MQTT string (client id, user name) or used to reach
    it (host): MQTT forbids control characters there, and mosquitto drops the connection."""
    if any(unicodedata.category(c) == "Cc" for c in v):
        raise ValueError(
            "must not contain control characters such as line breaks, tabs or NUL (the "
            f"broker refuses them{_BLOCK_SCALAR_HINT})"
        )
    return v


def _non_empty_text(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v


UnitFloat = Annotated[float, AfterValidator(_unit_interval)]
PositiveFloat = Annotated[float, AfterValidator(_positive)]
NonNegFloat = Annotated[float, AfterValidator(_non_negative)]
PositiveInt = Annotated[int, AfterValidator(_positive)]
NonNegInt = Annotated[int, AfterValidator(_non_negative)]
Identifier = Annotated[str, AfterValidator(_identifier)]
Text = Annotated[str, AfterValidator(_non_empty_text)]
WireText = Annotated[str, AfterValidator(_no_control_characters)]


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are not coerced from text."""

    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True)


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


def parse_source(v: Any) -> Any:
    """The ``source`` value as a mapping: the shorthands ``mic``, ``stdin`` and
    ``file:PATH`` become ``{type: ...}``, a mapping passes through unchanged.

    The config's ``source:`` key and ``listener top --source`` accept the same
    shorthands; an unknown one raises ValueError with the accepted forms.
    """
    if isinstance(v, str):
        if v in ("mic", "stdin"):
            return {"type": v}
        if v.startswith("file:"):
            return {"type": "file", "path": v[len("file:") :]}
        raise ValueError("must be 'mic', 'stdin', 'file:PATH' or a mapping with 'type'")
    return v


class SourceConfig(Strict):
    type: Literal["mic", "file", "stdin"] = "mic"
    device: str | int | None = None
    path: Path | None = None
    realtime: bool = False
    sample_rate: PositiveInt | None = None
    channels: PositiveInt | None = None
    format: Literal["s16le", "s32le", "f32le"] = "s16le"
    block_seconds: PositiveFloat = 0.1

    @model_validator(mode="after")
    def _needs_path(self) -> SourceConfig:
        if self.type == "file" and self.path is None:
            raise _at("path", "is required for a file source (or write source: file:PATH)")
        return self


class AudioConfig(Strict):
    window_seconds: PositiveFloat = 10.0
    hop_seconds: PositiveFloat = 1.0
    pre_roll_seconds: NonNegFloat = 5.0
    min_level_dbfs: float = -70.0

    @field_validator("window_seconds")
    @classmethod
    def _window_max(cls, v: float) -> float:
        if v > 10.0:
            raise ValueError("must be at most 10 (the model hears 10-s windows)")
        return v

    @field_validator("min_level_dbfs")
    @classmethod
    def _dbfs(cls, v: float) -> float:
        if v > 0:
            raise ValueError("must be 0 or below (dBFS)")
        return v

    _hop_le_window = keeps_order("hop_seconds", "window_seconds")


class TriggerDefaults(Strict):
    """Hysteresis settings every trigger inherits unless it sets its own."""

    on_threshold: UnitFloat = 0.30
    off_threshold: UnitFloat = 0.25
    on_windows: PositiveInt = 2
    off_seconds: NonNegFloat = 3.0
    cooldown_seconds: NonNegFloat = 10.0
    margin: NonNegFloat = 0.05

    _off_le_on = keeps_order("off_threshold", "on_threshold")


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
            raise _at(given, f"needs {missing} too (a client certificate and its key go together)")
        return self


class DiscoveryConfig(Strict):
    enabled: bool = True
    prefix: Identifier = "homeassistant"


class SpoolConfig(Strict):
    max_events: PositiveInt = 10000
    max_age_days: PositiveFloat = 7.0


class MqttConfig(Strict):
    enabled: bool = True
    host: Annotated[Text, AfterValidator(_no_control_characters)] = "localhost"
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
            raise _at("password_file", "set either password or password_file, not both")
        return self

    _reconnect_in_order = keeps_order("reconnect_min_seconds", "reconnect_max_seconds")


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"


class Config(Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    source: Annotated[SourceConfig, BeforeValidator(parse_source)] = Field(
        default_factory=SourceConfig
    )
    audio: AudioConfig = Field(default_factory=AudioConfig)
    defaults: TriggerDefaults = Field(default_factory=TriggerDefaults)
    background: list[Text] = Field(default_factory=list)
    triggers: list[TriggerConfig] = Field(default_factory=list)
    clips: ClipsConfig = Field(default_factory=ClipsConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    state_dir: Path | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: dict[str, int] = {}
        for i, t in enumerate(self.triggers):
            if t.name in seen:
                raise _at(
                    f"triggers[{i}].name",
                    f"duplicate trigger name '{t.name}' (already used by triggers[{seen[t.name]}]):"
                    " names must be unique",
                )
            seen[t.name] = i
        return self

    @model_validator(mode="after")
    def _hop_not_below_block(self) -> Config:
        """A live source hands over audio a block at a time, and the scheduler scores only
        the newest due window: with a hop shorter than a block, the windows in between are
        skipped while the CPU waits. Refused rather than changing the block size behind
        the user's back (the block is the source's latency and overhead trade-off)."""
        hop, block = self.audio.hop_seconds, self.source.block_seconds
        if hop < block:
            raise _at(
                "audio.hop_seconds",
                f"must be at least source.block_seconds ({block}), got {hop}: audio arrives "
                "one block at a time, so a shorter hop skips windows; raise hop_seconds or "
                "lower source.block_seconds",
            )
        return self

    @model_validator(mode="after")
    def _bands(self) -> Config:
        """Every trigger's effective thresholds work together (the defaults check their own)."""
        for i, t in enumerate(self.triggers):
            own = t.own_settings()
            if "on_threshold" not in own and "off_threshold" not in own:
                continue  # both inherited: the defaults section was checked already
            error = not_above(self.trigger_settings(t), "off_threshold", "on_threshold",
                              at=f"triggers[{i}].",
                              note=" (values this trigger does not set come from 'defaults')")
            if error is not None:
                raise error
        return self

    def trigger_settings(self, trigger: TriggerConfig) -> TriggerSettings:
        """The trigger's effective settings: its own keys, else ``defaults:``."""
        return resolve(trigger.own_settings(), self.defaults.model_dump())

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


