"""The CLAP text tower (onnxruntime) and its byte-level BPE tokenizer (`tokenizers`).

Only used when a prompt is not in the PromptBank cache, so it favours being
correct over being fast: prompts are padded to the longest with the model's pad
id and masked; exports without an ``attention_mask`` input (the public Xenova
one) would let padding change the embedding, so there prompts run one at a time.
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
    """texts -> L2-normalised embeddings [N, D]. Without attention_mask input (or int8,
    see ``batched``): one at a time."""

    def __init__(
        self, model: ModelDir, precision: str = "int8", provider: str = "cpu", threads: int = 0
    ) -> None:
        self.model_id = model.model_id
        self.path = model.text_model_path(precision)
        self.pad_id = model.pad_token_id
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
        # Batches only when padding is masked and the result cannot depend on the batch:
        # dynamic int8 computes one activation scale per tensor over all prompts (and their
        # padding), so an int8 prompt embedding would depend on the other prompts.
        self.batched = self.has_mask and precision != "int8"
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = "text_embeds" if "text_embeds" in outputs else outputs[0]

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(i) for i in ids)
        arr = np.full((len(ids), width), self.pad_id, np.int64)
        mask = np.zeros((len(ids), width), np.int64)
        for r, row in enumerate(ids):
            arr[r, : len(row)] = row
            mask[r, : len(row)] = 1
        feeds = {"input_ids": arr}
        if self.has_mask:
            feeds["attention_mask"] = mask
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = np.zeros_like(arr)
        return self.session.run([self.output], feeds)[0]

    def embed(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.zeros((0, 0), np.float32)
        ids = self.tokenize(texts)
        out = self._run(ids) if self.has_mask else np.concatenate([self._run([row]) for row in ids])
        return l2_normalise(out)

    def close(self) -> None:
        self.session = None
