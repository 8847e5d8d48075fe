"""Session fixture ``hearing_model_dir``: the small trained CLAP-like model that hears.

Why: detection tests need a model whose scores mean something. The committed export in
tests/assets/hearing_model is used when its recorded build hash equals the sha256 of the
build scripts (tests/hearing/sounds.py + build_model.py); otherwise the scripts changed,
so the model is rebuilt (a few minutes of CPU) into tests/.cache/hearing_model and the
run says so. Never skips.
"""

from __future__ import annotations

import fcntl
import json
import sys
import warnings
from pathlib import Path

import pytest

from tests.hearing.build_model import build, build_hash

TESTS = Path(__file__).resolve().parent
COMMITTED = TESTS / "assets" / "hearing_model"
CACHE = TESTS / ".cache" / "hearing_model"


def recorded_hash(model_dir: Path) -> str | None:
    """The build hash a model dir was made from (config.json), None when absent/broken."""
    try:
        cfg = json.loads((model_dir / "config.json").read_text())
        return cfg["listener_test_model"]["build_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resolve_hearing_model() -> Path:
    want = build_hash()
    if recorded_hash(COMMITTED) == want:
        return COMMITTED
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE.parent / "hearing_model.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; others wait, then reuse
        if recorded_hash(CACHE) != want:
            msg = (
                f"hearing model: {COMMITTED} was built from other scripts "
                f"(hash {recorded_hash(COMMITTED)} != {want}); rebuilding into {CACHE}. "
                "Commit the result: python -m tests.hearing.build_model "
                "--out tests/assets/hearing_model"
            )
            print(msg, file=sys.stderr, flush=True)
            warnings.warn(msg, stacklevel=1)
            build(CACHE)
    return CACHE


@pytest.fixture(scope="session")
def hearing_model_dir() -> Path:
    return resolve_hearing_model()
