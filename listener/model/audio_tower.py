"""The CLAP audio tower: log-mel features of a window -> one L2-normalised embedding.

One session per process, made once and shared by every stream (see
:mod:`listener.model.session` for how it is tuned). int8 models run one window per
session call: see ``one_per_run``.

Several streams (listener/service/streams.py) share the session through
:meth:`AudioTower.use_workers`: their windows are run by a few worker threads, as many
as the cores hold (physical cores / intra-op threads), taken first come, first served
(so no stream starves). Not by each stream's own thread: onnxruntime's int8 kernels keep
per-calling-thread buffers, and every concurrent run its own activations, so memory
would grow with the number of streams while the cores are already busy
(benchmarks/README.md, "Many streams, one model").
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from listener.errors import ModelError
from listener.model.modeldir import ModelDir
from listener.model.session import l2_normalise, make_session, physical_cores


class AudioTower:
    """features [B, C, 1001, 64] float32 -> L2-normalised embeddings [B, D] float32."""

    dim: int

    def __init__(
        self, model: ModelDir, precision: str = "int8", provider: str = "cpu", threads: int = 0
    ) -> None:
        self.path = model.audio_model_path(precision)
        self.session = make_session(self.path, provider, threads)
        intra = threads if threads > 0 else physical_cores()
        #: tower runs the cores hold at once (several streams): one per ``intra`` cores
        self.slots = max(1, physical_cores() // intra)
        self._workers: ThreadPoolExecutor | None = None
        inputs = {i.name: i for i in self.session.get_inputs()}
        if "input_features" not in inputs:
            raise ModelError(
                f"model file {self.path} is not a CLAP audio tower (inputs: "
                f"{', '.join(inputs)}; expected input_features)"
            )
        shape = inputs["input_features"].shape
        if len(shape) != 4:
            raise ModelError(f"model file {self.path}: input_features has rank {len(shape)}, not 4")
        #: fixed dims after the batch axis (None where the model leaves them open)
        self.input_shape: tuple[int | None, ...] = tuple(
            d if isinstance(d, int) else None for d in shape[1:]
        )
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        # Dynamic int8 quantises activations with ONE scale per tensor, computed at run
        # time over the whole batch: batched windows would change each other's embeddings.
        # One window per run keeps a window's embedding independent of its neighbours.
        self.one_per_run = self.fixed_batch == 1 or precision == "int8"
        # fp16 exports may take float16 features
        self.input_dtype = np.float16 if "float16" in inputs["input_features"].type else np.float32
        self.is_longer = inputs.get("is_longer")
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = "audio_embeds" if "audio_embeds" in outputs else outputs[0]
        out_shape = self.session.get_outputs()[outputs.index(self.output)].shape
        self.dim = out_shape[-1] if isinstance(out_shape[-1], int) else int(model.embedding_dim)

    @property
    def channels(self) -> int:
        """Feature channels the model takes: 1 (rand_trunc) or 4 (fusion)."""
        return self.input_shape[0] or 1

    def _check(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features)
        if x.ndim == 3:
            x = x[None]
        want = "[B, " + ", ".join(str(d) if d else "?" for d in self.input_shape) + "]"
        if x.ndim != 4 or any(
            w is not None and g != w for g, w in zip(x.shape[1:], self.input_shape, strict=True)
        ):
            raise ModelError(
                f"features of shape {list(x.shape)} do not fit the audio model {self.path}, "
                f"which takes input_features {want} (log-mel from preprocessor_config.json of "
                "the same model directory)"
            )
        if x.shape[0] == 0:
            raise ModelError(f"empty batch of features for {self.path}")
        return np.ascontiguousarray(x, dtype=self.input_dtype)

    def _run(self, x: np.ndarray) -> np.ndarray:
        feeds: dict[str, np.ndarray] = {"input_features": x}
        if self.is_longer is not None:
            # fusion exports: True makes the model use the 4 views (what the extractor does
            # for clips of 10 s or less, which is every window we feed)
            dtype = np.bool_ if "bool" in self.is_longer.type else np.int64
            feeds["is_longer"] = np.ones((x.shape[0], 1), dtype=dtype)
        if self._workers is not None:
            return self._workers.submit(self.session.run, [self.output], feeds).result()[0]
        return self.session.run([self.output], feeds)[0]

    def use_workers(self) -> None:
        """From now on run on :attr:`slots` worker threads (several streams' callers)."""
        if self._workers is None:
            self._workers = ThreadPoolExecutor(self.slots, thread_name_prefix="listener-tower")

    def embed(self, features: np.ndarray) -> np.ndarray:
        x = self._check(features)
        if self.one_per_run and x.shape[0] > 1:
            out = np.concatenate([self._run(x[i : i + 1]) for i in range(x.shape[0])])
        else:
            out = self._run(x)
        return l2_normalise(out)

    def close(self) -> None:
        """Release the session (and its memory)."""
        if self._workers is not None:
            self._workers.shutdown(wait=True)
            self._workers = None
        self.session = None
