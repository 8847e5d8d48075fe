"""Reading the config file: find it, parse YAML with line numbers, validate, check files.

The file is read with ruamel.yaml (which keeps line numbers) and checked against
:mod:`listener.config.schema` with pydantic (which gives the key path of each
problem); files it names are checked on disk. Every problem becomes one line
``config.yaml:14 triggers[2].on_threshold: must be between 0 and 1, got 1.7``
(worded by :mod:`listener.config.problems`), and all of them are raised together in
one :class:`ConfigError`. Relative paths in the file are relative to the file's own
directory, so a config works from any cwd.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode
from ruamel.yaml.reader import ReaderError

from listener.config.problems import (
    located,
    reader_problem,
    validation_problems,
    yaml_problem,
)
from listener.config.schema import Config
from listener.detect.settings import provenance
from listener.errors import ConfigError

SEARCH_PATHS = (Path("/etc/listener/config.yaml"), Path("config.yaml"))


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


def _resolve_paths(cfg: Config, base: Path) -> None:
    """Make relative paths relative to the config file's directory."""

    def fix(p: Path | None) -> Path | None:
        if p is None:
            return None
        p = p.expanduser()
        return p if p.is_absolute() else (base / p)

    cfg.model.dir = fix(cfg.model.dir)  # type: ignore[assignment]
    cfg.source.path = fix(cfg.source.path)
    if cfg.source.url and "://" not in cfg.source.url:  # an RTP .sdp file
        cfg.source.url = str(fix(Path(cfg.source.url)))
    cfg.clips.dir = fix(cfg.clips.dir)
    cfg.state_dir = fix(cfg.state_dir)
    cfg.mqtt.password_file = fix(cfg.mqtt.password_file)
    cfg.web.password_file = fix(cfg.web.password_file)
    cfg.mqtt.tls.ca_file = fix(cfg.mqtt.tls.ca_file)
    cfg.mqtt.tls.cert_file = fix(cfg.mqtt.tls.cert_file)
    cfg.mqtt.tls.key_file = fix(cfg.mqtt.tls.key_file)
    for t in cfg.triggers:
        t.examples = [fix(e) for e in t.examples]  # type: ignore[misc]


def _check_files(cfg: Config, root: Any, where: str, check_model: bool) -> list[str]:
    """Problems only the file system can show: missing model dir, unreadable files, a
    clips directory that cannot be written (found now, not at the first event)."""
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
    readable(cfg.web.password_file, ("web", "password_file"), "password file")
    readable(cfg.mqtt.tls.ca_file, ("mqtt", "tls", "ca_file"), "CA file")
    readable(cfg.mqtt.tls.cert_file, ("mqtt", "tls", "cert_file"), "certificate file")
    readable(cfg.mqtt.tls.key_file, ("mqtt", "tls", "key_file"), "key file")
    if cfg.source.type == "file":
        readable(cfg.source.path, ("source", "path"), "audio file")
    if cfg.clips.enabled and cfg.clips.dir is not None:
        why = _not_writable_dir(cfg.clips.dir)
        if why:
            problems.append((("clips", "dir"), why))
    return [located(root, where, loc, msg) for loc, msg in problems]


def _not_writable_dir(d: Path) -> str | None:
    """Why clips could not be written under ``d``, or None if they can.

    The directory is created at the first clip, so what matters is its nearest existing
    ancestor; ``os.access`` answers for the running user and for a read-only mount
    (EROFS) alike, without writing anything.
    """
    existing = d
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory, so clips cannot be written to {d}"
    if not os.access(existing, os.W_OK | os.X_OK):
        made = "" if existing == d else f" (it would be created in {existing})"
        return (
            f"clips directory {d} is not writable{made}: point clips.dir at a writable "
            "directory, fix its permissions or mount, or set clips.enabled: false"
        )
    return None


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


def _load_yaml(text: str, where: str) -> CommentedMap:
    """The round-trip YAML tree of ``text`` (it keeps line numbers): a mapping of sections,
    or a ConfigError that says why not."""
    try:
        root = _yaml().load(io.StringIO(text))
    except MarkedYAMLError as exc:
        entry = yaml_problem(exc, text, where)
        raise ConfigError(entry, [entry]) from None
    except ReaderError as exc:
        entry = reader_problem(exc, text, where)
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
    return root


def _node_at(node: Node | None, keys: tuple[str, ...]) -> Node | None:
    """The YAML node under the mapping keys ``keys`` (None when one is missing)."""
    for key in keys:
        if not isinstance(node, MappingNode):
            return None
        node = next((v for k, v in node.value if isinstance(k, ScalarNode) and k.value == key),
                    None)
    return node


def _secret_as_written(data: dict[str, Any], text: str) -> None:
    """An unquoted number as ``mqtt.password`` becomes the text the user typed.

    YAML reads ``password: 98765432`` as a number, and ``0123`` as 123, ``1e3`` as
    1000.0: the broker needs the characters in the file, which only the YAML node still
    holds. (Other types stay as they are and fail validation, without their value.)
    """
    mqtt = data.get("mqtt")
    value = mqtt.get("password") if isinstance(mqtt, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    node = _node_at(_yaml().compose(io.StringIO(text)), ("mqtt", "password"))
    if isinstance(node, ScalarNode):
        mqtt["password"] = node.value  # type: ignore[index]


def parse_config(
    text: str,
    where: str = "config.yaml",
    base: Path | None = None,
    check_files: bool = True,
    check_model: bool = True,
) -> LoadedConfig:
    """Parse and validate config text. Raises :class:`ConfigError` listing every problem."""
    root = _load_yaml(text, where)
    data = _plain(root)
    _drop_empty_sections(data, Config)
    _secret_as_written(data, text)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        errors = validation_problems(exc, root, where)
        raise ConfigError("\n".join(errors), errors) from None
    _resolve_paths(cfg, base or Path.cwd())
    bands = [cfg.band_problem(i) for i in range(len(cfg.triggers))]
    errors = [located(root, where, *b) for b in bands if b is not None]
    if errors:  # thresholds crossed across layers (trigger vs model): needs the model dir
        raise ConfigError("\n".join(errors), errors)
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


def _resolved_trigger(cfg: Config, trigger: Any, data: dict[str, Any]) -> CommentedMap:
    """A trigger's dump with every setting it inherits filled in, each such value
    commented with where it comes from (``defaults``, ``model`` or ``built-in``)."""
    layers = cfg.settings_layers(trigger)
    settings = asdict(cfg.trigger_settings(trigger))
    source = provenance(*layers)
    out = CommentedMap()
    for key, value in data.items():
        if key in settings:
            out[key] = settings[key]
            if source[key] != "trigger":
                out.yaml_add_eol_comment(f"from {source[key]}", key)
        else:
            out[key] = value
    return out


#: FFmpeg options of a stream source whose values are secrets (headers carry tokens)
_SECRET_OPTION = re.compile(r"(?i)pass|auth|token|key|secret|header|cookie")


def masked_dump(cfg: Config) -> str:
    """The resolved config as YAML with secrets masked (for ``check-config``)."""
    data = cfg.model_dump(mode="json")
    if data["mqtt"].get("password"):
        data["mqtt"]["password"] = "********"
    if data["source"].get("url"):
        data["source"]["url"] = cfg.source.shown  # credentials masked
    data["source"]["options"] = {
        k: "********" if _SECRET_OPTION.search(k) else v
        for k, v in data["source"].get("options", {}).items()}
    data["triggers"] = [_resolved_trigger(cfg, t, d)
                        for t, d in zip(cfg.triggers, data["triggers"], strict=True)]
    y = YAML(typ="rt")  # keeps the schema's key order (safe sorts keys)
    y.default_flow_style = False
    buf = io.StringIO()
    y.dump(data, buf)
    return buf.getvalue()
