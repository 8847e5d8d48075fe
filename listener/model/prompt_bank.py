"""PromptBank: prompt embeddings made once by the text tower, cached on disk.

The text tower is 4x the audio tower in size; a daemon that only needs a few
fixed prompt vectors should never keep it in memory. The cache is one JSON file
per text model (named by the sha256 of the text model file), mapping the exact
prompt text to its embedding; a miss loads the tower, embeds the missing
prompts, writes the file atomically (private: 0600, whatever the umask) and
releases the session. The sha256 of the (large) text model file comes
from the model directory's hash memo (by path, size and mtime; one file for every
model file, see :class:`listener.model.modeldir.HashMemo`), so a warm start reads two
small files and nothing else. With ``isolate`` (what every command's model stack
uses) a miss runs the text tower in a short-lived child process
(:mod:`listener.model.prompt_child`), so the caller's peak memory stays that of a
warm start.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from listener.errors import ModelError
from listener.files import atomic_write
from listener.model.modeldir import ModelDir
from listener.model.prompt_child import embed_in_child
from listener.model.text_tower import TextTower

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 2: one prompt per text-tower run (format 1 vectors depended on the batch)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable prompt cache file %s (%s); it will be rebuilt", path, exc)
        return None
    return data if isinstance(data, dict) else None


class PromptBank:
    """Cache keyed by (text model file sha256, exact prompt text). The text tower is only
    loaded on a cache miss and released right after, so a warm start never runs it."""

    def __init__(
        self,
        model: ModelDir,
        cache_dir: Path,
        precision: str = "int8",
        provider: str = "cpu",
        threads: int = 0,
        isolate: bool = False,
    ) -> None:
        self.model = model
        self.isolate = isolate
        self.cache_dir = Path(cache_dir).expanduser()
        self.precision = precision
        self.provider = provider
        self.threads = threads
        self.text_model_path = model.text_model_path(precision)
        self.model_sha256 = model.file_sha256(self.text_model_path)
        self.cache_path = self.cache_dir / f"prompts-{self.model_sha256}.json"
        self.misses = 0  # prompts embedded by the text tower in this process

    def _load(self) -> dict[str, list[float]]:
        data = _read_json(self.cache_path) or {}
        if data.get("format") != CACHE_FORMAT or data.get("text_model_sha256") != self.model_sha256:
            return {}
        prompts = data.get("prompts")
        return prompts if isinstance(prompts, dict) else {}

    def embed(self, prompts: list[str]) -> np.ndarray:
        """[N, D] L2-normalised, in the order given."""
        prompts = list(prompts)
        cached = self._load()
        missing = list(dict.fromkeys(p for p in prompts if p not in cached))
        if missing:
            cached = self._add(missing)
        if not prompts:
            return np.zeros((0, self.model.embedding_dim), np.float32)
        try:
            out = np.asarray([cached[p] for p in prompts], dtype=np.float32)
        except (KeyError, ValueError) as exc:
            raise ModelError(f"prompt cache {self.cache_path} is inconsistent ({exc})") from None
        return out

    def _add(self, missing: list[str]) -> dict[str, list[float]]:
        """Embed ``missing`` with a text tower made for this call (in a child process
        when ``isolate``), store them, return the cache."""
        if self.isolate:
            vecs = embed_in_child(self.model.path, self.precision, self.provider,
                                  self.threads, missing)
        else:
            tower = TextTower(self.model, self.precision, self.provider, self.threads)
            try:
                vecs = tower.embed(missing)
            finally:
                tower.close()
                del tower
        self.misses += len(missing)
        cached = self._load()  # another process may have added prompts meanwhile
        for text, vec in zip(missing, vecs, strict=True):
            cached[text] = [float(v) for v in vec]
        data = {
            "format": CACHE_FORMAT,
            "text_model_sha256": self.model_sha256,
            "text_model": str(self.text_model_path),
            "prompts": cached,
        }
        try:
            atomic_write(self.cache_path, json.dumps(data), mode=0o600)
        except OSError as exc:
            log.warning("cannot write prompt cache %s (%s)", self.cache_path, exc)
        return cached
