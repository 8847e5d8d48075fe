"""onnxruntime sessions as the daemon needs them, for both towers.

Tuned for a device that runs one 10-s window every hop and sleeps in between:
intra-op threads = physical cores (or as configured), one inter-op thread, and NO
thread spinning, so the CPU is idle between windows instead of busy-waiting for
the next one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from listener.errors import ModelError
from listener.model.modeldir import HOW_TO_GET

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
    # listener/export/optimize.py, such as pulled public ones) are very slow on x86
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
    # no arena: per-window activations go back to the allocator (with the daemon's
    # mallopt settings, to the OS) instead of staying reserved between windows, which
    # lowers the daemon's peak RSS without a measurable latency cost
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
