"""Shared fixtures: the real datasets (via POCKETREC_DATA) and small generated catalogues."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real datasets; tests that need them skip when POCKETREC_DATA is not set."""
    root = os.environ.get("POCKETREC_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("POCKETREC_DATA is not set to the datasets folder")
    return Path(root)


def write_text(path: Path, text: str, *, gz: bool = False) -> Path:
    """Write a small test file (gzipped when asked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        import gzip

        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep embedding and download caches out of the user's home during tests."""
    os.environ.setdefault("POCKETREC_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture()
def interrupt_training(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """`with interrupt_training(epochs):` Ctrl-C a trainer after that many epochs.

    The trainers ask `EarlyStopping.should_stop` once per epoch, after writing its checkpoint,
    so the interrupted run leaves exactly what a real Ctrl-C at that point would.
    """
    from contextlib import contextmanager

    from pocketrec.distill.training import EarlyStopping

    @contextmanager
    def interrupt(epochs: int):  # type: ignore[no-untyped-def]
        calls = {"n": 0}

        def should_stop(self: EarlyStopping) -> bool:
            calls["n"] += 1
            if calls["n"] == epochs:
                raise KeyboardInterrupt
            return False

        with monkeypatch.context() as m:
            m.setattr(EarlyStopping, "should_stop", property(should_stop))
            with pytest.raises(KeyboardInterrupt):
                yield

    return interrupt
