"""HTSAT (the CLAP audio tower) re-expressed for inference export, with the same weights.

Why: transformers' Swin code is written for training and for any input size. Traced
into ONNX it does, in every block, a LayerNorm on spatially ordered tokens, a
reshape + transpose into windows, three separate Q/K/V projections, a gather of the
relative-position table, a cyclic roll (Slice + Concat) and the inverse of all that
after attention: several times the nodes of this module, and a large share of the
int8 window spent moving data (node counts and timings: benchmarks/README.md).

Everything a Swin block does outside attention is per token (LayerNorm, MLP,
residual adds), so the order of the tokens does not matter there. This module keeps
the tokens of each block in that block's *window order* (the tokens of window 0,
then window 1, ...), so attention is a plain reshape of the token axis, and moves
them between orders with ONE constant ``Gather`` where the order must change:
between a plain and a shifted block (the cyclic shift is just another order), and in
patch merging (the 2x2 neighbours of the next stage's window order, gathered in the
order transformers concatenates them). Also folded at export time: Q, K and V as one
projection (one int8 activation quantisation instead of three, one larger GEMM), the
1/sqrt(d) scale into the Q weights, the relative-position bias as a constant
[heads, N, N], the shift mask as a constant [windows, 1, N, N] with -1e4 (not -100:
exact zeros after softmax, no denormals, see listener/export/optimize.py), BatchNorm
as one multiply-add, and the final spatial regrouping + average pool as a mean over
tokens (the pool averages all positions, whatever their order).

This module holds the token-order arithmetic (numpy: :func:`window_order`,
:func:`shift_mask`, :func:`token_plan`); the torch modules that follow the plan are
:mod:`listener.export.htsat_torch`, imported only by :func:`build`, so ``supports``
and the orders can be used without torch.

It computes the same function as ``ClapModel.audio_model`` + ``audio_projection``
(same modules and weights; only the order of tokens between operations differs), and
the exporter refuses to write it unless the ONNX result matches transformers' PyTorch
model (cosine >= 0.99999). Configurations :func:`supports` rejects (the fusion branch
of clap-htsat-fused, grids that need window padding), and any build, trace or check
failure of this graph, make the exporter use transformers' own forward instead, so
this optimisation never costs an export.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: transformers fills masked shifted-window scores with -100; exp(-100) is a denormal
MASK_FILL = -1.0e4


def supports(model: Any) -> tuple[bool, str]:
    """Whether :func:`build` covers ``model`` (a ClapModel); the reason if not."""
    cfg = model.config.audio_config
    if getattr(cfg, "enable_fusion", False):
        return False, "fusion branch (is_longer, 4 mel views)"
    if not getattr(cfg, "flatten_patch_embeds", True):
        return False, "unflattened patch embeddings"
    enc = model.audio_model.audio_encoder
    if enc.batch_norm.running_var is None:
        return False, "BatchNorm without running statistics"
    for stage in enc.layers:
        h, w = stage.blocks[0].input_resolution
        for block in stage.blocks:
            ws, _shift = block_window(block, (h, w))
            if h % ws or w % ws:
                return False, f"grid {h}x{w} is not a multiple of the window {ws}"
            if ws != block.attention.self.window_size[0]:
                return False, f"grid {h}x{w} is smaller than the window"
        if stage.downsample is not None and (h % 2 or w % 2):
            return False, f"odd grid {h}x{w} before patch merging"
    return True, ""


def block_window(block: Any, resolution: tuple[int, int]) -> tuple[int, int]:
    """(window, shift) a transformers Swin block uses at ``resolution`` (its own rule)."""
    ws, shift = int(block.window_size), int(block.shift_size)
    if min(resolution) <= ws:  # ClapAudioLayer.set_shift_and_window_size
        return int(min(resolution)), 0
    return ws, shift


def window_order(h: int, w: int, ws: int, shift: int) -> np.ndarray:
    """Flat spatial index (row * w + col) of each token in the window order of a block.

    Token t of that order is pixel (ii, jj) of window (wi, wj) of the grid cyclically
    shifted by ``-shift`` (``torch.roll(x, (-shift, -shift))``), i.e. original pixel
    ((wi*ws + ii + shift) % h, (wj*ws + jj + shift) % w).
    """
    wi, wj, ii, jj = np.meshgrid(
        np.arange(h // ws), np.arange(w // ws), np.arange(ws), np.arange(ws), indexing="ij"
    )
    rows = (wi * ws + ii + shift) % h
    cols = (wj * ws + jj + shift) % w
    return (rows * w + cols).reshape(-1)


def shift_mask(h: int, w: int, ws: int, shift: int) -> np.ndarray:
    """[windows, 1, N, N] additive mask of a shifted block: 0 or MASK_FILL.

    Same regions as transformers' ``get_attn_mask`` (pixels that were not neighbours
    before the cyclic shift must not attend to each other).
    """
    def region(n: int) -> np.ndarray:
        i = np.arange(n)
        return (i >= n - ws).astype(np.int64) + (i >= n - shift).astype(np.int64)

    img = region(h)[:, None] * 3 + region(w)[None, :]  # region id of each shifted pixel
    # in the shifted grid, window order without a further shift
    ids = img.reshape(-1)[window_order(h, w, ws, 0)].reshape(-1, ws * ws)
    mask = np.where(ids[:, None, :] != ids[:, :, None], MASK_FILL, 0.0)
    return mask[:, None].astype(np.float32)


def _inverse(order: np.ndarray) -> np.ndarray:
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    return inv


@dataclass(frozen=True)
class ReorderStep:
    """Move the tokens into the next block's window order: new token i is old ``index[i]``."""

    index: np.ndarray


@dataclass(frozen=True)
class BlockStep:
    """Run a transformers Swin ``block`` on tokens already in its window order."""

    block: Any
    resolution: tuple[int, int]


@dataclass(frozen=True)
class MergeStep:
    """Swin patch merging with ``downsample``: ``index`` [coarse tokens, 4] names the 2x2
    neighbours of each merged token in the current order, in transformers' concat order."""

    downsample: Any
    index: np.ndarray


Step = ReorderStep | BlockStep | MergeStep


def token_plan(encoder: Any, grid: tuple[int, int]) -> tuple[np.ndarray, list[Step]]:
    """(the first block's window order of the patch ``grid``, the steps of ``encoder``).

    Follows the token order through the stages: a :class:`ReorderStep` only where the
    next block's window order differs from the current one, and each patch merging
    gathers straight into the next stage's first window order.
    """
    res = grid
    order = window_order(res[0], res[1], block_window(encoder.layers[0].blocks[0], res)[0], 0)
    first, steps = order, []
    for si, stage in enumerate(encoder.layers):
        for block in stage.blocks:
            want = window_order(res[0], res[1], *block_window(block, res))
            if not np.array_equal(want, order):
                steps.append(ReorderStep(_inverse(order)[want]))
                order = want
            steps.append(BlockStep(block, res))
        if stage.downsample is not None:
            # the next stage's first block decides the order of the merged tokens
            step, res, order = _merge_step(stage.downsample, encoder.layers[si + 1].blocks[0],
                                           res, order)
            steps.append(step)
    return first, steps


def _merge_step(downsample: Any, next_block: Any, res: tuple[int, int],
                order: np.ndarray) -> tuple[MergeStep, tuple[int, int], np.ndarray]:
    """(the merge step, the coarse grid, its token order) from tokens in ``order``."""
    h2, w2 = res[0] // 2, res[1] // 2
    coarse = window_order(h2, w2, *block_window(next_block, (h2, w2)))
    r, c = np.divmod(coarse, w2)
    # transformers concatenates x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2],
    # x[1::2, 1::2]: row offset varies fastest
    fine = [(2 * r + dr) * res[1] + (2 * c + dc) for dc in (0, 1) for dr in (0, 1)]
    return MergeStep(downsample, _inverse(order)[np.stack(fine, axis=1)]), (h2, w2), coarse
