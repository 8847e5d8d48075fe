"""Writing files so that a crash or a full disk never leaves half of one.

Every file listener rewrites in place (runtime switches, the prompt cache, the list
of published discovery topics, a model's manifest, the config after `calibrate
--write`) goes through :func:`atomic_write`: readers see the old file or the new
one, never a mix, and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, fsync: bool = True,
                 mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8, byte for byte).

    The data goes to a temporary file in the same directory, which is flushed to disk
    (``fsync``) and renamed over ``path``. With ``mode`` the file gets exactly that
    mode, whatever the umask (private files: the state directory's); without it a new
    file gets the usual permissions (the umask applies) and an existing file keeps its
    mode. The directory is created if needed. On any error (a full disk included) the
    temporary file is removed and the error raised.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(raw)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        else:
            with contextlib.suppress(FileNotFoundError):
                shutil.copymode(target, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
