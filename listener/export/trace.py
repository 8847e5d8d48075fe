"""The torch side of the export: load a CLAP checkpoint, wrap its towers, trace them to ONNX.

torch and transformers are never imported here: :func:`import_extra` imports them (or
says which extra to install) and every other function takes the ``torch`` module as
an argument, so importing this module costs nothing and the daemon never pulls torch in.
The exporter (:mod:`listener.export.exporter`) checks every file traced here against
PyTorch; the benchmarks and tests use the same functions to make comparison exports.

Both towers use the TorchScript exporter (``dynamo=False``): it traces HTSAT's
Python-level shape logic (window partitioning, the mel-to-image reshape, the fusion
branch) into a batch-dynamic graph that matches PyTorch to float rounding, and supports
``dynamic_axes`` for the text sequence axis. Every export is checked against PyTorch, so
a future exporter change that breaks this is caught before anything is written.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from listener.errors import MissingExtraError, UserError

Log = Callable[[str], None]


def import_extra() -> tuple[Any, Any]:
    """(torch, transformers), or MissingExtraError naming the `export` extra (also for onnx)."""
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


def load_checkpoint(torch: Any, transformers: Any, checkpoint: str) -> Any:
    """The fp32 ``ClapModel`` of ``checkpoint`` in eval mode, with eager attention.

    Eager attention traces into plain MatMul/Softmax nodes; a checkpoint that cannot be
    loaded is a user mistake (wrong path, offline hub id), so it becomes a UserError.
    """
    try:
        model = transformers.ClapModel.from_pretrained(checkpoint, attn_implementation="eager")
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot load CLAP checkpoint {checkpoint!r}: {exc}. Give a local directory saved "
            "with ClapModel.save_pretrained (or a Hugging Face id when online)."
        ) from None
    model.eval()
    return model.float()


def tower_wrappers(torch: Any, model: Any) -> tuple[Any, Any]:
    """(audio, text) torch modules of ``model`` that return the UNNORMALISED projections.

    Like the public Xenova export, the ONNX files output ``audio_embeds`` / ``text_embeds``
    before the L2 norm (the runtime towers normalise). transformers 5.x
    ``ClapModel.get_*_features`` return the normalised projection, so the wrappers call
    the sub-models and projection heads directly. They are also the PyTorch reference
    every exported file is checked against.
    """

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


def generated_text_inputs(
    vocab: int, pad: int, max_len: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask): a padded batch of random token sequences of different
    lengths (bos=0, eos=2 style), so the check sees padding and the mask at work."""
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
def _quiet() -> Iterator[None]:
    """The TorchScript exporter warns about its own deprecation and about traced constants
    that do not matter here (every tower is checked against PyTorch afterwards)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _trace(torch: Any, module: Any, args: tuple, path: Path, opset: int,
           names: tuple[list[str], list[str]], axes: dict[str, dict[int, str]]) -> float:
    """torch.onnx.export of ``module`` on ``args`` into ``path``; the seconds it took."""
    inputs, outputs = names
    t0 = time.perf_counter()
    with torch.no_grad(), _quiet():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return time.perf_counter() - t0


def export_audio_tower(torch: Any, module: Any, path: Path, opset: int = 17,
                       fusion: bool = False, log: Log = print) -> None:
    """Trace an audio tower module into ``path``: input_features [B, C, 1001, 64] (+ is_longer
    [B, 1] when ``fusion``) -> audio_embeds [B, D], with a dynamic batch axis.

    ``module`` is one of :func:`tower_wrappers` or :func:`listener.export.htsat_torch.build`.
    Nothing is checked here: the exporter compares the file with PyTorch.
    """
    x = torch.from_numpy(generated_features(2, seed=1, fusion=fusion))
    inputs = ["input_features"]
    args: tuple = (x,)
    axes = {"input_features": {0: "batch"}, "audio_embeds": {0: "batch"}}
    if fusion:
        inputs.append("is_longer")
        args = (x, torch.ones((2, 1), dtype=torch.bool))
        axes["is_longer"] = {0: "batch"}
    took = _trace(torch, module, args, path, opset, (inputs, ["audio_embeds"]), axes)
    log(f"exported audio tower in {took:.1f} s -> {path.name}")


def export_text_tower(torch: Any, module: Any, path: Path, opset: int,
                      ids: np.ndarray, mask: np.ndarray, log: Log = print) -> None:
    """Trace the text tower module on (``ids``, ``mask``) into ``path``: input_ids,
    attention_mask [B, L] -> text_embeds [B, D], with dynamic batch and sequence axes."""
    args = (torch.from_numpy(ids), torch.from_numpy(mask))
    axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "text_embeds": {0: "batch"},
    }
    names = (["input_ids", "attention_mask"], ["text_embeds"])
    took = _trace(torch, module, args, path, opset, names, axes)
    log(f"exported text tower in {took:.1f} s -> {path.name}")
