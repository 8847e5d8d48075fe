"""Graph rewrites of the exported fp32 audio tower, applied once at export time and saved.

Why these and not others: each was MEASURED on the full-size default ``ClapConfig``
(same cost as clap-htsat-unfused), batch 1, with onnxruntime profiling aggregated by
operator type (``python -m benchmarks.bench_model --profile``; numbers, and the
rewrites tried and not kept, in benchmarks/README.md). Both rewrites are exact up to
float rounding, so they run before the exporter's PyTorch check and before int8
quantisation, and the runtime never redoes them.

1. Shifted-window attention mask (-100 -> -1e4). HTSAT's shifted Swin blocks add
   -100 to masked attention scores; after the softmax those entries are about
   e^-100 = 4e-44, a *denormal* float. x86 CPUs take a micro-code assist for every
   denormal operand, which made the following ``probs @ V`` MatMul many times slower
   and the shifted blocks the largest cost of the int8 tower. With -1e4 the softmax
   underflows to exact 0; the embedding is unchanged (the dropped weights were below
   1e-43). The runtime also sets onnxruntime's ``session.set_denormal_as_zero`` for
   any other denormal source.
2. Bicubic ``Resize`` of the time axis (1001 -> 1024 frames, align_corners) becomes
   a 4-tap ``Gather`` + ``Mul`` + ``ReduceSum`` with weights taken from onnxruntime's
   own Resize kernel (run once on an identity matrix), so the result is the same
   interpolation; onnxruntime's generic cubic Resize was a noticeable share of the int8
   tower for this one axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from listener.files import atomic_write

#: value HTSAT puts on masked attention scores, and what we replace it with
MASK_VALUE = -100.0
MASK_REPLACEMENT = -1.0e4


def _const_array(node: Any) -> np.ndarray | None:
    from onnx import numpy_helper

    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
    return None


def fix_attention_mask(model: Any) -> int:
    """Replace the -100 fill of the shifted-window masks by -1e4; returns how many."""
    from onnx import numpy_helper

    graph = model.graph
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    inits = {i.name: i for i in graph.initializer}
    changed = 0
    for node in graph.node:
        if node.op_type != "Where" or len(node.input) != 3:
            continue
        name = node.input[1]
        if name in consts:
            arr = _const_array(consts[name])
            if arr is not None and arr.size == 1 and float(arr.ravel()[0]) == MASK_VALUE:
                for attr in consts[name].attribute:
                    if attr.name == "value":
                        new = np.full_like(arr, MASK_REPLACEMENT)
                        attr.t.CopyFrom(numpy_helper.from_array(new, attr.t.name))
                changed += 1
        elif name in inits:
            arr = numpy_helper.to_array(inits[name])
            if arr.size == 1 and float(arr.ravel()[0]) == MASK_VALUE:
                inits[name].CopyFrom(
                    numpy_helper.from_array(np.full_like(arr, MASK_REPLACEMENT), name)
                )
                changed += 1
    return changed


def _resize_probe(model: Any, node: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Values of the Resize node's inputs and output for ``feeds`` (runs the model once)."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    wanted = [x for x in node.input if x] + [node.output[0]]
    have = {o.name for o in probe.graph.output}
    for name in wanted:
        if name not in have:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    values = sess.run(wanted, feeds)
    return dict(zip(wanted, values, strict=True))


def _interp_matrix(node: Any, n_in: int, n_out: int) -> np.ndarray:
    """W [n_out, n_in] such that Resize(x)[..., t, f] == sum_s W[t, s] x[..., s, f].

    Computed by onnxruntime's own Resize kernel on an identity matrix, so the
    rewrite reproduces exactly the interpolation the exporter emitted.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
    sizes = np.array([1, 1, n_out, n_in], np.int64)
    g = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], **attrs)],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, n_in, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(sizes, "sizes")],
    )
    opset = helper.make_operatorsetid("", 17)
    m = helper.make_model(g, opset_imports=[opset], ir_version=8)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    eye = np.eye(n_in, dtype=np.float32)[None, None]
    y = sess.run(None, {"x": eye})[0][0, 0]  # [n_out, n_in]: column s = response to x[s]
    return y.astype(np.float64)


def replace_time_resize(model: Any, input_shape: tuple[int, ...]) -> bool:
    """Swap the single time-axis Resize for Gather+Mul+ReduceSum; False if not applicable."""
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    if len(resizes) != 1:
        return False
    node = resizes[0]
    name = model.graph.input[0].name
    feeds = {name: np.zeros((1, *input_shape), np.float32) - 50.0}
    vals = _resize_probe(model, node, feeds)
    x_shape = vals[node.input[0]].shape
    y_shape = vals[node.output[0]].shape
    if len(x_shape) != 4 or x_shape[:2] != y_shape[:2] or x_shape[3] != y_shape[3]:
        return False  # resizes more than the time axis: leave it alone
    taps = _taps(_interp_matrix(node, int(x_shape[2]), int(y_shape[2])))
    if taps is None:
        return False
    _splice_taps(model.graph, node, *taps)
    return True


def _taps(w: np.ndarray, most: int = 8) -> tuple[np.ndarray, np.ndarray] | None:
    """(index [n_out, taps], weight [n_out, taps, 1]) with ``w`` == the sum over taps of
    weight * x[index]; None if a row needs more than ``most`` taps or the check fails."""
    n_out = w.shape[0]
    taps = int((np.abs(w) > 0).sum(1).max())
    if taps > most:
        return None
    idx = np.zeros((n_out, taps), np.int64)
    wt = np.zeros((n_out, taps, 1), np.float32)
    for t in range(n_out):
        cols = np.flatnonzero(w[t])
        idx[t, : len(cols)] = cols
        wt[t, : len(cols), 0] = w[t, cols]
    # check the rewrite on random data against the identity-probed matrix
    rng = np.random.default_rng(0)
    x = rng.standard_normal((w.shape[1], 8))
    if not np.allclose((wt[..., 0] * x[idx].transpose(2, 0, 1)).sum(-1).T, w @ x, atol=1e-5):
        return None
    return idx, wt


def _splice_taps(graph: Any, node: Any, idx: np.ndarray, wt: np.ndarray) -> None:
    """Replace the Resize ``node`` in ``graph`` by Gather (axis 2) + Mul + ReduceSum."""
    from onnx import helper, numpy_helper

    prefix = node.name or "time_resize"
    out = node.output[0]
    i_name, w_name = f"{prefix}/taps_index", f"{prefix}/taps_weight"
    graph.initializer.extend(
        [numpy_helper.from_array(idx, i_name), numpy_helper.from_array(wt, w_name)]
    )
    axes_name = f"{prefix}/taps_axis"
    graph.initializer.append(numpy_helper.from_array(np.array([3], np.int64), axes_name))
    new = [
        helper.make_node("Gather", [node.input[0], i_name], [f"{prefix}/taps"], axis=2,
                         name=f"{prefix}/Gather"),
        helper.make_node("Mul", [f"{prefix}/taps", w_name], [f"{prefix}/weighted"],
                         name=f"{prefix}/Mul"),
        helper.make_node("ReduceSum", [f"{prefix}/weighted", axes_name], [out], keepdims=0,
                         name=f"{prefix}/ReduceSum"),
    ]
    pos = list(graph.node).index(node)
    graph.node.remove(node)
    for k, n in enumerate(new):
        graph.node.insert(pos + k, n)


def _opset(model: Any) -> int:
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    return 0


def optimize_audio(path: str | Path, out_path: str | Path | None = None) -> dict[str, Any]:
    """Rewrite the fp32 audio tower at ``path`` (in place unless ``out_path``); a summary.

    The caller (the exporter) compares the result with PyTorch afterwards, so a
    rewrite that changed the numbers would be refused there.
    """
    import onnx

    path = Path(path)
    out_path = Path(out_path) if out_path else path
    model = onnx.load(str(path))
    summary: dict[str, Any] = {"mask_constants": 0, "time_resize": False}
    summary["mask_constants"] = fix_attention_mask(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) for d in dims[1:])
    # one input (rand_trunc); fusion exports also take is_longer and resize differently
    single = len(model.graph.input) == 1
    if single and _opset(model) >= 13 and all(shape):  # ReduceSum's axes input: opset 13
        summary["time_resize"] = replace_time_resize(model, shape)
    atomic_write(out_path, model.SerializeToString())
    return summary


#: MatMul/Gemm nodes whose names contain one of these stay fp32 when quantising (see
#: :func:`fp32_nodes`).
FP32_NODE_PATTERNS = ("/downsample/reduction/",)


def fp32_nodes(path: str | Path) -> list[str]:
    """Names of MatMul/Gemm nodes of ``path`` that int8 quantisation should leave in fp32.

    Swin's patch-merging reductions (``downsample.reduction``: LayerNorm of four
    concatenated neighbours, then Linear 4C -> 2C, three nodes in HTSAT) are the most
    quantisation-sensitive layers: keeping them in fp32 raised the centred
    int8-vs-fp32 cosine clearly, on the full-size model and on a tiny shifted-window
    HTSAT, for a small cost in time; keeping other layers in fp32 instead (the first
    or last stage, the projection head, QKV, attention output or MLP) gained less for
    more time (measured: benchmarks/README.md, "int8 settings").

    The text tower has no such nodes, so this returns [] for it.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [
        n.name
        for n in graph.node
        if n.op_type in ("MatMul", "Gemm") and any(p in n.name for p in FP32_NODE_PATTERNS)
    ]
