"""Audio embedding side by side: transformers PyTorch fp32 vs listener fp32 vs listener int8.

Issue 2's table and issue 6 target 1. One 10-s window at a time (batch 1), the same
number of threads for every variant, on the full-size default ``ClapConfig`` (random
weights, same cost as laion/clap-htsat-unfused):

- ``torch``: transformers ``ClapFeatureExtractor`` + ``ClapModel.get_audio_features``
  (what a user would otherwise run), fp32, ``torch.set_num_threads(threads)``;
- ``fp32`` / ``int8``: listener ``LogMel`` (full 10-s extraction) + ``AudioTower``
  (onnxruntime, the daemon's session options);
- ``int8-plain`` (with ``--baseline DIR``): the int8 file of another export, e.g. one
  made without listener/export/optimize.py, to show what the optimisations bought.

Every variant runs in its OWN subprocess, which only embeds audio, so its peak RSS
(``ru_maxrss``) is the footprint of that variant alone. Variants alternate for
``--rounds`` rounds (load from other processes on a shared machine hits all alike); the
table shows medians over all windows of all rounds: wall time and process CPU time.
Accuracy: centred cosine of int8 vs fp32 embeddings (``listener model verify``'s
metric) on the verify signals, computed in a separate subprocess.

    python benchmarks/bench_model.py --model /tmp/full_model --checkpoint /tmp/full_ckpt \
        [--baseline DIR] [--threads 2] [--runs 15] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_SPEEDUP = 8.0
TARGET_CENTRED = 0.86  # the plain dynamic-int8 export of the full-size model (issue 2)


def _rss_mb() -> float:
    """Peak RSS of this variant's own process (VmHWM: see listener.export.bench.peak_rss_mb)."""
    from listener.export.bench import peak_rss_mb

    return peak_rss_mb()


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


def _child_main(args: argparse.Namespace) -> int:
    if args.child in ("fp32", "int8"):
        args.precision = args.child
    elif args.child == "int8-stream":
        args.precision = "int8"
    elif args.child == "int8-plain":
        args.precision, args.model = "int8", args.baseline
    res = CHILDREN[args.child](args)
    res["peak_rss_mb"] = _rss_mb()
    sys.stdout.write("RESULT " + json.dumps(res) + "\n")
    return 0


def _run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", name, "--model", str(args.model),
           "--threads", str(args.threads), "--runs", str(args.runs)]
    if args.checkpoint:
        cmd += ["--checkpoint", str(args.checkpoint)]
    if args.baseline:
        cmd += ["--baseline", str(args.baseline)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(args.threads))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"variant {name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _ms(xs: list[float]) -> float:
    return round(1000 * statistics.median(xs), 1)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    variants = ["torch", "torch-ftz", "fp32", "int8", "int8-stream"] + (
        ["int8-plain"] if args.baseline else []
    )
    if not args.checkpoint:
        variants = [v for v in variants if not v.startswith("torch")]
    raw: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for v in order:
            raw[v].append(_run_child(v, args))
    rows: dict[str, dict[str, Any]] = {}
    for v, results in raw.items():
        cat = {k: [x for res in results for x in res[k]] for k in
               ("features_s", "tower_s", "window_s", "window_cpu_s")}
        rows[v] = {
            "features_ms": _ms(cat["features_s"]),
            "tower_ms": _ms(cat["tower_s"]),
            "window_ms": _ms(cat["window_s"]),
            "window_cpu_ms": _ms(cat["window_cpu_s"]),
            "windows": len(cat["window_s"]),
            "peak_rss_mb": round(statistics.median(res["peak_rss_mb"] for res in results), 1),
            "load_s": round(statistics.median(res["load_s"] for res in results), 2),
            "file": results[0]["file"],
            "file_mb": round(results[0]["file_bytes"] / 1e6, 1),
        }
        if "audio_fp32_bytes" in results[0]:
            rows[v]["audio_weights_mb"] = round(results[0]["audio_fp32_bytes"] / 1e6, 1)
    acc = _run_child("accuracy", args)
    ref = rows.get("torch")
    for v, row in rows.items():
        if ref:
            row["speedup_wall"] = round(ref["window_ms"] / row["window_ms"], 2)
            row["speedup_cpu"] = round(ref["window_cpu_ms"] / row["window_cpu_ms"], 2)
            row["rss_ratio"] = round(row["peak_rss_mb"] / ref["peak_rss_mb"], 3)
        if v in acc:
            row.update({f"centred_cosine_{k.split('_')[1]}": round(acc[v][k], 4)
                        for k in ("centred_min", "centred_mean")})
            row["raw_cosine_min"] = round(acc[v]["raw_min"], 6)
    int8 = rows["int8"]
    ftz = rows.get("torch-ftz")
    if ftz:
        for row in rows.values():
            row["speedup_vs_ftz_wall"] = round(ftz["window_ms"] / row["window_ms"], 2)
    targets = {
        "int8_speedup_vs_torch": {
            "target": f">= {TARGET_SPEEDUP:g}x (wall, median)",
            "value": int8.get("speedup_wall"),
            "met": bool(ref) and int8["speedup_wall"] >= TARGET_SPEEDUP,
        },
        "int8_speedup_vs_torch_flush_denormal": {
            "target": f">= {TARGET_SPEEDUP:g}x (wall, median; informative)",
            "value": int8.get("speedup_vs_ftz_wall"),
            "met": bool(ftz) and int8["speedup_vs_ftz_wall"] >= TARGET_SPEEDUP,
        },
        "int8_daemon_path_speedup_vs_torch": {
            "target": f">= {TARGET_SPEEDUP:g}x (wall, median; informative: the daemon's "
                      "incremental features vs a full extraction per window for PyTorch)",
            "value": rows.get("int8-stream", {}).get("speedup_wall"),
            "met": bool(ref) and rows.get("int8-stream", {}).get("speedup_wall", 0)
            >= TARGET_SPEEDUP,
        },
        "int8_centred_cosine": {
            "target": f">= {TARGET_CENTRED} (and >= the plain export's when --baseline)",
            "value": int8.get("centred_cosine_min"),
            "met": int8.get("centred_cosine_min", 0) >= max(
                TARGET_CENTRED, rows.get("int8-plain", {}).get("centred_cosine_min", 0)
            ),
        },
    }
    return {
        "threads": args.threads,
        "runs_per_round": args.runs,
        "rounds": args.rounds,
        "model": str(args.model),
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "baseline": str(args.baseline) if args.baseline else None,
        "accuracy_inputs": f"{acc['n']} generated verify signals",
        "rows": rows,
        "targets": targets,
    }


LABELS = {
    "torch": "transformers PyTorch fp32",
    "torch-ftz": "PyTorch fp32, flush denormals",
    "fp32": "listener fp32 (ONNX)",
    "int8": "listener int8 (ONNX)",
    "int8-stream": "listener int8, daemon path (features of the new 1-s hop only)",
    "int8-plain": "listener int8, plain export",
}


def format_table(res: dict[str, Any]) -> str:
    head = ("| variant | features ms | tower ms | window ms | CPU ms | speed-up (wall / CPU) "
            "| vs FTZ torch | peak RSS MB | RSS ratio | file MB | centred cos min |")
    lines = [head, "|" + "---|" * 11]
    for v, r in res["rows"].items():
        sp = f"{r['speedup_wall']:.2f}x / {r['speedup_cpu']:.2f}x" if "speedup_wall" in r else "-"
        rss = f"{r['rss_ratio']:.2f}" if "rss_ratio" in r else "-"
        cos = f"{r['centred_cosine_min']:.4f}" if "centred_cosine_min" in r else "-"
        ftz = f"{r['speedup_vs_ftz_wall']:.2f}x" if "speedup_vs_ftz_wall" in r else "-"
        lines.append(
            f"| {LABELS[v]} | {r['features_ms']:.1f} | {r['tower_ms']:.1f} | "
            f"{r['window_ms']:.1f} | {r['window_cpu_ms']:.1f} | {sp} | {ftz} | "
            f"{r['peak_rss_mb']:.0f} | "
            f"{rss} | {r['file_mb']:.1f} | {cos} |"
        )
    lines.append("")
    for name, t in res["targets"].items():
        lines.append(f"- {name}: {t['value']} (target {t['target']}): "
                     f"{'MET' if t['met'] else 'NOT MET'}")
    lines.append(
        f"(batch 1, {res['threads']} threads, medians of {res['rounds']} rounds x "
        f"{res['runs_per_round']} windows, each variant in its own process; accuracy on "
        f"{res['accuracy_inputs']})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="listener model directory")
    p.add_argument("--checkpoint", type=Path, help="transformers checkpoint for the reference")
    p.add_argument("--baseline", type=Path, help="another export to compare (plain int8)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=15, help="windows per round per variant")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--profile", action="store_true",
                   help="only: where the int8 tower's time goes, per operator type")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child_main(args)
    if args.profile:
        prof = _run_child("profile", args)
        if args.json:
            print(json.dumps(prof))
            return 0
        total = sum(o["ms"] for o in prof["ops"])
        print(f"int8 audio tower, {args.threads} threads, {prof['runs']} windows: model_run "
              f"median {prof['model_run_ms']:.1f} ms, kernels {total:.1f} ms per window")
        print("| operator type | ms per window | share | nodes |\n|---|---|---|---|")
        for o in prof["ops"][:16]:
            print(f"| {o['op']} | {o['ms']:.2f} | {o['ms'] / total:.1%} | {o['nodes']} |")
        return 0
    res = measure(args)
    if args.json:
        print(json.dumps(res))
    else:
        print(format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
