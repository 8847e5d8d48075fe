"""How fast this device runs the listener's per-window work, measured on the device.

A user on a Raspberry Pi or Jetson needs three answers before choosing a hop:
how long one 10-s window takes (features + audio tower), how short a hop the
device sustains with headroom left for everything else, and how much memory it
costs. This module measures exactly the daemon's per-window path (streaming
log-mel of the new hop + the audio tower session the daemon would make) and
reports which execution provider and which CPU instruction set did the work, so
numbers from different devices can be compared.

Timings are medians over ``runs`` windows (wall clock, plus process CPU time:
on a shared machine wall time includes waiting for the CPU, CPU time does not).
"""

from __future__ import annotations

import math
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: A hop is sustainable when one window's work fits in this share of it.
HEADROOM = 0.5

#: CPU flags that decide how fast int8/fp32 matmuls run, best first per family.
_X86_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx512f", "avx2", "fma", "sse4_1")
_ARM_FLAGS = ("i8mm", "asimddp", "sve", "asimd", "neon")


def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """Architecture, CPU model, relevant SIMD flags and the int8 path they allow."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    names: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features"):
            flags.update(value.split())
        elif key in ("model name", "hardware", "model") and key not in names:
            names[key] = value.strip()
    # x86 has "model name" (and a numeric "model"); a Raspberry Pi has "Model" / "Hardware"
    model = names.get("model name") or names.get("model") or names.get("hardware") or ""
    machine = platform.machine().lower()
    arm = machine.startswith(("arm", "aarch64")) or bool(flags & {"asimd", "neon"})
    wanted = _ARM_FLAGS if arm else _X86_FLAGS
    present = [f for f in wanted if f in flags]
    if arm:
        int8 = (
            "i8mm (int8 matrix multiply)" if "i8mm" in flags
            else "dotprod (sdot/udot)" if "asimddp" in flags
            else "NEON without dot product (slow int8)" if present
            else "unknown"
        )
    else:
        int8 = (
            "AVX-512 VNNI" if "avx512_vnni" in flags
            else "AVX-VNNI" if "avx_vnni" in flags
            else "AVX2 without VNNI (U8S8 may saturate; slower int8)" if "avx2" in flags
            else "SSE only (slow int8)" if present
            else "unknown"
        )
    return {
        "machine": machine,
        "cpu": model,
        "isa": present,
        "int8_path": int8,
        "logical_cpus": len(_affinity()),
    }


def _affinity() -> set[int]:
    try:
        import os

        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return {0}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far.

    Linux: VmHWM of /proc/self/status, the high-water mark of this program's own memory.
    Not ru_maxrss: Linux carries that across fork + exec, so a `listener bench` started
    by a large parent (a benchmark script that exported a model first) would report the
    parent's peak. Elsewhere ru_maxrss (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def shortest_hop(window_s: float, headroom: float = HEADROOM, step: float = 0.1) -> float:
    """Shortest hop (multiple of ``step``) whose share spent on one window is <= headroom."""
    return max(step, math.ceil(window_s / headroom / step - 1e-9) * step)


def _median_ms(xs: list[float]) -> float:
    return round(1000 * statistics.median(xs), 2)


def _p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.9 * len(s)))]


def _p90_ms(xs: list[float]) -> float:
    return round(1000 * _p90(xs), 2)


def _time_windows(logmel: Any, tower: Any, runs: int, hop: int) -> dict[str, list[float]]:
    """Seconds per window (after 3 warm-up windows) of the daemon's path on generated audio:
    ``hop_features`` (streaming log-mel of the new hop), ``tower``, ``window`` (both) and
    ``window_cpu`` (process CPU time of both), plus ``full_features`` (a full extraction)."""
    from listener.model.streaming_logmel import StreamingLogMel

    n = logmel.n_samples
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(n + (runs + 3) * hop)).astype(np.float32)
    stream = StreamingLogMel(logmel)
    times: dict[str, list[float]] = {
        k: [] for k in ("full_features", "hop_features", "tower", "window", "window_cpu")
    }
    for i in range(runs + 3):
        end = n + i * hop
        window = audio[end - n : end]
        c0 = time.process_time()
        t1 = time.perf_counter()
        feats = stream.features(window, end)
        t2 = time.perf_counter()
        tower.embed(feats)
        t3 = time.perf_counter()
        cpu = time.process_time() - c0
        t4 = time.perf_counter()
        logmel(window)
        t5 = time.perf_counter()
        if i < 3:
            continue  # warm-up (the first window computes every frame)
        times["hop_features"].append(t2 - t1)
        times["tower"].append(t3 - t2)
        times["window"].append(t3 - t1)
        times["window_cpu"].append(cpu)
        times["full_features"].append(t5 - t4)
    return times


def _timings(t: dict[str, list[float]], hop_s: float) -> dict[str, Any]:
    """The report's timing fields from :func:`_time_windows`' seconds (``hop_s``: the hop)."""
    window_p90 = _p90(t["window"])
    # means add up (a window is its features plus its tower run); medians need not
    features_mean = round(1000 * statistics.fmean(t["hop_features"]), 2)
    tower_mean = round(1000 * statistics.fmean(t["tower"]), 2)
    return {
        "features_hop_mean_ms": features_mean,
        "tower_mean_ms": tower_mean,
        "window_mean_ms": round(features_mean + tower_mean, 2),
        "features_full_ms": _median_ms(t["full_features"]),
        "features_hop_ms": _median_ms(t["hop_features"]),
        "tower_ms": _median_ms(t["tower"]),
        "tower_p90_ms": _p90_ms(t["tower"]),
        "window_ms": _median_ms(t["window"]),
        "window_p90_ms": _p90_ms(t["window"]),
        "window_cpu_ms": _median_ms(t["window_cpu"]),
        "cpu_s_per_audio_s": round(statistics.median(t["window_cpu"]) / hop_s, 4),
        "headroom": HEADROOM,
        "shortest_hop_s": round(shortest_hop(window_p90), 1),
        "max_windows_per_s": round(1.0 / statistics.median(t["window"]), 1),
    }


def run_bench(
    model_dir: str | Path,
    precision: str = "int8",
    provider: str = "cpu",
    threads: int = 0,
    runs: int = 20,
    hop_s: float = 1.0,
) -> dict[str, Any]:
    """Measure the daemon's per-window path on generated audio; a JSON-able dict."""
    import onnxruntime as ort

    from listener.model.audio_tower import AudioTower
    from listener.model.logmel import LogMel
    from listener.model.modeldir import ModelDir
    from listener.model.session import physical_cores

    rss_before = peak_rss_mb()  # interpreter + imports, before the model
    t0 = time.perf_counter()
    model = ModelDir(model_dir)
    logmel = LogMel.from_config(
        model.preprocessor_config, str(model.path / "preprocessor_config.json")
    )
    tower = AudioTower(model, precision, provider=provider, threads=threads)
    load_s = time.perf_counter() - t0

    sr, step = logmel.sample_rate, int(logmel.hop_length)
    hop = max(step, round(hop_s * sr / step) * step)
    t = _time_windows(logmel, tower, runs, hop)
    result: dict[str, Any] = {
        "model": str(model.path),
        "audio_model_file": str(tower.path),
        "precision": precision,
        "provider_requested": provider,
        "provider": tower.session.get_providers()[0],
        "onnxruntime": ort.__version__,
        "threads": threads if threads > 0 else physical_cores(),
        "runs": len(t["window"]),
        "hop_s": round(hop / sr, 3),
        "load_s": round(load_s, 3),
        **_timings(t, hop / sr),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_before_model_mb": round(rss_before, 1),
        "python": platform.python_version(),
        **cpu_info(),
    }
    tower.close()
    return result


def format_bench(r: dict[str, Any]) -> str:
    isa = ", ".join(r["isa"]) or "none detected"
    return "\n".join(
        [
            f"model      {r['model']} ({r['precision']}: {Path(r['audio_model_file']).name})",
            f"runtime    onnxruntime {r['onnxruntime']}, {r['provider']}, {r['threads']} "
            f"thread(s); model load {r['load_s']:.2f} s",
            f"cpu        {r['machine']} {r['cpu']} ({r['logical_cpus']} cpus); isa {isa}; "
            f"int8 path: {r['int8_path']}",
            f"per window (mean of {r['runs']}) log-mel of a {r['hop_s']:g}-s hop "
            f"{r['features_hop_mean_ms']:.2f} ms + audio tower {r['tower_mean_ms']:.2f} ms "
            f"= {r['features_hop_mean_ms'] + r['tower_mean_ms']:.2f} ms",
            f"           whole window: median {r['window_ms']:.1f} ms, p90 "
            f"{r['window_p90_ms']:.1f} ms, CPU time {r['window_cpu_ms']:.1f} ms (median); "
            f"a full 10-s log-mel (not on the daemon's path) {r['features_full_ms']:.1f} ms",
            f"hop        shortest sustainable hop {r['shortest_hop_s']:.1f} s "
            f"(one window <= {r['headroom']:.0%} of the hop, p90); at {r['hop_s']:g} s: "
            f"{r['cpu_s_per_audio_s']:.3f} CPU-s per audio second",
            f"memory     peak RSS {r['peak_rss_mb']:.0f} MB "
            f"(interpreter + imports before the model: {r['peak_rss_before_model_mb']:.0f} MB)",
        ]
    )
