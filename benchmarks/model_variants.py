"""One variant of bench_model.py, measured in its own process (the process does nothing else).

bench_model.py starts this script once per variant and round, so each variant's peak RSS
is its own footprint; the last line of stdout is ``RESULT {json}``: per-window seconds
(features, tower, window, window CPU), load time, the file measured and its size, and
the peak RSS (VmHWM). ``accuracy`` and ``profile`` report their own measurements instead.

    python benchmarks/model_variants.py int8 --model DIR [--threads 2] [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _audio(n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(n) / 48000
    x = 0.1 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 440 * t)
    return x.astype(np.float32)


def _time_loop(runs: int, features, tower) -> dict[str, Any]:
    feat_w, tow_w, tot_w, tot_c = [], [], [], []
    for i in range(runs + 2):
        c0 = time.process_time()
        t0 = time.perf_counter()
        f = features(i)
        t1 = time.perf_counter()
        tower(f)
        t2 = time.perf_counter()
        c = time.process_time() - c0
        if i >= 2:  # warm-up
            feat_w.append(t1 - t0)
            tow_w.append(t2 - t1)
            tot_w.append(t2 - t0)
            tot_c.append(c)
    return {"features_s": feat_w, "tower_s": tow_w, "window_s": tot_w, "window_cpu_s": tot_c}


def child_torch(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    if args.child == "torch-ftz":
        # flush denormals to zero: removes the shifted-window softmax slowdown in PyTorch
        # too, so the speed-up is not credited to that pathology alone
        torch.set_flush_denormal(True)
    t0 = time.perf_counter()
    fe = transformers.ClapFeatureExtractor.from_pretrained(args.checkpoint)
    model = transformers.ClapModel.from_pretrained(args.checkpoint).eval()
    load_s = time.perf_counter() - t0
    clips = [_audio(480000, seed) for seed in range(3)]

    def features(i: int):
        return fe(clips[i % 3], sampling_rate=48000, return_tensors="pt")["input_features"]

    def tower(f) -> None:
        with torch.inference_mode():
            model.get_audio_features(input_features=f)

    res = _time_loop(args.runs, features, tower)
    ckpt = Path(args.checkpoint)
    weights = sum(p.stat().st_size for p in ckpt.glob("*.safetensors")) or sum(
        p.stat().st_size for p in ckpt.glob("*.bin")
    )
    audio_params = sum(p.numel() for p in model.audio_model.parameters()) + sum(
        p.numel() for p in model.audio_projection.parameters()
    )
    return {
        **res,
        "load_s": load_s,
        "file": str(ckpt),
        "file_bytes": weights,
        "audio_fp32_bytes": audio_params * 4,
    }


def child_listener(args: argparse.Namespace) -> dict[str, Any]:
    from listener.model.audio_tower import AudioTower
    from listener.model.logmel import LogMel
    from listener.model.modeldir import ModelDir

    t0 = time.perf_counter()
    model = ModelDir(args.model)
    logmel = LogMel.from_config(
        model.preprocessor_config, str(model.path / "preprocessor_config.json")
    )
    tower = AudioTower(model, args.precision, threads=args.threads)
    load_s = time.perf_counter() - t0
    if args.child == "int8-stream":
        # what the daemon does per window: a 10-s window every 1-s hop of one stream, the
        # log-mel of only the new frames (listener.model.logmel.StreamingLogMel)
        from listener.model.streaming_logmel import StreamingLogMel

        stream = StreamingLogMel(logmel)
        hop, n = logmel.sample_rate, logmel.n_samples
        audio = _audio(n + hop * (args.runs + 3))

        def features(i: int):
            end = n + hop * (i + 1)
            return stream.features(audio[end - n : end], end)[None]

        res = _time_loop(args.runs, features, tower.embed)
    else:
        clips = [_audio(logmel.n_samples, seed) for seed in range(3)]
        res = _time_loop(args.runs, lambda i: logmel(clips[i % 3]), tower.embed)
    return {
        **res,
        "load_s": load_s,
        "file": str(tower.path),
        "file_bytes": tower.path.stat().st_size,
    }


def child_accuracy(args: argparse.Namespace) -> dict[str, Any]:
    """Centred/raw cosine of int8 vs fp32 on the verify signals (+ plain baseline if any)."""
    import numpy as np

    from listener.export.verify import compare, load_inputs
    from listener.model.audio_tower import AudioTower
    from listener.model.modeldir import ModelDir

    model = ModelDir(args.model)
    _, feats = load_inputs(model, None)

    def embed(m: ModelDir, precision: str):
        tower = AudioTower(m, precision, threads=args.threads)
        return np.concatenate([tower.embed(feats[i : i + 1]) for i in range(len(feats))])

    ref = embed(model, "fp32")
    out: dict[str, Any] = {"n": len(feats)}
    stats = compare(embed(model, "int8"), ref)
    out["int8"] = {k: stats[k] for k in ("raw_min", "centred_min", "centred_mean")}
    if args.baseline:
        base = ModelDir(args.baseline)
        b_ref = embed(base, "fp32")
        stats = compare(embed(base, "int8"), b_ref)
        out["int8-plain"] = {k: stats[k] for k in ("raw_min", "centred_min", "centred_mean")}
        fp = compare(b_ref, ref)
        out["fp32_vs_baseline_fp32_raw_min"] = fp["raw_min"]
    return out


def child_profile(args: argparse.Namespace) -> dict[str, Any]:
    """onnxruntime profiling of the int8 tower: kernel time per operator type per window."""
    import collections
    import tempfile

    import onnxruntime as ort

    from listener.model.logmel import LogMel
    from listener.model.modeldir import ModelDir
    from listener.model.session import make_session

    model = ModelDir(args.model)
    logmel = LogMel.from_config(
        model.preprocessor_config, str(model.path / "preprocessor_config.json")
    )
    feats = logmel(_audio(logmel.n_samples))[None]
    orig = ort.SessionOptions
    prefix = str(Path(tempfile.mkdtemp()) / "prof")

    def profiling_options() -> Any:  # make_session's own options + profiling
        so = orig()
        so.enable_profiling = True
        so.profile_file_prefix = prefix
        return so

    ort.SessionOptions = profiling_options
    try:
        sess = make_session(model.audio_model_path("int8"), threads=args.threads)
    finally:
        ort.SessionOptions = orig
    for _ in range(args.runs):
        sess.run(None, {"input_features": feats})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: collections.Counter[str] = collections.Counter()
    nodes: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] += e["dur"]
            nodes[op] += 1
    runs = [e["dur"] for e in events if e.get("name") == "model_run"]
    return {
        "runs": args.runs,
        "model_run_ms": statistics.median(runs[1:] or runs) / 1000,
        "ops": [
            {"op": op, "ms": us / args.runs / 1000, "nodes": nodes[op] // args.runs}
            for op, us in per_op.most_common()
        ],
    }


CHILDREN = {
    "profile": child_profile,
    "torch": child_torch,
    "torch-ftz": child_torch,
    "fp32": child_listener,
    "int8": child_listener,
    "int8-stream": child_listener,
    "int8-plain": child_listener,
    "accuracy": child_accuracy,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("child", choices=sorted(CHILDREN), help="the variant to measure")
    p.add_argument("--model", type=Path, required=True, help="listener model directory")
    p.add_argument("--checkpoint", type=Path, help="transformers checkpoint (torch variants)")
    p.add_argument("--baseline", type=Path, help="another export (int8-plain, accuracy)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=15, help="windows to time")
    args = p.parse_args(argv)
    if args.child in ("fp32", "int8"):
        args.precision = args.child
    elif args.child == "int8-stream":
        args.precision = "int8"
    elif args.child == "int8-plain":
        args.precision, args.model = "int8", args.baseline
    res = CHILDREN[args.child](args)
    # imported after the work: the listener package is no part of a torch footprint
    from listener.export.bench import peak_rss_mb

    res["peak_rss_mb"] = peak_rss_mb()  # VmHWM: this variant's process alone
    sys.stdout.write("RESULT " + json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
