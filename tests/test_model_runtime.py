"""Runtime towers and the prompt cache on real ONNX files of the tiny exported model."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from listener.errors import ModelError
from listener.export.exporter import generated_features
from listener.model.audio_tower import AudioTower
from listener.model.modeldir import ModelDir
from listener.model.prompt_bank import PromptBank
from listener.model.session import physical_cores
from listener.model.text_tower import TextTower
from tests.helpers import copy_dir

PROMPTS = ["a dog barking", "smoke alarm beeping in the kitchen", "rain"]


def test_audio_batch_equals_single_windows(tiny_model_dir):
    tower = AudioTower(ModelDir(tiny_model_dir), "int8", threads=1)
    feats = generated_features(3, seed=11)
    batch = tower.embed(feats)
    singles = np.concatenate([tower.embed(feats[i]) for i in range(3)])  # [C,T,F] accepted too
    assert batch.shape == (3, tower.dim) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, singles, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "shape", [(1, 1, 1000, 64), (1, 1, 1001, 32), (1, 4, 1001, 64), (1001, 64)]
)
def test_wrong_feature_shape_names_model(tiny_model_dir, shape):
    tower = AudioTower(ModelDir(tiny_model_dir), "fp32", threads=1)
    with pytest.raises(ModelError) as err:
        tower.embed(np.zeros(shape, np.float32))
    msg = str(err.value)
    assert str(tiny_model_dir / "onnx" / "audio_model.onnx") in msg
    assert "[B, 1, 1001, 64]" in msg and str(list(shape)) in msg


def test_session_settings(tiny_model_dir):
    """Threads, one inter-op thread, no spinning: the CPU idles between windows."""
    tower = AudioTower(ModelDir(tiny_model_dir), "int8", threads=0)
    opts = tower.session.get_session_options()
    assert opts.intra_op_num_threads == physical_cores() >= 1
    assert opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert tower.session.get_providers() == ["CPUExecutionProvider"]


def test_unavailable_provider_falls_back_to_cpu(tiny_model_dir, caplog):
    tower = AudioTower(ModelDir(tiny_model_dir), "int8", provider="tensorrt", threads=1)
    assert tower.session.get_providers() == ["CPUExecutionProvider"]
    assert "falling back to CPU" in caplog.text
    assert tower.embed(generated_features(1)).shape == (1, 32)


def test_text_embeddings_do_not_depend_on_the_other_prompts(tiny_model_dir):
    tower = TextTower(ModelDir(tiny_model_dir), "fp32", threads=1)
    together = tower.embed(PROMPTS)
    alone = np.concatenate([tower.embed([p]) for p in PROMPTS])
    assert np.array_equal(together, alone)


def _strip_attention_mask(src: Path, dst: Path) -> None:
    """Make a text model like Xenova's: input_ids only (the mask becomes all ones)."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(str(src))
    g = m.graph
    keep = [i for i in g.input if i.name != "attention_mask"]
    del g.input[:]
    g.input.extend(keep)
    ones = helper.make_tensor("one", TensorProto.INT64, [1], [1])
    g.node.insert(0, helper.make_node("Shape", ["input_ids"], ["ids_shape"]))
    g.node.insert(
        1, helper.make_node("ConstantOfShape", ["ids_shape"], ["attention_mask"], value=ones)
    )
    onnx.save(m, str(dst))


def test_text_model_without_mask_runs_one_prompt_at_a_time(tiny_model_dir, tmp_path):
    d = copy_dir(tiny_model_dir, tmp_path / "nomask")
    _strip_attention_mask(d / "onnx" / "text_model.onnx", d / "onnx" / "text_model.onnx")
    (d / "listener.json").unlink()
    tower = TextTower(ModelDir(d), "fp32", threads=1)
    assert not tower.has_mask
    ref = TextTower(ModelDir(tiny_model_dir), "fp32", threads=1).embed(PROMPTS)
    np.testing.assert_allclose(tower.embed(PROMPTS), ref, atol=1e-5)


def test_directory_without_manifest_loads(tiny_model_dir, tmp_path):
    d = copy_dir(tiny_model_dir, tmp_path / "clap-public")
    (d / "listener.json").unlink()
    model = ModelDir(d)
    assert model.manifest is None
    assert model.model_id == "clap-public"
    assert model.embedding_dim == 32 and model.max_text_length == 64
    assert model.verify_hashes() == []
    ref = AudioTower(ModelDir(tiny_model_dir), "int8", threads=1)
    feats = generated_features(1)
    np.testing.assert_allclose(AudioTower(model, "int8", threads=1).embed(feats), ref.embed(feats))


def test_missing_precision_names_alternatives(tiny_model_dir, tmp_path):
    d = copy_dir(tiny_model_dir, tmp_path / "m")
    (d / "onnx" / "audio_model.onnx").unlink()
    with pytest.raises(ModelError) as err:
        AudioTower(ModelDir(d), "fp32")
    msg = str(err.value)
    assert str(d / "onnx" / "audio_model.onnx") in msg and "int8" in msg
    assert "listener model pull" in msg and "listener model export" in msg


def test_hash_mismatch_names_file(tiny_model_dir, tmp_path):
    d = copy_dir(tiny_model_dir, tmp_path / "m")
    with open(d / "onnx" / "text_model_quantized.onnx", "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelError, match=r"text_model_quantized\.onnx does not match its sha256"):
        ModelDir(d).verify_hashes()


class _SessionCounter:
    def __init__(self, monkeypatch):
        import onnxruntime as ort

        self.count = 0
        real = ort.InferenceSession

        def counting(*a, **k):
            self.count += 1
            return real(*a, **k)

        monkeypatch.setattr(ort, "InferenceSession", counting)


def test_prompt_bank_warm_start_never_creates_a_text_session(tiny_model_dir, tmp_path, monkeypatch):
    model = ModelDir(tiny_model_dir)
    cache = tmp_path / "cache"
    counter = _SessionCounter(monkeypatch)
    cold = PromptBank(model, cache).embed(PROMPTS)
    assert counter.count == 1
    ref = TextTower(model, "int8", threads=1).embed(PROMPTS)
    np.testing.assert_allclose(cold, ref, atol=1e-6)
    counter.count = 0

    # a restart: new ModelDir (no in-process hash memo), new bank
    bank = PromptBank(ModelDir(tiny_model_dir), cache)
    warm = bank.embed(list(reversed(PROMPTS)))
    assert counter.count == 0 and bank.misses == 0
    np.testing.assert_array_equal(warm, cold[::-1])

    # a new prompt is a miss for that prompt only; the tower is released afterwards
    bank.embed([*PROMPTS, "a door knock"])
    assert counter.count == 1 and bank.misses == 1
    files = sorted(p.name for p in cache.iterdir())
    sha = model.file_sha256(model.text_model_path("int8"))
    assert files == [f"prompts-{sha}.json"]  # the model hash memo is the caller's file
    data = json.loads((cache / f"prompts-{sha}.json").read_text())
    assert set(data["prompts"]) == {*PROMPTS, "a door knock"}


def test_prompt_bank_key_is_exact_text_and_model_file(tiny_model_dir, tmp_path, monkeypatch):
    model = ModelDir(tiny_model_dir)
    cache = tmp_path / "cache"
    a = PromptBank(model, cache).embed(["rain"])
    counter = _SessionCounter(monkeypatch)
    PromptBank(model, cache).embed(["rain "])  # not the same text
    assert counter.count == 1
    b = PromptBank(model, cache, precision="fp32").embed(["rain"])  # other model file
    assert counter.count == 2
    assert len(list(cache.glob("prompts-*.json"))) == 2
    assert float((a * b).sum()) > 0.99


def test_prompt_bank_rebuilds_a_corrupt_cache(tiny_model_dir, tmp_path):
    model = ModelDir(tiny_model_dir)
    cache = tmp_path / "cache"
    bank = PromptBank(model, cache)
    good = bank.embed(PROMPTS)
    bank.cache_path.write_text("{not json")
    again = PromptBank(model, cache)
    np.testing.assert_allclose(again.embed(PROMPTS), good, atol=1e-6)
    assert again.misses == len(PROMPTS)


def test_prompt_cache_and_hash_memo_are_private_whatever_the_umask(tiny_model_dir, tmp_path):
    """Both live in the state directory and say which prompts a user listens for."""
    memo = tmp_path / "state" / "model-hashes.json"
    old = os.umask(0o022)
    try:
        bank = PromptBank(ModelDir(tiny_model_dir, hash_memo=memo), tmp_path / "state" / "cache")
        bank.embed(PROMPTS)
    finally:
        os.umask(old)
    assert stat.S_IMODE(bank.cache_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(memo.stat().st_mode) == 0o600
