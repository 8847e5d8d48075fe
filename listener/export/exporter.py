"""Export a transformers CLAP checkpoint to the public ONNX layout (+ int8 + manifest).

torch/transformers are imported lazily (the `export` extra): the daemon never
needs them. Each tower is checked against PyTorch on generated inputs before
anything is written, and the result appears in ``--out`` atomically (written to
a temporary sibling directory, then renamed), so a failed export never leaves a
half model behind.

The audio tower is traced from :mod:`listener.export.htsat` (the same weights and
function, with tokens kept in window order: far fewer graph nodes) when the
checkpoint fits it and the graph passes the check, else from transformers' own forward;
either way the check is against transformers' PyTorch model. Tracing itself (and the
unnormalised projections the files output) is :mod:`listener.export.trace`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from listener import __version__
from listener.errors import ModelError, UserError
from listener.export.trace import (
    Log,
    export_audio_tower,
    export_text_tower,
    generated_features,
    generated_text_inputs,
    import_extra,
    load_checkpoint,
    tower_wrappers,
)
from listener.model.modeldir import write_manifest

MIN_COSINE = 0.99999
COPIED_FILES = ("tokenizer.json", "preprocessor_config.json", "config.json")


@dataclass(frozen=True)
class _Checked:
    """An exported fp32 tower file, the inputs it was checked on and its outputs on them."""

    path: Path
    feeds: dict[str, np.ndarray]
    embeds: np.ndarray


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


def _run_one_by_one(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Outputs of ``path`` for each row of ``feeds`` run alone, as the runtime does for int8
    (dynamic activation scales are per tensor, so a batch would mix inputs)."""
    sess = _session(path)
    n = len(next(iter(feeds.values())))
    return np.concatenate(
        [sess.run(None, {k: v[i : i + 1] for k, v in feeds.items()})[0] for i in range(n)]
    )


def _check(name: str, got: np.ndarray, want: np.ndarray, what: str) -> float:
    cos = float(_cos_rows(got, want).min())
    if not (cos >= MIN_COSINE):
        raise ModelError(
            f"the exported {name} disagrees with PyTorch on {what} (min cosine {cos:.7f} < "
            f"{MIN_COSINE}); refusing to write it. This is an exporter bug or an unsupported "
            "checkpoint: please report it with the checkpoint name."
        )
    return cos


def _export_audio_graph(torch, model, audio_w, path: Path, opset: int, fusion: bool,
                        feeds: dict[str, np.ndarray], want: np.ndarray,
                        checks: dict[str, Any], log: Log) -> tuple[str, np.ndarray]:
    """Export, rewrite (optimize.py) and run the audio tower; (which graph, its output).

    The window-order graph (listener/export/htsat.py) is tried first when it covers the
    checkpoint. It is an optimisation, so it must never cost a user the export: if it
    cannot be built or traced, or disagrees with PyTorch, transformers' own forward is
    exported instead and the reason is logged and recorded in ``checks.audio_graph``.
    The caller checks the result that is returned against PyTorch.
    """
    from listener.export import htsat, htsat_torch
    from listener.export.optimize import optimize_audio  # saved graph rewrites

    usable, why = htsat.supports(model)
    if usable:
        try:
            export_audio_tower(torch, htsat_torch.build(model), path, opset, fusion, log)
            checks["audio_graph_optimizations"] = optimize_audio(path)
            got = _session(path).run(None, feeds)[0]
            _check("window-order audio tower", got, want, "3 generated inputs")
            return "listener window-order HTSAT", got
        except ModelError as exc:
            why = str(exc).split(";")[0]
        except Exception as exc:  # torch tracing raises many types; the fallback is safe
            why = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        log(f"window-order graph not used ({why}); exporting transformers' forward instead")
    export_audio_tower(torch, audio_w, path, opset, fusion, log)
    checks["audio_graph_optimizations"] = optimize_audio(path)
    return f"transformers forward ({why})", _session(path).run(None, feeds)[0]


def _export_audio_checked(torch, model, audio_w, path: Path, opset: int, fusion: bool,
                          checks: dict[str, Any], log: Log) -> _Checked:
    """The fp32 audio tower in ``path``, checked against PyTorch on 3 generated inputs."""
    feats = generated_features(3, seed=7, fusion=fusion)
    feeds: dict[str, np.ndarray] = {"input_features": feats}
    with torch.no_grad():
        targs = [torch.from_numpy(feats)]
        if fusion:
            feeds["is_longer"] = np.ones((3, 1), bool)
            targs.append(torch.ones((3, 1), dtype=torch.bool))
        want = audio_w(*targs).numpy()
    graph, got = _export_audio_graph(torch, model, audio_w, path, opset, fusion, feeds,
                                     want, checks, log)
    checks["audio_graph"] = graph
    checks["audio_fp32_min_cosine"] = _check("audio tower", got, want, "3 generated inputs")
    return _Checked(path, feeds, got)


def _export_text_checked(torch, text_w, text_config, path: Path, opset: int,
                         checks: dict[str, Any], log: Log) -> tuple[_Checked, int]:
    """The fp32 text tower in ``path``, checked against PyTorch on a padded batch and on a
    padded prompt vs the same prompt alone (the mask really works); also the longest
    prompt in tokens the tower takes."""
    pad = int(text_config.pad_token_id)
    max_len = int(text_config.max_position_embeddings) - pad - 1
    ids, mask = generated_text_inputs(int(text_config.vocab_size), pad, max_len, seed=3)
    export_text_tower(torch, text_w, path, opset, ids[:2, :9], mask[:2, :9], log)
    with torch.no_grad():
        want = text_w(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        alone = text_w(torch.from_numpy(ids[:1, :3]), torch.from_numpy(mask[:1, :3])).numpy()
    feeds = {"input_ids": ids, "attention_mask": mask}
    got = _session(path).run(None, feeds)[0]
    checks["text_fp32_min_cosine"] = _check(
        "text tower", got, want, "a padded batch of 3 token sequences"
    )
    _check("text tower", got[:1], alone, "a padded prompt vs the same prompt alone")
    return _Checked(path, feeds, got), max_len


def _quantize_and_compare(audio: _Checked, text: _Checked, log: Log) -> dict[str, Any]:
    """int8 copies of both towers next to the fp32 files; the manifest's quantization entry."""
    from listener.export.quantize import QUANT_SETTINGS
    from listener.export.quantize import quantize as quantize_file

    t0 = time.perf_counter()
    qa = quantize_file(audio.path, audio.path.with_name("audio_model_quantized.onnx"), "int8")
    qt = quantize_file(text.path, text.path.with_name("text_model_quantized.onnx"), "int8")
    qa_emb = _run_one_by_one(qa, audio.feeds)
    qt_emb = _run_one_by_one(qt, text.feeds)
    got = audio.embeds
    mean = got.mean(0, keepdims=True)
    quant = {
        "kind": "int8",
        "method": "onnxruntime quantize_dynamic, MatMul/Gemm with constant weights",
        **QUANT_SETTINGS["int8"],
        "audio_int8_vs_fp32_min_cosine": float(_cos_rows(qa_emb, got).min()),
        "audio_int8_vs_fp32_min_centred_cosine": float(
            _cos_rows(qa_emb - mean, got - mean).min()
        ),
        "text_int8_vs_fp32_min_cosine": float(_cos_rows(qt_emb, text.embeds).min()),
    }
    log(
        f"quantised to int8 in {time.perf_counter() - t0:.1f} s: audio cosine "
        f"{quant['audio_int8_vs_fp32_min_cosine']:.5f} (centred "
        f"{quant['audio_int8_vs_fp32_min_centred_cosine']:.4f} on 3 generated inputs; "
        f"run `listener model verify` for a real check), text "
        f"{quant['text_int8_vs_fp32_min_cosine']:.5f}"
    )
    return quant


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


def _manifest(torch: Any, transformers: Any, checkpoint: str, model: Any, directory: Path,
              opset: int, text_max_length: int, checks: dict[str, Any],
              quant: dict[str, Any] | None) -> dict[str, Any]:
    """listener.json's content (write_manifest adds the file hashes)."""
    import onnxruntime as ort

    pre = json.loads((directory / "preprocessor_config.json").read_text())
    cfg = model.config
    return {
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
        "enable_fusion": bool(getattr(cfg.audio_config, "enable_fusion", False)),
        "text_max_length": text_max_length,
        "text_inputs": ["input_ids", "attention_mask"],
        "checks": checks,
        "quantization": quant,
    }


def _export_into(directory: Path, torch: Any, transformers: Any, checkpoint: str, model: Any,
                 quantize: bool, opset: int, log: Log, attention_op: bool = False) -> None:
    """Write the whole model directory (towers, int8, support files, manifest) into the
    empty ``directory``; raises before writing the manifest if a check fails."""
    fusion = bool(getattr(model.config.audio_config, "enable_fusion", False))
    audio_w, text_w = tower_wrappers(torch, model)
    onnx_dir = directory / "onnx"
    onnx_dir.mkdir()
    checks: dict[str, Any] = {}
    audio = _export_audio_checked(torch, model, audio_w, onnx_dir / "audio_model.onnx", opset,
                                  fusion, checks, log)
    checks["audio_attention"] = "plain MatMul+Softmax"
    if attention_op:  # opt-in: measured slower on x86 (benchmarks/README.md, issue 18)
        from listener.export.attention_op import try_attention_op

        checks["audio_attention"] = try_attention_op(audio.path, audio.feeds, audio.embeds)
        log(f"audio attention: {checks['audio_attention']}")
    text, max_len = _export_text_checked(torch, text_w, model.config.text_config,
                                         onnx_dir / "text_model.onnx", opset, checks, log)
    log(
        f"fp32 check vs PyTorch: audio min cosine {checks['audio_fp32_min_cosine']:.7f}, "
        f"text {checks['text_fp32_min_cosine']:.7f}"
    )
    quant = _quantize_and_compare(audio, text, log) if quantize else None
    _copy_support_files(transformers, checkpoint, model, directory)
    write_manifest(directory, _manifest(torch, transformers, checkpoint, model, directory,
                                        opset, max_len, checks, quant))


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


def _check_out(out: str | Path, force: bool) -> Path:
    """``--out`` as a Path whose parent exists; refuses a file or, without ``force``, a
    non-empty directory."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not force:
        raise UserError(f"--out {out} exists and is not empty; choose another path or add --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _staging_dir(out: Path) -> Path:
    """An empty hidden sibling of ``out`` to export into, with normal directory permissions."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the published directory is normal
    return tmp


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``, replacing an old ``out`` (--force)."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def export_model(
    checkpoint: str,
    out: str | Path,
    quantize: bool = True,
    opset: int = 17,
    force: bool = False,
    log: Log = print,
    attention_op: bool = False,
) -> dict[str, Any]:
    """Export ``checkpoint`` into ``out``; returns the manifest written (with check results)."""
    _check_checkpoint_arg(checkpoint)
    torch, transformers = import_extra()
    out = _check_out(out, force)
    t_start = time.perf_counter()
    model = load_checkpoint(torch, transformers, checkpoint)
    tmp = _staging_dir(out)
    try:
        _export_into(tmp, torch, transformers, checkpoint, model, quantize, opset, log,
                     attention_op)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out} in {time.perf_counter() - t_start:.1f} s")
    return json.loads((out / "listener.json").read_text())
