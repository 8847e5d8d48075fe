"""Swin window attention as ONNX ``Attention`` nodes (opset 23), when the runtime has them.

Why: the window-order HTSAT (listener/export/htsat_torch.py) exports each block's
attention as MatMul(q, k^T) + position bias (+ shift mask) -> Softmax -> MatMul(., v):
four kernels and two [windows, heads, N, N] tensors written and read back per block.
onnxruntime >= 1.23 runs the opset-23 ``Attention`` op as one fused kernel, which a
micro-benchmark measured 24-28 % faster over the 12 blocks (issue 18; the int8 window
before/after: benchmarks/README.md). The TorchScript exporter stops before opset 23, so
the pattern is rewritten in the saved graph:

- plain blocks: ``Attention(q, k, v, bias[1, heads, N, N], scale=1)`` (1/sqrt(d) is
  already folded into q by the exporter);
- shifted blocks: the shift mask differs per window, so windows and heads are folded
  into one head axis (a free reshape of contiguous data), q/k/v become
  [B, windows*heads, N, d] and the mask [1, windows*heads, N, N] (bias + shift mask):
  still one node, any batch size.

The rest of the graph is moved to opset 23 by onnx's version converter. Nothing here
decides whether the result is used: :func:`listener.export.optimize.optimize_audio`
compares it with the plain graph and keeps the plain one when they differ or when the
runtime is older than :data:`MIN_ORT`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_ORT = (1, 23)
OPSET = 23


def runtime_supports(version: str) -> bool:
    """Whether an onnxruntime version string runs opset-23 ``Attention``."""
    parts = []
    for p in version.split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= MIN_ORT


class _Graph:
    """Producer/consumer/constant look-ups over one graph."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.inits = {i.name: i for i in graph.initializer}
        self._np = numpy_helper

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return self._np.to_array(self.inits[name])
        n = self.producer.get(name)
        if n is not None and n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    return self._np.to_array(a.t)
        return None

    def op(self, name: str, op_type: str) -> Any | None:
        n = self.producer.get(name)
        return n if n is not None and n.op_type == op_type else None


def _match(g: _Graph, softmax: Any) -> dict[str, Any] | None:
    """The nodes and constants of one block's attention ending in ``softmax``, or None."""
    x = g.producer.get(softmax.input[0])
    shift = None
    removed = [softmax]
    if x is not None and x.op_type == "Reshape":
        add1 = g.op(x.input[0], "Add")
        r1 = g.op(add1.input[0], "Reshape") if add1 is not None else None
        if add1 is None or r1 is None:
            return None
        shift = g.const(add1.input[1])
        removed += [x, add1, r1]
        x = g.op(r1.input[0], "Add")
    if x is None or x.op_type != "Add":
        return None
    bias = g.const(x.input[1])
    mm = g.op(x.input[0], "MatMul")
    kt = g.op(mm.input[1], "Transpose") if mm is not None else None
    after = g.consumers.get(softmax.output[0], [])
    if (bias is None or mm is None or kt is None or len(after) != 1
            or after[0].op_type != "MatMul" or list(kt.attribute[0].ints) != [0, 1, 3, 2]):
        return None
    if bias.ndim != 3 or (shift is not None and shift.ndim != 4):
        return None
    removed += [x, mm, after[0]]
    if len(g.consumers.get(kt.output[0], [])) == 1:
        removed.append(kt)
    return {"q": mm.input[0], "k": kt.input[0], "v": after[0].input[1], "bias": bias,
            "shift": shift, "out": after[0].output[0], "at": after[0], "removed": removed}


def _replace(g: _Graph, m: dict[str, Any], prefix: str) -> list[Any]:
    from onnx import helper, numpy_helper

    bias, shift = m["bias"].astype(np.float32), m["shift"]
    heads, n = bias.shape[0], bias.shape[-1]

    def init(name: str, arr: np.ndarray) -> str:
        g.graph.initializer.append(numpy_helper.from_array(arr, f"{prefix}/{name}"))
        return f"{prefix}/{name}"

    if shift is None:
        mask = init("mask", bias[None])
        return [helper.make_node("Attention", [m["q"], m["k"], m["v"], mask], [m["out"]],
                                 scale=1.0, name=f"{prefix}/Attention")]
    windows = shift.shape[0]
    folded = (bias[None] + shift.astype(np.float32)).reshape(1, windows * heads, n, n)
    mask = init("mask", np.ascontiguousarray(folded))
    fold = init("fold", np.array([-1, windows * heads, n, 0], np.int64))
    unfold = init("unfold", np.array([-1, heads, n, 0], np.int64))
    nodes = [helper.make_node("Reshape", [m[t], fold], [f"{prefix}/{t}_folded"],
                              name=f"{prefix}/fold_{t}") for t in ("q", "k", "v")]
    nodes.append(helper.make_node(
        "Attention", [f"{prefix}/q_folded", f"{prefix}/k_folded", f"{prefix}/v_folded", mask],
        [f"{prefix}/attention"], scale=1.0, name=f"{prefix}/Attention"))
    nodes.append(helper.make_node("Reshape", [f"{prefix}/attention", unfold], [m["out"]],
                                  name=f"{prefix}/unfold"))
    return nodes


def use_attention_op(model: Any) -> int:
    """Rewrite every window attention of ``model`` (in place) into ``Attention`` nodes and
    move the model to opset 23; returns how many. 0: nothing matched, model unchanged."""
    from onnx import version_converter

    g = _Graph(model.graph)
    matches = [m for s in list(model.graph.node) if s.op_type == "Softmax"
               if (m := _match(g, s)) is not None]
    if not matches:
        return 0
    converted = version_converter.convert_version(model, OPSET)
    model.CopyFrom(converted)
    g = _Graph(model.graph)
    matches = [m for s in list(model.graph.node) if s.op_type == "Softmax"
               if (m := _match(g, s)) is not None]
    for i, m in enumerate(matches):
        nodes = _replace(g, m, f"/attention_op.{i}")
        pos = list(model.graph.node).index(m["at"])
        for k, node in enumerate(nodes):
            model.graph.node.insert(pos + k, node)
        for node in m["removed"]:
            model.graph.node.remove(node)
    _drop_dead_constants(model)
    return len(matches)


def _drop_dead_constants(model: Any) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    for node in [n for n in model.graph.node if n.op_type == "Constant"]:
        if node.output[0] not in used:
            model.graph.node.remove(node)
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def try_attention_op(path: Any, feeds: dict[str, np.ndarray], plain: np.ndarray,
                     min_cosine: float = 0.99999) -> str:
    """Rewrite the fp32 audio tower at ``path`` in place when this runtime runs the
    ``Attention`` op and the rewritten graph matches the plain one (``plain``: its output
    on ``feeds``, already checked against PyTorch) to ``min_cosine``; otherwise leave the
    file alone. Returns what was done, for listener.json (``checks.audio_attention``)."""
    import onnx
    import onnxruntime as ort

    from listener.files import atomic_write

    if not runtime_supports(ort.__version__):
        return (f"plain MatMul+Softmax (onnxruntime {ort.__version__} < "
                f"{MIN_ORT[0]}.{MIN_ORT[1]} has no Attention op)")
    model = onnx.load(str(path))
    blocks = use_attention_op(model)
    if not blocks:
        return "plain MatMul+Softmax (no window attention pattern found)"
    data = model.SerializeToString()
    try:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        got = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(
            None, feeds)[0]
    except Exception as exc:  # onnxruntime raises several types; the plain graph stays
        return f"plain MatMul+Softmax (Attention graph failed to run: {str(exc)[:160]})"
    cos = (got * plain).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(plain, axis=1))
    if not float(cos.min()) >= min_cosine:
        return f"plain MatMul+Softmax (Attention graph min cosine {float(cos.min()):.7f})"
    atomic_write(path, data)
    return (f"onnx Attention (opset {OPSET}) in {blocks} blocks, min cosine "
            f"{float(cos.min()):.7f} vs the plain graph")
