"""The SDK stays thin: importing it never loads the training stack, and its surface is pinned."""

from __future__ import annotations

import subprocess
import sys

import pocketrec


def test_import_does_not_load_training_stack() -> None:
    code = (
        "import sys, pocketrec\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'onnx', 'safetensors', "
        "'tqdm', 'pocketrec.distill', 'pocketrec.export') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import pocketrec loaded: {out.stdout.strip()}"


def test_public_surface_is_sorted_and_pinned() -> None:
    assert pocketrec.__all__ == sorted(pocketrec.__all__)
    assert pocketrec.__all__ == ["ConfigError", "PocketrecError", "__version__"]


def test_every_error_derives_from_the_root() -> None:
    from pocketrec.distill import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), pocketrec.PocketrecError)
    assert issubclass(pocketrec.ConfigError, pocketrec.PocketrecError)
