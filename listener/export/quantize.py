"""int8 quantisation of an exported fp32 tower, behind one function.

Everything that turns an fp32 ONNX file into a faster one lives here, so graph
fusions or static quantisation can later replace the body of :func:`quantize`
without touching the exporter.

Choice of settings (MEASURED, not guessed): full-size default ``ClapConfig``
with random weights (/tmp/full_model from `listener model export`), audio tower,
int8 vs fp32 on the 10 generated signals of ``listener model verify`` (log-mel by
listener.model.logmel), cosine of the L2-normalised embeddings, raw and centred (mean
fp32 embedding of the set removed from both), 2026-11-22, Xeon with AVX-512 VNNI:

    per_channel reduce_range   raw min / mean      centred min / mean
    False       False          0.99941 / 0.99962   0.9986 / 0.9990
    False       True           0.99812 / 0.99845   0.9942 / 0.9960
    True        False          0.99970 / 0.99980   0.9993 / 0.9995   <- chosen
    True        True           0.99912 / 0.99927   0.9970 / 0.9981

per_channel=True halves the centred error of per-tensor scales (one scale per
output column fits weights whose columns differ in range); reduce_range (7-bit
weights) only costs accuracy here. reduce_range exists for x86 CPUs with AVX2
but no VNNI, where u8 x s8 products can saturate in vpmaddubsw; ARM (Raspberry
Pi, Jetson) and VNNI CPUs do not saturate, so it stays off. Latency (batch 1,
2 threads, 12 interleaved runs, median): fp32 133 ms; per-tensor 99 / 106 ms
(reduce_range off / on); per-channel 86 / 89 ms: the chosen variant is also the
fastest here.
"""

from __future__ import annotations

import logging
from pathlib import Path

#: kind -> quantize_dynamic settings. See the module docstring for the measurement.
QUANT_SETTINGS: dict[str, dict[str, bool]] = {
    "int8": {"per_channel": True, "reduce_range": False},
}


def quantize(fp32_path: str | Path, out_path: str | Path, kind: str = "int8", **override) -> Path:
    """Write a quantised copy of ``fp32_path`` to ``out_path``; returns ``out_path``.

    ``kind="int8"``: dynamic (weights int8, activations quantised at run time),
    QOperator format, only MatMul/Gemm whose weight is a constant initializer
    (attention activation x activation MatMuls and the patch-embedding Conv stay fp32),
    except the nodes :func:`listener.export.optimize.fp32_nodes` names (Swin patch merging)
    unless ``nodes_to_exclude=[...]`` is given.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from listener.export.optimize import fp32_nodes

    if kind not in QUANT_SETTINGS:
        raise ValueError(f"unknown quantisation kind {kind!r}; known: {sorted(QUANT_SETTINGS)}")
    settings = {**QUANT_SETTINGS[kind], **override}
    out_path = Path(out_path)
    # quantisation-sensitive layers stay fp32 (measured: listener/export/optimize.py)
    keep_fp32 = override.get("nodes_to_exclude")
    if keep_fp32 is None:
        keep_fp32 = fp32_nodes(fp32_path)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a generic "consider pre-processing"
    try:
        quantize_dynamic(
            model_input=str(fp32_path),
            model_output=str(out_path),
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=settings["per_channel"],
            reduce_range=settings["reduce_range"],
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(keep_fp32),
            extra_options={"MatMulConstBOnly": True},
        )
    finally:
        root.setLevel(level)
    return out_path
