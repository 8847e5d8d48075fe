"""The configuration file: schema, defaults, and errors that point at the line.

One YAML file describes the model, the audio source, the triggers and the MQTT
connection. It is read with ruamel.yaml (which keeps line numbers) and checked
with pydantic (which gives the key path of each problem). Every problem becomes
one line ``config.yaml:14 triggers[2].on_threshold: must be between 0 and 1,
got 1.7``; unknown keys get a did-you-mean. Relative paths in the file are
relative to the file's own directory, so a config works from any cwd.
"""

from __future__ import annotations

import difflib
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from listener.errors import ConfigError

SEARCH_PATHS = (Path("/etc/listener/config.yaml"), Path("config.yaml"))
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")


# --- small validated types -------------------------------------------------------------


def _at(path: str, message: str) -> ValueError:
    """A cross-field error that belongs to one key (``path`` like ``triggers[2].name``).

    pydantic reports a model validator's error at the section; the tag lets the
    formatter point at the line of the key the user must change instead.
    """
    return ValueError(f"<<{path}>>{message}")


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


def _identifier(v: str) -> str:
    if not ID_PATTERN.match(v):
        raise ValueError(
            "may only contain letters, digits, '_' and '-' (it is used in MQTT topics "
            "and Home Assistant ids)"
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


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are not coerced from text."""

    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True)


# --- sections ----------------------------------------------------------------------------


class ModelConfig(Strict):
    dir: Path = Path("models/clap-htsat-unfused")
    precision: Literal["int8", "fp32", "fp16"] = "int8"
    provider: Literal["cpu", "cuda", "tensorrt"] = "cpu"
    # 1 intra-op thread meets issue 6's CPU budget (0 = one per physical core)
    threads: NonNegInt = 1


def _parse_source(v: Any) -> Any:
    """Accept the shorthands ``mic``, ``stdin`` and ``file:PATH`` besides a mapping."""
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

    @model_validator(mode="after")
    def _hop_le_window(self) -> AudioConfig:
        if self.hop_seconds > self.window_seconds:
            raise _at(
                "hop_seconds",
                f"must not exceed window_seconds ({self.window_seconds}), got {self.hop_seconds}",
            )
        return self


class TriggerDefaults(Strict):
    """Hysteresis settings every trigger inherits unless it sets its own."""

    on_threshold: UnitFloat = 0.30
    off_threshold: UnitFloat = 0.25
    on_windows: PositiveInt = 2
    off_seconds: NonNegFloat = 3.0
    cooldown_seconds: NonNegFloat = 10.0
    margin: NonNegFloat = 0.05

    @model_validator(mode="after")
    def _off_le_on(self) -> TriggerDefaults:
        if self.off_threshold > self.on_threshold:
            raise _at(
                "off_threshold",
                f"must not exceed on_threshold ({self.on_threshold}), got {self.off_threshold}",
            )
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

    @model_validator(mode="after")
    def _has_something_to_match(self) -> TriggerConfig:
        if not self.prompts and not self.examples:
            raise ValueError("a trigger needs at least one of 'prompts' or 'examples'")
        return self

    def settings(self, defaults: TriggerDefaults) -> TriggerSettings:
        """The effective hysteresis settings: this trigger's own, else the defaults."""
        pick = {
            k: (getattr(self, k) if getattr(self, k) is not None else getattr(defaults, k))
            for k in TriggerDefaults.model_fields
        }
        return TriggerSettings(**pick)

    @property
    def display_name(self) -> str:
        return self.label or self.name.replace("_", " ").replace("-", " ").capitalize()


@dataclass(frozen=True)
class TriggerSettings:
    on_threshold: float
    off_threshold: float
    on_windows: int
    off_seconds: float
    cooldown_seconds: float
    margin: float


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
    host: Text = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    client_id: str | None = None
    keepalive: PositiveInt = 60
    username: str | None = None
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
        if self.reconnect_min_seconds > self.reconnect_max_seconds:
            raise _at(
                "reconnect_min_seconds",
                f"must not exceed reconnect_max_seconds ({self.reconnect_max_seconds}), "
                f"got {self.reconnect_min_seconds}",
            )
        return self


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"


class Config(Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    source: Annotated[SourceConfig, BeforeValidator(_parse_source)] = Field(
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

    def trigger_settings(self, trigger: TriggerConfig) -> TriggerSettings:
        settings = trigger.settings(self.defaults)
        if settings.off_threshold > settings.on_threshold:
            raise ConfigError(
                f"trigger '{trigger.name}': off_threshold ({settings.off_threshold}) must not "
                f"exceed on_threshold ({settings.on_threshold})"
            )
        return settings

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


# --- loading -------------------------------------------------------------------------------


@dataclass
class LoadedConfig:
    """A validated config plus where it came from (for messages and SIGHUP reloads)."""

    config: Config
    path: Path | None
    raw: Any = None


def find_config(explicit: str | os.PathLike[str] | None) -> Path:
    """Resolve the config path: ``--config``, ``$LISTENER_CONFIG``, /etc, ./config.yaml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("LISTENER_CONFIG")
    if env:
        return Path(env)
    for p in SEARCH_PATHS:
        if p.is_file():
            return p
    raise ConfigError(
        "no config file found: pass --config FILE, set $LISTENER_CONFIG, or create "
        + " or ".join(str(p) for p in SEARCH_PATHS)
        + " (config.example.yaml documents every key)"
    )


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def _plain(node: Any) -> Any:
    """ruamel's commented containers -> plain dicts/lists (pydantic wants plain data)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _line_of(root: Any, loc: Iterable[Any]) -> int | None:
    """1-based line of the deepest node of ``loc`` that exists in the YAML tree."""
    node = root
    line: int | None = None
    for part in loc:
        if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    if line is None and isinstance(root, CommentedMap | CommentedSeq):
        line = root.lc.line + 1
    return line


def _loc_text(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the schema section at ``loc`` (for did-you-mean)."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = None
        for c in candidates:
            for cc in (c, *getattr(c, "__args__", ())):
                if isinstance(cc, type) and issubclass(cc, BaseModel):
                    nxt = cc
        if field.metadata:
            pass
        if nxt is None:
            return []
        model = nxt
    return list(getattr(model, "model_fields", {}))


_STRIP = ("Value error, ", "Assertion failed, ")
_TAG = re.compile(r"<<([^>]*)>>")
# pydantic's wording -> what a person editing YAML needs to read.
_REWORD = (
    (
        re.compile(r"^must be a valid dictionary or instance of \w+"),
        "must be a mapping (key: value lines)",
    ),
    (re.compile(r"^must be a valid dictionary"), "must be a mapping (key: value lines)"),
    (re.compile(r"^must be a valid number.*"), "must be a number"),
    (
        re.compile(r"^must be a valid integer, got a number with a fractional part"),
        "must be a whole number",
    ),
    (re.compile(r"^must be a valid integer.*"), "must be a whole number"),
    (re.compile(r"^must be a valid boolean.*"), "must be true or false"),
    (re.compile(r"^must be a valid list"), "must be a list (- item lines or [a, b])"),
    (re.compile(r"^must be a valid string"), "must be text"),
    (re.compile(r"^must be a valid path"), "must be a path (text)"),
)


def _parse_path(text: str) -> tuple[Any, ...]:
    """``triggers[2].name`` -> ('triggers', 2, 'name')."""
    out: list[Any] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(out)


def _split_tag(err: dict[str, Any]) -> dict[str, Any]:
    """Move a ``<<path>>`` tag from a model validator's message into the error's loc."""
    m = _TAG.search(err.get("msg", ""))
    if not m:
        return err
    msg = err["msg"][: m.start()] + err["msg"][m.end() :]
    return {**err, "msg": msg, "loc": (*err["loc"], *_parse_path(m.group(1))), "tagged": True}


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    if kind == "extra_forbidden":
        key = str(loc[-1])
        options = _fields_at(loc[:-1])
        close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        known = f" (known keys: {', '.join(options)})" if options and not close else ""
        return f"unknown key{hint}{known}"
    msg = err["msg"]
    for prefix in _STRIP:
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if kind == "missing":
        return "is required"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        msg = f"must be one of {expected}"
    elif msg.startswith("Input should be"):
        msg = "must be" + msg[len("Input should be") :]
    for pattern, text in _REWORD:
        if pattern.match(msg):
            msg = pattern.sub(text, msg)
            break
    if err.get("tagged"):
        return msg  # cross-field messages already say what they got
    value = err.get("input")
    if value is None and "input" in err:
        msg += ", got nothing (the key has no value)"
    elif kind == "value_error" and isinstance(value, dict | list):
        pass  # a section-level rule: its message says what is wrong
    elif "input" in err and isinstance(value, dict | list):
        msg += f", got a {'mapping' if isinstance(value, dict) else 'list'}"
    elif "input" in err:
        msg += f", got {value!r}"
    return msg


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union/validator tags (e.g. 'function-after[...]', 'str')."""
    out = []
    for p in loc:
        if isinstance(p, str) and (
            "[" in p or p in ("str", "int", "float", "bool", "function-before", "function-after")
        ):
            continue
        out.append(p)
    return tuple(out)


def _format_errors(exc: ValidationError, root: Any, where: str) -> list[str]:
    lines = []
    seen = set()
    for raw in exc.errors():
        err = _split_tag(dict(raw))
        loc = _clean_loc(tuple(err["loc"]))
        line = _line_of(root, loc)
        text = f"{where}:{line}" if line else where
        entry = f"{text} {_loc_text(loc)}: {_message({**err, 'loc': loc})}"
        if entry not in seen:
            seen.add(entry)
            lines.append(entry)
    return lines


def _resolve_paths(cfg: Config, base: Path) -> None:
    """Make relative paths relative to the config file's directory."""

    def fix(p: Path | None) -> Path | None:
        if p is None:
            return None
        p = p.expanduser()
        return p if p.is_absolute() else (base / p)

    cfg.model.dir = fix(cfg.model.dir)  # type: ignore[assignment]
    cfg.source.path = fix(cfg.source.path)
    cfg.clips.dir = fix(cfg.clips.dir)
    cfg.state_dir = fix(cfg.state_dir)
    cfg.mqtt.password_file = fix(cfg.mqtt.password_file)
    cfg.mqtt.tls.ca_file = fix(cfg.mqtt.tls.ca_file)
    cfg.mqtt.tls.cert_file = fix(cfg.mqtt.tls.cert_file)
    cfg.mqtt.tls.key_file = fix(cfg.mqtt.tls.key_file)
    for t in cfg.triggers:
        t.examples = [fix(e) for e in t.examples]  # type: ignore[misc]


def _path_at_line(text: str, line: int | None) -> str:
    """Best-effort key path of the mapping keys enclosing 0-based ``line`` (for YAML errors)."""
    if line is None:
        return "(top level)"
    stack: list[tuple[int, str]] = []
    for raw in text.splitlines()[: line + 1]:
        stripped = raw.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(raw) - len(stripped)
        m = re.match(r"(?:- )?([A-Za-z0-9_-]+)\s*:", stripped)
        if not m:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(1)))
    return ".".join(k for _, k in stack) or "(top level)"


def _check_files(cfg: Config, root: Any, where: str, check_model: bool) -> list[str]:
    """Problems only the file system can show: missing model dir, unreadable files."""
    problems: list[tuple[tuple[Any, ...], str]] = []

    def readable(p: Path | None, loc: tuple[Any, ...], what: str) -> None:
        if p is None:
            return
        if not p.exists():
            problems.append((loc, f"{what} {p} does not exist"))
        elif not p.is_file():
            problems.append((loc, f"{what} {p} is not a file"))
        elif not os.access(p, os.R_OK):
            problems.append((loc, f"{what} {p} is not readable (check its permissions)"))

    if check_model:
        d = cfg.model.dir
        if not d.exists():
            problems.append(
                (
                    ("model", "dir"),
                    f"model directory {d} does not exist (get one with 'listener model pull' "
                    "or 'listener model export --checkpoint ... --out DIR')",
                )
            )
        elif not d.is_dir():
            problems.append((("model", "dir"), f"{d} is not a directory"))
    for i, t in enumerate(cfg.triggers):
        for j, e in enumerate(t.examples):
            readable(e, ("triggers", i, "examples", j), "example file")
    readable(cfg.mqtt.password_file, ("mqtt", "password_file"), "password file")
    readable(cfg.mqtt.tls.ca_file, ("mqtt", "tls", "ca_file"), "CA file")
    readable(cfg.mqtt.tls.cert_file, ("mqtt", "tls", "cert_file"), "certificate file")
    readable(cfg.mqtt.tls.key_file, ("mqtt", "tls", "key_file"), "key file")
    if cfg.source.type == "file":
        readable(cfg.source.path, ("source", "path"), "audio file")
    for i, t in enumerate(cfg.triggers):
        s = t.settings(cfg.defaults)
        if s.off_threshold > s.on_threshold:
            problems.append(
                (
                    ("triggers", i, "off_threshold"),
                    f"must not exceed on_threshold ({s.on_threshold}), got {s.off_threshold} "
                    "(values this trigger does not set come from 'defaults')",
                )
            )
    out = []
    for loc, msg in problems:
        line = _line_of(root, loc)
        out.append(f"{where}:{line} {_loc_text(loc)}: {msg}" if line else f"{where} {msg}")
    return out


def _section_model(annotation: Any) -> type[BaseModel] | None:
    for c in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def _drop_empty_sections(data: dict[str, Any], model: type[BaseModel]) -> None:
    """An empty section (all of its keys commented out) means its defaults, at any depth."""
    for key, field in model.model_fields.items():
        if key not in data:
            continue
        sub = _section_model(field.annotation)
        is_list = getattr(field.annotation, "__origin__", None) is list
        if data[key] is None and (sub is not None or is_list) and not field.is_required():
            del data[key]
        elif sub is not None and isinstance(data[key], dict):
            _drop_empty_sections(data[key], sub)


def parse_config(
    text: str,
    where: str = "config.yaml",
    base: Path | None = None,
    check_files: bool = True,
    check_model: bool = True,
) -> LoadedConfig:
    """Parse and validate config text. Raises :class:`ConfigError` listing every problem."""
    try:
        root = _yaml().load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if (
            exc.context_mark is not None
            and mark is not None
            and mark.line >= len(text.splitlines())
        ):
            mark = exc.context_mark  # "unexpected end of stream": point where it began
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.context}: {exc.problem}"
        if "\\t" in problem or "\t" in problem:
            problem += " (YAML does not allow tabs for indentation: use spaces)"
        elif "duplicate key" in problem:
            problem += " (each key may appear once per section)"
        path = _path_at_line(text, mark.line if mark is not None else None)
        entry = f"{where}{line} {path}: YAML syntax error: {problem}"
        raise ConfigError(entry, [entry]) from None
    except Exception as exc:  # ruamel raises several unrelated types for broken input
        raise ConfigError(f"{where}: cannot parse YAML: {exc}") from None
    if root is None:
        entry = (
            f"{where}:1 (top level): the file is empty; it needs at least a 'triggers' list "
            "(config.example.yaml documents every key)"
        )
        raise ConfigError(entry, [entry])
    if not isinstance(root, dict):
        kind = "list" if isinstance(root, list) else type(root).__name__
        entry = (
            f"{where}:1 (top level): must be a mapping of sections (model:, source:, "
            f"triggers:, mqtt: ...), got a {kind}"
        )
        raise ConfigError(entry, [entry])
    data = _plain(root)
    _drop_empty_sections(data, Config)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        errors = _format_errors(exc, root, where)
        raise ConfigError("\n".join(errors), errors) from None
    _resolve_paths(cfg, base or Path.cwd())
    if check_files:
        errors = _check_files(cfg, root, where, check_model)
        if errors:
            raise ConfigError("\n".join(errors), errors)
    return LoadedConfig(config=cfg, path=None, raw=root)


def load_config(
    path: str | os.PathLike[str] | None = None, check_files: bool = True, check_model: bool = True
) -> LoadedConfig:
    """Find, read, parse and validate the config file."""
    p = find_config(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {p} is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(f"config file {p} is not readable (check its permissions)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {p} is not UTF-8 text ({exc.reason})") from None
    loaded = parse_config(
        text,
        where=str(p),
        base=p.resolve().parent,
        check_files=check_files,
        check_model=check_model,
    )
    loaded.path = p
    return loaded


def masked_dump(cfg: Config) -> str:
    """The resolved config as YAML with secrets masked (for ``check-config``)."""
    data = cfg.model_dump(mode="json")
    if data["mqtt"].get("password"):
        data["mqtt"]["password"] = "********"
    y = YAML(typ="rt")  # keeps the schema's key order (safe sorts keys)
    y.default_flow_style = False
    buf = io.StringIO()
    y.dump(data, buf)
    return buf.getvalue()
