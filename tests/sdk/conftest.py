"""Fixtures for SDK tests: the tiny deterministic bundle."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from tests.bundles import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("tiny"))


@pytest.fixture()
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A copy a test may damage."""
    target = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, target)
    return target
