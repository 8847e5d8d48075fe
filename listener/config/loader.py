"""Reading the config file: find it, parse YAML with line numbers, validate, check files.

The file is read with ruamel.yaml (which keeps line numbers) and checked against
:mod:`listener.config.schema` with pydantic (which gives the key path of each
problem). Every problem becomes one line ``config.yaml:14 triggers[2].on_threshold:
must be between 0 and 1, got 1.7``; unknown keys get a did-you-mean. Relative paths
in the file are relative to the file's own directory, so a config works from any cwd.
"""

from __future__ import annotations

import difflib
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from listener.config.schema import Config
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
