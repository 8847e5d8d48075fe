"""How far a quantised model is from its fp32 original, measured, not assumed.

Compares audio embeddings of the same features through two precisions (int8
vs fp32 by default) with:

- raw cosine of the L2-normalised embeddings;
- centred cosine: the mean fp32 embedding of the set is subtracted from both
  first. Random-weight (and to a lesser degree real) CLAP models put every input
  near one common direction, so raw cosine is 0.99+ even between different
  sounds and hides real errors; the centred cosine is what moves;
- top-1 agreement of the scores against a few generic prompts (end to end:
  int8 audio vs int8 text prompts against fp32 audio vs fp32 text prompts).

Audio comes from the user's files (newest 10 s of each) or from generated test
signals (noise, tones, chirps, clicks...) that exercise different spectra.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from listener.model.audio_tower import AudioTower
from listener.model.modeldir import ModelDir

PROMPTS = (
    "a dog barking",
    "a person speaking",
    "music playing",
    "a siren wailing",
    "a smoke alarm beeping",
    "glass breaking",
    "rain falling",
    "silence",
)


def generated_signals(
    sample_rate: int = 48000, seconds: float = 10.0
) -> list[tuple[str, np.ndarray]]:
    """Deterministic, spectrally different 10-s signals (float32, peak <= 1)."""
    n = int(sample_rate * seconds)
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(1234)
    white = rng.standard_normal(n)
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.arange(n // 2 + 1), 1)), n)
    clicks = np.zeros(n)
    clicks[:: sample_rate // 4] = 1.0
    beep = np.sin(2 * np.pi * 3100 * t) * ((t % 1.0) < 0.5)
    f0, f1 = 100.0, 16000.0
    chirp = np.sin(2 * np.pi * f0 * seconds / np.log(f1 / f0) * ((f1 / f0) ** (t / seconds) - 1))
    harmonic = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 12))
    siren = np.sin(2 * np.pi * np.cumsum(900 + 400 * np.sin(2 * np.pi * 0.5 * t)) / sample_rate)
    signals = {
        "white noise": 0.3 * white,
        "pink noise": pink,
        "tone 440 Hz": 0.5 * np.sin(2 * np.pi * 440 * t),
        "beeping 3.1 kHz": 0.5 * beep,
        "log chirp 100 Hz-16 kHz": 0.5 * chirp,
        "clicks 4/s": clicks,
        "square wave 220 Hz": 0.8 * np.sign(np.sin(2 * np.pi * 220 * t)),
        "harmonic 180 Hz, AM": harmonic * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)),
        "siren sweep": 0.5 * siren,
        "near silence": 1e-4 * white,
    }
    out = []
    for name, x in signals.items():
        peak = float(np.max(np.abs(x))) or 1.0
        out.append((name, (x / max(peak, 1.0) if peak > 1.0 else x).astype(np.float32)))
    return out


def cosines(test: np.ndarray, ref: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """Row-wise cosine; ``centre`` (e.g. the mean reference embedding) is removed first."""
    a = test.astype(np.float64)
    b = ref.astype(np.float64)
    if centre is not None:
        a = a - centre
        b = b - centre
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-30)


def compare(test: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Raw and centred cosine statistics of two [N, D] embedding sets of the same inputs."""
    raw = cosines(test, ref)
    centred = cosines(test, ref, ref.mean(axis=0, keepdims=True))
    return {
        "raw": raw,
        "centred": centred,
        "raw_min": float(raw.min()),
        "raw_mean": float(raw.mean()),
        "centred_min": float(centred.min()),
        "centred_mean": float(centred.mean()),
    }


def load_inputs(model: ModelDir, audio_files: list[str] | None) -> tuple[list[str], np.ndarray]:
    """(names, features [N, C, frames, mels]): the files (newest 10 s), then generated signals."""
    from listener.audio.decode import load_audio
    from listener.model.logmel import LogMel

    logmel = LogMel.from_config(
        model.preprocessor_config, str(model.path / "preprocessor_config.json")
    )
    # The generated signals are always part of the set: centring needs several inputs (one
    # file alone minus its own mean is zero) and they cover many spectra.
    clips = [(str(f), load_audio(f)) for f in audio_files or []]
    clips += generated_signals(logmel.sample_rate, logmel.n_samples / logmel.sample_rate)
    names = [n for n, _ in clips]
    feats = np.stack([logmel(x) for _, x in clips]).astype(np.float32)
    return names, feats


def verify_model(
    model: ModelDir,
    audio_files: list[str] | None = None,
    precision: str = "int8",
    reference: str = "fp32",
    threads: int = 0,
    prompts: tuple[str, ...] = PROMPTS,
) -> dict[str, Any]:
    """Compare ``precision`` with ``reference`` towers of ``model``; a JSON-able report."""
    names, feats = load_inputs(model, audio_files)
    embs = {}
    for p in (reference, precision):
        tower = AudioTower(model, p, threads=threads)
        embs[p] = np.concatenate([tower.embed(feats[i : i + 1]) for i in range(len(feats))])
        tower.close()
    stats = compare(embs[precision], embs[reference])
    report: dict[str, Any] = {
        "model": str(model.path),
        "precision": precision,
        "reference": reference,
        "inputs": (f"{len(audio_files)} files + " if audio_files else "")
        + f"{len(names) - len(audio_files or [])} generated signals",
        "n": len(names),
        "audio_cosine_raw_min": stats["raw_min"],
        "audio_cosine_raw_mean": stats["raw_mean"],
        "audio_cosine_centred_min": stats["centred_min"],
        "audio_cosine_centred_mean": stats["centred_mean"],
        "per_input": [
            {"input": n, "cosine_raw": float(r), "cosine_centred": float(c)}
            for n, r, c in zip(names, stats["raw"], stats["centred"], strict=True)
        ],
    }
    _add_prompt_agreement(report, model, embs, threads, prompts)
    return report


def _add_prompt_agreement(report: dict[str, Any], model: ModelDir, embs: dict[str, np.ndarray],
                          threads: int, prompts: tuple[str, ...]) -> None:
    """End to end: top-1 prompt of each input with test audio + the text tower prompts are
    embedded with (the most accurate present, :meth:`ModelDir.best_text_precision`) vs
    reference audio + reference text; and the text towers themselves: ``precision`` vs
    ``reference`` prompt embeddings (issue 18: int8 RoBERTa moved prompts far more than
    int8 moved audio). Adds nothing when the model has no text tower at the reference
    precision."""
    from listener.model.text_tower import TextTower

    precision, reference = report["precision"], report["reference"]
    text_ref = reference if model.has("text", reference) else None
    text_test = model.best_text_precision()
    if not (text_ref and model.has("text", text_test)):
        return
    vecs = {}
    for p in {text_ref, text_test} | ({precision} if model.has("text", precision) else set()):
        tt = TextTower(model, p, threads=threads)
        vecs[p] = tt.embed(list(prompts))
        tt.close()
    if precision in vecs and precision != text_ref:
        t = compare(vecs[precision], vecs[text_ref])
        report.update(text_cosine_raw_min=t["raw_min"], text_cosine_centred_min=t["centred_min"],
                      text_cosine_centred_mean=t["centred_mean"])
    s_ref = embs[reference] @ vecs[text_ref].T
    s_test = embs[precision] @ vecs[text_test].T
    agree = s_ref.argmax(1) == s_test.argmax(1)
    report["prompts"] = list(prompts)
    report["text_precision"] = text_test
    report["top1_agreement"] = float(agree.mean())
    report["score_max_abs_diff"] = float(np.abs(s_ref - s_test).max())
    for item, a, b in zip(report["per_input"], s_ref.argmax(1), s_test.argmax(1), strict=True):
        item["top1_reference"] = prompts[int(a)]
        item["top1"] = prompts[int(b)]


def format_report(r: dict[str, Any]) -> str:
    lines = [
        f"model {r['model']}: {r['precision']} vs {r['reference']} on {r['inputs']}",
        f"  audio embedding cosine  raw: min {r['audio_cosine_raw_min']:.5f} "
        f"mean {r['audio_cosine_raw_mean']:.5f}",
        f"  audio embedding cosine  centred (mean {r['reference']} embedding removed): "
        f"min {r['audio_cosine_centred_min']:.4f} mean {r['audio_cosine_centred_mean']:.4f}",
    ]
    if "text_cosine_centred_min" in r:
        lines.append(
            f"  text embedding cosine over {len(r['prompts'])} prompts: raw min "
            f"{r['text_cosine_raw_min']:.5f}, centred min {r['text_cosine_centred_min']:.4f} "
            f"mean {r['text_cosine_centred_mean']:.4f}"
        )
    if "top1_agreement" in r:
        lines.append(f"  prompts are embedded with the {r['text_precision']} text tower")
        lines.append(
            f"  top-1 agreement over {len(r['prompts'])} prompts: {r['top1_agreement']:.0%} "
            f"(max score difference {r['score_max_abs_diff']:.4f})"
        )
    lines.append("  per input (raw / centred cosine):")
    for item in r["per_input"]:
        extra = ""
        if "top1" in item:
            mark = "" if item["top1"] == item["top1_reference"] else "  <- top-1 differs"
            extra = f"  top-1 {item['top1']!r}{mark}"
        name = item["input"] if len(item["input"]) <= 40 else "..." + item["input"][-37:]
        lines.append(
            f"    {name:<40} {item['cosine_raw']:.5f} / {item['cosine_centred']:.4f}{extra}"
        )
    lines.append(
        "  centred cosine is the sensitive number: below ~0.9 the quantised model may detect "
        "differently; compare detections before trusting it"
    )
    return "\n".join(lines)


def model_info(model: ModelDir) -> dict[str, Any]:
    """What is in a model directory (cheap: no sessions, no hashing)."""
    files = {str(p): (model.path / p).stat().st_size for p in model.files()}
    info: dict[str, Any] = {
        "path": str(model.path),
        "model_id": model.model_id,
        "manifest": model.manifest is not None,
        "embedding_dim": model.embedding_dim,
        "truncation": model.truncation,
        "text_max_length": model.max_text_length,
        "logit_scale": model.logit_scale,
        "files": files,
    }
    if model.manifest:
        for key in ("exporter_version", "created", "source", "quantization", "checks"):
            if key in model.manifest:
                info[key] = model.manifest[key]
    return info
