"""Config problems as one line each: ``config.yaml:14 triggers[2].on_threshold: what``.

The loader finds problems in three places (YAML syntax, the pydantic schema, the file
system); this module turns each into the line a person editing the file needs: the
file and line of the key to change, the key path, and a message in YAML words rather
than pydantic's (``must be a whole number``, not ``Input should be a valid integer``),
with a did-you-mean for misspelt keys. Cross-field rules in the schema tag their
message with ``<<key.path>>`` so the line points at the key to change, not at its
section.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

from listener.config.schema import Config

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
# pydantic's union/validator steps in an error's loc, which are no keys of the file
_NOT_KEYS = ("str", "int", "float", "bool", "function-before", "function-after")
#: keys whose values are secrets: no message repeats what the file gave, whatever its type
SECRETS = (("mqtt", "password"),)


# --- where: line numbers and key paths ---------------------------------------------------


def line_of(root: Any, loc: Iterable[Any]) -> int | None:
    """1-based line of the deepest node of ``loc`` that exists in the YAML tree ``root``.

    ``root`` is ruamel's round-trip tree, which remembers the line of every key and
    list item; a key that is missing (e.g. a required one) gets its section's line.
    """
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


def loc_text(loc: Iterable[Any]) -> str:
    """A key path as the user writes it: ('triggers', 2, 'name') -> ``triggers[2].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def located(root: Any, where: str, loc: tuple[Any, ...], message: str) -> str:
    """One problem line: ``where:LINE key.path: message`` (just ``where message`` when the
    key has no line in the file)."""
    line = line_of(root, loc)
    return f"{where}:{line} {loc_text(loc)}: {message}" if line else f"{where} {message}"


def _parse_path(text: str) -> tuple[Any, ...]:
    """``triggers[2].name`` -> ('triggers', 2, 'name')."""
    out: list[Any] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(out)


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union/validator tags (e.g. 'function-after[...]', 'str')."""
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in _NOT_KEYS)))


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
        nxt = None
        for c in (ann, *getattr(ann, "__args__", ())):
            for cc in (c, *getattr(c, "__args__", ())):
                if isinstance(cc, type) and issubclass(cc, BaseModel):
                    nxt = cc
        if nxt is None:
            return []
        model = nxt
    return list(getattr(model, "model_fields", {}))


# --- what: pydantic's errors in YAML words -----------------------------------------------


def _split_tag(err: dict[str, Any]) -> dict[str, Any]:
    """Move a ``<<path>>`` tag from a model validator's message into the error's loc."""
    m = _TAG.search(err.get("msg", ""))
    if not m:
        return err
    msg = err["msg"][: m.start()] + err["msg"][m.end() :]
    return {**err, "msg": msg, "loc": (*err["loc"], *_parse_path(m.group(1))), "tagged": True}


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """``unknown key``, with the closest known key or else the list of known ones."""
    key = str(loc[-1])
    options = _fields_at(loc[:-1])
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    known = f" (known keys: {', '.join(options)})" if options and not close else ""
    return f"unknown key{hint}{known}"


def _reworded(err: dict[str, Any]) -> str:
    """pydantic's message without its prefixes, in the words of :data:`_REWORD`."""
    msg = err["msg"]
    for prefix in _STRIP:
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if err["type"] == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        msg = f"must be one of {expected}"
    elif msg.startswith("Input should be"):
        msg = "must be" + msg[len("Input should be") :]
    for pattern, text in _REWORD:
        if pattern.match(msg):
            return pattern.sub(text, msg)
    return msg


def _got(err: dict[str, Any]) -> str:
    """What the file gave, to append to the message (empty when the message says it)."""
    value = err.get("input")
    if value is None and "input" in err:
        return ", got nothing (the key has no value)"
    if err["type"] == "value_error" and isinstance(value, dict | list):
        return ""  # a section-level rule: its message says what is wrong
    if "input" in err and isinstance(value, dict | list):
        return f", got a {'mapping' if isinstance(value, dict) else 'list'}"
    if "input" in err:
        return f", got {value!r}"
    return ""


def _message(err: dict[str, Any]) -> str:
    """The text after ``key.path:`` for one pydantic error (with its cleaned loc)."""
    kind = err["type"]
    if kind == "extra_forbidden":
        return _unknown_key(err["loc"])
    if kind == "missing":
        return "is required"
    msg = _reworded(err)
    if err.get("tagged"):
        return msg  # cross-field messages already say what they got
    if tuple(err["loc"]) in SECRETS:
        # a config error reaches stderr, the journal and the SIGHUP log: never the secret
        return msg + " in quotes (the value is not shown: it is a secret)"
    return msg + _got(err)


def validation_problems(exc: ValidationError, root: Any, where: str) -> list[str]:
    """Every error of ``exc`` as one located line (duplicates dropped, order kept)."""
    lines = []
    seen = set()
    for raw in exc.errors():
        err = _split_tag(dict(raw))
        loc = _clean_loc(tuple(err["loc"]))
        entry = located(root, where, loc, _message({**err, "loc": loc}))
        if entry not in seen:
            seen.add(entry)
            lines.append(entry)
    return lines


# --- YAML syntax errors ------------------------------------------------------------------


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


def yaml_problem(exc: MarkedYAMLError, text: str, where: str) -> str:
    """A YAML syntax error as ``where:LINE key.path: YAML syntax error: what``.

    The file could not be parsed, so the key path is guessed from the indentation of
    the lines above; tabs and duplicate keys, the usual hand-editing mistakes, get a
    hint on how to fix them.
    """
    mark = exc.problem_mark or exc.context_mark
    if exc.context_mark is not None and mark is not None and mark.line >= len(text.splitlines()):
        mark = exc.context_mark  # "unexpected end of stream": point where it began
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        problem = f"{exc.context}: {exc.problem}"
    if "\\t" in problem or "\t" in problem:
        problem += (
            " (YAML does not allow tabs for indentation or in unquoted values: use spaces)"
        )
    elif "duplicate key" in problem:
        problem += " (each key may appear once per section)"
    path = _path_at_line(text, mark.line if mark is not None else None)
    return f"{where}{line} {path}: YAML syntax error: {problem}"


def reader_problem(exc: ReaderError, text: str, where: str) -> str:
    """A character YAML does not allow anywhere (NUL, most control characters) as
    ``where:LINE key.path: ...``: ruamel gives only a character offset, which is turned
    into the line (and the key path around it) the user must edit."""
    position = exc.position if isinstance(exc.position, int) else 0
    line = text.count("\n", 0, position)
    code = exc.character if isinstance(exc.character, int) else 0
    return (
        f"{where}:{line + 1} {_path_at_line(text, line)}: the file holds the character "
        f"#x{code:04x}, which YAML does not allow: remove it"
    )
