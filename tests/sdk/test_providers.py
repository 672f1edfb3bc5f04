"""Execution provider selection: QNN through the onnxruntime-qnn plugin, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

import pocketrec
from pocketrec._bundle import QNN, available_providers


def test_unknown_provider_is_refused_with_the_package_to_install(tiny_bundle: Path) -> None:
    with pytest.raises(pocketrec.ProviderUnavailableError, match="onnxruntime-gpu"):
        pocketrec.Recommender.from_bundle(tiny_bundle, providers=["CUDAExecutionProvider"])


def test_fp32_bundle_is_refused_by_the_npu_instead_of_silently_running_on_cpu(
    tiny_bundle: Path,
) -> None:
    pytest.importorskip("onnxruntime_qnn")
    assert QNN in available_providers()
    with pytest.raises(pocketrec.BundleError, match="--precision npu"):
        pocketrec.Recommender.from_bundle(tiny_bundle, providers=[QNN])
