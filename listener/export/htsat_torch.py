"""The window-order HTSAT as torch modules (the plan and the why: listener/export/htsat.py).

This module imports torch at the top: the exporter imports it in the export path only,
after it found the `export` extra. :func:`build` is the entry point.

Module attribute names matter: they become the ONNX node names, and
:func:`listener.export.optimize.fp32_nodes` keeps the nodes under
``/downsample/reduction/`` in fp32 when quantising.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from listener.export.htsat import (
    BlockStep,
    MergeStep,
    ReorderStep,
    Step,
    block_window,
    shift_mask,
    token_plan,
)


def _fused_qkv(att: Any) -> nn.Linear:
    """Q, K and V of a transformers attention as one Linear, 1/sqrt(d) folded into Q."""
    scale = 1.0 / math.sqrt(int(att.attention_head_size))
    dim = att.query.in_features
    qkv = nn.Linear(dim, 3 * dim, bias=True)
    with torch.no_grad():
        qkv.weight.copy_(torch.cat([att.query.weight * scale, att.key.weight, att.value.weight]))
        zeros = torch.zeros(dim)
        biases = [
            (lin.bias if lin.bias is not None else zeros) for lin in (att.query, att.key, att.value)
        ]
        qkv.bias.copy_(torch.cat([biases[0] * scale, biases[1], biases[2]]))
    return qkv


def _position_bias(att: Any, n: int) -> torch.Tensor:
    """[heads, N, N] relative-position bias, added to every window's scores."""
    with torch.no_grad():
        index = att.relative_position_index.reshape(-1)
        bias = att.relative_position_bias_table[index].reshape(n, n, -1)
    return bias.permute(2, 0, 1).contiguous().clone()


class Block(nn.Module):
    """One Swin block on tokens already in its window order."""

    def __init__(self, block: Any, res: tuple[int, int]) -> None:
        super().__init__()
        att = block.attention.self
        self.heads = int(att.num_attention_heads)
        self.head_dim = int(att.attention_head_size)
        ws, shift = block_window(block, res)
        self.n = ws * ws
        self.windows = (res[0] // ws) * (res[1] // ws)
        self.layernorm_before = block.layernorm_before
        self.layernorm_after = block.layernorm_after
        self.intermediate = block.intermediate
        self.output = block.output.dense
        self.attention_output = block.attention.output.dense
        self.qkv = _fused_qkv(att)
        self.register_buffer("position_bias", _position_bias(att, self.n), persistent=False)
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


def _module(step: Step) -> nn.Module:
    if isinstance(step, ReorderStep):
        return Reorder(step.index)
    if isinstance(step, BlockStep):
        return Block(step.block, step.resolution)
    if isinstance(step, MergeStep):
        return Merge(step.downsample, step.index)
    raise TypeError(f"unknown HTSAT step {step!r}")


class Htsat(nn.Module):
    """input_features [B, 1, T, F] -> audio_embeds [B, D] (unnormalised)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        enc = model.audio_model.audio_encoder
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
        first_order, steps = token_plan(enc, self.grid)
        self.register_buffer("first_order", torch.from_numpy(first_order), persistent=False)
        self.steps = nn.ModuleList([_module(step) for step in steps])

    def forward(self, input_features):
        x = input_features * self.bn_scale + self.bn_shift  # BatchNorm over mel bins
        x = self.reshape_mel2img(x)  # time resize, four time chunks as one image
        x = self.patch_proj(x)  # [B, C, H, W]
        # tokens, then the first block's window order: a plain transpose + Gather
        # (faster than one 6-D permute: benchmarks/README.md)
        x = x.reshape(-1, self.patch_proj.out_channels, self.grid[0] * self.grid[1])
        x = self.patch_norm(x.transpose(1, 2).index_select(1, self.first_order))
        for step in self.steps:
            x = step(x)
        # LayerNorm + transformers' regrouping + AdaptiveAvgPool1d == mean over tokens
        pooled = self.norm(x).mean(dim=1)
        return self.projection(pooled)


def build(model: Any) -> Htsat:
    """The export module for ``model`` (a ClapModel): input_features [B, 1, T, F] ->
    unnormalised audio embeddings [B, D]."""
    return Htsat(model).eval()
