"""`listener run` refuses a model file that differs from the model's listener.json.

Real parts: a copy of the hearing model with a manifest written by the exporter's own
``write_manifest``, one byte of its int8 audio tower flipped (same size, other sha256),
and the daemon as a subprocess on a short file source (MQTT off), which ends by itself
at the end of the file. The sha256 memo in the state directory is checked by its
content, not by timing a warm start.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from listener.audio.decode import write_wav
from listener.model.modeldir import MANIFEST, sha256_file, write_manifest
from tests.helpers import assert_clean_error, copy_dir, run_cli, write_config

AUDIO = Path("onnx") / "audio_model_quantized.onnx"
TEXT = Path("onnx") / "text_model.onnx"  # prompts use the most accurate text tower


@pytest.fixture
def setup(hearing_model_dir: Path, tmp_path: Path) -> Path:
    """tmp_path with model/ (the hearing model + listener.json) and a 2-s quiet file."""
    model = copy_dir(hearing_model_dir, tmp_path / "model")
    write_manifest(model, {"source_checkpoint": "hearing-test"})
    rng = np.random.default_rng(3)
    write_wav(tmp_path / "quiet.wav", (0.01 * rng.standard_normal(2 * 48000)).astype(np.float32))
    configure(tmp_path)
    return tmp_path


def configure(d: Path, **model: object) -> None:
    write_config(d, "model", [{"name": "alarm", "prompts": ["an alarm beeping"]}],
                 model=model, source={"type": "file", "path": "quiet.wav"},
                 mqtt={"enabled": False}, state_dir="state")


def listen(d: Path):
    return run_cli("run", "--config", "config.yaml", cwd=d, timeout=120)


def flip_a_byte(path: Path) -> None:
    """Damage ``path`` in place without changing its size."""
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))


def manifest_sha(model: Path, rel: Path) -> str:
    return json.loads((model / MANIFEST).read_text())["files"][rel.as_posix()]["sha256"]


def test_a_damaged_audio_model_stops_the_start_naming_it(setup: Path):
    model = setup / "model"
    flip_a_byte(model / AUDIO)
    r = listen(setup)
    want, found = manifest_sha(model, AUDIO), sha256_file(model / AUDIO)
    assert_clean_error(r, f"model file {model / AUDIO} does not match its sha256",
                       f"expected {want}, found {found}", "listener model pull",
                       "check_hashes: false")
    message = r.stderr.strip().splitlines()[-1]
    assert str(model / AUDIO) in message and found in message  # one line says it all

    configure(setup, check_hashes=False)  # the way out for a file replaced on purpose
    r = listen(setup)
    assert r.returncode == 0, r.stderr

    configure(setup)
    (model / MANIFEST).unlink()  # a pulled export without a manifest starts as before
    r = listen(setup)
    assert r.returncode == 0, r.stderr


def test_a_file_of_another_size_stops_the_start_even_without_hashes(setup: Path):
    model = setup / "model"
    with open(model / "tokenizer.json", "a") as f:
        f.write("\n")
    configure(setup, check_hashes=False)
    r = listen(setup)
    assert_clean_error(r, f"model file {model / 'tokenizer.json'} is ", "bytes but",
                       "truncated or was replaced")


def test_hashes_are_remembered_in_one_private_memo(setup: Path):
    model, memo = setup / "model", setup / "state" / "model-hashes.json"
    r = listen(setup)
    assert r.returncode == 0, r.stderr
    entries = json.loads(memo.read_text())
    for rel in (AUDIO, TEXT):
        entry = entries[str((model / rel).resolve())]
        st = (model / rel).stat()
        assert entry == {"sha256": manifest_sha(model, rel), "size": st.st_size,
                         "mtime_ns": st.st_mtime_ns}
    assert stat.S_IMODE(memo.stat().st_mode) == 0o600
    assert not (setup / "state" / "prompt-cache" / "hashes.json").exists()  # one memo only

    before = memo.read_bytes()
    assert listen(setup).returncode == 0
    assert memo.read_bytes() == before  # nothing was hashed again

    # the second start believes the memo for an unchanged file (same size and mtime):
    # a memo that says otherwise is what the check reports
    poisoned = "0" * 64
    entries[str((model / AUDIO).resolve())]["sha256"] = poisoned
    memo.write_text(json.dumps(entries))
    assert_clean_error(listen(setup), f"found {poisoned}")
