"""listener/export/htsat.py: the window-order HTSAT computes what transformers computes.

The exporter ships this graph for every non-fusion checkpoint, so each of its
folds is checked against transformers' own code: the token orders against
``window_partition`` of the rolled grid, the shift mask against ``get_attn_mask``,
the whole tower against ``ClapModel`` in PyTorch and in ONNX (batch 1 and 3), and
int8 of it against fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from listener.export import htsat, htsat_torch
from listener.export.trace import export_audio_tower, generated_features, tower_wrappers
from tests.helpers import cosine, onnx_session


@pytest.fixture(scope="module")
def shifted():
    """(ClapModel with shifted blocks, transformers wrapper, window-order module)."""
    import torch

    from tests.fixtures_model import build_shifted_clap

    model = build_shifted_clap(seed=3)
    audio_w, _ = tower_wrappers(torch, model)
    return model, audio_w, htsat_torch.build(model)


@pytest.mark.parametrize(("h", "w", "ws", "shift"), [(16, 16, 8, 0), (16, 16, 8, 4), (8, 16, 4, 2)])
def test_window_order_is_transformers_roll_and_partition(h: int, w: int, ws: int, shift: int):
    import torch
    from transformers.models.clap.modeling_clap import window_partition

    grid = torch.arange(h * w, dtype=torch.float32).reshape(1, h, w, 1)
    if shift:
        grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
    want = window_partition(grid, ws).reshape(-1).long().numpy()
    np.testing.assert_array_equal(htsat.window_order(h, w, ws, shift), want)


def test_shift_mask_is_transformers_mask(shifted):
    import torch

    model, _, _ = shifted
    checked = 0
    for stage in model.audio_model.audio_encoder.layers:
        for block in stage.blocks:
            h, w = block.input_resolution
            ws, shift = htsat.block_window(block, (h, w))
            if not shift:
                continue
            want = block.get_attn_mask(h, w, torch.float32, "cpu").numpy()  # 0 / -100
            got = htsat.shift_mask(h, w, ws, shift)[:, 0]
            assert got.shape == want.shape
            np.testing.assert_array_equal(got != 0, want != 0)
            assert set(np.unique(got)) <= {0.0, htsat.MASK_FILL}
            checked += 1
    assert checked == 3  # one shifted block in each of stages 0-2


def test_module_equals_transformers_in_pytorch(shifted):
    import torch

    model, audio_w, fast = shifted
    assert htsat.supports(model) == (True, "")
    x = torch.from_numpy(generated_features(3, seed=2))
    with torch.no_grad():
        want = audio_w(x).numpy()
        got = fast(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_onnx_export_equals_transformers_with_fewer_nodes(shifted, tmp_path: Path):
    """The reason for the module: the same embeddings from far fewer graph nodes."""
    import torch

    from listener.export.optimize import optimize_audio

    _, audio_w, fast = shifted
    ours, stock = tmp_path / "window_order.onnx", tmp_path / "transformers.onnx"
    export_audio_tower(torch, fast, ours, log=lambda _m: None)
    export_audio_tower(torch, audio_w, stock, log=lambda _m: None)
    optimize_audio(ours)
    feats = generated_features(3, seed=9)
    with torch.no_grad():
        want = audio_w(torch.from_numpy(feats)).numpy()
    sess = onnx_session(ours)
    got = sess.run(None, {"input_features": feats})[0]
    assert cosine(got, want).min() >= 0.99999
    one = sess.run(None, {"input_features": feats[:1]})[0]  # batch axis stays dynamic
    np.testing.assert_allclose(one[0], got[0], rtol=1e-4, atol=1e-6)
    n_ours = len(onnx.load(str(ours)).graph.node)
    n_stock = len(onnx.load(str(stock)).graph.node)
    assert n_ours < 0.5 * n_stock, (n_ours, n_stock)
    # no transformers-style window shuffling left: no Resize, no roll (Slice+Concat) chains
    ops = [n.op_type for n in onnx.load(str(ours)).graph.node]
    assert "Resize" not in ops and ops.count("Slice") <= 2


def test_int8_of_window_order_graph_tracks_fp32(shifted, tmp_path: Path):
    """Quantised as the exporter does (patch-merging reductions stay fp32): as close to
    fp32 as the transformers-graph int8 of tests/test_int8_accuracy.py (>= 0.9 centred)."""
    import torch

    from listener.export.optimize import fp32_nodes, optimize_audio
    from listener.export.quantize import quantize

    _, _, fast = shifted
    fp32 = tmp_path / "audio_model.onnx"
    export_audio_tower(torch, fast, fp32, log=lambda _m: None)
    optimize_audio(fp32)
    assert len(fp32_nodes(fp32)) == 3  # the names quantize.py looks for survive
    q = quantize(fp32, tmp_path / "audio_model_quantized.onnx", "int8")
    feats = generated_features(8, seed=11)

    def embed(path: Path) -> np.ndarray:
        sess = onnx_session(path)
        e = np.concatenate(
            [sess.run(None, {"input_features": feats[i : i + 1]})[0] for i in range(len(feats))]
        )
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    ref, got = embed(fp32), embed(q)
    centre = ref.mean(0, keepdims=True)
    assert cosine(got, ref).min() >= 0.999
    centred = cosine(got - centre, ref - centre).min()
    print(f"window-order int8 centred cosine min: {centred:.4f}")
    assert centred >= 0.9


def test_fusion_checkpoints_keep_the_transformers_graph():
    import torch
    from transformers import ClapConfig, ClapModel

    from tests.fixtures_model import tiny_audio_config

    cfg = ClapConfig(audio_config=tiny_audio_config([1, 1, 1, 1], enable_fusion=True).to_dict())
    torch.manual_seed(0)
    ok, why = htsat.supports(ClapModel(cfg).eval())
    assert not ok and "fusion" in why
