"""The hearing test model really hears: zero-shot accuracy on fresh renditions, int8 parity.

Why: end-to-end detection tests trust this model's scores. These tests load the ONNX
files with onnxruntime exactly as the runtime does (tokenizers for text, L2-normalised
embeddings) and check, on renditions and wordings never used in training, that the
right caption wins, that int8 agrees with fp32, and that background-only windows stay
below the matching-caption regime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from tests.fixtures_model import LAYOUT_FILES
from tests.hearing import sounds
from tests.zero_shot import (
    FRESH,
    accuracy_by_precision,
    assert_int8_keeps_accuracy,
    audio_embeddings,
    fresh_set,
    text_embeddings,
)

PER_CLASS = 10


@pytest.fixture(scope="module")
def fresh(hearing_model_dir: Path):
    """Fresh 10-s windows (event 1-4 s at a random place in noise, or noise only)."""
    return fresh_set(hearing_model_dir, PER_CLASS, FRESH)


def test_layout_is_a_public_clap_export(hearing_model_dir: Path) -> None:
    for name in LAYOUT_FILES:
        assert (hearing_model_dir / name).is_file(), name
    assert not (hearing_model_dir / "listener.json").exists()
    cfg = json.loads((hearing_model_dir / "config.json").read_text())
    assert cfg["model_type"] == "clap"
    pre = json.loads((hearing_model_dir / "preprocessor_config.json").read_text())
    assert pre["truncation"] == "rand_trunc" and pre["padding"] == "repeatpad"
    total = sum(p.stat().st_size for p in hearing_model_dir.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024
    tok = Tokenizer.from_file(str(hearing_model_dir / "tokenizer.json"))
    enc = tok.encode("a smoke alarm beeping")
    assert enc.tokens[0] == "<s>" and enc.tokens[-1] == "</s>"
    assert tok.token_to_id("<pad>") is not None and tok.token_to_id("<mask>") is not None
    for name in ("audio_model.onnx", "audio_model_quantized.onnx"):
        sess = ort.InferenceSession(
            str(hearing_model_dir / "onnx" / name), providers=["CPUExecutionProvider"]
        )
        out = sess.run(["audio_embeds"], {"input_features": np.zeros((3, 1, 1001, 64), np.float32)})
        assert out[0].shape == (3, cfg["projection_dim"])


def test_zero_shot_accuracy_fp32_and_int8(hearing_model_dir: Path, fresh) -> None:
    feats, y, texts, tcls = fresh
    acc = accuracy_by_precision(hearing_model_dir, feats, y, texts, tcls)
    print(f"zero-shot accuracy on {len(y)} fresh windows: {acc}")
    assert_int8_keeps_accuracy(acc)


def test_background_scores_below_events(hearing_model_dir: Path, fresh) -> None:
    feats, y, texts, tcls = fresh
    a = audio_embeddings(hearing_model_dir, "audio_model_quantized.onnx", feats)
    t = text_embeddings(hearing_model_dir, "text_model_quantized.onnx", texts)
    sims = a @ t.T
    q = sounds.CLASSES.index("quiet")
    bg = y == q
    bg_best_event = sims[np.ix_(bg, tcls != q)].max(1)
    matching = np.concatenate([sims[i, tcls == y[i]] for i in np.flatnonzero(~bg)])
    print(
        f"background best event-caption cosine max {bg_best_event.max():.3f}; "
        f"matching p10 {np.percentile(matching, 10):.3f}"
    )
    assert bg_best_event.max() < np.percentile(matching, 10)


def test_stream_helper_places_events_at_known_times() -> None:
    audio, truth = sounds.stream([("alarm", 3.0), ("knocking", 12.5)], 20.0, seed=FRESH)
    assert audio.dtype == np.float32 and len(audio) == 20 * sounds.SR
    assert [c for c, _, _ in truth] == ["alarm", "knocking"]
    for _cls, start, end in truth:
        seg = audio[int(start * sounds.SR) : int(end * sounds.SR)]
        quiet = audio[int((start - 1.0) * sounds.SR) : int(start * sounds.SR)]
        assert sounds.level(seg) > sounds.level(quiet) + 10
    again, _ = sounds.stream([("alarm", 3.0), ("knocking", 12.5)], 20.0, seed=FRESH)
    assert np.array_equal(audio, again)


def test_text_padding_is_masked(hearing_model_dir: Path) -> None:
    """The runtime pads a batch of prompts to the longest: padding must not move embeddings.

    int8 gets a looser bound: dynamic quantisation picks its activation scale per batch."""
    texts = ["hiss", "a smoke alarm beeping somewhere in the house", "knock knock"]
    for name, atol in (("text_model.onnx", 1e-5), ("text_model_quantized.onnx", 3e-3)):
        batched = text_embeddings(hearing_model_dir, name, texts)
        alone = np.concatenate([text_embeddings(hearing_model_dir, name, [t]) for t in texts])
        np.testing.assert_allclose(batched, alone, atol=atol, err_msg=name)
