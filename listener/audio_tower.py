"""The CLAP audio tower as an onnxruntime session.

One session per process, made once. It is tuned for a device that runs one
10-s window every hop and sleeps in between: intra-op threads = physical cores
(or as configured), one inter-op thread, and NO thread spinning, so the CPU is
idle between windows instead of busy-waiting for the next one. Also home of
:func:`make_session`, shared with the text tower.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from listener.errors import ModelError
from listener.modeldir import HOW_TO_GET, ModelDir

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def physical_cores() -> int:
    """Physical cores usable by this process (hyper-threads do not help matmul-bound work)."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            pkg = (topo / "physical_package_id").read_text().strip()
            core = (topo / "core_id").read_text().strip()
        except OSError:
            return max(1, len(allowed))
        cores.add((pkg, core))
    return max(1, len(cores) or len(allowed))


def make_session(path: Path, provider: str = "cpu", threads: int = 0) -> Any:
    """An onnxruntime InferenceSession for ``path``; ModelError naming the path if it is bad."""
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise ModelError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads if threads > 0 else physical_cores()
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # denormal floats (e.g. HTSAT's masked softmax in exports not rewritten by
    # listener/export/optimize.py, such as pulled public ones) cost x86 2x per window
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
    # no arena: per-window activations go back to the allocator (with the daemon's
    # mallopt settings, to the OS) instead of staying reserved (daemon peak RSS -50 MB
    # together, measured by benchmarks/bench_daemon.py; no measurable latency cost)
    so.enable_cpu_mem_arena = False
    so.log_severity_level = 3
    available = set(ort.get_available_providers())
    wanted = [p for p in PROVIDERS[provider] if p in available]
    if PROVIDERS[provider][0] not in available:
        log.warning(
            "onnxruntime provider %s is not available (have: %s); falling back to CPU",
            PROVIDERS[provider][0],
            ", ".join(sorted(available)),
        )
    try:
        sess = ort.InferenceSession(str(path), so, providers=wanted or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"model file {path} cannot be loaded by onnxruntime: it is damaged, truncated or "
            f"not an ONNX model ({first[:300]}); {HOW_TO_GET}"
        ) from None
    wanted_first = PROVIDERS[provider][0]
    if wanted_first in available and sess.get_providers()[0] != wanted_first:
        log.warning("provider %s could not be initialised; running on CPU", provider)
    return sess


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32, copy=False)


class AudioTower:
    """features [B, C, 1001, 64] float32 -> L2-normalised embeddings [B, D] float32."""

    model_id: str
    dim: int

    def __init__(
        self, model: ModelDir, precision: str = "int8", provider: str = "cpu", threads: int = 0
    ) -> None:
        self.model_id = model.model_id
        self.precision = precision
        self.path = model.audio_model_path(precision)
        self.session = make_session(self.path, provider, threads)
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
        # time over the whole batch: batched windows would change each other's embeddings
        # (measured: up to 5e-3 per component on the tiny model). One window per run keeps
        # a window's embedding independent of its neighbours.
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
        return self.session.run([self.output], feeds)[0]

    def embed(self, features: np.ndarray) -> np.ndarray:
        x = self._check(features)
        if self.one_per_run and x.shape[0] > 1:
            out = np.concatenate([self._run(x[i : i + 1]) for i in range(x.shape[0])])
        else:
            out = self._run(x)
        return l2_normalise(out)

    def close(self) -> None:
        """Release the session (and its memory)."""
        self.session = None
