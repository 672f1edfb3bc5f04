"""The bundle manifest: the one contract between export, the SDK, the benchmark and Android.

A bundle is a folder described by `manifest.json`. This module parses it into frozen
dataclasses that check themselves, and writes it back; the exporter builds the same objects,
so what is written is always what the SDK can read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pocketrec._checks import is_int
from pocketrec._errors import BundleError

__all__ = [
    "SCHEMA_VERSION",
    "FileEntry",
    "GraphSpec",
    "Manifest",
    "SemanticIdLayout",
    "TensorSpec",
    "read_manifest",
]

# 2: the decoder takes each user's history once and a (users, beams) grid of prefixes.
# (The optional `search_graph` entry did not need a new version: readers that predate it ignore
# it and search in numpy, and bundles without it read as before.)
SCHEMA_VERSION = 2
PRECISIONS = ("fp32", "int8", "int4", "npu")


REEXPORT = "re-export the bundle with `pocketrec export RUN_DIR --out BUNDLE_DIR`"
# The publisher's signature of manifest.json, beside it (`pocketrec sign`; see pocketrec._signing).
SIGNATURE_FILE = "signature.json"


def _need(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict):
        raise BundleError(f"manifest: {where} should be an object, got {type(obj).__name__}")
    if key not in obj:
        raise BundleError(f"manifest: {where} has no {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and not is_int(value)):
        raise BundleError(f"manifest: {where}.{key} should be {kind}, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, element type, shape (ints, or names of dynamic axes)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    @classmethod
    def parse(cls, obj: dict[str, Any], where: str) -> TensorSpec:
        return cls(
            name=_need(obj, "name", str, where),
            dtype=_need(obj, "dtype", str, where),
            shape=tuple(_need(obj, "shape", list, where)),
        )


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX file and its tensors.

    `compiled` maps an execution provider to an ahead-of-time compiled version of the same
    graph (e.g. a Qualcomm HTP EPContext model), used when that provider is selected.
    """

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    compiled: dict[str, str] = field(default_factory=dict)

    def file_for(self, provider: str) -> str:
        return self.compiled.get(provider, self.file)

    @classmethod
    def parse(cls, obj: dict[str, Any], where: str) -> GraphSpec:
        return cls(
            file=_need(obj, "file", str, where),
            compiled=dict(obj.get("compiled", {})),
            inputs=tuple(
                TensorSpec.parse(t, f"{where}.inputs") for t in _need(obj, "inputs", list, where)
            ),
            outputs=tuple(
                TensorSpec.parse(t, f"{where}.outputs") for t in _need(obj, "outputs", list, where)
            ),
        )


@dataclass(frozen=True)
class SemanticIdLayout:
    """How semantic IDs are laid out: levels, codes per level, the empty prefix code."""

    num_levels: int  # including the collision level (the last one)
    codebook_size: int
    table: str  # .npy file: (num_items, num_levels) int32, row i = catalogue item i
    tokenizer: str  # tokenizer.json: token ids of the codes and special tokens
    # .npy file: (num_levels, codebook_size, hidden) float16, the decoder's output embedding
    # of every code (its logits are the decoder state times this table). A personal adapter
    # fitted as a state shift is a code bias in its span. Optional: older bundles lack it.
    code_embeddings: str | None = None

    @property
    def empty_code(self) -> int:
        """The code that marks "not chosen yet" in a decoder prefix."""
        return self.codebook_size

    def __post_init__(self) -> None:
        if self.num_levels < 1 or self.codebook_size < 2:
            raise BundleError(
                f"manifest: semantic_ids has {self.num_levels} levels of {self.codebook_size} codes"
            )
        if self.code_embeddings is not None and not isinstance(self.code_embeddings, str):
            raise BundleError(
                f"manifest: semantic_ids.code_embeddings must name a file, got "
                f"{self.code_embeddings!r}; {REEXPORT}"
            )


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    """Everything a runtime needs to know about a bundle."""

    schema_version: int
    name: str
    precision: str
    execution_providers: tuple[str, ...]  # intended, in order of preference
    provider_options: dict[str, dict[str, str]]  # per provider, e.g. QNN backend and SoC
    min_onnxruntime: str
    max_len: int  # history window of the model
    hidden: int
    semantic_ids: SemanticIdLayout
    encoder: GraphSpec
    decoder: GraphSpec
    catalog: str  # catalog.json: item ids, display metadata, popularity
    num_items: int
    special_tokens: dict[str, int]
    search: dict[str, int]  # default beam_width, top_k
    files: dict[str, FileEntry]
    # Fixed-shape graphs (NPU): the decoder takes exactly this many beams per user per call.
    static_batch: int | None = None
    adapter: str | None = None  # the shared code-bias adapter (pocketrec-adapter/1), if any
    # The whole one-user beam search as one graph (`pocketrec.export.search_graph`), built on
    # this bundle's decoder; optional: without it `recommend` searches in numpy.
    search_graph: GraphSpec | None = None
    # 0 as exported; each published federated round adds one (and equals the shared adapter's
    # version, which devices name in their updates). Older manifests have neither key.
    version: int = 0
    parent: str | None = None  # sha256 of the manifest.json this version was derived from
    producer: dict[str, Any] = field(default_factory=dict)  # config, command, versions
    quality: dict[str, Any] = field(default_factory=dict)  # measured metrics of this bundle

    def __post_init__(self) -> None:
        problems = []
        if not re.fullmatch(r"\d+(\.\d+){0,2}", self.min_onnxruntime):
            problems.append(
                f"min_onnxruntime must be a version such as 1.20.1, got {self.min_onnxruntime!r}"
            )
        for key, value in self.search.items():
            if not is_int(value) or value < 1:
                problems.append(f"search.{key} must be an integer >= 1, got {value!r}")
        if self.static_batch is not None and (
            not is_int(self.static_batch) or self.static_batch < 1
        ):
            problems.append(f"static_batch must be an integer >= 1, got {self.static_batch!r}")
        if self.adapter is not None and not isinstance(self.adapter, str):
            problems.append(f"adapter must name a file, got {self.adapter!r}")
        if len(self.encoder.inputs) < 1 or len(self.decoder.inputs) < 3:
            problems.append(
                f"the encoder needs 1 input and the decoder 3 (state, mask, prefix), got "
                f"{len(self.encoder.inputs)} and {len(self.decoder.inputs)}"
            )
        if problems:
            raise BundleError(f"manifest: {'; '.join(problems)}; {REEXPORT}")
        if self.precision not in PRECISIONS:
            raise BundleError(f"manifest: precision {self.precision!r} is not one of {PRECISIONS}")
        if self.max_len <= 0 or self.num_items <= 0:
            raise BundleError("manifest: max_len and num_items must be positive")
        if not is_int(self.version) or self.version < 0:
            raise BundleError(f"manifest: version must be an integer >= 0, got {self.version!r}")
        if self.parent is not None and not isinstance(self.parent, str):
            raise BundleError(f"manifest: parent must be a sha256 string, got {self.parent!r}")
        referenced = {
            self.encoder.file,
            self.decoder.file,
            self.catalog,
            self.semantic_ids.table,
            self.semantic_ids.tokenizer,
        } | ({self.adapter} if self.adapter else set())
        if self.semantic_ids.code_embeddings:
            referenced.add(self.semantic_ids.code_embeddings)
        if self.search_graph:
            referenced |= {self.search_graph.file} | set(self.search_graph.compiled.values())
        referenced |= set(self.encoder.compiled.values()) | set(self.decoder.compiled.values())
        missing = sorted(referenced - set(self.files))
        if missing:
            raise BundleError(f"manifest: files {missing} are used but have no sha256 entry")
        for name in self.files:
            _check_file_name(name)

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Manifest:
        """Validate a manifest dictionary (newer schemas are refused with an upgrade hint)."""
        version = _need(obj, "schema_version", int, "manifest")
        if version > SCHEMA_VERSION:
            from pocketrec._version import __version__

            raise BundleError(
                f"this bundle's manifest has schema version {version}, but pocketrec "
                f"{__version__} reads up to version {SCHEMA_VERSION}; upgrade pocketrec "
                "(pip install -U pocketrec) or export the bundle with this version"
            )
        if version < 1:
            raise BundleError(f"manifest: schema_version {version} is not valid")
        if version < SCHEMA_VERSION:
            raise BundleError(
                f"this bundle's manifest has schema version {version}: its decoder takes one "
                f"history copy per beam, and this pocketrec reads version {SCHEMA_VERSION} "
                "(each history once, beams as a grid); export it again with "
                "`pocketrec export RUN_DIR --out BUNDLE_DIR`"
            )
        try:
            return cls._parse(obj, version)
        except BundleError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError) as e:
            raise BundleError(f"manifest: malformed ({type(e).__name__}: {e}); {REEXPORT}") from e

    @classmethod
    def _parse(cls, obj: dict[str, Any], version: int) -> Manifest:
        sid = _need(obj, "semantic_ids", dict, "manifest")
        files = _need(obj, "files", dict, "manifest")
        return cls(
            schema_version=version,
            name=_need(obj, "name", str, "manifest"),
            precision=_need(obj, "precision", str, "manifest"),
            execution_providers=tuple(_need(obj, "execution_providers", list, "manifest")),
            provider_options={k: dict(v) for k, v in obj.get("provider_options", {}).items()},
            min_onnxruntime=_need(obj, "min_onnxruntime", str, "manifest"),
            max_len=_need(obj, "max_len", int, "manifest"),
            hidden=_need(obj, "hidden", int, "manifest"),
            semantic_ids=SemanticIdLayout(
                num_levels=_need(sid, "num_levels", int, "semantic_ids"),
                codebook_size=_need(sid, "codebook_size", int, "semantic_ids"),
                table=_need(sid, "table", str, "semantic_ids"),
                tokenizer=_need(sid, "tokenizer", str, "semantic_ids"),
                code_embeddings=sid.get("code_embeddings"),
            ),
            encoder=GraphSpec.parse(_need(obj, "encoder", dict, "manifest"), "encoder"),
            decoder=GraphSpec.parse(_need(obj, "decoder", dict, "manifest"), "decoder"),
            catalog=_need(obj, "catalog", str, "manifest"),
            num_items=_need(obj, "num_items", int, "manifest"),
            special_tokens=dict(_need(obj, "special_tokens", dict, "manifest")),
            search=dict(_need(obj, "search", dict, "manifest")),
            files={
                name: FileEntry(
                    sha256=_need(e, "sha256", str, name), bytes=_need(e, "bytes", int, name)
                )
                for name, e in files.items()
            },
            static_batch=obj.get("static_batch"),
            adapter=obj.get("adapter"),
            search_graph=None
            if obj.get("search_graph") is None
            else GraphSpec.parse(_need(obj, "search_graph", dict, "manifest"), "search_graph"),
            version=obj.get("version", 0),
            parent=obj.get("parent"),
            producer=dict(obj.get("producer", {})),
            quality=dict(obj.get("quality", {})),
        )

    @functools.cached_property
    def model_id(self) -> str:
        """sha256 of the bundle's files other than its shared adapter (their names and sha256s).

        Every version a federated round publishes keeps it (only the adapter and the manifest
        change). A bundle whose files differ in any other way has another one, even under the
        same name and version number: a retrained or re-tokenized model, and also a catalogue
        whose metadata changed (adapters are cheap to fit again; telling harmless file changes
        from ones that change what codes mean is not worth the risk). Device updates and
        adapters name it, so a server never averages changes computed on different models and a
        device never applies a personal adapter fitted on another one.
        """
        files = {n: e.sha256 for n, e in sorted(self.files.items()) if n != self.adapter}
        return hashlib.sha256(json.dumps(files, separators=(",", ":")).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["semantic_ids"]["empty_code"] = self.semantic_ids.empty_code
        return out

    def write(self, folder: Path) -> Path:
        """Write `folder/manifest.json` atomically.

        A signature of an earlier manifest in the folder is removed: it no longer signs what is
        written, and a bundle is better unsigned than carrying a signature that fails.
        """
        path = folder / "manifest.json"
        (folder / SIGNATURE_FILE).unlink(missing_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)
        return path


def _check_file_name(name: str) -> None:
    """A manifest's file names stay inside the bundle folder (the JVM core checks the same)."""
    parts = re.split(r"[/\\]", name)
    if not name or name.startswith(("/", "\\")) or ":" in name or ".." in parts:
        raise BundleError(
            f"manifest: file name {name!r} must be a relative path inside the bundle folder"
        )


def read_manifest_bytes(folder: Path) -> bytes:
    """The bytes of `folder/manifest.json`.

    Raises:
        BundleError: the folder has no manifest.json.
    """
    path = Path(folder) / "manifest.json"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BundleError(
            f"{folder} is not a pocketrec bundle: it has no manifest.json "
            "(make one with `pocketrec export RUN_DIR --out BUNDLE_DIR`)"
        ) from None
    except OSError as e:
        raise BundleError(f"cannot read {path}: {e}") from e


def read_manifest(folder: Path, *, data: bytes | None = None) -> Manifest:
    """Parse `folder/manifest.json`, or `data` when given (bytes already read and checked, such
    as the ones a signature was verified on: reading the file again could see another one).

    Raises:
        BundleError: the file is missing, not JSON, or not a valid manifest.
    """
    path = Path(folder) / "manifest.json"
    if data is None:
        data = read_manifest_bytes(folder)
    try:
        obj = json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON ({e}); the bundle is corrupt") from e
    if not isinstance(obj, dict):
        raise BundleError(f"{path} must hold a JSON object")
    return Manifest.parse(obj)
