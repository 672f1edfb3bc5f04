"""`pocketrec bench` and `pocketrec bench-report` on the tiny bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pocketrec._cli import main
from pocketrec.export.bench_qnn import read_cycles
from tests.export.conftest import HAS_QNN

FAST = ["--repetitions", "12", "--warmup", "2", "--batch", "6"]


@pytest.fixture(scope="module")
def records(exported: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Bench records: every CPU precision, and the NPU bundle on the simulator."""
    out = tmp_path_factory.mktemp("bench")
    runs = [(p, "cpu") for p in ("fp32", "int8", "int4")] + (
        [("npu", "qnn-sim")] if HAS_QNN else []
    )
    paths = []
    for precision, device in runs:
        path = out / f"{precision}-{device}.json"
        args = ["bench", str(exported[precision]), "--device", device, *FAST, "--json", str(path)]
        assert main(args) == 0
        paths.append(path)
    return paths


def _load(records: list[Path], name: str) -> dict:
    return json.loads(next(p for p in records if p.name == name).read_text())


def test_cpu_record_has_latency_stages_throughput_memory_and_sizes(records: list[Path]) -> None:
    r = _load(records, "int8-cpu.json")
    assert r["format"] == "pocketrec-bench/1" and r["timing"] == "wall_clock"
    e2e = r["latency_ms"]["end_to_end"]
    assert 0 < e2e["p50"] <= e2e["p90"] <= e2e["p99"]
    stages = r["latency_ms"]["stages"]
    # the bundle has a search graph: one encoder run and one search run per recommend
    assert set(stages) == {"encode", "search_graph", "sdk_search_overhead"}
    inside = stages["encode"]["mean"] + stages["search_graph"]["mean"]
    assert inside + stages["sdk_search_overhead"]["mean"] == pytest.approx(e2e["mean"])
    assert r["time_in_onnxruntime_share"] == pytest.approx(inside / e2e["mean"])
    assert r["throughput_per_s"] > 0 and r["peak_memory_mb"] > 0
    sizes = r["bundle"]["bytes"]
    folder = Path(r["bundle"]["path"])
    student = sum((folder / f"{g}.onnx").stat().st_size for g in ("encoder", "decoder"))
    assert sizes["student_graphs"] == student
    assert sizes["search_graph"] == (folder / "search.onnx").stat().st_size > 0
    assert sizes["graphs"] == student + sizes["search_graph"]
    assert sizes["catalogue_tables_in_graphs"] > 0  # the item-id table
    assert sizes["graphs"] + sizes["tables"] == sizes["files_total"]
    # the search graph's own catalogue tables (its trie) are not taken off the student's size
    assert 0 < sizes["student_graphs_without_catalogue_tables"] < sizes["student_graphs"]
    assert sizes["student_graphs_without_catalogue_tables"] >= (
        sizes["graphs_without_catalogue_tables"] - sizes["search_graph"]
    )


def test_int4_catalogue_tables_are_counted_as_stored(tmp_path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from pocketrec.export.bench import _catalogue_bytes

    values = np.random.default_rng(0).integers(-8, 8, size=(1000, 64))
    tables = [
        helper.make_tensor("int4", TensorProto.INT4, [1000, 64], values.flatten().tolist()),
        helper.make_tensor("f32", TensorProto.FLOAT, [1000, 2], np.zeros(2000).tolist()),
        helper.make_tensor("small", TensorProto.FLOAT, [10, 2], np.zeros(20).tolist()),
    ]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [10, 2])
    node = helper.make_node("Identity", ["small"], ["y"])
    graph = helper.make_graph([node], "g", [], [out], initializer=tables)
    onnx.save(helper.make_model(graph), tmp_path / "g.onnx")
    # two int4 values a byte, four bytes a float; tables shorter than the catalogue not counted
    assert _catalogue_bytes(tmp_path / "g.onnx", 1000) == 1000 * 64 // 2 + 1000 * 2 * 4


def test_cpu_record_of_a_bundle_without_search_graph_times_each_level(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    from tests.bundles import drop_search_graph

    bundle = drop_search_graph(exported["int8"], tmp_path / "old")
    path = tmp_path / "old.json"
    assert main(["bench", str(bundle), "--device", "cpu", *FAST, "--json", str(path)]) == 0
    r = json.loads(path.read_text())
    stages = r["latency_ms"]["stages"]
    assert set(stages) == {
        "encode",
        *(f"decode_level_{i}" for i in range(3)),
        "sdk_search_overhead",
    }
    inside = stages["encode"]["mean"] + sum(stages[f"decode_level_{i}"]["mean"] for i in range(3))
    assert inside + stages["sdk_search_overhead"]["mean"] == pytest.approx(
        r["latency_ms"]["end_to_end"]["mean"]
    )
    assert r["bundle"]["bytes"]["search_graph"] == 0
    assert r["bundle"]["quality"]["users"] == 30
    assert r["runtime"]["providers"] == ["CPUExecutionProvider"]
    assert r["device"]["cpu_model"] and r["runtime"]["versions"]["onnxruntime"]
    assert r["settings"]["repetitions"] == 12 and r["settings"]["batch"] == 6


def test_concurrent_callers_get_their_own_throughput_figure(
    exported: dict[str, Path], records: list[Path], tmp_path: Path
) -> None:
    assert _load(records, "int8-cpu.json")["concurrent_throughput"] is None  # not asked for
    path = tmp_path / "workers.json"
    args = ["bench", str(exported["int8"]), *FAST, "--workers", "3", "--json", str(path)]
    assert main(args) == 0
    r = json.loads(path.read_text())
    c = r["concurrent_throughput"]
    assert c["workers"] == 3 and c["intra_op_threads"] == 1 and c["batch"] == 6
    assert c["throughput_per_s"] > 0 and c["calls_per_worker"] >= 3
    assert r["config"]["workers"] == 3


@pytest.mark.skipif(not HAS_QNN, reason="onnxruntime-qnn is not installed")
def test_qnn_sim_record_reports_htp_cycles_not_wall_time(records: list[Path]) -> None:
    r = _load(records, "npu-qnn-sim.json")
    assert r["timing"] == "htp_simulator_cycles"
    assert r["latency_ms"] is None and r["throughput_per_s"] is None
    cycles = r["latency_cycles"]
    stages = cycles["stages"]
    assert set(stages) == {"encode", "decode_level_0", "decode_level_1", "decode_level_2"}
    parts = stages["encode"]["mean"] + sum(stages[f"decode_level_{i}"]["mean"] for i in range(3))
    assert parts == pytest.approx(cycles["end_to_end"]["mean"])
    assert cycles["end_to_end"]["p50"] > 1000
    assert r["batch_cycles"]["p50"] > cycles["end_to_end"]["p50"]  # 6 histories per call
    assert r["runtime"]["providers"] == ["QNNExecutionProvider"]
    assert "onnxruntime-qnn" in r["runtime"]["versions"]
    assert r["bundle"]["bytes"]["graphs"] == sum(
        (Path(r["bundle"]["path"]) / f"{g}.qnn.onnx").stat().st_size for g in ("encoder", "decoder")
    )


def test_profile_rows_are_read_in_order(tmp_path: Path) -> None:
    profile = tmp_path / "p.csv"
    profile.write_text(
        "Msg Timestamp,Message,Time,Unit of Measurement,Timing Source,Event Level,"
        "Event Identifier\n"
        "0,BACKEND,831,US,BACKEND,ROOT,Accelerator (load binary) time\n"
        "0,BACKEND,3185393,CYCLES,BACKEND,ROOT,Accelerator (execute) time (cycles)\n"
        "0,NODE,1888,CYCLES,BACKEND,SUB-EVENT,Input OpId_2 (cycles)\n"
        "0,BACKEND,52103,US,BACKEND,ROOT,Accelerator (execute) time\n"
        "0,BACKEND,2615964,CYCLES,BACKEND,ROOT,Accelerator (execute) time (cycles)\n"
    )
    assert read_cycles(profile) == [3185393, 2615964]


def test_bench_refuses_a_bundle_of_another_device_class(
    exported: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    if "npu" in exported:
        assert main(["bench", str(exported["npu"]), "--device", "cpu", *FAST]) == 2
        assert "built for QNNExecutionProvider, not CPUExecutionProvider" in capsys.readouterr().err
    if HAS_QNN:
        assert main(["bench", str(exported["int8"]), "--device", "qnn-sim", *FAST]) == 2
        assert "--precision npu" in capsys.readouterr().err


def test_bench_on_cuda_without_the_provider_names_onnxruntime_gpu(
    exported: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    assert main(["bench", str(exported["fp32"]), "--device", "cuda", *FAST]) == 2
    assert "onnxruntime-gpu" in capsys.readouterr().err


def test_report_writes_a_device_by_precision_table_and_plots(
    records: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["bench-report", *map(str, records), "--out", str(out), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert str(out / "bench_table.md") in written and all(Path(p).is_file() for p in written)
    table = (tmp_path / "report" / "bench_table.md").read_text()
    header = table.splitlines()[0]
    assert "cpu, 1 thread p50 / p90" in header
    rows = [
        line.split(" | ")[0].strip("| ") for line in table.splitlines()[2:] if line.startswith("|")
    ]
    assert rows == ["fp32", "int8", "int4", *(["npu"] if HAS_QNN else [])]
    assert " ms |" in table and ("Mcycles" in table) == HAS_QNN
    for name in ("latency.png", "quality_vs_size.png"):
        data = (tmp_path / "report" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_report_refuses_files_that_are_not_bench_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text('{"format": "something-else"}')
    assert main(["bench-report", str(bogus), "--out", str(tmp_path / "r")]) == 2
    assert "not a pocketrec-bench/1 record" in capsys.readouterr().err
