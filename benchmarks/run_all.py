"""All benchmarks in one run, printed as one table with each target met or not.

Runs, each in its own processes and in this order:

1. ``bench_model.py``: transformers PyTorch fp32 vs listener fp32 vs listener int8
   (features + tower, batch 1, ``--threads``), peak RSS per variant, file sizes, accuracy;
2. ``bench_logmel.py``: incremental log-mel (one 1-s hop vs a full 10-s extraction);
3. ``bench_daemon.py``: ``listener run`` paced in real time with MQTT: RSS, CPU per
   audio second, idle CPU between windows, start-up with a warm prompt cache;
4. ``listener bench --json``: the user-facing command on the same model.

Needs a full-size model: ``--prepare`` makes the random full-size checkpoint and exports
it when the paths do not exist yet (about 2 minutes of CPU and 1.5 GB of disk; 2.5 GB
with the ``--baseline`` export)::

    python benchmarks/run_all.py --prepare --checkpoint /tmp/full_ckpt --model /tmp/full_model \
        --baseline /tmp/plain_model
    python benchmarks/run_all.py --checkpoint /tmp/full_ckpt --model /tmp/full_model \
        [--baseline /tmp/plain_model] [--quick] [--json]

``--baseline`` is the plain dynamic-int8 export of the same checkpoint (the
reference for accuracy); with ``--prepare`` it is made when missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


def _run_json(cmd: list[str], timeout: float = 3600) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    start = proc.stdout.find("{")
    return json.loads(proc.stdout[start:])


def prepare_plain(checkpoint: Path, model: Path, out: Path) -> None:
    """The "plain dynamic-int8 export" of the same checkpoint: transformers' own
    forward traced as is (no listener/export/htsat.py, no optimize.py rewrites) and
    onnxruntime's quantize_dynamic with its defaults on MatMul/Gemm. Text tower, tokenizer
    and configs are copied from ``model``."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from listener.export.trace import (
        export_audio_tower,
        import_extra,
        load_checkpoint,
        tower_wrappers,
    )
    from listener.model.modeldir import write_manifest

    torch, transformers = import_extra()
    print(f"making the plain baseline export {out}", file=sys.stderr)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model, tmp)
    audio_w, _ = tower_wrappers(torch, load_checkpoint(torch, transformers, str(checkpoint)))
    raw = tmp / "onnx" / "audio_model.onnx"
    export_audio_tower(torch, audio_w, raw, 17, False, lambda m: print(m, file=sys.stderr))
    quantize_dynamic(str(raw), str(tmp / "onnx" / "audio_model_quantized.onnx"),
                     op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
    manifest = json.loads((tmp / "listener.json").read_text())
    manifest.pop("files", None)
    manifest["checks"] = {"audio_graph": "transformers forward, no optimize.py rewrites"}
    manifest["quantization"] = {"kind": "int8", "method": "onnxruntime quantize_dynamic "
                                "defaults (per-tensor, QInt8) on MatMul/Gemm, audio only"}
    write_manifest(tmp, manifest)
    tmp.rename(out)


def prepare(checkpoint: Path, model: Path) -> None:
    if not checkpoint.exists():
        sys.path.insert(0, str(ROOT))
        from tests.fixtures_model import build_tiny_checkpoint

        print(f"building the full-size random checkpoint {checkpoint}", file=sys.stderr)
        build_tiny_checkpoint(checkpoint, full_size=True)
    if not model.exists():
        from listener.export.exporter import export_model

        print(f"exporting {checkpoint} -> {model}", file=sys.stderr)
        export_model(str(checkpoint), model, log=lambda m: print(m, file=sys.stderr))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="full-size listener model dir")
    p.add_argument("--checkpoint", type=Path, required=True, help="its transformers checkpoint")
    p.add_argument("--baseline", type=Path,
                   help="a plain export to compare (made by --prepare when missing)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prepare", action="store_true", help="build checkpoint/export if missing")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.prepare:
        prepare(args.checkpoint, args.model)
        if args.baseline and not args.baseline.exists():
            prepare_plain(args.checkpoint, args.model, args.baseline)
    py = sys.executable
    runs, rounds = (4, 1) if args.quick else (15, 2)
    model_cmd = [py, str(HERE / "bench_model.py"), "--model", str(args.model), "--checkpoint",
                 str(args.checkpoint), "--threads", str(args.threads), "--runs", str(runs),
                 "--rounds", str(rounds), "--json"]
    if args.baseline:
        model_cmd += ["--baseline", str(args.baseline)]
    res = {
        "model": _run_json(model_cmd),
        "logmel": _run_json([py, str(HERE / "bench_logmel.py"), "--rounds",
                             "10" if args.quick else "40", "--json"]),
        "daemon": _run_json([py, str(HERE / "bench_daemon.py"), "--model", str(args.model),
                             "--seconds", "25" if args.quick else "45", "--json"]),
        "bench": _run_json([py, "-m", "listener", "bench", "--model", str(args.model),
                            "--threads", str(args.threads), "--runs", str(runs * 2), "--json"]),
    }
    if args.json:
        print(json.dumps(res))
        return 0
    from benchmarks.bench_model import format_table

    print("## Audio embedding, side by side (issue 2 table, issue 6 target 1)\n")
    print(format_table(res["model"]))
    print("\n## Issue 6 targets\n")
    print(format_targets(res))
    return 0


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def format_targets(res: dict[str, Any]) -> str:
    m, lm, d, b = res["model"], res["logmel"], res["daemon"], res["bench"]
    rows = m["rows"]
    t = m["targets"]
    dt = d["targets"]
    lines = ["| # | target | measured | |", "|---|---|---|---|"]
    torch_ms = rows["torch"]["window_ms"] if "torch" in rows else None
    lines.append(
        f"| 1 | int8 features + tower >= 8x faster than PyTorch (batch 1, {m['threads']} threads)"
        f" | {rows['int8']['window_ms']:.1f} ms vs {torch_ms} ms: "
        f"{t['int8_speedup_vs_torch']['value']}x (vs PyTorch with flushed denormals: "
        f"{t['int8_speedup_vs_torch_flush_denormal']['value']}x) | "
        f"{_mark(t['int8_speedup_vs_torch']['met'])} |"
    )
    if "int8-stream" in rows:
        dp = t["int8_daemon_path_speedup_vs_torch"]
        lines.append(
            f"| 1 | the same, daemon path (log-mel of the new 1-s hop only; informative) | "
            f"{rows['int8-stream']['window_ms']:.1f} ms vs {torch_ms} ms: {dp['value']}x | "
            f"{_mark(dp['met'])} |"
        )
    lines.append(
        f"| 1 | int8 centred cosine vs fp32 >= plain dynamic int8 (0.86) | "
        f"{t['int8_centred_cosine']['value']} | {_mark(t['int8_centred_cosine']['met'])} |"
    )
    lines.append(
        f"| 2 | one 1-s hop of log-mel <= 1/10 of a full extraction, equal within 1e-4 dB | "
        f"{lm['median_wall_ms']['hop']:.2f} ms vs ClapFeatureExtractor "
        f"{lm['median_wall_ms']['reference']:.1f} ms ({lm['ratio_hop_vs_reference_full']:.3f}) "
        f"and vs listener full {lm['median_wall_ms']['full']:.1f} ms "
        f"({lm['ratio_hop_vs_listener_full']:.3f}); max diff "
        f"{lm['max_abs_db_stream_vs_full']:.1e} dB | "
        f"{_mark(lm['target_hop_vs_reference_met'])} vs reference, "
        f"{_mark(lm['target_hop_vs_listener_full_met'])} vs listener full |"
    )
    names = {
        "daemon_peak_rss_mb": "3 | daemon peak RSS <= 150 MB",
        "daemon_cpu_s_per_audio_s": "3 | daemon <= 0.10 CPU-s per audio second (hop 1 s)",
        "idle_cpu_between_windows_cores": (
            "3 | no spinning between windows (cores used while the processing thread idles)"
        ),
        "startup_to_first_score_s (warm cache)": "4 | start-up to first scored window < 2 s",
    }
    for key, label in names.items():
        v = dt[key]
        lines.append(f"| {label} | {v['value']} | {_mark(v['met'])} |")
    lines.append(
        f"| 5 | `listener bench` | {b['window_ms']:.1f} ms/window ({b['provider']}, "
        f"{b['int8_path']}), shortest hop {b['shortest_hop_s']} s, peak RSS "
        f"{b['peak_rss_mb']:.0f} MB | met |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
