"""Session fixtures: a tiny random CLAP checkpoint and its export by OUR exporter.

The tiny model keeps the real interfaces (HTSAT taking [B,1,1001,64], RoBERTa
with byte-level BPE, the same preprocessor config) with very small widths, so
exporting, quantising and running it take seconds. Nothing is mocked: the
exporter, onnxruntime and the tokenizer are the real ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: The files of the public ONNX layout (Xenova/optimum) a model directory holds; our
#: exporter writes exactly these (+ listener.json).
LAYOUT_FILES = frozenset({
    "onnx/audio_model.onnx",
    "onnx/audio_model_quantized.onnx",
    "onnx/text_model.onnx",
    "onnx/text_model_quantized.onnx",
    "tokenizer.json",
    "preprocessor_config.json",
    "config.json",
})

# Words for generated sentences: the BPE tokenizer is trained on these.
_TEXT = (
    "dog bark barking cat meow smoke alarm beeping siren glass breaking door knock "
    "baby crying water running rain thunder car horn engine bird singing music speech "
    "a the of sound is this loud quiet distant near kitchen outside hallway fire bell "
    "phone ringing washing machine vacuum cleaner footsteps wind chimes clock ticking"
)
_WORDS = _TEXT.split()


def _sentences(n: int = 400) -> list[str]:
    import random

    rnd = random.Random(0)
    out = []
    for _ in range(n):
        k = rnd.randint(2, 9)
        s = " ".join(rnd.choice(_WORDS) for _ in range(k))
        out.append(f"This is a sound of {s}." if rnd.random() < 0.5 else s.capitalize())
    return out


def build_tiny_checkpoint(
    dest: Path, seed: int = 0, full_size: bool = False, fusion: bool = False
) -> Path:
    """Save a tiny random ClapModel + RobertaTokenizerFast + ClapFeatureExtractor to ``dest``.

    ``full_size=True`` uses the default ClapConfig instead (same shapes and cost as
    laion/clap-htsat-unfused, random weights) for measurements; the tokenizer stays small.
    ``fusion=True`` adds the fusion branch (4 mel views + is_longer, like clap-htsat-fused).
    """
    import torch
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import (
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
        RobertaTokenizerFast,
    )

    dest.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        _sentences(),
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    bpe.post_processor = processors.RobertaProcessing(
        ("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>"))
    )
    tok = RobertaTokenizerFast(tokenizer_object=bpe, model_max_length=512 if full_size else 64)
    tok.save_pretrained(dest)

    text = ClapTextConfig(
        vocab_size=tok.vocab_size if len(tok) <= tok.vocab_size else len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=66,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        projection_dim=32,
    )
    audio = tiny_audio_config(depths=[1, 1, 1, 1], enable_fusion=fusion)
    cfg = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=32)
    if full_size:
        cfg = ClapConfig()
    torch.manual_seed(seed)
    model = db_range_batchnorm(ClapModel(cfg).eval())
    model.save_pretrained(dest)
    # ClapFeatureExtractor() defaults to "fusion"; clap-htsat-unfused uses rand_trunc
    ClapFeatureExtractor(truncation="fusion" if fusion else "rand_trunc").save_pretrained(dest)
    return dest


def tiny_audio_config(depths: list[int], **kw):
    """A small HTSAT (width 16) with the real input interface ([B, 1, 1001, 64])."""
    from transformers import ClapAudioConfig

    return ClapAudioConfig(patch_embeds_hidden_size=16, hidden_size=128, depths=depths,
                           num_attention_heads=[1, 2, 4, 4], projection_dim=32, **kw)


def db_range_batchnorm(model):
    """Random BatchNorm statistics near real log-mel ranges (dB), so that random models
    see unsaturated inputs, as trained ones do. Returns ``model``."""
    import torch

    bn = model.audio_model.audio_encoder.batch_norm
    with torch.no_grad():
        bn.running_mean.uniform_(-60.0, -30.0)
        bn.running_var.uniform_(100.0, 400.0)
    return model


def build_shifted_clap(seed: int = 0):
    """A tiny random ClapModel whose HTSAT has shifted-window blocks (depths 2-2-2-2:
    one shifted block in each of stages 0-2; stage 3 is a single 8x8 window), with
    BatchNorm statistics in the dB range. In memory only (no tokenizer needed)."""
    import torch
    from transformers import ClapConfig, ClapModel, ClapTextConfig

    text = ClapTextConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=40, projection_dim=32,
    )
    audio = tiny_audio_config(depths=[2, 2, 2, 2])
    cfg = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=32)
    torch.manual_seed(seed)
    return db_range_batchnorm(ClapModel(cfg).eval())


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a saved tiny random CLAP checkpoint directory."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt") / "ckpt")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the model directory our exporter made from ``tiny_checkpoint`` (fp32 + int8)."""
    from listener.export.exporter import export_model

    out = tmp_path_factory.mktemp("tiny_export") / "model"
    export_model(str(tiny_checkpoint), out, quantize=True, log=lambda _msg: None)
    return out
