"""Small real file systems for disk-fault tests: full disks and read-only directories.

A tmpfs of a few kilobytes fills up for real (ENOSPC from the kernel, not a mock),
and a tmpfs mounted read-only refuses writes even to root (``chmod`` would not: the
tests run as root here). Mounting needs root (or CAP_SYS_ADMIN); without it these
tests fail with a message that says so instead of being skipped.

Fixtures (registered by tests/conftest.py):

- ``small_fs(size="64k", readonly=False) -> Path``: a fresh mount point under the
  test's tmp dir; unmounted at teardown.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def fill(directory: Path, name: str = "filler") -> int:
    """Write into ``directory`` until the file system is full; returns bytes written."""
    written = 0
    chunk = b"\0" * 4096
    with open(directory / name, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return written


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    mounts: list[Path] = []

    def make(size: str = "64k", readonly: bool = False, name: str | None = None) -> Path:
        where = tmp_path / (name or f"fs{len(mounts)}")
        where.mkdir()
        opts = f"size={size},mode=0755" + (",ro" if readonly else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            pytest.fail(f"disk-fault tests need to mount a tmpfs (run as root): {r.stderr}")
        mounts.append(where)
        return where

    yield make
    for where in reversed(mounts):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def remount_readonly(where: Path) -> None:
    """Make a mounted tmpfs read-only in place (files on it stay readable)."""
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True,
                   timeout=30)


__all__ = ["fill", "remount_readonly", "small_fs"]

