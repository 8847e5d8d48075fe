"""Export a transformers CLAP checkpoint to the public ONNX layout (+ int8 + manifest).

torch/transformers are imported lazily (the `export` extra): the daemon never
needs them. Each tower is checked against PyTorch on generated inputs before
anything is written, and the result appears in ``--out`` atomically (written to
a temporary sibling directory, then renamed), so a failed export never leaves a
half model behind.

The audio tower is traced from :mod:`listener.export.htsat` (the same weights and
function, with tokens kept in window order: under a fifth of the nodes) when the
checkpoint fits it and the graph passes the check, else from transformers' own forward;
either way the check is against transformers' PyTorch model.

Outputs are the UNNORMALISED projections (``audio_embeds`` / ``text_embeds``),
like the public Xenova export; the runtime towers L2-normalise. (transformers
5.x ``ClapModel.get_*_features`` return the normalised projection in
``pooler_output``; we call the sub-modules and projection heads directly.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from listener import __version__
from listener.errors import MissingExtraError, ModelError, UserError
from listener.model.modeldir import write_manifest

MIN_COSINE = 0.99999
COPIED_FILES = ("tokenizer.json", "preprocessor_config.json", "config.json")


def _import_extra() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingExtraError("listener model export", "export", exc.name or "torch") from None
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise MissingExtraError("listener model export", "export", "onnx") from None
    return torch, transformers


def _cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-30
    return num / den


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def generated_features(batch: int, seed: int = 0, fusion: bool = False) -> np.ndarray:
    """Plausible log-mel inputs (dB, roughly -100..0) with time structure."""
    rng = np.random.default_rng(seed)
    c = 4 if fusion else 1
    t = np.arange(1001)[:, None]
    f = np.arange(64)[None, :]
    out = np.empty((batch, c, 1001, 64), np.float32)
    for i in range(batch):
        base = -60 + 20 * np.sin(2 * np.pi * (t / (50 + 40 * i) + f / (16 + 5 * i)))
        out[i] = base + rng.normal(0, 8, (c, 1001, 64))
    return np.clip(out, -100, 10).astype(np.float32)


def _load(torch: Any, transformers: Any, checkpoint: str):
    try:
        model = transformers.ClapModel.from_pretrained(checkpoint, attn_implementation="eager")
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot load CLAP checkpoint {checkpoint!r}: {exc}. Give a local directory saved "
            "with ClapModel.save_pretrained (or a Hugging Face id when online)."
        ) from None
    model.eval()
    return model.float()


def _wrappers(torch: Any, model: Any):
    class Audio(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_features, is_longer=None):
            out = self.m.audio_model(input_features=input_features, is_longer=is_longer)
            return self.m.audio_projection(out.pooler_output)

    class Text(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask):
            out = self.m.text_model(input_ids=input_ids, attention_mask=attention_mask)
            return self.m.text_projection(out.pooler_output)

    return Audio().eval(), Text().eval()


def _text_inputs(vocab: int, pad: int, max_len: int, seed: int = 0):
    """A padded batch of random token sequences of different lengths (bos=0, eos=2 style)."""
    rng = np.random.default_rng(seed)
    lengths = [3, min(9, max_len), min(17, max_len)]
    width = max(lengths)
    ids = np.full((len(lengths), width), pad, np.int64)
    mask = np.zeros((len(lengths), width), np.int64)
    low = min(4, vocab - 1)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(low, vocab, n)
        ids[i, 0], ids[i, n - 1] = 0, 2
        mask[i, :n] = 1
    return ids, mask


@contextlib.contextmanager
def _quiet():
    """The TorchScript exporter warns about its own deprecation and about traced constants
    that do not matter here (every tower is checked against PyTorch afterwards)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# Both towers use the TorchScript exporter (dynamo=False): it traces HTSAT's Python-level
# shape logic (window partitioning, the mel-to-image reshape, the fusion branch) into a
# batch-dynamic graph that matches PyTorch to cosine 1.0000000 here, and supports
# ``dynamic_axes`` for the text sequence axis. Every export is checked against PyTorch, so
# a future exporter change that breaks this is caught before anything is written.
def _export_audio(torch, wrapper, path: Path, opset: int, fusion: bool, log) -> None:
    x = torch.from_numpy(generated_features(2, seed=1, fusion=fusion))
    names = ["input_features"]
    args: tuple = (x,)
    axes = {"input_features": {0: "batch"}, "audio_embeds": {0: "batch"}}
    if fusion:
        names.append("is_longer")
        args = (x, torch.ones((2, 1), dtype=torch.bool))
        axes["is_longer"] = {0: "batch"}
    t0 = time.perf_counter()
    with torch.no_grad(), _quiet():
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=names,
            output_names=["audio_embeds"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    log(f"exported audio tower in {time.perf_counter() - t0:.1f} s -> {path.name}")


def _export_text(torch, wrapper, path: Path, opset: int, ids, mask, log) -> None:
    t0 = time.perf_counter()
    with torch.no_grad(), _quiet():
        torch.onnx.export(
            wrapper,
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["text_embeds"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "text_embeds": {0: "batch"},
            },
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    log(f"exported text tower in {time.perf_counter() - t0:.1f} s -> {path.name}")


def _export_audio_graph(torch, model, audio_w, path: Path, opset: int, fusion: bool,
                        feeds: dict[str, np.ndarray], want: np.ndarray,
                        checks: dict[str, Any], log) -> tuple[str, np.ndarray]:
    """Export, rewrite (optimize.py) and run the audio tower; (which graph, its output).

    The window-order graph (listener/export/htsat.py) is tried first when it covers the
    checkpoint. It is an optimisation, so it must never cost a user the export: if it
    cannot be built or traced, or disagrees with PyTorch, transformers' own forward is
    exported instead and the reason is logged and recorded in ``checks.audio_graph``.
    The caller checks the result that is returned against PyTorch.
    """
    from listener.export import htsat
    from listener.export.optimize import optimize_audio  # saved graph rewrites

    usable, why = htsat.supports(model)
    if usable:
        try:
            _export_audio(torch, htsat.build(torch, model), path, opset, fusion, log)
            checks["audio_graph_optimizations"] = optimize_audio(path)
            got = _session(path).run(None, feeds)[0]
            _check("window-order audio tower", got, want, "3 generated inputs")
            return "listener window-order HTSAT", got
        except ModelError as exc:
            why = str(exc).split(";")[0]
        except Exception as exc:  # torch tracing raises many types; the fallback is safe
            why = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        log(f"window-order graph not used ({why}); exporting transformers' forward instead")
    _export_audio(torch, audio_w, path, opset, fusion, log)
    checks["audio_graph_optimizations"] = optimize_audio(path)
    return f"transformers forward ({why})", _session(path).run(None, feeds)[0]


def _check(name: str, got: np.ndarray, want: np.ndarray, what: str) -> float:
    cos = float(_cos_rows(got, want).min())
    if not (cos >= MIN_COSINE):
        raise ModelError(
            f"the exported {name} disagrees with PyTorch on {what} (min cosine {cos:.7f} < "
            f"{MIN_COSINE}); refusing to write it. This is an exporter bug or an unsupported "
            "checkpoint: please report it with the checkpoint name."
        )
    return cos


def _copy_support_files(transformers: Any, checkpoint: str, model: Any, dest: Path) -> None:
    src = Path(checkpoint)
    missing = [n for n in COPIED_FILES if not (src / n).is_file()] if src.is_dir() else COPIED_FILES
    for n in COPIED_FILES:
        if n not in missing:
            shutil.copyfile(src / n, dest / n)
    if not missing:
        return
    with tempfile.TemporaryDirectory() as tmp:
        if "tokenizer.json" in missing:
            tok = transformers.AutoTokenizer.from_pretrained(checkpoint)
            tok.save_pretrained(tmp)
        if "preprocessor_config.json" in missing:
            transformers.ClapFeatureExtractor.from_pretrained(checkpoint).save_pretrained(tmp)
        if "config.json" in missing:
            model.config.save_pretrained(tmp)
        for n in missing:
            if not (Path(tmp) / n).is_file():
                raise ModelError(f"checkpoint {checkpoint} has no usable {n}")
            shutil.copyfile(Path(tmp) / n, dest / n)


def _check_checkpoint_arg(checkpoint: str) -> None:
    """A path that does not exist fails here, before torch loads or the hub is asked.

    Hugging Face ids look like ``org/name``; anything absolute, starting with ``.`` or ``~``
    or with more than one ``/`` can only be a local directory.
    """
    p = Path(checkpoint).expanduser()
    looks_local = p.is_absolute() or checkpoint.startswith((".", "~")) or checkpoint.count("/") > 1
    if looks_local and not p.exists():
        raise UserError(
            f"cannot load CLAP checkpoint {checkpoint!r}: directory {p} does not exist. Give a "
            "local directory saved with ClapModel.save_pretrained (or a Hugging Face id when "
            "online, e.g. laion/clap-htsat-unfused)."
        )
    if p.exists() and not p.is_dir():
        raise UserError(f"cannot load CLAP checkpoint {checkpoint!r}: {p} is not a directory")


def export_model(
    checkpoint: str,
    out: str | Path,
    quantize: bool = True,
    opset: int = 17,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Export ``checkpoint`` into ``out``; returns the manifest written (with check results)."""
    _check_checkpoint_arg(checkpoint)
    torch, transformers = _import_extra()
    import onnxruntime as ort

    from listener.export.quantize import QUANT_SETTINGS
    from listener.export.quantize import quantize as quantize_file

    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not force:
        raise UserError(f"--out {out} exists and is not empty; choose another path or add --force")
    out.parent.mkdir(parents=True, exist_ok=True)

    t_start = time.perf_counter()
    model = _load(torch, transformers, checkpoint)
    cfg = model.config
    fusion = bool(getattr(cfg.audio_config, "enable_fusion", False))
    audio_w, text_w = _wrappers(torch, model)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the published directory is normal
    try:
        (tmp / "onnx").mkdir()
        checks: dict[str, Any] = {}
        # ---- audio ----
        apath = tmp / "onnx" / "audio_model.onnx"
        feats = generated_features(3, seed=7, fusion=fusion)
        feeds: dict[str, np.ndarray] = {"input_features": feats}
        with torch.no_grad():
            targs = [torch.from_numpy(feats)]
            if fusion:
                feeds["is_longer"] = np.ones((3, 1), bool)
                targs.append(torch.ones((3, 1), dtype=torch.bool))
            want = audio_w(*targs).numpy()
        graph, got = _export_audio_graph(torch, model, audio_w, apath, opset, fusion, feeds,
                                         want, checks, log)
        checks["audio_graph"] = graph
        checks["audio_fp32_min_cosine"] = _check("audio tower", got, want, "3 generated inputs")
        # ---- text ----
        tc = cfg.text_config
        max_len = int(tc.max_position_embeddings) - int(tc.pad_token_id) - 1
        ids, mask = _text_inputs(int(tc.vocab_size), int(tc.pad_token_id), max_len, seed=3)
        tpath = tmp / "onnx" / "text_model.onnx"
        _export_text(torch, text_w, tpath, opset, ids[:2, :9], mask[:2, :9], log)
        with torch.no_grad():
            want_t = text_w(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
            # padded rows must equal the same prompt run alone (the mask really works)
            alone = text_w(torch.from_numpy(ids[:1, :3]), torch.from_numpy(mask[:1, :3])).numpy()
        got_t = _session(tpath).run(None, {"input_ids": ids, "attention_mask": mask})[0]
        checks["text_fp32_min_cosine"] = _check(
            "text tower", got_t, want_t, "a padded batch of 3 token sequences"
        )
        _check("text tower", got_t[:1], alone, "a padded prompt vs the same prompt alone")
        log(
            f"fp32 check vs PyTorch: audio min cosine {checks['audio_fp32_min_cosine']:.7f}, "
            f"text {checks['text_fp32_min_cosine']:.7f}"
        )
        # ---- int8 ----
        quant: dict[str, Any] | None = None
        if quantize:
            t0 = time.perf_counter()
            qa = quantize_file(apath, tmp / "onnx" / "audio_model_quantized.onnx", "int8")
            qt = quantize_file(tpath, tmp / "onnx" / "text_model_quantized.onnx", "int8")
            # one input per run, as the runtime does for int8 (dynamic activation scales are
            # per tensor, so a batch would mix inputs)
            sa, st = _session(qa), _session(qt)
            qa_emb = np.concatenate(
                [sa.run(None, {k: v[i : i + 1] for k, v in feeds.items()})[0] for i in range(3)]
            )
            qt_emb = np.concatenate(
                [
                    st.run(None, {"input_ids": ids[i : i + 1], "attention_mask": mask[i : i + 1]})[
                        0
                    ]
                    for i in range(len(ids))
                ]
            )
            mean = got.mean(0, keepdims=True)
            quant = {
                "kind": "int8",
                "method": "onnxruntime quantize_dynamic, MatMul/Gemm with constant weights",
                **QUANT_SETTINGS["int8"],
                "audio_int8_vs_fp32_min_cosine": float(_cos_rows(qa_emb, got).min()),
                "audio_int8_vs_fp32_min_centred_cosine": float(
                    _cos_rows(qa_emb - mean, got - mean).min()
                ),
                "text_int8_vs_fp32_min_cosine": float(_cos_rows(qt_emb, got_t).min()),
            }
            log(
                f"quantised to int8 in {time.perf_counter() - t0:.1f} s: audio cosine "
                f"{quant['audio_int8_vs_fp32_min_cosine']:.5f} (centred "
                f"{quant['audio_int8_vs_fp32_min_centred_cosine']:.4f} on 3 generated inputs; "
                f"run `listener model verify` for a real check), text "
                f"{quant['text_int8_vs_fp32_min_cosine']:.5f}"
            )
        _copy_support_files(transformers, checkpoint, model, tmp)
        pre = json.loads((tmp / "preprocessor_config.json").read_text())
        manifest = {
            "source_checkpoint": str(checkpoint),
            "exporter_version": (
                f"listener {__version__}; torch {torch.__version__}; transformers "
                f"{transformers.__version__}; onnxruntime {ort.__version__}; opset {opset}"
            ),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "embedding_dim": int(cfg.projection_dim),
            "logit_scale": float(model.logit_scale_a.exp().item()),
            "logit_scale_text": float(model.logit_scale_t.exp().item()),
            "truncation": pre.get("truncation", "rand_trunc"),
            "enable_fusion": fusion,
            "text_max_length": max_len,
            "text_inputs": ["input_ids", "attention_mask"],
            "checks": checks,
            "quantization": quant,
        }
        write_manifest(tmp, manifest)
        # ---- atomic publish ----
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out} in {time.perf_counter() - t_start:.1f} s")
    return json.loads((out / "listener.json").read_text())
