"""The exporter: ONNX towers equal PyTorch, the manifest is right, failures are clean."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from listener.errors import MissingExtraError, ModelError
from listener.export import exporter
from listener.export.trace import generated_features
from listener.model.audio_tower import AudioTower
from listener.model.modeldir import ModelDir, sha256_file
from listener.model.text_tower import TextTower
from tests.fixtures_model import LAYOUT_FILES
from tests.helpers import cosine

TEXTS = [
    "a dog barking",
    "This is a sound of smoke alarm beeping in the kitchen.",
    "rain",
    "Glass breaking near the door, loud and distant thunder outside",
]


@pytest.fixture(scope="module")
def torch_model(tiny_checkpoint: Path):
    from transformers import ClapModel

    return ClapModel.from_pretrained(str(tiny_checkpoint)).eval()


def test_fp32_audio_tower_matches_pytorch(tiny_checkpoint, tiny_model_dir, torch_model):
    import torch
    from transformers import ClapFeatureExtractor

    from listener.export.verify import generated_signals

    fe = ClapFeatureExtractor.from_pretrained(str(tiny_checkpoint))
    clips = [x for _, x in generated_signals()[:4]]
    inputs = fe(clips, sampling_rate=48000, return_tensors="pt")
    with torch.no_grad():
        out = torch_model.get_audio_features(**inputs)
    # transformers 5.x returns an output object whose pooler_output is the normalised projection
    want = out.pooler_output.numpy() if hasattr(out, "pooler_output") else out.numpy()
    got = AudioTower(ModelDir(tiny_model_dir), "fp32", threads=1).embed(
        inputs["input_features"].numpy()
    )
    assert got.shape == want.shape == (4, 32)
    assert cosine(got, want).min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_fp32_text_tower_matches_pytorch(tiny_checkpoint, tiny_model_dir, torch_model):
    import torch
    from transformers import RobertaTokenizerFast

    tok = RobertaTokenizerFast.from_pretrained(str(tiny_checkpoint))
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = torch_model.get_text_features(**enc)
    want = out.pooler_output.numpy() if hasattr(out, "pooler_output") else out.numpy()
    got = TextTower(ModelDir(tiny_model_dir), "fp32", threads=1).embed(TEXTS)
    assert cosine(got, want).min() >= 0.99999


def test_onnx_outputs_are_unnormalised_projections(tiny_model_dir):
    """Like the public export: the ONNX returns audio_embeds/text_embeds before L2 norm."""
    from listener.model.session import make_session

    model = ModelDir(tiny_model_dir)
    sess = make_session(model.audio_model_path("fp32"), threads=1)
    assert [o.name for o in sess.get_outputs()] == ["audio_embeds"]
    out = sess.run(None, {"input_features": generated_features(2)})[0]
    assert not np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)
    tsess = make_session(model.text_model_path("fp32"), threads=1)
    assert [i.name for i in tsess.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in tsess.get_outputs()] == ["text_embeds"]
    # only the batch axis is dynamic for audio; batch and sequence for text
    shape = sess.get_inputs()[0].shape
    assert isinstance(shape[0], str) and shape[1:] == [1, 1001, 64]
    ids_shape = tsess.get_inputs()[0].shape
    assert all(isinstance(d, str) for d in ids_shape)


def test_tokenizer_ids_equal_roberta_tokenizer_fast(tiny_checkpoint, tiny_model_dir):
    from transformers import RobertaTokenizerFast

    tok = RobertaTokenizerFast.from_pretrained(str(tiny_checkpoint))
    tower = TextTower(ModelDir(tiny_model_dir), "fp32", threads=1)
    texts = [*TEXTS, "  leading spaces", "UPPER case, ünïcödé & émojis 🔥", ""]
    assert tower.tokenize(texts) == [tok(t)["input_ids"] for t in texts]
    long = " ".join(["dog barking"] * 200)
    ids = tower.tokenize([long])[0]
    assert ids == tok(long, truncation=True, max_length=64)["input_ids"]
    assert len(ids) == 64  # max_position_embeddings 66 - pad id 1 - 1


def test_manifest_records_files_and_hashes(tiny_model_dir):
    model = ModelDir(tiny_model_dir)
    m = model.manifest
    assert m is not None
    assert set(m["files"]) == LAYOUT_FILES
    for rel, entry in m["files"].items():
        assert entry["sha256"] == sha256_file(tiny_model_dir / rel)
    assert sorted(model.verify_hashes()) == sorted(LAYOUT_FILES)
    assert m["embedding_dim"] == 32
    assert m["truncation"] == "rand_trunc"
    assert m["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-5)
    assert m["text_max_length"] == 64
    assert m["checks"]["audio_fp32_min_cosine"] >= 0.99999
    assert m["checks"]["audio_graph"] == "listener window-order HTSAT"  # export/htsat.py
    assert m["quantization"]["per_channel"] is True
    assert "listener" in m["exporter_version"] and "opset 17" in m["exporter_version"]
    # the support files are copied byte for byte from the checkpoint
    for name in ("tokenizer.json", "preprocessor_config.json", "config.json"):
        ckpt = Path(m["source_checkpoint"]) / name
        assert ckpt.read_bytes() == (tiny_model_dir / name).read_bytes()


def test_export_refuses_mismatch_and_leaves_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    """The PyTorch check runs before writing: a failed check leaves no --out directory."""
    monkeypatch.setattr(exporter, "MIN_COSINE", 1.5)  # no export can pass
    out = tmp_path / "model"
    with pytest.raises(ModelError, match="disagrees with PyTorch"):
        exporter.export_model(str(tiny_checkpoint), out, quantize=False, log=lambda _m: None)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp directory left behind


@pytest.mark.parametrize("fault", ["disagrees", "cannot be built"])
def test_window_order_graph_failure_falls_back_to_transformers(
    tiny_checkpoint, torch_model, tmp_path, monkeypatch, fault
):
    """The window-order graph is an optimisation: if it is wrong or cannot be built, the
    export still succeeds with transformers' own forward, and the manifest says why."""
    import torch

    from listener.export import htsat_torch

    real_build = htsat_torch.build

    def faulty_build(model):
        if fault == "cannot be built":
            raise RuntimeError("unsupported layout")
        good = real_build(model)

        class Negated(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.good = good

            def forward(self, x):
                return -self.good(x)

        return Negated().eval()

    monkeypatch.setattr(htsat_torch, "build", faulty_build)
    logs: list[str] = []
    out = tmp_path / "model"
    exporter.export_model(str(tiny_checkpoint), out, quantize=False, log=logs.append)
    checks = ModelDir(out).manifest["checks"]
    assert checks["audio_graph"].startswith("transformers forward (")
    why = "disagrees with PyTorch" if fault == "disagrees" else "RuntimeError: unsupported layout"
    assert why in checks["audio_graph"]
    assert any("window-order graph not used" in m for m in logs)
    assert checks["audio_fp32_min_cosine"] >= 0.99999
    feats = generated_features(2, seed=4)
    got = AudioTower(ModelDir(out), "fp32", threads=1).embed(feats)
    with torch.no_grad():
        want = torch_model.get_audio_features(input_features=torch.from_numpy(feats))
    want = want.pooler_output if hasattr(want, "pooler_output") else want
    assert cosine(got, want.numpy()).min() >= 0.99999  # the shipped file is the right one


def test_export_refuses_non_empty_out(tiny_checkpoint, tiny_model_dir):
    with pytest.raises(Exception, match="not empty"):
        exporter.export_model(str(tiny_checkpoint), tiny_model_dir, log=lambda _m: None)


def test_export_without_extra_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'listener\[export\]'"):
        exporter.export_model("whatever", tmp_path / "m")


def test_int8_files_are_smaller_and_close(tiny_model_dir):
    model = ModelDir(tiny_model_dir)
    q = model.manifest["quantization"]
    assert q["audio_int8_vs_fp32_min_cosine"] > 0.999
    a32 = model.audio_model_path("fp32").stat().st_size
    a8 = model.audio_model_path("int8").stat().st_size
    assert a8 < 0.7 * a32
    feats = generated_features(2, seed=5)
    e32 = AudioTower(model, "fp32", threads=1).embed(feats)
    e8 = AudioTower(model, "int8", threads=1).embed(feats)
    assert cosine(e8, e32).min() > 0.999
    assert json.loads((tiny_model_dir / "listener.json").read_text())["format"] == 1


def test_fusion_checkpoint_exports_with_is_longer(tmp_path):
    """clap-htsat-fused style: 4 mel views and an is_longer input the tower feeds True."""
    import torch
    from transformers import ClapFeatureExtractor, ClapModel

    from listener.model.logmel import LogMel
    from tests.fixtures_model import build_tiny_checkpoint

    ckpt = build_tiny_checkpoint(tmp_path / "ckpt", seed=1, fusion=True)
    out = tmp_path / "model"
    exporter.export_model(str(ckpt), out, quantize=False, log=lambda _m: None)
    model = ModelDir(out)
    assert model.manifest["enable_fusion"] is True and model.truncation == "fusion"
    assert model.manifest["checks"]["audio_graph"].startswith("transformers forward (fusion")
    tower = AudioTower(model, "fp32", threads=1)
    assert tower.is_longer is not None and tower.channels == 4
    clip = np.random.default_rng(0).normal(0, 0.1, 48000 * 4).astype(np.float32)
    got = tower.embed(LogMel.from_config(model.preprocessor_config)(clip)[None])
    inputs = ClapFeatureExtractor.from_pretrained(str(ckpt))(
        [clip], sampling_rate=48000, return_tensors="pt"
    )
    assert inputs["is_longer"].tolist() == [[True]]
    with torch.no_grad():
        want = ClapModel.from_pretrained(str(ckpt)).eval().get_audio_features(**inputs)
    assert cosine(got, want.pooler_output.numpy()).min() >= 0.99999
