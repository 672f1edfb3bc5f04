"""Quantized bundles: int8 (dynamic) and int4 (weight-only MatMulNBits), from an fp32 bundle.

Both use ONNX Runtime's own quantizers rather than custom graph surgery: they know which
kernels exist on each execution provider.

- int8: `quantize_dynamic` with signed int8 weights (QInt8): on x86 it is as fast as static QDQ
  and about 3x faster than fp32 on transformer MatMuls, while unsigned weights are about 2x
  slower (REFERENCE.md). Embedding tables (Gather) are quantized too.
- int4: `MatMulNBitsQuantizer` on the raw export (ONNX Runtime's pre-processing would fuse
  MatMul+Add into Gemm, which the quantizer skips), symmetric, with the block size and
  accuracy level picked by measurement (`choose_int4`): `accuracy_level=4` computes with int8
  activations, without it MatMulNBits is slower than fp32 on CPU. Gather tables use
  GatherBlockQuantized with the same block size.

If a quantized bundle keeps less than the required share of fp32 quality, `keep_fp32` names the
nodes to leave in float and the bundle is quantized again without them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

__all__ = ["quantize_int4", "quantize_int8", "weight_nodes"]


def weight_nodes(model: onnx.ModelProto, op_types: Iterable[str]) -> list[str]:
    """Names of the nodes of `op_types` whose second input is an initializer (a weight)."""
    weights = {init.name for init in model.graph.initializer}
    wanted = set(op_types)
    return [
        n.name
        for n in model.graph.node
        if n.op_type in wanted
        and len(n.input) > 1
        and (n.input[1] in weights or n.input[0] in weights)
    ]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.getLogger().setLevel(level)


def quantize_int8(source: Path, target: Path, *, exclude: Iterable[str] = ()) -> Path:
    """Dynamic int8 quantization of one graph (signed weights, per-tensor)."""
    with _quiet():
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gather"],
            nodes_to_exclude=list(exclude),
        )
    return target


def quantize_int4(
    source: Path,
    target: Path,
    *,
    block_size: int,
    accuracy_level: int | None,
    exclude: Iterable[str] = (),
) -> Path:
    """Weight-only 4-bit quantization (MatMulNBits / GatherBlockQuantized) of one graph."""
    model = onnx.load(str(source))
    with _quiet():
        quantizer = MatMulNBitsQuantizer(
            model,
            bits=4,
            block_size=block_size,
            is_symmetric=True,
            accuracy_level=accuracy_level,
            nodes_to_exclude=list(exclude),
            op_types_to_quantize=("MatMul", "Gather"),
            quant_axes=(("MatMul", 0), ("Gather", 1)),
        )
        quantizer.process()
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    return target


def copy_graphs(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("encoder.onnx", "decoder.onnx"):
        shutil.copy(source / name, target / name)
