"""Audio embedding side by side: transformers PyTorch fp32 vs listener fp32 vs listener int8.

The side-by-side table and speed target 1 of benchmarks/README.md. One 10-s window at a
time (batch 1), the same number of threads for every variant, on the full-size default
``ClapConfig`` (random weights, same cost as laion/clap-htsat-unfused):

- ``torch``: transformers ``ClapFeatureExtractor`` + ``ClapModel.get_audio_features``
  (what a user would otherwise run), fp32, ``torch.set_num_threads(threads)``;
- ``fp32`` / ``int8``: listener ``LogMel`` (full 10-s extraction) + ``AudioTower``
  (onnxruntime, the daemon's session options);
- ``int8-plain`` (with ``--baseline DIR``): the int8 file of another export, e.g. one
  made without listener/export/optimize.py, to show what the optimisations bought.

Every variant runs in its OWN subprocess (benchmarks/model_variants.py), which only
embeds audio, so its peak RSS (VmHWM) is the footprint of that variant alone. Variants alternate for
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
TARGET_SPEEDUP = 8.0
TARGET_CENTRED = 0.86  # the plain dynamic-int8 export of the full-size model (README.md)


def _run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / "model_variants.py"), name, "--model", str(args.model),
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


def _row(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row: medians over all windows of all rounds of one variant."""
    cat = {k: [x for res in results for x in res[k]] for k in
           ("features_s", "tower_s", "window_s", "window_cpu_s")}
    row = {
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
        row["audio_weights_mb"] = round(results[0]["audio_fp32_bytes"] / 1e6, 1)
    return row


def _add_ratios(rows: dict[str, dict[str, Any]], acc: dict[str, Any]) -> None:
    """Speed-ups and RSS ratio against PyTorch (and flushed-denormal PyTorch), accuracy."""
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
    ftz = rows.get("torch-ftz")
    if ftz:
        for row in rows.values():
            row["speedup_vs_ftz_wall"] = round(ftz["window_ms"] / row["window_ms"], 2)


def _targets(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    int8 = rows["int8"]
    ref, ftz = rows.get("torch"), rows.get("torch-ftz")
    return {
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
    rows = {v: _row(results) for v, results in raw.items()}
    acc = _run_child("accuracy", args)
    _add_ratios(rows, acc)
    return {
        "threads": args.threads,
        "runs_per_round": args.runs,
        "rounds": args.rounds,
        "model": str(args.model),
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "baseline": str(args.baseline) if args.baseline else None,
        "accuracy_inputs": f"{acc['n']} generated verify signals",
        "rows": rows,
        "targets": _targets(rows),
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


def format_profile(prof: dict[str, Any], threads: int) -> str:
    """The ``--profile`` table: kernel time per operator type, largest first."""
    total = sum(o["ms"] for o in prof["ops"])
    lines = [
        f"int8 audio tower, {threads} threads, {prof['runs']} windows: model_run "
        f"median {prof['model_run_ms']:.1f} ms, kernels {total:.1f} ms per window",
        "| operator type | ms per window | share | nodes |\n|---|---|---|---|",
    ]
    for o in prof["ops"][:16]:
        lines.append(f"| {o['op']} | {o['ms']:.2f} | {o['ms'] / total:.1%} | {o['nodes']} |")
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
    args = p.parse_args(argv)
    if args.profile:
        prof = _run_child("profile", args)
        print(json.dumps(prof) if args.json else format_profile(prof, args.threads))
        return 0
    res = measure(args)
    if args.json:
        print(json.dumps(res))
    else:
        print(format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
