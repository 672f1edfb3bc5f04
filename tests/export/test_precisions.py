"""Multi-precision export on the tiny run: every bundle loads, is quantized and passes its gate."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from pocketrec import ProviderUnavailableError, Recommender
from pocketrec._bundle import QNN
from pocketrec._cli import main
from pocketrec._manifest import Manifest, read_manifest
from pocketrec.distill.data import load_dataset
from pocketrec.distill.protocol import leave_one_out
from pocketrec.export.bundle import ExportError
from pocketrec.export.config import PrecisionConfig
from pocketrec.export.precisions import export_precisions
from pocketrec.export.quality import quality_record, top_k_agreement
from pocketrec.export.quantize import node_groups
from tests.export.conftest import HAS_QNN, TINY_RETENTION

needs_qnn = pytest.mark.skipif(not HAS_QNN, reason="onnxruntime-qnn is not installed")
CPU = "CPUExecutionProvider"


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_each_precision_is_written_where_the_layout_says(exported: dict[str, Path]) -> None:
    root = exported["fp32"].parent
    assert {p: f.name for p, f in exported.items()} == {p: p for p in exported}
    assert not [p.name for p in root.iterdir() if p.name.endswith((".tmp", ".old"))]
    assert not [p.name for p in root.iterdir() if p.name.startswith(".fp32-reference")]


@pytest.mark.parametrize("precision", ["int8", "int4", "npu"])
def test_quality_is_measured_against_fp32_on_the_same_users(
    exported: dict[str, Path], precision: str
) -> None:
    if precision not in exported:
        pytest.skip("onnxruntime-qnn is not installed")
    fp32 = _manifest(exported["fp32"])["quality"]
    quality = _manifest(exported[precision])["quality"]
    assert quality["users"] == fp32["users"] == 30
    assert quality["user_selection"] == fp32["user_selection"] == "all 30 test users"
    assert quality["fp32_metrics"] == fp32["metrics"]
    assert quality["ndcg@10_retention"] == pytest.approx(
        quality["metrics"]["ndcg@10"] / fp32["metrics"]["ndcg@10"]
    )
    assert quality["required_retention"] == TINY_RETENTION[precision]
    assert quality["passed"] is True
    assert quality["ndcg@10_retention"] >= TINY_RETENTION[precision]
    assert quality["providers"] == ([QNN] if precision == "npu" else [CPU])
    # fp32's parity check is fp32's: kept apart, not passed off as this bundle's own
    producer = _manifest(exported[precision])["producer"]
    assert "parity" not in producer and producer["fp32_reference"]["parity"]
    if _manifest(exported[precision]).get("search_graph") is None:
        assert "search_graph_check" not in producer


def test_sdk_scores_match_the_recorded_quality(exported: dict[str, Path], tiny_run: Path) -> None:
    """The manifest's numbers are the SDK's: re-scoring the int8 bundle gives the same NDCG."""
    from pocketrec._evaluate import evaluate_recommender

    config = json.loads((tiny_run / "config.json").read_text())
    dataset = load_dataset(config["config"]["dataset"])
    rec = Recommender.from_bundle(exported["int8"], providers=[CPU])
    metrics = evaluate_recommender(rec, dataset)
    assert metrics["ndcg@10"] == pytest.approx(
        _manifest(exported["int8"])["quality"]["metrics"]["ndcg@10"]
    )


def test_sdk_scores_without_the_history_as_apps_are_served(
    exported: dict[str, Path], tiny_run: Path, tmp_path: Path
) -> None:
    """`exclude_history` scores the lists `recommend_batch` returns by default."""
    from pocketrec._evaluate import evaluate_recommender
    from pocketrec.distill.protocol import evaluate

    rec = Recommender.from_bundle(exported["fp32"], providers=[CPU])
    config = json.loads((tiny_run / "config.json").read_text())
    dataset = load_dataset(config["config"]["dataset"])
    index = {item: i for i, item in enumerate(map(str, dataset.item_ids))}

    def served(hist: np.ndarray) -> np.ndarray:
        histories = [[str(dataset.item_ids[i]) for i in row if i >= 0] for row in hist]
        lists = rec.recommend_batch(histories, k=20)  # history left out by default
        return np.array([[index[r.item_id] for r in recs] for recs in lists])

    split = leave_one_out(dataset)
    expected = evaluate(served, split, "test", max_len=rec.window, exclude_history=True)
    assert evaluate_recommender(rec, dataset, exclude_history=True) == expected
    # The same through the command line, whose record says how it scored.
    out = tmp_path / "eval.json"
    bundle, name = str(exported["fp32"]), config["config"]["dataset"]
    assert main(["evaluate", bundle, name, "--exclude-history", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["history_excluded"] is True and record["metrics"] == expected


def test_int8_and_int4_are_quantized_for_cpu_and_cuda(exported: dict[str, Path]) -> None:
    for precision, op in (("int8", "MatMulInteger"), ("int4", "MatMulNBits")):
        folder = exported[precision]
        m = _manifest(folder)
        assert m["precision"] == precision
        assert m["execution_providers"] == ["CUDAExecutionProvider", CPU]
        assert all(op in _ops(folder / f"{g}.onnx") for g in ("encoder", "decoder"))
        recs = Recommender.from_bundle(folder).recommend(["item1", "item2"], k=5)
        assert len(recs) == 5
    assert "GatherBlockQuantized" in _ops(exported["int4"] / "encoder.onnx")


def test_int4_keeps_lookups_of_whole_matrices_in_float(exported: dict[str, Path]) -> None:
    """The decoder's level-indexed output table stays a float Gather; row lookups are 4-bit."""
    model = onnx.load(str(exported["int4"] / "decoder.onnx"))
    ranks = {i.name: len(i.dims) for i in model.graph.initializer}
    tables = {
        n.op_type: ranks.get(n.input[0], 0)
        for n in model.graph.node
        if n.op_type in ("Gather", "GatherBlockQuantized") and n.input[0] in ranks
    }
    assert tables.get("Gather") == 3  # code_emb (levels, codebook_size, hidden), by level
    quantized = [
        ranks[n.input[0]]
        for n in model.graph.node
        if n.op_type == "GatherBlockQuantized" and n.input[0] in ranks
    ]
    assert quantized and max(quantized) < 3


def test_int4_settings_are_chosen_by_measurement_and_recorded(exported: dict[str, Path]) -> None:
    method = _manifest(exported["int4"])["producer"]["quantization"]
    choice = method["choice"]
    grid = {(c["block_size"], c["accuracy_level"]) for c in choice["candidates"]}
    assert grid == {(b, a) for b in (32, 64, 128) for a in (4, None)}
    chosen = (method["block_size"], method["accuracy_level"])
    assert chosen == (choice["chosen"]["block_size"], choice["chosen"]["accuracy_level"])
    best = max(c["top10_agreement_with_fp32"] for c in choice["candidates"])
    eligible = [c for c in choice["candidates"] if c["top10_agreement_with_fp32"] >= best - 0.005]
    fastest = min(eligible, key=lambda c: (c["rank_p50_ms"], c["block_size"]))
    assert chosen == (fastest["block_size"], fastest["accuracy_level"])
    assert "fastest" in choice["rule"]


@needs_qnn
def test_npu_bundle_runs_entirely_on_the_htp(exported: dict[str, Path]) -> None:
    from pocketrec.export.npu import check_placement

    folder = exported["npu"]
    m = _manifest(folder)
    assert m["execution_providers"] == [QNN]
    assert m["static_batch"] == 40  # beam 20 + max(beam 20, window 5)
    assert m["encoder"]["inputs"][0]["shape"] == [1, 5, 3]
    assert m["decoder"]["inputs"][0]["shape"] == [1, 5, 16]  # the one user's history, once
    assert m["decoder"]["inputs"][2]["shape"] == [1, 40, 2]  # its 40 beams' prefixes
    assert m["encoder"]["compiled"] == {QNN: "encoder.qnn.onnx"}
    options = m["provider_options"][QNN]
    for graph in ("encoder", "decoder"):
        assert "QuantizeLinear" in _ops(folder / f"{graph}.onnx")
        assert _ops(folder / f"{graph}.qnn.onnx") == {"EPContext"}
        placement = check_placement(folder / f"{graph}.onnx", options)  # raises otherwise
        assert set(placement["nodes_by_provider"]) == {QNN}
        assert placement["share_on_qnn"] == 1.0
    recorded = m["producer"]["quantization"]
    assert recorded["placement"]["decoder"]["share_on_qnn"] == 1.0
    assert recorded["compiled_vs_qdq"]["identical_top_k_share"] == 1.0
    assert recorded["calibration"]["histories"] == 30


def _constant_output_tables(decoder: Path, hidden: int, width: int) -> list[str]:
    """Initializers shaped like every level's output table side by side, (hidden, width)."""
    graph = onnx.load(str(decoder)).graph
    return [i.name for i in graph.initializer if list(i.dims) == [hidden, width]]


@needs_qnn
def test_npu_gate_first_swaps_in_the_constant_output_table(
    exported: dict[str, Path], tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed npu gate first retries with the decoder that multiplies by every level's table
    (a constant weight), before keeping any node group at 16-bit weights."""
    import pocketrec.export.gate
    import pocketrec.export.precisions
    from pocketrec.export.npu import OUTPUT_TABLE

    def reuse_fp32(student: object, folder: Path) -> Manifest:
        for f in exported["fp32"].iterdir():
            shutil.copy(f, folder / f.name)
        return read_manifest(folder)

    real = pocketrec.export.gate.quality_record
    calls: list[float] = []

    def first_attempt_fails(*args: object, **kwargs: object) -> dict:
        record = real(*args, **kwargs)
        calls.append(record["ndcg@10_retention"])
        if len(calls) == 1:
            record = {**record, "passed": False, "ndcg@10_retention": 0.5}
        return record

    monkeypatch.setattr(pocketrec.export.precisions, "write_fp32", reuse_fp32)
    monkeypatch.setattr(pocketrec.export.gate, "quality_record", first_attempt_fails)
    cfg = PrecisionConfig(precisions=("fp32", "npu"), quality_users=None)
    export_precisions(tiny_run, tmp_path / "bundles", cfg)
    folder = tmp_path / "bundles" / "npu"
    m = _manifest(folder)
    kept = m["producer"]["quantization"]["kept_16bit_weights"]
    assert kept["groups"] == [OUTPUT_TABLE]
    assert kept["nodes"] == {"encoder": [], "decoder": []}
    assert [a["kept"] for a in kept["attempts"]] == [[], [OUTPUT_TABLE]]
    assert "constant" in m["producer"]["quantization"]["decoder_output_table"]
    assert len(calls) == 2 and m["quality"]["passed"] is True
    hidden = m["hidden"]
    width = m["semantic_ids"]["num_levels"] * m["semantic_ids"]["codebook_size"]
    assert _constant_output_tables(folder / "decoder.onnx", hidden, width)
    assert not _constant_output_tables(exported["npu"] / "decoder.onnx", hidden, width)
    assert m["producer"]["quantization"]["placement"]["decoder"]["share_on_qnn"] == 1.0
    assert m["producer"]["quantization"]["compiled_vs_qdq"]["identical_top_k_share"] == 1.0


def test_npu_gate_records_the_nodes_it_kept_in_the_graph_it_used(
    exported: dict[str, Path], tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the constant output table swapped in, a kept output head names that form's nodes."""
    import onnx

    import pocketrec.export.gate
    import pocketrec.export.precisions
    from pocketrec.export.npu import OUTPUT_TABLE

    def reuse_fp32(student: object, folder: Path) -> Manifest:
        for f in exported["fp32"].iterdir():
            shutil.copy(f, folder / f.name)
        return read_manifest(folder)

    real = pocketrec.export.gate.quality_record
    calls: list[float] = []

    def two_attempts_fail(*args: object, **kwargs: object) -> dict:
        record = real(*args, **kwargs)
        calls.append(record["ndcg@10_retention"])
        if len(calls) <= 2:
            record = {**record, "passed": False, "ndcg@10_retention": 0.5}
        return record

    def head_first(job: object, shapes: object, groups: list[str], quantize: object) -> list:
        order = ["decoder:output_head"] + [g for g in groups if g != "decoder:output_head"]
        return [{"group": g, "agreement": 1.0} for g in order]

    monkeypatch.setattr(pocketrec.export.precisions, "write_fp32", reuse_fp32)
    monkeypatch.setattr(pocketrec.export.gate, "quality_record", two_attempts_fail)
    monkeypatch.setattr(pocketrec.export.gate, "_sensitivity", head_first)
    cfg = PrecisionConfig(precisions=("fp32", "npu"), quality_users=None)
    export_precisions(tiny_run, tmp_path / "bundles", cfg)
    folder = tmp_path / "bundles" / "npu"
    kept = _manifest(folder)["producer"]["quantization"]["kept_16bit_weights"]
    assert kept["groups"] == [OUTPUT_TABLE, "decoder:output_head"]
    assert kept["nodes"]["encoder"] == [] and kept["nodes"]["decoder"]
    names = {n.name for n in onnx.load(str(folder / "decoder.onnx")).graph.node}
    assert set(kept["nodes"]["decoder"]) <= names


@needs_qnn
def test_compiled_npu_graphs_recommend_what_the_qdq_graphs_do(
    exported: dict[str, Path], tiny_run: Path
) -> None:
    from pocketrec.export.npu import _uncompiled

    folder = exported["npu"]
    config = json.loads((tiny_run / "config.json").read_text())
    split = leave_one_out(load_dataset(config["config"]["dataset"]))
    histories = split.histories("test", 5)[0][::3]  # 10 users: the simulator is slow
    compiled = Recommender.from_bundle(folder, providers=[QNN])
    reference = _uncompiled(folder, _manifest(folder)["provider_options"][QNN])
    ours = compiled.rank(histories.astype(np.int64), k=10)
    theirs = reference.rank(histories.astype(np.int64), k=10)
    np.testing.assert_array_equal(ours.items, theirs.items)
    np.testing.assert_allclose(ours.log_probs, theirs.log_probs, rtol=0, atol=0)


@needs_qnn
def test_npu_bundle_is_never_run_on_the_cpu_silently(
    exported: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pocketrec._bundle

    monkeypatch.setattr(pocketrec._bundle, "available_providers", lambda: [CPU])
    with pytest.raises(
        ProviderUnavailableError, match=r"QNNExecutionProvider only.*pocketrec\[npu\]"
    ):
        Recommender.from_bundle(exported["npu"])


def test_node_groups_cover_every_quantized_node(exported: dict[str, Path]) -> None:
    folder = exported["fp32"]
    encoder = node_groups(onnx.load(str(folder / "encoder.onnx")), "encoder")
    decoder = node_groups(onnx.load(str(folder / "decoder.onnx")), "decoder")
    assert set(encoder) == {"encoder:embeddings", "encoder:blocks.0"}
    assert set(decoder) == {"decoder:embeddings", "decoder:code_head", "decoder:output_head"}
    assert len(encoder["encoder:blocks.0"]) == 4  # qkv, proj and two FFN MatMuls
    assert len(decoder["decoder:output_head"]) == 2  # tied output table and its bias


def test_quality_record_is_a_paired_comparison() -> None:
    from pocketrec.export.quality import Probe

    targets = np.array([1, 2, 3, 4])
    fp32 = np.array([[1, 9], [9, 2], [7, 8], [4, 5]])  # hits at ranks 0, 1, -, 0
    ours = np.array([[9, 1], [9, 2], [7, 8], [4, 5]])  # the first hit drops to rank 1
    probe = Probe("test", np.zeros((4, 3), np.int64), targets, "all 4 test users")
    q = quality_record(ours, fp32, probe, window=3, providers=(CPU,), required_retention=0.99)
    ndcg = {"fp32": (1 + 1 / np.log2(3) + 0 + 1) / 4, "ours": (2 / np.log2(3) + 1) / 4}
    assert q["metrics"]["ndcg@10"] == pytest.approx(ndcg["ours"])
    assert q["ndcg@10_retention"] == pytest.approx(ndcg["ours"] / ndcg["fp32"])
    assert q["passed"] is False
    assert q["identical_top10_share"] == 0.75
    assert top_k_agreement(ours, fp32, k=2) == 1.0


def test_a_failed_gate_keeps_the_previous_bundle_and_writes_the_others(
    exported: dict[str, Path], tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pocketrec.export.precisions

    def reuse_fp32(student: object, folder: Path) -> Manifest:  # the export itself is tested
        for f in exported["fp32"].iterdir():
            shutil.copy(f, folder / f.name)
        return read_manifest(folder)

    monkeypatch.setattr(pocketrec.export.precisions, "write_fp32", reuse_fp32)
    root = tmp_path / "bundles"
    shutil.copytree(exported["int8"], root / "int8")
    before = (root / "int8" / "manifest.json").read_bytes()
    cfg = PrecisionConfig(
        precisions=("fp32", "int8"),
        quality_users=None,
        required_retention={"int8": 1.0},  # tiny int8 keeps ~97% of fp32 (one user's hit)
        max_fallback_rounds=1,
    )
    with pytest.raises(ExportError) as failure:
        export_precisions(tiny_run, root, cfg)
    message = str(failure.value)
    assert message.startswith("int8: int8 keeps")
    assert "below the required 100.0%" in message and "kept at higher precision" in message
    assert "written: fp32 ->" in message
    assert (root / "int8" / "manifest.json").read_bytes() == before
    assert (root / "fp32" / "manifest.json").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["fp32", "int8"]


def test_npu_without_onnxruntime_qnn_names_the_extra(
    tiny_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime_qnn", None)  # import fails
    code = main(["export", str(tiny_run), "--out", str(tmp_path / "b"), "--precision", "int8,npu"])
    assert code == 2
    assert "pip install 'pocketrec[npu]'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()  # refused before any work


def test_unknown_precision_is_refused_with_the_valid_names(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["export", str(tiny_run), "--out", str(tmp_path / "b"), "--precision", "fp32,fp8"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown precision(s) 'fp8'" in err and "fp32, int8, int4, npu" in err
    with pytest.raises(SystemExit):
        main(["export", str(tiny_run), "--out", str(tmp_path), "--quality-users", "0"])
    capsys.readouterr()
    base = ["export", str(tiny_run), "--out", str(tmp_path / "b"), "--precision", "int8"]
    assert main([*base, "--min-retention", "fp32=0.9,int8=x"]) == 2
    err = capsys.readouterr().err
    assert "'fp32=0.9': gates exist for int8, int4, npu" in err
    assert "'int8=x': expected PRECISION=SHARE" in err
    assert main([*base, "--min-retention", "int8=1.5"]) == 2
    assert "required_retention values must be in (0, 1]" in capsys.readouterr().err
    assert main([*base, "--max-fallback", "-1"]) == 2
    assert "max_fallback_rounds must be >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    assert main(["export", str(tiny_run), "--out", str(tmp_path / "b"), "--quality-full"]) == 2
    assert "apply only with --precision were given: --quality-full" in capsys.readouterr().err


def test_every_bundle_carries_the_students_output_table(
    exported: dict[str, Path], tiny_run: Path
) -> None:
    """The table a state-shift adapter is fitted through is the one the decoder's logits use."""
    from pocketrec.export.bundle import load_student

    model, _, _ = load_student(tiny_run)
    table = model.code_emb.detach().float().numpy()  # logits of level l: state @ table[l].T
    for folder in exported.values():
        saved = np.load(folder / "code_embeddings.npy")
        assert saved.dtype == np.float16 and _manifest(folder)["semantic_ids"]["code_embeddings"]
        np.testing.assert_allclose(saved.astype(np.float32), table, rtol=1e-3, atol=1e-4)
