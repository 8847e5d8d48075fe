"""The model stack: everything a process loads once and every stream shares.

:class:`ModelStack` opens the model directory, builds the log-mel front end, makes the
one audio tower session and the prompt bank, and caches example embeddings. It is
made before anything else, so the model id is known when sinks are made, and it
checks the files it loads against the model's manifest first, so a damaged or swapped
tower is refused by name instead of scoring nonsense.
:class:`WindowEmbedder` is the per-stream part: a streaming log-mel (which keeps the
frames of the previous window) in front of the shared tower.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import numpy as np

from listener.audio.decode import check_example_length, load_audio
from listener.model.audio_tower import AudioTower
from listener.model.logmel import LogMel
from listener.model.modeldir import ModelDir
from listener.model.prompt_bank import PromptBank
from listener.model.streaming_logmel import StreamingLogMel

#: how to get past an ONNX file whose sha256 differs from its manifest (the config key
#: is the way out for a file replaced on purpose)
FIX_MODEL = (
    "re-pull the model (`listener model pull`) or re-export it (`listener model export "
    "--checkpoint DIR_OR_ID --out DIR`), or set 'check_hashes: false' under 'model:' in "
    "the config to start with this file anyway"
)


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class ModelStack:
    """ModelDir + LogMel + AudioTower + PromptBank, loaded once per process.

    ``hash_memo`` is the file that remembers model file hashes between runs (None: this
    process only); ``check_hashes`` compares the sha256 of the ONNX files with the
    manifest (sizes are compared always).
    """

    def __init__(self, model_dir: Path, precision: str, provider: str, threads: int,
                 prompt_cache: Path, hash_memo: Path | None = None,
                 check_hashes: bool = True) -> None:
        self.model = ModelDir(model_dir, hash_memo)
        #: prompts are embedded with the most accurate text tower present that the
        #: machine's free memory can hold, whatever the audio precision (once per prompt,
        #: in a child process)
        self.text_precision = self.model.best_text_precision(precision, available_memory())
        self.model.verify_files(self.model.runtime_files(precision, self.text_precision),
                                check_hashes, FIX_MODEL)
        self.model_id = self.model.model_id
        self.logmel = LogMel.from_config(self.model.preprocessor_config)
        self.tower = AudioTower(self.model, precision, provider, threads)
        # a cache miss embeds in a child process: the text tower never enters this one
        self.bank = PromptBank(self.model, prompt_cache, self.text_precision, provider,
                               threads, isolate=True)
        self._examples: dict[tuple[str, int, int], np.ndarray] = {}

    def embed_texts(self, prompts: list[str]) -> np.ndarray:
        """Prompt embeddings [N, D] (text tower only on a cache miss)."""
        return self.bank.embed(prompts)

    def embed_example(self, path: Path) -> np.ndarray:
        """Audio tower embedding of an example file, computed once per file version."""
        try:
            st = path.stat()
            key = (str(path), st.st_mtime_ns, st.st_size)
        except OSError:
            key = (str(path), 0, 0)
        if key not in self._examples:
            audio = load_audio(path)
            check_example_length(audio, self.logmel.sample_rate, f"example file {path}")
            feats = self.logmel(audio)
            self._examples[key] = np.asarray(self.tower.embed(feats[None])[0], np.float32)
        return self._examples[key]

    def window_embedder(self) -> WindowEmbedder:
        """A new per-stream embedder sharing this stack's tower."""
        return WindowEmbedder(self.logmel, self.tower)


class WindowEmbedder:
    """One stream's windows -> embeddings: streaming log-mel + the shared audio tower."""

    def __init__(self, logmel: LogMel, tower: AudioTower) -> None:
        self.logmel = logmel
        self.streaming = StreamingLogMel(logmel)
        self.tower = tower
        #: the last few tower calls (features + session), for stats
        self.infer_ms: deque[float] = deque(maxlen=20)
        self._features_ms = 0.0

    def embed(self, audio: np.ndarray, end_sample: int) -> np.ndarray:
        """L2-normalised embedding [D] of the window ending at absolute ``end_sample``."""
        return self.embed_features(self.features(audio, end_sample))

    def features(self, audio: np.ndarray, end_sample: int) -> np.ndarray:
        """Log-mel [C, n_frames, n_mels] of the window (only the new frames computed);
        the novelty gate reads them before deciding whether the tower runs."""
        t0 = time.perf_counter()
        if audio.size == self.logmel.n_samples:
            feats = self.streaming.features(audio, end_sample)
        else:
            feats = self.logmel(audio)
        self._features_ms = (time.perf_counter() - t0) * 1000.0
        return feats

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """The tower on :meth:`features`' output: L2-normalised embedding [D]."""
        t0 = time.perf_counter()
        emb = self.tower.embed(features[None])[0]
        self.infer_ms.append((time.perf_counter() - t0) * 1000.0 + self._features_ms)
        return emb

    def embed_clip(self, audio: np.ndarray) -> np.ndarray:
        """L2-normalised embedding [D] of a short clip (a window's tail), padded the way
        the model pads short input (``LogMel.prepare``: ``repeatpad`` for unfused CLAP).
        Not counted in ``infer_ms``, which is the per-window cost."""
        return self.tower.embed(self.logmel.clip_features(audio)[None])[0]

    def mean_ms(self) -> float:
        return float(np.mean(self.infer_ms)) if self.infer_ms else 0.0
