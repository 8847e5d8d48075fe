"""Build the small CLAP-like test model that actually hears (generated sounds, CPU, minutes).

Why: random CLAP weights map every 10-s window to nearly the same embedding (cosine 0.996+),
so they cannot test detection. This script generates seeded renditions of the classes in
``sounds.py``, computes ClapFeatureExtractor log-mels once (torch STFT, checked against
transformers), trains a compact 1-D CNN audio tower and a bag-of-tokens text tower with a
CLIP-style contrastive loss, and exports the public ONNX layout the runtime loads::

    python -m tests.hearing.build_model --out DIR

The audio tower max-pools over time so that a 1-s event inside 10 s of noise dominates.
The text tower (token embedding, masked mean, MLP) generalises to unseen wordings through
shared words. torch/transformers are imported here only (test-time tooling).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from tests.hearing import sounds

HERE = Path(__file__).resolve().parent
SEED = 1234
DIM = 128
N_SAMPLES = 480000
PER_CLASS = 150  # training windows per class
EVAL_PER_CLASS = 20
STEPS = 700
BATCH = 64
TEMPLATES = ["{}", "This is a sound of {}.", "the sound of {}", "a recording of {}", "{}."]
PREPROCESSOR = {
    "truncation": "rand_trunc",
    "padding": "repeatpad",
    "frequency_min": 50,
    "frequency_max": 14000,
}


def build_hash() -> str:
    """sha256 over the build scripts: the committed model is valid only for this hash."""
    h = hashlib.sha256()
    for name in ("sounds.py", "build_model.py"):
        h.update(name.encode())
        h.update((HERE / name).read_bytes())
    return h.hexdigest()


def log(msg: str) -> None:
    print(f"[hearing] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


def repeatpad(x: np.ndarray, n: int = N_SAMPLES) -> np.ndarray:
    """transformers' 'repeatpad': tile floor(n/len) times, then zero-pad on the right."""
    if len(x) >= n:
        return x[-n:]
    reps = n // len(x)
    y = np.tile(x, reps)
    return np.pad(y, (0, n - len(y))).astype(np.float32)


def training_window(cls: str, seed: int) -> np.ndarray:
    """One 10-s training input of class ``cls``: mostly an event somewhere in background
    noise (also partly outside the window), sometimes a long event, sometimes a short
    clip repeat-padded the way user example clips are."""
    rng = np.random.default_rng([seed, 77])
    kind = rng.random()
    bg_level = float(rng.uniform(-70.0, -36.0))
    if kind < 0.15:  # short clip, repeat-padded (example path / start-up padding)
        d = float(rng.uniform(0.5, 4.0))
        clip = sounds.background(d, seed, bg_level).astype(np.float64)
        if cls != "quiet":
            lvl = min(-6.0, bg_level + float(rng.uniform(6.0, 35.0)))
            ev = sounds.render(cls, seed, d, lvl)
            clip += ev
        return repeatpad(clip.astype(np.float32))
    out = sounds.background(10.0, seed, bg_level).astype(np.float64)
    if cls == "quiet":
        return out.astype(np.float32)
    d = float(rng.uniform(4.0, 10.0)) if kind < 0.3 else float(rng.uniform(0.7, 4.0))
    lvl = min(-6.0, bg_level + float(rng.uniform(3.0, 30.0)))
    ev = sounds.render(cls, seed, d, lvl)
    # allow the event to hang over either edge, keeping >= 0.6 s inside
    keep = min(d, 0.6)
    start = float(rng.uniform(-(d - keep), 10.0 - keep))
    a = round(start * sounds.SR)
    lo, hi = max(0, a), min(N_SAMPLES, a + len(ev))
    out[lo:hi] += ev[lo - a : hi - a]
    return out.astype(np.float32)


class Features:
    """ClapFeatureExtractor log-mel (Slaney, rand_trunc on exactly 480000 samples) in torch."""

    def __init__(self) -> None:
        import torch
        from transformers import ClapFeatureExtractor

        self.fe = ClapFeatureExtractor(**PREPROCESSOR)
        self.mel = torch.tensor(self.fe.mel_filters_slaney, dtype=torch.float64)
        self.win = torch.hann_window(1024, periodic=True, dtype=torch.float64)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.as_tensor(np.asarray(batch, dtype=np.float64))
        spec = torch.stft(
            x, 1024, 480, window=self.win, center=True, pad_mode="reflect", return_complex=True
        )
        power = spec.real**2 + spec.imag**2
        mel = torch.clamp(power.transpose(-1, -2) @ self.mel, min=1e-10)
        return (10.0 * torch.log10(mel)).float().numpy()

    def check(self, clips: list[np.ndarray]) -> float:
        ref = self.fe(clips, sampling_rate=sounds.SR, return_tensors="np")["input_features"]
        mine = self(np.stack(clips))
        return float(np.abs(ref[:, 0] - mine).max())


def make_set(
    feats: Features, per_class: int, seed_base: int, window_fn
) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    chunk: list[np.ndarray] = []
    for i in range(per_class):
        for ci, cls in enumerate(sounds.CLASSES):
            chunk.append(window_fn(cls, seed_base + i * len(sounds.CLASSES) + ci))
            ys.append(ci)
            if len(chunk) == 32:
                xs.append(feats(np.stack(chunk)).astype(np.float16))
                chunk = []
    if chunk:
        xs.append(feats(np.stack(chunk)).astype(np.float16))
    return np.concatenate(xs), np.array(ys, np.int64)


def eval_window(cls: str, seed: int) -> np.ndarray:
    return sounds.window(cls, seed)[0]


# --------------------------------------------------------------------------- tokenizer


def train_tokenizer(captions: list[str]):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import RobertaProcessing

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(captions, trainer=trainer)
    tok.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tok


def encode(tok, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encs = [tok.encode(t).ids for t in texts]
    n = max(len(e) for e in encs)
    ids = np.full((len(encs), n), 1, np.int64)  # <pad> = 1
    mask = np.zeros((len(encs), n), np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e)] = e
        mask[i, : len(e)] = 1
    return ids, mask


# --------------------------------------------------------------------------- networks


def networks(vocab: int):
    import torch
    from torch import nn

    class AudioNet(nn.Module):
        """input_features [B,1,1001,64] -> audio_embeds [B,D] (unnormalised)."""

        def __init__(self) -> None:
            super().__init__()
            self.bn0 = nn.BatchNorm1d(64)
            self.bn_rel = nn.BatchNorm1d(64)

            def block(i: int, o: int, k: int, s: int, d: int = 1) -> nn.Sequential:
                return nn.Sequential(
                    nn.Conv1d(i, o, k, stride=s, padding=d * (k - 1) // 2, dilation=d),
                    nn.BatchNorm1d(o),
                    nn.ReLU(),
                )

            self.pool0 = nn.AvgPool1d(2, 2)
            self.convs = nn.Sequential(
                block(128, 96, 5, 2),
                block(96, 128, 5, 1, 2),
                block(128, 160, 5, 2),
                block(160, 192, 3, 1, 2),
            )
            self.head = nn.Sequential(nn.Linear(384, 256), nn.ReLU(), nn.Linear(256, DIM))

        def forward(self, input_features: torch.Tensor) -> torch.Tensor:
            x = input_features[:, 0].transpose(1, 2)  # [B, 64, T]
            # absolute log-mel plus its deviation from the window's mean per mel bin: an
            # event is what stands out from the (stationary) background of its window
            rel = x - x.mean(dim=2, keepdim=True)
            x = self.pool0(torch.cat([self.bn0(x), self.bn_rel(rel)], dim=1))
            x = self.convs(x)
            pooled = torch.cat([x.amax(dim=2), x.mean(dim=2)], dim=1)
            return self.head(pooled)

    class TextNet(nn.Module):
        """input_ids, attention_mask [N,L] -> text_embeds [N,D]."""

        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(vocab, 128)
            nn.init.normal_(self.emb.weight, std=0.02)
            self.mlp = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, DIM))

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            m = attention_mask.unsqueeze(-1).to(torch.float32)
            e = self.emb(input_ids) * m
            pooled = e.sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
            return self.mlp(pooled)

    return AudioNet(), TextNet()


# --------------------------------------------------------------------------- training


def train(xtr, ytr, tok, budget_steps: int = STEPS):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    audio, text = networks(tok.get_vocab_size())
    logit_scale = torch.nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
    params = [*audio.parameters(), *text.parameters(), logit_scale]
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=3e-3, total_steps=budget_steps, pct_start=0.15
    )
    n_cls = len(sounds.CLASSES)
    caps = [sounds.TRAIN_CAPTIONS[c] for c in sounds.CLASSES]
    special = {0, 1, 2}
    xt = torch.from_numpy(xtr)
    t0 = time.time()
    for step in range(budget_steps):
        idx = rng.choice(len(xtr), BATCH, replace=False)
        x = xt[idx].float()
        # cheap augmentations on cached features: gain (dB offset) and circular time shift
        gain = torch.from_numpy(rng.uniform(-6, 6, (BATCH, 1, 1)).astype(np.float32))
        x = torch.clamp(x + gain, min=-100.0)
        shifts = rng.integers(0, 1001, BATCH)
        x = torch.stack([torch.roll(x[i], int(shifts[i]), dims=0) for i in range(BATCH)])
        y = torch.from_numpy(ytr[idx])
        # two captions per class (random template), word dropout
        texts, tcls = [], []
        for ci in range(n_cls):
            for _ in range(2):
                cap = caps[ci][rng.integers(len(caps[ci]))]
                texts.append(TEMPLATES[rng.integers(len(TEMPLATES))].format(cap))
                tcls.append(ci)
        ids, mask = encode(tok, texts)
        drop = (rng.random(mask.shape) < 0.15) & ~np.isin(ids, list(special))
        keep_one = mask.sum(1) - drop.sum(1) <= 2
        drop[keep_one] = False
        mask = mask * ~drop
        audio.train()
        text.train()
        a = F.normalize(audio(x.unsqueeze(1)), dim=-1)
        t = F.normalize(text(torch.from_numpy(ids), torch.from_numpy(mask)), dim=-1)
        tcls_t = torch.tensor(tcls)
        scale = logit_scale.exp().clamp(max=100.0)
        logits = scale * a @ t.T  # [B, 2C]
        pos = (y[:, None] == tcls_t[None, :]).float()
        # audio -> text: multi-positive InfoNCE; text -> audio likewise
        lp_a = logits.log_softmax(dim=1)
        loss_a = -((lp_a * pos).sum(1) / pos.sum(1)).mean()
        lp_t = logits.T.log_softmax(dim=1)
        post = pos.T
        has = post.sum(1) > 0
        loss_t = -((lp_t * post).sum(1)[has] / post.sum(1)[has]).mean()
        loss = 0.5 * (loss_a + loss_t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == budget_steps - 1:
            acc = (logits.detach().view(BATCH, n_cls, 2).mean(2).argmax(1) == y).float().mean()
            log(
                f"step {step} loss {loss.item():.3f} batch-acc {acc:.2f} "
                f"scale {scale.item():.1f} {time.time() - t0:.0f}s"
            )
    audio.eval()
    text.eval()
    return audio, text, float(logit_scale.detach().exp()), time.time() - t0


# --------------------------------------------------------------------------- export


def export(audio, text, out: Path) -> None:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_dir = out / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(2, 1, 1001, 64)
    ids = torch.ones(2, 5, dtype=torch.int64)
    mask = torch.ones(2, 5, dtype=torch.int64)
    torch.onnx.export(
        audio,
        (x,),
        str(onnx_dir / "audio_model.onnx"),
        input_names=["input_features"],
        output_names=["audio_embeds"],
        dynamic_axes={"input_features": {0: "batch"}, "audio_embeds": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    torch.onnx.export(
        text,
        (ids, mask),
        str(onnx_dir / "text_model.onnx"),
        input_names=["input_ids", "attention_mask"],
        output_names=["text_embeds"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "text_embeds": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    quantize_dynamic(
        str(onnx_dir / "audio_model.onnx"),
        str(onnx_dir / "audio_model_quantized.onnx"),
        op_types_to_quantize=["MatMul", "Gemm", "Conv"],
        weight_type=QuantType.QUInt8,
    )
    quantize_dynamic(
        str(onnx_dir / "text_model.onnx"),
        str(onnx_dir / "text_model_quantized.onnx"),
        op_types_to_quantize=["MatMul", "Gemm"],
        weight_type=QuantType.QInt8,
    )


# --------------------------------------------------------------------------- evaluation


def ort_embed_audio(path: Path, feats: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    outs = [
        sess.run(["audio_embeds"], {"input_features": feats[i : i + 32, None]})[0]
        for i in range(0, len(feats), 32)
    ]
    e = np.concatenate(outs)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def ort_embed_text(path: Path, tok, texts: list[str]) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids, mask = encode(tok, texts)
    e = sess.run(["text_embeds"], {"input_ids": ids, "attention_mask": mask})[0]
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def zero_shot(a: np.ndarray, y: np.ndarray, t: np.ndarray, tcls: np.ndarray) -> dict[str, float]:
    """Accuracy per caption set (k-th test caption of each class) and of the class ensemble."""
    n_cls = len(sounds.CLASSES)
    sims = a @ t.T
    accs = []
    k_max = min(len(sounds.TEST_CAPTIONS[c]) for c in sounds.CLASSES)
    for k in range(k_max):
        cols = [np.flatnonzero(tcls == c)[k] for c in range(n_cls)]
        accs.append(float((sims[:, cols].argmax(1) == y).mean()))
    proto = np.stack([t[tcls == c].mean(0) for c in range(n_cls)])
    ens = float(((a @ proto.T).argmax(1) == y).mean())
    return {
        "per_caption_mean": float(np.mean(accs)),
        "per_caption_min": float(min(accs)),
        "ensemble": ens,
    }


def _pct(v) -> dict[str, float]:
    out = {f"p{k}": round(float(np.percentile(v, k)), 3) for k in (5, 50, 95)}
    return out | {"max": round(float(np.max(v)), 3), "min": round(float(np.min(v)), 3)}


def example_clips(feats: Features) -> tuple[np.ndarray, np.ndarray]:
    """User-style example recordings: a 2-s event over faint noise, repeat-padded."""
    clips, labels = [], []
    for k in range(3):
        for ci, cls in enumerate(sounds.EVENT_CLASSES):
            seed = sounds.FRESH_SEED_BASE + 800_000 + k * 100 + ci
            clip = sounds.render(cls, seed, 2.0, -20.0) + sounds.background(2.0, seed, -60.0)
            clips.append(repeatpad(clip))
            labels.append(sounds.CLASSES.index(cls))
    return feats(np.stack(clips)), np.array(labels)


def example_regime(e: np.ndarray, ye: np.ndarray, a: np.ndarray, y: np.ndarray) -> dict:
    """Cosine of example-clip embeddings against fresh 10-s windows."""
    q = sounds.CLASSES.index("quiet")
    sims = e @ a.T
    same = sims[ye[:, None] == y[None, :]]
    other = sims[(ye[:, None] != y[None, :]) & (y[None, :] != q)]
    bg = sims[:, y == q].ravel()
    return {
        "example_vs_window_same_class": _pct(same),
        "example_vs_window_other_event_class": _pct(other),
        "example_vs_background_window": _pct(bg),
    }


def cosine_regime(a: np.ndarray, y: np.ndarray, t: np.ndarray, tcls: np.ndarray) -> dict:
    q = sounds.CLASSES.index("quiet")
    sims = a @ t.T
    ev = y != q
    match, best_non = [], []
    for i in np.flatnonzero(ev):
        match.extend(sims[i, tcls == y[i]].tolist())
        best_non.append(float(sims[i, (tcls != y[i]) & (tcls != q)].max()))
    bg_vs_event = sims[np.ix_(~ev, tcls != q)].ravel()
    p = _pct

    return {
        "event_vs_matching_caption": p(match),
        "event_vs_best_nonmatching_event_caption": p(best_non),
        "background_vs_every_event_caption": p(bg_vs_event),
        "background_vs_best_event_caption": p(sims[np.ix_(~ev, tcls != q)].max(1)),
        "background_vs_quiet_caption": p(sims[np.ix_(~ev, tcls == q)].ravel()),
    }


# --------------------------------------------------------------------------- main


def build(out: Path) -> dict:
    import torch

    torch.set_num_threads(2)
    t_start = time.time()
    bhash = build_hash()  # before anything runs: the scripts this model is made from
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    feats = Features()
    check = [training_window("alarm", 1), training_window("babble", 2)]
    err = feats.check(check)
    log(f"torch log-mel vs ClapFeatureExtractor: max |diff| {err:.2e} dB")
    if err > 1e-2:
        raise RuntimeError(f"feature mismatch {err}")

    xtr, ytr = make_set(feats, PER_CLASS, 0, training_window)
    log(f"train set {xtr.shape} in {time.time() - t_start:.0f}s")
    xev, yev = make_set(feats, EVAL_PER_CLASS, sounds.FRESH_SEED_BASE + 900_000, eval_window)
    t_data = time.time() - t_start

    captions = [
        tpl.format(c) for cs in sounds.TRAIN_CAPTIONS.values() for c in cs for tpl in TEMPLATES
    ]
    tok = train_tokenizer(captions)
    tok.save(str(tmp / "tokenizer.json"))

    audio, text, scale, t_train = train(xtr, ytr, tok)
    export(audio, text, tmp)

    feats.fe.save_pretrained(str(tmp))  # preprocessor_config.json
    test_texts, test_cls = [], []
    for ci, c in enumerate(sounds.CLASSES):
        for cap in sounds.TEST_CAPTIONS[c]:
            test_texts.append(cap)
            test_cls.append(ci)
    tcls = np.array(test_cls)
    results = {}
    xex, yex = example_clips(feats)
    for prec, suffix in (("fp32", ""), ("int8", "_quantized")):
        audio_path = tmp / "onnx" / f"audio_model{suffix}.onnx"
        a = ort_embed_audio(audio_path, xev.astype(np.float32))
        t = ort_embed_text(tmp / "onnx" / f"text_model{suffix}.onnx", tok, test_texts)
        e = ort_embed_audio(audio_path, xex)
        results[prec] = {
            "zero_shot": zero_shot(a, yev, t, tcls),
            "cosines": cosine_regime(a, yev, t, tcls) | example_regime(e, yex, a, yev),
        }
        log(f"{prec}: {json.dumps(results[prec]['zero_shot'])}")
    total = time.time() - t_start
    info = {
        "build_hash": bhash,
        "seed": SEED,
        "classes": sounds.CLASSES,
        "data_seconds": round(t_data, 1),
        "train_seconds": round(t_train, 1),
        "total_seconds": round(total, 1),
        "feature_check_max_abs_diff_db": err,
        "eval": results,
    }
    config = {
        "model_type": "clap",
        "projection_dim": DIM,
        "logit_scale_init_value": round(float(np.log(scale)), 4),
        "note": (
            "listener test model: a small CNN audio tower and bag-of-tokens text tower trained "
            "on generated sounds by tests/hearing/build_model.py; NOT a real CLAP checkpoint"
        ),
        "listener_test_model": info,
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_readme(tmp, info)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"done in {total:.0f}s -> {out}")
    return info


def write_readme(out: Path, info: dict) -> None:
    ev = info["eval"]
    lines = [
        "# listener hearing test model",
        "",
        "A small CLAP-like model trained on generated sounds (tests/hearing/sounds.py) so that",
        "detection tests have a model that actually hears. Not a real CLAP checkpoint.",
        "",
        f"Build: `python -m tests.hearing.build_model --out tests/assets/hearing_model` "
        f"(data {info['data_seconds']} s, training {info['train_seconds']} s, "
        f"total {info['total_seconds']} s on this machine's 2 shared cores).",
        f"Build hash (sha256 of sounds.py + build_model.py): `{info['build_hash']}`.",
        "",
        f"Classes: {', '.join(info['classes'])}.",
        "",
        "Towers: audio = BatchNorm over mel bins, log-mel minus its per-bin window mean as",
        "extra channels, four Conv1d blocks over time, max+mean pooling, MLP; text = token",
        "embedding, masked mean, MLP. int8 = onnxruntime quantize_dynamic: audio Conv (as",
        "ConvInteger, uint8 weights) + Gemm/MatMul; text Gemm/MatMul int8 weights.",
        "",
        "## Zero-shot accuracy (ORT, fresh renditions, captions from TEST_CAPTIONS)",
        "",
    ]
    for prec in ("fp32", "int8"):
        lines.append(f"- {prec}: {json.dumps(ev[prec]['zero_shot'])}")
    c = ev["int8"]["cosines"]
    lo = c["background_vs_best_event_caption"]["max"]
    hi = c["event_vs_matching_caption"]["p5"]
    lines += [
        "",
        "## Cosine regime (ORT, L2-normalised, fresh 10-s windows, test captions)",
        "",
        "Windows: 10 s of background noise (-62..-42 dBFS) with one 1-4 s event at 6-30 dB",
        "SNR, or background only. `event_vs_matching_caption`: a window against its own",
        "class's captions; `..._best_nonmatching_event_caption`: the highest other event",
        "class; `background_vs_*`: noise-only windows; `example_*`: 2-s example clips",
        "(repeat-padded, as user examples are) against the windows.",
        "",
        f"For prompt triggers an on-threshold between {lo} (highest background window vs any",
        f"event caption, int8) and {hi} (5th percentile of matching) separates events from",
        "noise; similar classes can score high against each other's captions, so use",
        "negatives/margins to tell them apart.",
        "",
    ]
    for prec in ("fp32", "int8"):
        lines.append(f"### {prec}")
        lines.append("")
        for k, v in ev[prec]["cosines"].items():
            lines.append(f"- {k}: {json.dumps(v)}")
        lines.append("")
    (out / "README.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="model directory to write")
    args = ap.parse_args(argv)
    build(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
