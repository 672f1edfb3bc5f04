"""Building and checking the one-user search graph (`pocketrec.export.search_graph`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pocketrec._prefix import PrefixIndex
from pocketrec.export.bundle import ExportError
from pocketrec.export.search_graph import SEARCH_FILE, build_search_graph, check_search_graph


def _topk_session() -> ort.InferenceSession:
    graph = helper.make_graph(
        [helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=0, largest=1, sorted=1)],
        "topk",
        [
            helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n"]),
            helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info("values", TensorProto.DOUBLE, ["k"]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, ["k"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])


@pytest.mark.parametrize("size", [7, 60, 1840, 20000])
def test_onnx_runtime_topk_breaks_ties_by_the_lower_index(size: int) -> None:
    # The search graph relies on this for the search's tie rule (lower flat index first);
    # sizes span ONNX Runtime's small-k and large-n code paths, -inf scores included.
    session = _topk_session()
    rng = np.random.default_rng(size)
    for _ in range(20):
        x = rng.choice([-np.inf, -3.0, -1.0, -1.0 + 2**-40, 0.0], size=size)
        for k in sorted({1, 2, min(20, size), min(40, size), size}):
            values, indices = session.run(None, {"x": x, "k": np.array([k])})
            expected = np.argsort(-x, kind="stable")[:k]
            np.testing.assert_array_equal(indices, expected)
            np.testing.assert_array_equal(values, x[expected])


def test_the_check_refuses_a_search_graph_that_is_not_the_decoders(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "bundle"
    shutil.copytree(exported["fp32"], folder)
    index = PrefixIndex(np.load(folder / "semantic_ids.npy"), 8)
    probe = np.array([[-1, -1, -1, 3, 10], [-1, -1, -1, -1, 5], [1, 2, 3, 4, 5]], dtype=np.int64)
    report = check_search_graph(folder, index, probe)
    assert report["probe_searches"] == 4 and report["max_log_prob_relative_error"] <= 1e-9
    # a decoder whose output bias moved a little: the search graph built on it is rejected
    model = onnx.load(str(folder / "decoder.onnx"))
    bias = next(i for i in model.graph.initializer if i.name.endswith("code_bias"))
    values = numpy_helper.to_array(bias).copy()
    values[..., 0] += 1e-3
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    onnx.save(model, str(tmp_path / "other_decoder.onnx"))
    build_search_graph(tmp_path / "other_decoder.onnx", index, folder / SEARCH_FILE)
    with pytest.raises(ExportError, match="search graph .* disagrees with the numpy search"):
        check_search_graph(folder, index, probe)
