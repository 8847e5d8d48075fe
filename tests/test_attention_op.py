"""`model export --attention-op`: window attention as ONNX Attention nodes (issue 18).

The rewrite must be exact (the exporter compares it with the plain graph, which was
checked against PyTorch), recorded in listener.json, and refused by name on a runtime
older than onnxruntime 1.23 (the plain graph is kept).
"""

from __future__ import annotations

import json

import numpy as np
import onnx

from listener.export.attention_op import runtime_supports
from listener.export.trace import generated_features
from listener.model.audio_tower import AudioTower
from listener.model.modeldir import ModelDir
from tests.helpers import run_cli


def test_runtime_version_gate():
    assert runtime_supports("1.23.0") and runtime_supports("1.32.0")
    assert runtime_supports("2.0.1")
    assert not runtime_supports("1.22.1") and not runtime_supports("1.16.3")


def test_export_with_attention_op_is_exact_and_recorded(tiny_checkpoint, tiny_model_dir,
                                                        tmp_path):
    out = tmp_path / "att"
    res = run_cli("model", "export", "--checkpoint", tiny_checkpoint, "--out", out,
                  "--attention-op", timeout=600)
    assert res.returncode == 0, res.stderr
    checks = json.loads((out / "listener.json").read_text())["checks"]
    assert checks["audio_attention"].startswith("onnx Attention (opset 23) in "), checks
    graph = onnx.load(str(out / "onnx" / "audio_model.onnx"), load_external_data=False).graph
    assert any(n.op_type == "Attention" for n in graph.node)
    assert not any(n.op_type == "Softmax" for n in graph.node)
    plain = json.loads((tiny_model_dir / "listener.json").read_text())["checks"]
    assert plain["audio_attention"] == "plain MatMul+Softmax"
    x = generated_features(3, seed=5)
    for precision, atol in (("fp32", 1e-5), ("int8", 1e-5)):
        a = AudioTower(ModelDir(out), precision, threads=1).embed(x)
        b = AudioTower(ModelDir(tiny_model_dir), precision, threads=1).embed(x)
        np.testing.assert_allclose(a, b, atol=atol)
