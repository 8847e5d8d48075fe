"""A prompt's embedding never depends on the prompts embedded with it.

The PromptBank stores whatever a cache miss computed, so if the text tower's output
for a prompt depended on its batch, the cached vector (and every score against it)
would depend on which prompts happened to miss the cache together. Checked bit for
bit (``np.array_equal``) on the committed hearing model, for the tower, the cache
and ``listener embed``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from listener.model.modeldir import ModelDir
from listener.model.prompt_bank import PromptBank
from listener.model.text_tower import TextTower
from tests.helpers import run_cli

# different token counts, so a batch of them needs padding
PROMPTS = ["a siren", "an alarm beeping", "a dog"]
OTHERS = ["a very loud siren wailing in the street outside at night", "rain", *PROMPTS]


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_text_tower_prompt_alone_equals_prompt_in_a_batch(hearing_model_dir, precision):
    tower = TextTower(ModelDir(hearing_model_dir), precision, threads=1)
    together = tower.embed(OTHERS)
    for i, prompt in enumerate(OTHERS):
        alone = tower.embed([prompt])
        assert alone.shape == (1, together.shape[1])
        assert np.array_equal(alone[0], together[i]), f"{precision} {prompt!r}"
    reordered = tower.embed(list(reversed(OTHERS)))
    assert np.array_equal(reordered, together[::-1])


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_cached_vector_does_not_depend_on_which_prompts_missed_together(
    hearing_model_dir, tmp_path, precision
):
    model = ModelDir(hearing_model_dir)
    alone_bank = PromptBank(model, tmp_path / "alone", precision, threads=1)
    alone = np.concatenate([alone_bank.embed([p]) for p in PROMPTS])
    together_bank = PromptBank(model, tmp_path / "together", precision, threads=1)
    together = together_bank.embed(PROMPTS)
    assert alone_bank.misses == together_bank.misses == len(PROMPTS)
    assert np.array_equal(alone, together)
    stored = [json.loads(b.cache_path.read_text())["prompts"] for b in (alone_bank, together_bank)]
    assert stored[0] == stored[1]
    # and what a warm start reads back is what the miss returned
    warm = PromptBank(model, tmp_path / "together", precision, threads=1)
    assert np.array_equal(warm.embed(PROMPTS), together) and warm.misses == 0


def _embed_cli(model: Path, *texts: str) -> list[dict]:
    res = run_cli("embed", "--model", model, "--precision", "int8", "--text", *texts,
                  timeout=120)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_embed_cli_prints_the_same_vectors_batched_or_one_per_call(hearing_model_dir):
    together = _embed_cli(hearing_model_dir, *PROMPTS)
    one_per_call = [obj for p in PROMPTS for obj in _embed_cli(hearing_model_dir, p)]
    assert [o["input"] for o in together] == PROMPTS
    assert together == one_per_call
