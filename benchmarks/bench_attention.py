"""The int8 audio tower with and without the ONNX ``Attention`` op, in one run (issue 18).

Takes the fp32 audio tower of a `listener model export` (window-order HTSAT, already
rewritten by listener/export/optimize.py without the Attention step), makes the
Attention-op copy (listener/export/attention_op.py), quantises both exactly as the
exporter does (listener/export/quantize.py), and times one window (batch 1, 1 thread,
the runtime's session settings) alternating the two, median of ``--repeats`` each.
Also prints the parity of the two graphs (fp32 vs fp32, int8 vs int8, centred cosine
over 3 generated inputs).

    python benchmarks/bench_attention.py --model /tmp/full_model [--repeats 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from listener.export.attention_op import use_attention_op  # noqa: E402
from listener.export.exporter import generated_features  # noqa: E402
from listener.export.optimize import fp32_nodes  # noqa: E402
from listener.export.quantize import quantize  # noqa: E402
from listener.model.session import make_session  # noqa: E402


def centred_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(0), b - b.mean(0)
    return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))


def main() -> None:
    import onnx

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    src = args.model / "onnx" / "audio_model.onnx"
    with tempfile.TemporaryDirectory(prefix="bench-attention-") as tmp_s:
        tmp = Path(tmp_s)
        model = onnx.load(str(src))
        blocks = use_attention_op(model)
        att = tmp / "audio_attention.onnx"
        onnx.save(model, str(att))
        paths = {"plain": src, "attention": att}
        q = {k: quantize(p, tmp / f"{k}_int8.onnx", "int8", nodes_to_exclude=fp32_nodes(p))
             for k, p in paths.items()}
        x3 = generated_features(3, seed=11)
        fp = {k: make_session(p, "cpu", 1).run(None, {"input_features": x3})[0]
              for k, p in paths.items()}
        sess = {k: make_session(p, "cpu", 1) for k, p in q.items()}
        i8 = {k: s.run(None, {"input_features": x3})[0] for k, s in sess.items()}
        x1 = x3[:1]
        times: dict[str, list[float]] = {k: [] for k in sess}
        for s in sess.values():
            s.run(None, {"input_features": x1})  # warm-up
        for _ in range(args.repeats):
            for k, s in sess.items():
                t0 = time.perf_counter()
                s.run(None, {"input_features": x1})
                times[k].append((time.perf_counter() - t0) * 1000.0)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"attention_blocks": blocks, "int8_window_ms_plain": med["plain"],
           "int8_window_ms_attention": med["attention"],
           "speedup": med["plain"] / med["attention"],
           "fp32_centred_cosine": centred_cosine(fp["plain"], fp["attention"]),
           "int8_centred_cosine": centred_cosine(i8["plain"], i8["attention"])}
    if args.json:
        print(json.dumps(res))
        return
    print(f"Attention op in {blocks} blocks; int8 window (batch 1, 1 thread, median of "
          f"{args.repeats}): plain {med['plain']:.1f} ms, Attention {med['attention']:.1f} ms "
          f"({res['speedup']:.2f}x); parity centred cosine fp32 "
          f"{res['fp32_centred_cosine']:.6f}, int8 {res['int8_centred_cosine']:.6f}")


if __name__ == "__main__":
    main()
