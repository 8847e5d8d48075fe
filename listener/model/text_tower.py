"""The CLAP text tower (onnxruntime) and its byte-level BPE tokenizer (`tokenizers`).

Only used when a prompt is not in the PromptBank cache, so it favours being
correct over being fast: every prompt runs alone, in its own session call, so its
embedding never depends on which other prompts are embedded with it (the cache
stores whatever a miss computed, so anything else would make the cached vector
depend on which prompts happened to miss together).

Batching cannot give that guarantee at any precision. int8 exports quantise
activations dynamically, with one scale per tensor over the whole batch (padding
included), so a prompt's embedding moves with its neighbours. fp32 with padding
and an attention mask is not bit-exact either: on tests/assets/hearing_model some
prompts of a padded batch differ from the same prompts alone in the last bits
(about 3e-8 per component), because kernels round differently for other shapes.
One prompt per call also needs no padding, so exports without an
``attention_mask`` input (the public Xenova one) run exactly like the others.
tests/test_prompt_independence.py checks all of this bit for bit.
"""

from __future__ import annotations

import numpy as np

from listener.errors import ModelError
from listener.model.modeldir import HOW_TO_GET, ModelDir
from listener.model.session import l2_normalise, make_session


def load_tokenizer(model: ModelDir, max_length: int | None = None):
    """tokenizers.Tokenizer from tokenizer.json, truncating (special tokens included)."""
    from tokenizers import Tokenizer

    path = model.tokenizer_path
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
        raise ModelError(
            f"model file {path} is not a valid tokenizer ({exc}); {HOW_TO_GET}"
        ) from None
    tok.no_padding()
    tok.enable_truncation(max_length=max_length or model.max_text_length)
    return tok


class TextTower:
    """texts -> L2-normalised embeddings [N, D], one prompt per session call."""

    def __init__(
        self, model: ModelDir, precision: str = "int8", provider: str = "cpu", threads: int = 0
    ) -> None:
        self.path = model.text_model_path(precision)
        self.session = make_session(self.path, provider, threads)
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        if "input_ids" not in self.inputs:
            raise ModelError(
                f"model file {self.path} is not a CLAP text tower (inputs: "
                f"{', '.join(self.inputs)}; expected input_ids)"
            )
        max_len = model.max_text_length
        seq = self.inputs["input_ids"].shape
        if len(seq) == 2 and isinstance(seq[1], int):
            max_len = min(max_len, seq[1])
        self.tokenizer = load_tokenizer(model, max_len)
        self.has_mask = "attention_mask" in self.inputs
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = "text_embeds" if "text_embeds" in outputs else outputs[0]

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def _run_one(self, ids: list[int]) -> np.ndarray:
        """Unnormalised embedding [1, D] of one tokenised prompt (no padding, so no mask)."""
        arr = np.asarray([ids], dtype=np.int64)
        feeds = {"input_ids": arr}
        if self.has_mask:
            feeds["attention_mask"] = np.ones_like(arr)
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = np.zeros_like(arr)
        return self.session.run([self.output], feeds)[0]

    def embed(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.zeros((0, 0), np.float32)
        return np.concatenate([l2_normalise(self._run_one(ids)) for ids in self.tokenize(texts)])

    def close(self) -> None:
        self.session = None
