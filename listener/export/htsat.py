"""HTSAT (the CLAP audio tower) re-expressed for inference export, with the same weights.

Why: transformers' Swin code is written for training and for any input size. Traced
into ONNX it does, in every block, a LayerNorm on spatially ordered tokens, a
reshape + transpose into windows, three separate Q/K/V projections, a gather of the
relative-position table, a cyclic roll (Slice + Concat) and the inverse of all that
after attention: about 3,600 nodes (this module: about 650), a fifth of the int8
window spent moving data (measured: benchmarks/README.md).

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

It computes the same function as ``ClapModel.audio_model`` + ``audio_projection``
(same modules and weights; only the order of tokens between operations differs), and
the exporter refuses to write it unless the ONNX result matches transformers' PyTorch
model (cosine >= 0.99999). Configurations :func:`supports` rejects (the fusion branch
of clap-htsat-fused, grids that need window padding), and any build, trace or check
failure of this graph, make the exporter use transformers' own forward instead
(``exporter._export_audio_graph``), so this optimisation never costs an export.
"""

from __future__ import annotations

import math
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
            ws, _shift = _window(block, (h, w))
            if h % ws or w % ws:
                return False, f"grid {h}x{w} is not a multiple of the window {ws}"
            if ws != block.attention.self.window_size[0]:
                return False, f"grid {h}x{w} is smaller than the window"
        if stage.downsample is not None and (h % 2 or w % 2):
            return False, f"odd grid {h}x{w} before patch merging"
    return True, ""


def _window(block: Any, resolution: tuple[int, int]) -> tuple[int, int]:
    """(window, shift) the transformers block uses at ``resolution`` (its own rule)."""
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


def build(torch: Any, model: Any) -> Any:
    """The export module for ``model`` (a ClapModel): input_features [B, 1, T, F] ->
    unnormalised audio embeddings [B, D]."""
    nn = torch.nn
    enc = model.audio_model.audio_encoder

    class Block(nn.Module):
        """One Swin block on tokens already in its window order."""

        def __init__(self, block: Any, res: tuple[int, int]) -> None:
            super().__init__()
            att = block.attention.self
            self.heads = int(att.num_attention_heads)
            self.head_dim = int(att.attention_head_size)
            ws, shift = _window(block, res)
            self.n = ws * ws
            self.windows = (res[0] // ws) * (res[1] // ws)
            self.layernorm_before = block.layernorm_before
            self.layernorm_after = block.layernorm_after
            self.intermediate = block.intermediate
            self.output = block.output.dense
            self.attention_output = block.attention.output.dense
            scale = 1.0 / math.sqrt(self.head_dim)
            dim = att.query.in_features
            self.qkv = nn.Linear(dim, 3 * dim, bias=True)
            with torch.no_grad():
                self.qkv.weight.copy_(
                    torch.cat([att.query.weight * scale, att.key.weight, att.value.weight])
                )
                zeros = torch.zeros(dim)
                biases = [
                    (lin.bias if lin.bias is not None else zeros)
                    for lin in (att.query, att.key, att.value)
                ]
                self.qkv.bias.copy_(torch.cat([biases[0] * scale, biases[1], biases[2]]))
                index = att.relative_position_index.reshape(-1)
                bias = att.relative_position_bias_table[index].reshape(self.n, self.n, -1)
            # [heads, N, N], added to every window's scores
            self.register_buffer("position_bias", bias.permute(2, 0, 1).contiguous().clone(),
                                 persistent=False)
            if shift > 0:
                mask = torch.from_numpy(shift_mask(res[0], res[1], ws, shift))
                self.register_buffer("shift_mask", mask, persistent=False)
            else:
                self.shift_mask = None

        def forward(self, x):
            length, c = self.windows * self.n, self.heads * self.head_dim
            h = self.layernorm_before(x)
            qkv = self.qkv(h).reshape(-1, self.n, 3, self.heads, self.head_dim)
            qkv = qkv.permute(2, 0, 3, 1, 4)  # [3, B*windows, heads, N, d]
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = torch.matmul(q, k.transpose(-1, -2)) + self.position_bias
            if self.shift_mask is not None:
                scores = scores.reshape(-1, self.windows, self.heads, self.n, self.n)
                scores = (scores + self.shift_mask).reshape(-1, self.heads, self.n, self.n)
            probs = torch.softmax(scores, dim=-1)
            ctx = torch.matmul(probs, v).transpose(1, 2).reshape(-1, length, c)
            x = x + self.attention_output(ctx)
            return x + self.output(self.intermediate(self.layernorm_after(x)))

    class Reduce(nn.Module):
        """LayerNorm + Linear 4C -> 2C of transformers' ClapAudioPatchMerging."""

        def __init__(self, downsample: Any) -> None:
            super().__init__()
            self.norm = downsample.norm
            self.reduction = downsample.reduction

        def forward(self, x):
            return self.reduction(self.norm(x))

    class Merge(nn.Module):
        """Swin patch merging: gather 2x2 neighbours (transformers' concat order)."""

        def __init__(self, downsample: Any, index: np.ndarray) -> None:
            super().__init__()
            # named as in transformers: quantize.py keeps "/downsample/reduction/" in fp32
            self.downsample = Reduce(downsample)
            self.register_buffer("index", torch.from_numpy(index.reshape(-1)), persistent=False)
            self.groups = int(index.shape[0])
            self.channels = int(downsample.norm.normalized_shape[0]) // 4

        def forward(self, x):
            x = x.index_select(1, self.index).reshape(-1, self.groups, 4 * self.channels)
            return self.downsample(x)

    class Reorder(nn.Module):
        """Tokens from one block's window order into the next one's (a constant Gather)."""

        def __init__(self, index: np.ndarray) -> None:
            super().__init__()
            self.register_buffer("index", torch.from_numpy(index), persistent=False)

        def forward(self, x):
            return x.index_select(1, self.index)

    class Htsat(nn.Module):
        """input_features [B, 1, T, F] -> audio_embeds [B, D] (unnormalised)."""

        def __init__(self) -> None:
            super().__init__()
            bn = enc.batch_norm
            with torch.no_grad():
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                shift = bn.bias - bn.running_mean * scale
            self.register_buffer("bn_scale", scale.clone(), persistent=False)
            self.register_buffer("bn_shift", shift.clone(), persistent=False)
            self.patch_proj = enc.patch_embed.proj
            self.patch_norm = enc.patch_embed.norm
            self.norm = enc.norm
            self.reshape_mel2img = enc.reshape_mel2img
            self.projection = model.audio_projection
            grid = enc.patch_embed.grid_size
            self.grid = (int(grid[0]), int(grid[1]))
            steps: list[nn.Module] = []
            res = self.grid
            first = enc.layers[0].blocks[0]
            order = window_order(res[0], res[1], _window(first, res)[0], 0)
            self.register_buffer("first_order", torch.from_numpy(order), persistent=False)
            for si, stage in enumerate(enc.layers):
                for block in stage.blocks:
                    ws, shift = _window(block, res)
                    want = window_order(res[0], res[1], ws, shift)
                    if not np.array_equal(want, order):
                        steps.append(Reorder(_inverse(order)[want]))
                        order = want
                    steps.append(Block(block, res))
                if stage.downsample is not None:
                    h2, w2 = res[0] // 2, res[1] // 2
                    # the next stage's first block decides the order of the merged tokens
                    ws2, shift2 = _window(enc.layers[si + 1].blocks[0], (h2, w2))
                    coarse = window_order(h2, w2, ws2, shift2)
                    r, c = np.divmod(coarse, w2)
                    inv = _inverse(order)
                    # transformers concatenates x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2],
                    # x[1::2, 1::2]: row offset varies fastest
                    fine = [(2 * r + dr) * res[1] + (2 * c + dc) for dc in (0, 1) for dr in (0, 1)]
                    steps.append(Merge(stage.downsample, inv[np.stack(fine, axis=1)]))
                    res, order = (h2, w2), coarse
            self.steps = nn.ModuleList(steps)

        def forward(self, input_features):
            x = input_features * self.bn_scale + self.bn_shift  # BatchNorm over mel bins
            x = self.reshape_mel2img(x)  # time resize, four time chunks as one image
            x = self.patch_proj(x)  # [B, C, H, W]
            # tokens, then the first block's window order: a plain transpose + Gather
            # (measured 2-3 ms faster per window than one 6-D permute)
            x = x.reshape(-1, self.patch_proj.out_channels, self.grid[0] * self.grid[1])
            x = self.patch_norm(x.transpose(1, 2).index_select(1, self.first_order))
            for step in self.steps:
                x = step(x)
            # LayerNorm + transformers' regrouping + AdaptiveAvgPool1d == mean over tokens
            pooled = self.norm(x).mean(dim=1)
            return self.projection(pooled)

    return Htsat().eval()

