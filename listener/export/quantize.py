"""int8 quantisation of an exported fp32 tower, behind one function.

Everything that turns an fp32 ONNX file into a faster one lives here, so graph
fusions or static quantisation can later replace the body of :func:`quantize`
without touching the exporter.

Choice of settings (MEASURED, not guessed, on the full-size default ``ClapConfig``
against ``listener model verify``'s signals; the table is in benchmarks/README.md,
"int8 settings"): per-channel weight scales, because one scale per output column fits
weights whose columns differ in range (about half the centred error of per-tensor
scales, and no slower). reduce_range (7-bit weights) stays off: it only costs accuracy
here; it exists for x86 CPUs with AVX2 but no VNNI, where u8 x s8 products can
saturate in vpmaddubsw, and ARM (Raspberry Pi, Jetson) and VNNI CPUs do not saturate.
"""

from __future__ import annotations

import logging
from pathlib import Path

#: kind -> quantize_dynamic settings (why these: the module docstring).
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
    # quantisation-sensitive layers stay fp32 (why: listener/export/optimize.fp32_nodes)
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
