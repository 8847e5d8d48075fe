"""Zero-shot accuracy of a model directory on fresh renditions of the hearing test sounds.

Shared by tests/test_hearing_model.py (the committed model) and
tests/test_int8_accuracy.py (the same model re-quantised by our quantizer). The ONNX
files are loaded with onnxruntime exactly as the runtime does (the numpy log-mel,
tokenizers for text, L2-normalised embeddings), so the accuracy is the one the
detection tests rely on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from listener.model.logmel import LogMel
from tests.hearing import sounds

#: first seed of the fresh renditions: disjoint from training and the build's eval set
FRESH = sounds.FRESH_SEED_BASE + 123_000

#: precision -> file suffix of the public layout
SUFFIXES = {"fp32": "", "int8": "_quantized"}


def features_fn(model_dir: Path):
    """The runtime's numpy log-mel, configured from the model's preprocessor_config.json."""
    cfg = json.loads((model_dir / "preprocessor_config.json").read_text())
    logmel = LogMel.from_config(cfg)

    def feats(clips: list[np.ndarray]) -> np.ndarray:
        return np.stack([logmel(c) for c in clips])

    return feats


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def audio_embeddings(model_dir: Path, name: str, feats: np.ndarray) -> np.ndarray:
    """L2-normalised embeddings of ``feats`` by onnx/``name`` (batches of 25)."""
    sess = ort.InferenceSession(str(model_dir / "onnx" / name), providers=["CPUExecutionProvider"])
    out = [
        sess.run(["audio_embeds"], {"input_features": feats[i : i + 25]})[0]
        for i in range(0, len(feats), 25)
    ]
    return l2(np.concatenate(out))


def text_embeddings(model_dir: Path, name: str, texts: list[str]) -> np.ndarray:
    """L2-normalised embeddings of ``texts`` by onnx/``name``, padded to the longest."""
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
    return l2(sess.run(["text_embeds"], {"input_ids": ids, "attention_mask": mask})[0])


def fresh_set(
    model_dir: Path, per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """(features, class of each window, unseen captions, class of each caption).

    ``per_class`` fresh 10-s windows of every class (event 1-4 s at a random place in
    noise, or noise only), seeds ``seed`` upwards, one per window.
    """
    clips, labels = [], []
    for i in range(per_class):
        for ci, cls in enumerate(sounds.CLASSES):
            clips.append(sounds.window(cls, seed + i * len(sounds.CLASSES) + ci)[0])
            labels.append(ci)
    feats = features_fn(model_dir)(clips).astype(np.float32)
    texts, tcls = [], []
    for ci, cls in enumerate(sounds.CLASSES):
        for cap in sounds.TEST_CAPTIONS[cls]:
            texts.append(cap)
            tcls.append(ci)
    return feats, np.array(labels), texts, np.array(tcls)


def accuracy(a: np.ndarray, y: np.ndarray, t: np.ndarray, tcls: np.ndarray) -> float:
    """Mean top-1 over caption sets (the k-th unseen wording of every class)."""
    sims = a @ t.T
    accs = []
    for k in range(min(len(v) for v in sounds.TEST_CAPTIONS.values())):
        cols = [np.flatnonzero(tcls == c)[k] for c in range(len(sounds.CLASSES))]
        accs.append(float((sims[:, cols].argmax(1) == y).mean()))
    return float(np.mean(accs))


def accuracy_by_precision(
    model_dir: Path, feats: np.ndarray, y: np.ndarray, texts: list[str], tcls: np.ndarray
) -> dict[str, float]:
    """{"fp32": ..., "int8": ...}: each precision's audio tower against its own text tower."""
    acc = {}
    for prec, suffix in SUFFIXES.items():
        a = audio_embeddings(model_dir, f"audio_model{suffix}.onnx", feats)
        t = text_embeddings(model_dir, f"text_model{suffix}.onnx", texts)
        acc[prec] = accuracy(a, y, t, tcls)
    return acc


def assert_int8_keeps_accuracy(acc: dict[str, float]) -> None:
    """fp32 hears (>= 90 % top-1) and int8 stays within 1 point of it."""
    assert acc["fp32"] >= 0.9, acc
    assert acc["int8"] >= acc["fp32"] - 0.01, acc
