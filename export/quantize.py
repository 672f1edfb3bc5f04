"""Quantized graphs: int8 (dynamic), int4 (weight-only MatMulNBits) and NPU QDQ, from fp32 ONNX.

All three use ONNX Runtime's own quantizers rather than custom graph surgery: they know which
kernels exist on each execution provider, and what they emit is what those providers are tested
against.

- int8: `quantize_dynamic` with signed int8 weights (QInt8): on x86 it is as fast as static QDQ
  and about 3x faster than fp32 on transformer MatMuls, while unsigned weights are about 2x
  slower (REFERENCE.md). Embedding tables (Gather) are stored in int8 too.
- int4: `MatMulNBitsQuantizer` on the raw export (ONNX Runtime's pre-processing would fuse
  MatMul+Add into Gemm, which the quantizer skips), symmetric. `accuracy_level=4` computes with
  int8 activations (on transformer-sized MatMuls MatMulNBits was slower than fp32 without it,
  REFERENCE.md; on this model's small ones it can go either way), so the block size and
  accuracy level are chosen by measurement at export time (`pocketrec.export.precisions`).
  Gather tables become GatherBlockQuantized with the same block size, except tables of three
  or more dimensions (the decoder's per-level output table, indexed by the level): there one
  lookup selects a whole (codebook_size, hidden) matrix, which GatherBlockQuantized dequantizes
  on every call, and that made the int4 decoder several times slower than fp32 on one beam.
- npu: static QDQ for the Qualcomm HTP, `get_qnn_qdq_config` with 16-bit activations and 8-bit
  weights, calibrated on recorded model inputs (`pocketrec.export.npu`).

When a quantized bundle keeps too little of fp32's quality, whole groups of nodes (`node_groups`:
embeddings, a transformer block, the code head, the output head) are kept at higher precision:
in float for int8/int4 (`exclude`), with 16-bit weights for the NPU (`wide`), which keeps the
graph integer so every HTP generation can run it.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantType,
    quantize,
    quantize_dynamic,
)
from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

__all__ = [
    "node_groups",
    "quantize_int4",
    "quantize_int8",
    "quantize_qdq",
    "weight_nodes",
]

Feeds = dict[str, np.ndarray]


def _weights(model: onnx.ModelProto) -> set[str]:
    return {init.name for init in model.graph.initializer if len(init.dims) >= 2}


def weight_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """Node name -> weight initializer, for the nodes a quantizer turns into integer weights.

    Those are MatMuls with a constant (>= 2-D) operand and Gather/GatherND lookups in a
    constant table; MatMuls between two activations (attention scores) are not.
    """
    weights = _weights(model)
    found: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul":
            const = [i for i in node.input if i in weights]
        elif node.op_type in ("Gather", "GatherND"):
            const = [node.input[0]] if node.input[0] in weights else []
        else:
            continue
        if const:
            found[node.name] = const[0]
    return found


def _scope(node: onnx.NodeProto) -> str:
    """The torch module a node came from ("blocks.0", "head_q"), or "" when not recorded."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = [s for s in ast.literal_eval(prop.value) if s.startswith("model.")]
            if not scopes:
                return ""
            parts = scopes[0].split(".")  # ["model", "blocks", "0", ...] or ["model", "head_q"]
            return ".".join(parts[1:3]) if parts[1] == "blocks" else parts[1]
    return ""


def _output_head(model: onnx.ModelProto) -> set[str]:
    """Nodes between the graph output and the last LayerNormalization before it."""
    producer = {out: node for node in model.graph.node for out in node.output}
    seen: set[str] = set()
    stack = [o.name for o in model.graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen or node.op_type == "LayerNormalization":
            continue
        seen.add(node.name)
        stack.extend(node.input)
    return seen


def node_groups(model: onnx.ModelProto, graph: str) -> dict[str, list[str]]:
    """Quantized nodes of one graph, grouped by the part of the model they belong to.

    Groups are named "<graph>:<part>": `embeddings` (code, position and item tables),
    `blocks.N` (transformer block N), `code_head` (the level head's attention and MLP) and
    `output_head` (the tied output table and bias that produce the logits). The grouping
    reads the torch module scopes the exporter records on each node.

    Args:
        model: an fp32 graph as exported by `pocketrec.export.graphs`.
        graph: "encoder" or "decoder", the prefix of the group names.
    """
    head = _output_head(model) if graph == "decoder" else set()
    nodes = {n.name: n for n in model.graph.node}
    groups: dict[str, list[str]] = {}
    for name in weight_nodes(model):
        scope = _scope(nodes[name])
        if name in head:
            part = "output_head"
        elif scope.startswith("blocks"):
            part = scope
        elif scope.startswith("head"):
            part = "code_head"
        else:
            part = "embeddings"  # item_emb, pos_emb, and the unscoped code/prefix/level tables
        groups.setdefault(f"{graph}:{part}", []).append(name)
    return dict(sorted(groups.items()))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the quantizers' advice (pre-processing, opset upgrades) and numpy warnings."""
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            warnings.catch_warnings(),
            np.errstate(divide="ignore", invalid="ignore"),  # all-zero blocks have scale 0
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger().setLevel(level)


def quantize_int8(source: Path, target: Path, *, exclude: Iterable[str] = ()) -> Path:
    """Dynamic int8 quantization of one graph (signed weights, per-tensor).

    Args:
        exclude: node names to keep in float.
    """
    with _quiet():
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gather"],
            nodes_to_exclude=list(exclude),
        )
    return target


def _nbits_quantizer() -> Any:
    """onnxruntime's MatMulNBitsQuantizer, imported without its side effect on logging.

    Its module calls `logging.basicConfig(level=INFO)` on import, which would print every INFO
    record of every library (the ONNX exporter's among them) for the rest of the process;
    basicConfig does nothing while the root logger has a handler.
    """
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    finally:
        root.removeHandler(guard)
    return MatMulNBitsQuantizer


def quantize_int4(
    source: Path,
    target: Path,
    *,
    block_size: int,
    accuracy_level: int | None,
    exclude: Iterable[str] = (),
) -> Path:
    """Weight-only 4-bit quantization (MatMulNBits / GatherBlockQuantized) of one graph.

    Args:
        block_size: weights per quantization block (a power of two >= 16).
        accuracy_level: MatMulNBits compute type; 4 = int8 activations (fast on CPU), None =
            float activations.
        exclude: node names to keep in float (besides the lookups of whole matrices, which
            always are).
    """
    model = onnx.load(str(source))
    ranks = {init.name: len(init.dims) for init in model.graph.initializer}
    matrix_lookups = [
        node.name
        for node in model.graph.node
        if node.op_type == "Gather" and ranks.get(node.input[0], 0) >= 3
    ]
    with _quiet():
        quantizer = _nbits_quantizer()(
            model,
            bits=4,
            block_size=block_size,
            is_symmetric=True,
            accuracy_level=accuracy_level,
            nodes_to_exclude=[*exclude, *matrix_lookups],
            op_types_to_quantize=("MatMul", "Gather"),
            quant_axes=(("MatMul", 0), ("Gather", 1)),
        )
        quantizer.process()
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    return target


class _Feeds(CalibrationDataReader):
    """Calibration inputs from a list, in the ranges the strided calibrator asks for."""

    def __init__(self, feeds: Sequence[Feeds]) -> None:
        self._all = list(feeds)
        self._feeds = iter(self._all)

    def get_next(self) -> Feeds | None:
        return next(self._feeds, None)

    def __len__(self) -> int:
        return len(self._all)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._feeds = iter(self._all[start_index:end_index])


def _stride(count: int, most: int = 32) -> int:
    """The largest divisor of `count` up to `most` (the calibrator needs an exact division)."""
    return max(d for d in range(1, min(count, most) + 1) if count % d == 0)


def quantize_qdq(
    source: Path, target: Path, feeds: Sequence[Feeds], *, wide: Iterable[str] = ()
) -> Path:
    """Static QDQ for the Qualcomm HTP: uint16 activations, uint8 weights, calibrated on `feeds`.

    16-bit activations: 8-bit ones lost far more accuracy on this model family (REFERENCE.md),
    and the HTP runs 16x8 MatMuls natively. Calibration is MinMax over `feeds`, which should
    be the model's real inputs (recorded histories and beam-search steps).

    Args:
        source: a static-shape fp32 graph.
        feeds: calibration inputs, each a full feed dict of the graph's static shapes.
        wide: node names whose weights get 16-bit instead of 8-bit quantization.
    """
    if not feeds:
        raise ValueError("quantize_qdq needs at least one calibration feed")
    by_node = weight_nodes(onnx.load(str(source)))
    overrides: dict[str, list[dict[str, Any]]] = {
        by_node[name]: [{"quant_type": QuantType.QUInt16}] for name in wide if name in by_node
    }
    with _quiet():
        config = get_qnn_qdq_config(
            source,
            _Feeds(feeds),
            activation_type=QuantType.QUInt16,
            weight_type=QuantType.QUInt8,
            init_overrides=overrides or None,
            # min/max over a few dozen feeds at a time: bounded memory for any feed count
            stride=_stride(len(feeds)),
        )
        quantize(source, target, config)
    return target
