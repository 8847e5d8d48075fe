"""Prompts missing from the cache are embedded in a child process (issue 18).

The caller's process must never load the text tower (that is what kept a cold daemon's
peak memory 3x its warm one), the vectors must be bit-identical to an in-process
embedding (the cache stores them for good), and a problem in the child must come back
as the same clear error, not a traceback or a hang.
"""

from __future__ import annotations

import numpy as np
import pytest

from listener.errors import ModelError
from listener.model.modeldir import ModelDir
from listener.model.prompt_bank import PromptBank
from listener.model.stack import ModelStack
from listener.model.text_tower import TextTower
from tests.helpers import copy_dir
from tests.test_model_runtime import _SessionCounter

PROMPTS = ["a dog barking", "smoke alarm beeping in the kitchen", "rain"]


def test_a_cache_miss_is_embedded_in_a_child_bit_for_bit(tiny_model_dir, tmp_path, monkeypatch):
    ref = TextTower(ModelDir(tiny_model_dir), "int8", threads=1).embed(PROMPTS)
    counter = _SessionCounter(monkeypatch)
    bank = PromptBank(ModelDir(tiny_model_dir), tmp_path / "cache", "int8", threads=1,
                      isolate=True)
    got = bank.embed(PROMPTS)
    assert counter.count == 0  # no text session in this process
    assert bank.misses == len(PROMPTS)
    np.testing.assert_array_equal(got, ref)
    # the cache holds them: a warm bank answers without a child or a session
    warm = PromptBank(ModelDir(tiny_model_dir), tmp_path / "cache", "int8", isolate=True)
    np.testing.assert_array_equal(warm.embed(PROMPTS[::-1]), ref[::-1])
    assert warm.misses == 0 and counter.count == 0


def test_the_model_stack_never_loads_the_text_tower(tiny_model_dir, tmp_path, monkeypatch):
    stack = ModelStack(tiny_model_dir, "int8", "cpu", 1, tmp_path / "cache")
    counter = _SessionCounter(monkeypatch)
    vecs = stack.embed_texts(PROMPTS)
    assert vecs.shape[0] == len(PROMPTS) and counter.count == 0


def test_a_broken_text_model_in_the_child_is_a_clear_error(tiny_model_dir, tmp_path):
    d = copy_dir(tiny_model_dir, tmp_path / "m")
    (d / "tokenizer.json").write_text("{not json")
    bank = PromptBank(ModelDir(d), tmp_path / "cache", "int8", isolate=True)
    with pytest.raises(ModelError, match=r"tokenizer\.json is not a valid tokenizer"):
        bank.embed(PROMPTS)
    assert not bank.cache_path.exists()


def test_the_most_accurate_text_tower_that_fits_in_memory_is_chosen(tiny_model_dir):
    model = ModelDir(tiny_model_dir)
    fp32 = model.text_model_path("fp32").stat().st_size
    int8 = model.text_model_path("int8").stat().st_size
    assert model.best_text_precision() == "fp32"
    assert model.best_text_precision(memory=10 * fp32) == "fp32"
    assert model.best_text_precision(memory=int(1.5 * int8)) == "int8"  # fp32 would not fit
    assert model.best_text_precision(memory=1) == "int8"  # nothing fits: the smallest
