"""The SDK stays thin: importing it never loads the training stack, and its surface is pinned."""

from __future__ import annotations

import subprocess
import sys

import pocketrec


def test_import_does_not_load_training_stack() -> None:
    code = (
        "import sys, pocketrec\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'onnx', 'safetensors', "
        "'tqdm', 'cryptography', 'pocketrec.distill', 'pocketrec.export') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import pocketrec loaded: {out.stdout.strip()}"


def test_public_surface_is_sorted_and_pinned() -> None:
    assert pocketrec.__all__ == sorted(pocketrec.__all__)
    assert pocketrec.__all__ == [
        "Adapter",
        "BundleError",
        "ConfigError",
        "Event",
        "EventStore",
        "FitSettings",
        "IncompatibleRuntimeError",
        "InvalidRequestError",
        "Manifest",
        "PocketrecError",
        "ProviderUnavailableError",
        "Recommendation",
        "Recommender",
        "RecommenderError",
        "SCHEMA_VERSION",
        "SignatureError",
        "StoreError",
        "UnknownItemError",
        "UnknownItemWarning",
        "__version__",
        "install_bundle",
    ]


def test_every_error_derives_from_the_root() -> None:
    from pocketrec import _errors
    from pocketrec.distill import errors

    for module in (errors, _errors):
        for name in module.__all__:
            assert issubclass(getattr(module, name), pocketrec.PocketrecError)
    for name in (
        "BundleError",
        "ProviderUnavailableError",
        "InvalidRequestError",
        "StoreError",
        "UnknownItemError",
        "IncompatibleRuntimeError",
        "SignatureError",
    ):
        assert issubclass(getattr(pocketrec, name), pocketrec.RecommenderError)


def test_sdk_sources_import_only_the_thin_runtime() -> None:
    """No module of sdk/ imports a training-side package, even lazily inside a function."""
    import ast
    from pathlib import Path

    allowed_lazy = {"pocketrec.distill.data", "pocketrec.distill.protocol"}  # numpy-only
    heavy = ("torch", "transformers", "peft", "onnx", "safetensors", "tqdm")
    for path in Path(pocketrec.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root not in heavy, f"{path.name} imports {name}"
                if name.startswith("pocketrec.distill") or name.startswith("pocketrec.export"):
                    assert name in allowed_lazy or path.name == "_cli.py", f"{path.name}: {name}"


def test_building_every_subcommand_parser_imports_no_training_stack() -> None:
    """`pocketrec --help` builds every parser, the training side's included: their argument
    definitions must stay standard-library (handlers import their stage when they run)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pocketrec._cli import build_parser\n"
        "parser = build_parser()\n"
        "parser.parse_args(['distill', 'beauty', '--out', 'x'])\n"
        "heavy = ('torch', 'transformers', 'peft', 'onnx', 'safetensors', 'tqdm', 'flwr', 'ray')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
