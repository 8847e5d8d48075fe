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

from listener.model.logmel import LogMel
from tests.hearing import sounds

FRESH = sounds.FRESH_SEED_BASE + 123_000  # disjoint from training and the build's eval set
PER_CLASS = 10


def _features_fn(model_dir: Path):
    """The runtime's numpy log-mel, configured from the model's preprocessor_config.json."""
    cfg = json.loads((model_dir / "preprocessor_config.json").read_text())
    logmel = LogMel.from_config(cfg)

    def feats(clips: list[np.ndarray]) -> np.ndarray:
        return np.stack([logmel(c) for c in clips])

    return feats


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _audio(model_dir: Path, name: str, feats: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(model_dir / "onnx" / name), providers=["CPUExecutionProvider"])
    out = [
        sess.run(["audio_embeds"], {"input_features": feats[i : i + 25]})[0]
        for i in range(0, len(feats), 25)
    ]
    return _l2(np.concatenate(out))


def _text(model_dir: Path, name: str, texts: list[str]) -> np.ndarray:
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    encs = [tok.encode(t).ids for t in texts]
    pad = tok.token_to_id("<pad>")
    n = max(map(len, encs))
    ids = np.full((len(encs), n), pad, np.int64)
    mask = np.zeros((len(encs), n), np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e)] = e
        mask[i, : len(e)] = 1
    sess = ort.InferenceSession(str(model_dir / "onnx" / name), providers=["CPUExecutionProvider"])
    return _l2(sess.run(["text_embeds"], {"input_ids": ids, "attention_mask": mask})[0])


@pytest.fixture(scope="module")
def fresh(hearing_model_dir: Path):
    """Fresh 10-s windows (event 1-4 s at a random place in noise, or noise only)."""
    clips, labels = [], []
    for i in range(PER_CLASS):
        for ci, cls in enumerate(sounds.CLASSES):
            clips.append(sounds.window(cls, FRESH + i * len(sounds.CLASSES) + ci)[0])
            labels.append(ci)
    feats = _features_fn(hearing_model_dir)(clips).astype(np.float32)
    texts, tcls = [], []
    for ci, cls in enumerate(sounds.CLASSES):
        for cap in sounds.TEST_CAPTIONS[cls]:
            texts.append(cap)
            tcls.append(ci)
    return feats, np.array(labels), texts, np.array(tcls)


def _accuracy(a: np.ndarray, y: np.ndarray, t: np.ndarray, tcls: np.ndarray) -> float:
    """Mean top-1 over caption sets (the k-th unseen wording of every class)."""
    sims = a @ t.T
    accs = []
    for k in range(min(len(v) for v in sounds.TEST_CAPTIONS.values())):
        cols = [np.flatnonzero(tcls == c)[k] for c in range(len(sounds.CLASSES))]
        accs.append(float((sims[:, cols].argmax(1) == y).mean()))
    return float(np.mean(accs))


def test_layout_is_a_public_clap_export(hearing_model_dir: Path) -> None:
    names = {
        "onnx/audio_model.onnx",
        "onnx/audio_model_quantized.onnx",
        "onnx/text_model.onnx",
        "onnx/text_model_quantized.onnx",
        "tokenizer.json",
        "preprocessor_config.json",
        "config.json",
    }
    for name in names:
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
    acc = {}
    for prec, suffix in (("fp32", ""), ("int8", "_quantized")):
        a = _audio(hearing_model_dir, f"audio_model{suffix}.onnx", feats)
        t = _text(hearing_model_dir, f"text_model{suffix}.onnx", texts)
        acc[prec] = _accuracy(a, y, t, tcls)
    print(f"zero-shot accuracy on {len(y)} fresh windows: {acc}")
    assert acc["fp32"] >= 0.9, acc
    assert acc["int8"] >= acc["fp32"] - 0.01, acc


def test_background_scores_below_events(hearing_model_dir: Path, fresh) -> None:
    feats, y, texts, tcls = fresh
    a = _audio(hearing_model_dir, "audio_model_quantized.onnx", feats)
    t = _text(hearing_model_dir, "text_model_quantized.onnx", texts)
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
        batched = _text(hearing_model_dir, name, texts)
        alone = np.concatenate([_text(hearing_model_dir, name, [t]) for t in texts])
        np.testing.assert_allclose(batched, alone, atol=atol, err_msg=name)
