"""The one-user constrained beam search as one ONNX graph (`search.onnx`), built from a decoder.

`search.onnx`: `memory` (1, window, hidden) float32 and `memory_mask` (1, window) bool (the
encoder's output for one history, what the decoder takes), `exclude` (E,) int64 catalogue rows
that must not be returned, `beam_width` () int64, `extra_width` () int64 and `code_bias`
(num_levels, codebook_size) float32 (the adapters' summed bias, zeros without adapters) ->
`items` (W,) int64 catalogue rows and `log_probs` (W,) float64, best first, W = min(beam_width,
items reachable). It returns what `pocketrec._search._search_one` returns for the same inputs
(the numpy search stays the reference; the export checks the two agree, `check_search_graph`).

Why a graph: one app `recommend` call on a small student costs a few decoder runs, and between
them the numpy search's per-call overhead was about a quarter of the request. Inside ONNX
Runtime the search is a few dozen small kernels per level.

Why it is composed from the bundle's own `decoder.onnx` rather than exported from torch: the
decoder nodes are copied once per level with the weights shared, so every precision's search
graph computes exactly its decoder's logits. A separately exported and quantized graph would
need the same quantizer choices (int4 block size, node groups kept in float) and, for int8,
could still differ: dynamic quantization scales activations per tensor, so a beam's logits
depend on the other beams of the call, and only the same decoder on the same beams gives the
same bits.

How the search runs inside: beams are trie nodes (as in `_search_one`). For each level the
children of every beam form a (beams, max_children) grid read from CSR tables (`offsets` per
node, child `codes` per entry), padded slots scoring -inf; log-softmax over each row's real
children in float64, candidate = beam score + log p, and TopK over the flattened grid keeps
min(width, real candidates) of them. The grid is beam-major with codes ascending within a row,
so TopK's tie rule (lower index first) is the search's (lower flat candidate index first), and
since K never exceeds the real candidates, padded slots are only picked where the numpy search
would pick -inf ones too (non-finite logits, or excluded items at the last level, all of which
come back as -1). Shapes are dynamic: the decoder sees exactly the beams the numpy search
gives it, which matters for int8's per-tensor activation scales.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from pocketrec._manifest import GraphSpec, TensorSpec
from pocketrec._prefix import PrefixIndex
from pocketrec._search import beam_search, extra_beams, one_user_result

__all__ = ["SEARCH_FILE", "build_search_graph", "check_search_graph", "write_search_graph"]

SEARCH_FILE = "search.onnx"
_INF = float("inf")


def _smallest_uint(values: np.ndarray) -> np.ndarray:
    """`values` (non-negative ints) in the narrowest of uint8/uint16/int32 that holds them."""
    top = int(values.max()) if values.size else 0
    dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.int32
    return values.astype(dtype)


class _Builder:
    """Nodes and initializers of a graph under construction, with fresh value names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.value_info: list[onnx.ValueInfoProto] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), f"search/{name}"))
        return f"search/{name}"

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs: Any) -> list[str]:
        self._count += 1
        names = [f"search/{op_type}_{self._count}_{i}" for i in range(outputs)]
        node = helper.make_node(op_type, list(inputs), names, f"search/{op_type}_{self._count}")
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
        self.nodes.append(node)
        return names

    def one(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        return self.op(op_type, *inputs, **attrs)[0]


def _decoder_call(
    b: _Builder,
    decoder: onnx.GraphProto,
    level: int,
    memory: str,
    mask: str,
    prefix: str,
    level_value: str,
) -> str:
    """Copy the decoder's nodes for one level; returns the name of its logits."""
    weights = {init.name for init in decoder.initializer}
    inputs = [i.name for i in decoder.input]
    mapped = dict(zip(inputs, [memory, mask, prefix, level_value], strict=True))

    def name(value: str) -> str:
        if value == "" or value in weights:
            return value
        return mapped.get(value, f"level{level}/{value}")

    for node in decoder.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = f"level{level}/{node.name}"
        del copy.input[:]
        copy.input.extend(name(v) for v in node.input)
        del copy.output[:]
        copy.output.extend(f"level{level}/{v}" for v in node.output)
        b.nodes.append(copy)
    # The decoder's shapes too, its beam axis renamed per level: ONNX Runtime fuses nodes
    # (Add + LayerNormalization into SkipLayerNormalization, ...) only where it knows that
    # shapes match, and each fusion changes float32 rounding; with the decoder's symbolic
    # shapes every copy is fused as the decoder graph is.
    for info in decoder.value_info:
        if info.name in weights or info.name in mapped:
            continue
        copy_info = onnx.ValueInfoProto()
        copy_info.CopyFrom(info)
        copy_info.name = name(info.name)
        for dim in copy_info.type.tensor_type.shape.dim:
            if dim.dim_param == "beams":
                dim.dim_param = f"beams{level}"
            elif dim.dim_param == "users":
                dim.dim_value = 1
        b.value_info.append(copy_info)
    return f"level{level}/{decoder.output[0].name}"


def build_search_graph(decoder_path: Path, index: PrefixIndex, out_path: Path) -> GraphSpec:
    """Write the one-user search graph built on `decoder_path`'s decoder to `out_path`.

    Args:
        decoder_path: a bundle's decoder.onnx (any precision with dynamic shapes).
        index: the bundle's prefix index (its semantic-ID table).
        out_path: where to write the graph (usually `<bundle>/search.onnx`).

    Returns:
        The graph's manifest entry.
    """
    dec_model = onnx.load(str(decoder_path))
    decoder = dec_model.graph
    levels, k_codes = index.num_levels, index.codebook_size
    dims = decoder.input[0].type.tensor_type.shape.dim  # memory (users, window, hidden)
    window, hidden = dims[1].dim_value, dims[2].dim_value
    b = _Builder()
    b.initializers.extend(decoder.initializer)
    neg_inf = b.const("neg_inf", np.array(-_INF))
    one = b.const("one", np.array([1], dtype=np.int64))
    axis0 = b.const("axis0", np.array([0], dtype=np.int64))
    axis1 = b.const("axis1", np.array([1], dtype=np.int64))
    axis2 = b.const("axis2", np.array([2], dtype=np.int64))
    flat_shape = b.const("flat_shape", np.array([-1], dtype=np.int64))
    zero_i = b.const("zero_i", np.array(0, dtype=np.int32))
    leaf_items = b.const("leaf_items", _smallest_uint(index.leaf_items))
    # The decoder copies take their level as a value computed from an input, not a constant:
    # with a constant one, ONNX Runtime folds the level's rows of the embedding and output
    # tables into each copy and fuses the head differently, and the logits move by float32
    # rounding from the decoder graph's (which must be matched bit for bit).
    runtime_zero = b.one("Mul", "beam_width", b.const("zero", np.array(0)))
    wide = b.one("Add", "beam_width", "extra_width")  # () beams kept before the last level

    # Before the first level: one beam, the root (node 0), score 0, every prefix code empty.
    nodes = b.const("root", np.zeros(1, dtype=np.int64))  # (W,) trie nodes of depth `level`
    scores = b.const("root_score", np.zeros(1))  # (W,) float64
    prefix = b.const("root_prefix", np.full((1, levels - 1), k_codes, np.int64))  # (W, C-1)
    # ... sliced to a beam count known only at run time (the same one row): a prefix of static
    # shape lets ONNX Runtime fuse the first decoder copy (MatMul + Add into Gemm), which
    # rounds differently from the decoder graph with its dynamic beams.
    prefix = b.one("Slice", prefix, axis0, b.one("Reshape", "beam_width", one), axis0)
    items = ""
    for level in range(levels):
        lv = index.levels[level]
        last = level == levels - 1
        width = int(lv.counts.max())  # M: children of the widest node of this depth
        offsets = b.const(f"offsets{level}", _smallest_uint(lv.offsets[: len(lv.counts) + 1]))
        codes = b.const(f"codes{level}", _smallest_uint(lv.codes))
        slots = b.const(f"slots{level}", np.arange(width, dtype=np.int64)[None])  # (1, M)
        last_entry = b.const(f"last_entry{level}", np.array(len(lv.codes) - 1, dtype=np.int64))
        level_value = b.one("Add", runtime_zero, b.const(f"level{level}", np.array(level)))

        logits = _decoder_call(
            b,
            decoder,
            level,
            "memory",
            "memory_mask",
            b.one("Unsqueeze", prefix, axis0),  # (1, W, C-1)
            level_value,
        )  # (1, W, K)
        bias = b.one("Gather", "code_bias", level_value, axis=0)  # (K,)
        logits = b.one("Add", b.one("Squeeze", logits, axis0), bias)  # (W, K) float32

        start = b.one("Cast", b.one("Gather", offsets, nodes), to=TensorProto.INT64)  # (W,)
        after = b.one("Add", nodes, one)
        stop = b.one("Cast", b.one("Gather", offsets, after), to=TensorProto.INT64)
        # Dead beams (score -inf or NaN) have no candidates, as in the numpy search.
        live = b.one("Greater", scores, neg_inf)
        count = b.one(
            "Where", live, b.one("Sub", stop, start), b.const(f"zero{level}", np.array(0))
        )
        entry = b.one("Add", b.one("Unsqueeze", start, axis1), slots)  # (W, M)
        valid = b.one("Less", slots, b.one("Unsqueeze", count, axis1))  # (W, M)
        entry = b.one("Min", entry, last_entry)  # padded slots read a real entry, masked below
        code = b.one("Cast", b.one("Gather", codes, entry), to=TensorProto.INT64)  # (W, M)
        values = b.one("GatherElements", logits, code, axis=1)  # (W, M) logits[beam, code]
        values = b.one("Cast", values, to=TensorProto.DOUBLE)
        values = b.one("Where", valid, values, neg_inf)
        # log-softmax over each beam's children, in `_search_one`'s order of operations
        top = b.one("ReduceMax", values, axis1, keepdims=1)  # (W, 1)
        shifted = b.one("Exp", b.one("Sub", values, top))
        lse = b.one("Add", b.one("Log", b.one("ReduceSum", shifted, axis1, keepdims=1)), top)
        cand = b.one("Add", b.one("Unsqueeze", scores, axis1), b.one("Sub", values, lse))
        if last:  # excluded items score -inf
            item_grid = b.one("Cast", b.one("Gather", leaf_items, entry), to=TensorProto.INT64)
            hits = b.one("Equal", b.one("Unsqueeze", item_grid, axis2), "exclude")  # (W, M, E)
            hits = b.one("Cast", hits, to=TensorProto.INT32)
            banned = b.one("Greater", b.one("ReduceSum", hits, axis2, keepdims=0), zero_i)
            cand = b.one("Where", banned, neg_inf, cand)
        cand = b.one("Where", valid, cand, neg_inf)  # (W, M)
        # Keep min(width, real candidates), at least one (a dead beam when there are none).
        keep = "beam_width" if last else wide
        total = b.one("ReduceSum", count, keepdims=0)
        k = b.one("Max", b.one("Min", keep, total), b.const(f"min_k{level}", np.array(1)))
        k = b.one("Reshape", k, one)  # (1,)
        scores, picked = b.op(
            "TopK", b.one("Reshape", cand, flat_shape), k, outputs=2, axis=0, largest=1, sorted=1
        )  # (W',) best first, ties by lower flat index
        entry_flat = b.one("Reshape", entry, flat_shape)  # (W*M,)
        nodes = b.one("Gather", entry_flat, picked)  # (W',) entries = nodes of depth level+1
        if last:
            items = b.one("Cast", b.one("Gather", leaf_items, nodes), to=TensorProto.INT64)
            break
        beam = b.one("Div", picked, b.const(f"width{level}", np.array(width, dtype=np.int64)))
        chosen = b.one("Gather", b.one("Reshape", code, flat_shape), picked)  # (W',)
        # prefix[beam] with column `level` set from empty to the chosen code
        onehot = np.zeros(levels - 1, dtype=np.int64)
        onehot[level] = 1
        delta = b.one("Sub", chosen, b.const(f"empty{level}", np.array(k_codes)))
        delta = b.one("Mul", b.one("Unsqueeze", delta, axis1), b.const(f"onehot{level}", onehot))
        prefix = b.one("Add", b.one("Gather", prefix, beam, axis=0), delta)  # (W', C-1)
    b.nodes.append(helper.make_node("Identity", [items], ["items"], name="search/items"))
    b.nodes.append(helper.make_node("Identity", [scores], ["log_probs"], name="search/log_probs"))

    spec = GraphSpec(
        file=out_path.name,
        inputs=(
            TensorSpec("memory", "float32", (1, window, hidden)),
            TensorSpec("memory_mask", "bool", (1, window)),
            TensorSpec("exclude", "int64", ("excluded",)),
            TensorSpec("beam_width", "int64", ()),
            TensorSpec("extra_width", "int64", ()),
            TensorSpec("code_bias", "float32", (levels, k_codes)),
        ),
        outputs=(
            TensorSpec("items", "int64", ("beams",)),
            TensorSpec("log_probs", "float64", ("beams",)),
        ),
    )
    types = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}
    types |= {"bool": TensorProto.BOOL, "int64": TensorProto.INT64}
    graph = helper.make_graph(
        b.nodes,
        "pocketrec_search",
        [helper.make_tensor_value_info(t.name, types[t.dtype], list(t.shape)) for t in spec.inputs],
        [
            helper.make_tensor_value_info(t.name, types[t.dtype], list(t.shape))
            for t in spec.outputs
        ],
        b.initializers,
        value_info=b.value_info,
    )
    model = helper.make_model(
        graph, opset_imports=list(dec_model.opset_import), ir_version=dec_model.ir_version
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return spec


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_search_graph(
    folder: Path,
    index: PrefixIndex,
    probe: np.ndarray,
    *,
    beam_width: int = 20,
    rtol: float = 1e-9,
) -> dict[str, float]:
    """Compare `folder`'s search graph with the numpy search on its decoder, user by user.

    Every probe history is searched with its own items excluded (and the widening `recommend`
    uses), every other one also without, and every fourth one under a random code bias (as
    adapters add), all at `beam_width`; both must return the same items with log-probabilities
    within `rtol`.

    Args:
        folder: a bundle folder with encoder.onnx, decoder.onnx and the search graph.
        index: the bundle's prefix index.
        probe: (N, window) catalogue rows, most recent last, -1 = padding.

    Raises:
        ExportError: any difference; the message names the first user that differs.
    """
    from pocketrec.export.bundle import ExportError

    encoder, decoder, search = (
        _session(folder / name) for name in ("encoder.onnx", "decoder.onnx", SEARCH_FILE)
    )
    codes = np.concatenate([np.zeros((1, index.num_levels), np.int64), index.semantic_ids])
    rng = np.random.default_rng(0)
    window = probe.shape[1]
    worst, cases = 0.0, 0
    for user, history in enumerate(probe):
        rows = history[history >= 0].tolist()
        memory = encoder.run(
            None, {"history_codes": codes[history[None] + 1], "history_rows": history[None] + 1}
        )[0]
        mask = history[None] >= 0
        bias = np.zeros((index.num_levels, index.codebook_size), np.float32)
        if user % 4 == 3:
            bias = rng.normal(0.0, 0.5, bias.shape).astype(np.float32)

        def step(
            states: Any, prefix: np.ndarray, level: int, bias: np.ndarray = bias
        ) -> np.ndarray:
            feeds = {
                "memory": states[0],
                "memory_mask": states[1],
                "prefix": prefix,
                "level": np.array(level),
            }
            logits: np.ndarray = decoder.run(None, feeds)[0]
            return logits + bias[level] if bias.any() else logits

        for excluded in [rows, []] if user % 2 else [rows]:
            extra = extra_beams(len(set(excluded)), beam_width, window)
            expected = beam_search(
                (memory, mask),
                step,
                index,
                beam_width=beam_width,
                top_k=beam_width,
                exclude=np.array([excluded]) if excluded else None,
                extra_width=extra,
            )
            items, log_probs = search.run(
                None,
                {
                    "memory": memory,
                    "memory_mask": mask,
                    "exclude": np.array(excluded, dtype=np.int64),
                    "beam_width": np.array(beam_width),
                    "extra_width": np.array(extra),
                    "code_bias": bias,
                },
            )
            found = one_user_result(index, items, log_probs, beam_width)
            same = np.array_equal(found.items, expected.items)
            finite = np.isfinite(expected.log_probs)
            same = same and np.array_equal(finite, np.isfinite(found.log_probs))
            error = float(
                np.max(
                    np.abs(found.log_probs[finite] - expected.log_probs[finite])
                    / np.maximum(np.abs(expected.log_probs[finite]), 1e-300),
                    initial=0.0,
                )
            )
            if not same or error > rtol:
                raise ExportError(
                    f"the search graph {folder / SEARCH_FILE} disagrees with the numpy search "
                    f"on probe user {user} ({len(excluded)} items excluded): items "
                    f"{found.items[0].tolist()} vs {expected.items[0].tolist()}, log-prob "
                    f"relative error {error:.1e} (tolerance {rtol:.0e}); the bundle was not "
                    "written"
                )
            worst, cases = max(worst, error), cases + 1
    return {"probe_searches": float(cases), "max_log_prob_relative_error": worst}


def write_search_graph(
    folder: Path, index: PrefixIndex, probe: np.ndarray
) -> tuple[GraphSpec, dict[str, float]]:
    """Build `folder/search.onnx` on `folder/decoder.onnx` and check it (`check_search_graph`).

    Returns:
        The graph's manifest entry and the check's report.

    Raises:
        ExportError: the graph disagrees with the numpy search.
    """
    spec = build_search_graph(folder / "decoder.onnx", index, folder / SEARCH_FILE)
    return spec, check_search_graph(folder, index, probe)
