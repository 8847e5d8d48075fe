"""Writing calibrated thresholds into the config file, changing only the bytes they own.

`listener calibrate --write` edits a file the user wrote by hand, with comments,
quoting and an order that mean something to them. ruamel.yaml's round-trip loader
locates every key and value, and the new values are spliced into the text at those
positions, so comments, order, quoting, indentation, line ends and unrelated keys
stay byte-for-byte (a full ruamel re-dump can re-flow indentation and long lines).
The new text is validated before anything is replaced, the old file is kept as a
timestamped backup, and the replacement is atomic.
"""

from __future__ import annotations

import io
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from listener.config.loader import parse_config
from listener.detect.settings import TriggerSettings
from listener.errors import ConfigError
from listener.files import atomic_write

# one YAML scalar token: a double- or single-quoted string, or a plain value
_TOKEN = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s,\]}#]+)""")
KEYS = ("on_threshold", "off_threshold", "on_windows")  # what calibrate writes, in this order

Values = Mapping[str, Mapping[str, float | int]]  # trigger name -> key -> new value
_Edit = tuple[int, int, str]  # (start, end, new text) in the file's text


class ProposedSettings(Protocol):
    """What :func:`write_thresholds` needs of a calibration proposal."""

    @property
    def trigger(self) -> str: ...

    @property
    def proposed(self) -> TriggerSettings: ...


def number_text(x: float) -> str:
    """A threshold as written into YAML: 3 decimals at most, at least one (0.4, 0.415)."""
    s = f"{x:.3f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


def _offsets(text: str) -> list[int]:
    """Offset of the first character of each line (lines end at '\\n', as ruamel counts)."""
    return [0] + [m.end() for m in re.finditer("\n", text)]


def _triggers_by_name(text: str, where: str) -> dict[str, CommentedMap]:
    """The block mappings under ``triggers``, by name (as ruamel located them in ``text``)."""
    root = YAML(typ="rt").load(io.StringIO(text))
    triggers = root.get("triggers") if isinstance(root, CommentedMap) else None
    if triggers is None:
        raise ConfigError(f"{where}: has no 'triggers' section to write thresholds into")
    return {str(t.get("name")): t for t in triggers if isinstance(t, CommentedMap) and "name" in t}


def _replace_value(
    text: str, line_start: list[int], t: CommentedMap, name: str, key: str, new: str, where: str
) -> _Edit:
    """The edit that replaces the bytes of an existing ``key``'s value (a plain scalar or a
    quoted string; other forms are refused rather than guessed)."""
    vline, vcol = t.lc.value(key)
    start = line_start[vline] + vcol
    m = _TOKEN.match(text, start)
    if m is None or text[start : start + 1] in ("|", ">", "&", "*", "!"):
        raise ConfigError(
            f"{where}:{vline + 1} triggers '{name}'.{key}: cannot edit this value "
            "form in place; write a plain number there"
        )
    return (m.start(), m.end(), new)


def _insert_keys(text: str, line_start: list[int], t: CommentedMap, items: list[str]) -> _Edit:
    """The edit that adds ``key: value`` lines right after the trigger's ``name:`` line, at
    the mapping's indentation and with the file's own line end."""
    kline, kcol = t.lc.key("name")
    insert_at = line_start[kline + 1] if kline + 1 < len(line_start) else len(text)
    nl = "\r\n" if text[line_start[kline] : insert_at].endswith("\r\n") else "\n"
    prefix = "" if text[:insert_at].endswith(("\n", "\r")) or not text else nl
    block = prefix + "".join(" " * kcol + item + nl for item in items)
    return (insert_at, insert_at, block)


def apply_thresholds(text: str, values: Values, where: str) -> str:
    """Return ``text`` with ``triggers[name].key = value`` set for each given value.

    Existing keys get only their value's bytes replaced; missing keys are inserted
    as new lines right after the trigger's ``name:`` line, at the mapping's indentation.
    Everything else stays byte-for-byte.
    """
    by_name = _triggers_by_name(text, where)
    line_start = _offsets(text)
    edits: list[_Edit] = []
    for name, kv in values.items():
        t = by_name.get(name)
        if t is None:
            raise ConfigError(f"{where}: no trigger named '{name}' under 'triggers'")
        if t.fa.flow_style():
            raise ConfigError(
                f"{where}:{t.lc.line + 1} triggers '{name}' is written in flow style {{...}}; "
                "rewrite it as a block mapping (one key per line) or paste the proposed "
                "values by hand"
            )
        missing: list[str] = []
        for key, val in kv.items():
            new = str(val) if isinstance(val, int) else number_text(float(val))
            if key in t:
                edits.append(_replace_value(text, line_start, t, name, key, new, where))
            else:
                missing.append(f"{key}: {new}")
        if missing:
            edits.append(_insert_keys(text, line_start, t, missing))
    out = text
    for start, end, new in sorted(edits, key=lambda r: (r[0], r[1]), reverse=True):
        out = out[:start] + new + out[end:]
    return out


def _backup(path: Path, now: float | None) -> Path:
    """Copy ``path`` to ``<path>.bak-<UTC timestamp>`` (``-1``, ``-2`` ... if taken)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    backup = path.with_name(f"{path.name}.bak-{stamp}")
    n = 1
    while backup.exists():
        backup = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        n += 1
    shutil.copy2(path, backup)
    return backup


def write_thresholds(
    path: Path, proposals: Sequence[ProposedSettings], now: float | None = None
) -> Path:
    """Back the config up to ``<path>.bak-<UTC timestamp>``, then write it in place.

    Each proposal's on_threshold, off_threshold and on_windows go into its trigger.
    The new text is validated (parsed with the project's loader) before anything is
    replaced; the replacement is atomic and keeps the file mode. Returns the backup path.
    """
    text = path.read_bytes().decode("utf-8")  # keep CRLF line ends as they are
    values: dict[str, dict[str, Any]] = {
        p.trigger: {k: getattr(p.proposed, k) for k in KEYS} for p in proposals
    }
    new_text = apply_thresholds(text, values, str(path))
    parse_config(new_text, where=str(path), base=path.resolve().parent, check_files=False)
    backup = _backup(path, now)
    atomic_write(path, new_text)
    return backup
