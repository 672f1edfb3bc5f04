"""Opening a bundle: integrity, runtime version, tables and ONNX Runtime sessions."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from pocketrec._adapter import Adapter
from pocketrec._errors import (
    BundleError,
    IncompatibleRuntimeError,
    ProviderUnavailableError,
    RecommenderError,
)
from pocketrec._manifest import REEXPORT, GraphSpec, Manifest, read_manifest
from pocketrec._prefix import PrefixIndex
from pocketrec._signing import load_public_keys, verify_signature

__all__ = ["QNN", "Bundle", "available_providers", "check_bundle", "open_bundle", "sha256_file"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def _check_runtime(manifest: Manifest) -> None:
    have = ort.__version__
    if _version_tuple(have) < _version_tuple(manifest.min_onnxruntime):
        raise IncompatibleRuntimeError(
            f"this bundle needs onnxruntime >= {manifest.min_onnxruntime}, but {have} is "
            f"installed; upgrade it: pip install 'onnxruntime>={manifest.min_onnxruntime}'"
        )


def _verify_files(folder: Path, manifest: Manifest) -> None:
    for name, entry in sorted(manifest.files.items()):
        path = folder / name
        if not path.is_file():
            raise BundleError(
                f"bundle file {name} is missing from {folder}; re-export or re-download the bundle"
            )
        if path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
            raise BundleError(
                f"bundle file {name} does not match its sha256 in manifest.json: it was altered "
                "or corrupted after export; re-export or re-download the bundle"
            )


QNN = "QNNExecutionProvider"
_QNN_REGISTERED: list[bool] = []


def _qnn_devices() -> list[Any]:
    """Devices of the Qualcomm QNN plugin (package onnxruntime-qnn), registered once.

    onnxruntime-qnn ships QNN as a plugin execution provider library rather than a build of
    onnxruntime, so it is registered by path and reached through its devices (the HTP itself
    on a phone, its simulator on x86).
    """
    if not _QNN_REGISTERED:
        try:
            import onnxruntime_qnn  # type: ignore[import-not-found,unused-ignore]

            ort.register_execution_provider_library(
                onnxruntime_qnn.get_ep_name(), onnxruntime_qnn.get_library_path()
            )
            _QNN_REGISTERED.append(True)
        except Exception:  # not installed, or a build without plugin support
            _QNN_REGISTERED.append(False)
    if not _QNN_REGISTERED[0]:
        return []
    return [d for d in ort.get_ep_devices() if d.ep_name == QNN]


def available_providers() -> list[str]:
    """Execution providers this process can use, QNN included when onnxruntime-qnn is."""
    available = list(ort.get_available_providers())
    if QNN not in available and _qnn_devices():
        available.insert(0, QNN)
    return available


def _providers(requested: Sequence[str] | None, manifest: Manifest) -> list[str]:
    available = available_providers()
    if requested is not None:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ProviderUnavailableError(
                f"execution provider(s) {', '.join(missing)} are not available in this "
                f"onnxruntime build; available: {', '.join(available)}. Install the package "
                "that provides it (onnxruntime-gpu for CUDA/TensorRT, onnxruntime-qnn for QNN)"
            )
        return list(requested)
    chosen = [p for p in manifest.execution_providers if p in available]
    if not chosen and "CPUExecutionProvider" not in manifest.execution_providers:
        # An NPU bundle on a machine without its provider: running its quantized graph on the
        # CPU instead would be slow and not what was measured, so it is never done silently.
        raise ProviderUnavailableError(
            f"this {manifest.precision} bundle runs on {', '.join(manifest.execution_providers)}"
            f" only, which this machine lacks (available: {', '.join(available)}). Install "
            "the provider (pip install 'pocketrec[npu]' for QNN), use a bundle exported for "
            "this device (--precision fp32, int8 or int4), or pass "
            "providers=['CPUExecutionProvider'] to run this one on the CPU anyway"
        )
    return chosen or ["CPUExecutionProvider"]


def _session_options(threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def _session(
    folder: Path,
    graph: GraphSpec,
    options: ort.SessionOptions,
    providers: list[str],
    manifest: Manifest,
) -> ort.InferenceSession:
    """One graph's session; on QNN the whole graph must run on the NPU, or loading fails.

    `options` must be this session's own: a plugin provider is added to the options object,
    and ONNX Runtime refuses to add the same provider twice.
    """
    path = str(folder / graph.file_for(providers[0]))
    if providers[0] != QNN:
        return ort.InferenceSession(path, options, providers=providers)
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    qnn_options = {"backend_type": "htp", **manifest.provider_options.get(QNN, {})}
    options.add_provider_for_devices(_qnn_devices(), qnn_options)
    try:
        return ort.InferenceSession(path, options)
    except Exception as e:
        raise BundleError(
            f"the QNN execution provider could not take all of {graph.file_for(QNN)}: {e}. "
            "Use a bundle exported with --precision npu, or open it with "
            "providers=['CPUExecutionProvider']"
        ) from e


@dataclass(frozen=True)
class Bundle:
    """A verified bundle, loaded: manifest, tables, catalogue and sessions."""

    folder: Path
    manifest: Manifest
    semantic_ids: NDArray[np.int64]  # (num_items, num_levels)
    item_ids: tuple[str, ...]
    metadata: tuple[dict[str, Any], ...]  # display metadata per item
    popularity: NDArray[np.float64]  # (num_items,) training-interaction counts
    encoder: ort.InferenceSession
    decoder: ort.InferenceSession
    providers: tuple[str, ...]
    adapters: tuple[Adapter, ...]  # the shared adapter, when the bundle has one
    index: PrefixIndex  # the semantic IDs that exist, for constrained search
    search: ort.InferenceSession | None = None  # the one-user search graph, when it has one
    signed_by: str | None = None  # id of the trusted key that signed it, when keys were given
    # (num_levels, codebook_size, hidden) the decoder's output table, when the bundle has one
    code_embeddings: NDArray[np.float32] | None = None


def _check_tables(
    manifest: Manifest, table: Any, catalog: Any
) -> tuple[list[dict[str, Any]], NDArray[np.float64], PrefixIndex]:
    """The catalogue's items and popularity and the prefix index, after checking the tables.

    A sha256 in the manifest only shows a file is the one exported with it; these checks catch
    an exporter bug or an edited bundle before it can give wrong results instead of errors.
    Code ranges and unique semantic IDs are the prefix index's own checks.
    """
    layout = manifest.semantic_ids
    items = catalog.get("items", []) if isinstance(catalog, dict) else []
    if not isinstance(items, list):
        items = []
    if table.shape != (manifest.num_items, layout.num_levels) or len(items) != (manifest.num_items):
        raise BundleError(
            f"bundle tables disagree with the manifest: {table.shape} semantic IDs and "
            f"{len(items)} catalogue items for {manifest.num_items} items of "
            f"{layout.num_levels} levels; {REEXPORT}"
        )
    problems = []
    index = None
    if not np.issubdtype(table.dtype, np.integer):
        problems.append(f"the semantic-ID table holds {table.dtype}, not integers")
    else:
        try:
            index = PrefixIndex(table, layout.codebook_size)
        except ValueError as e:
            problems.append(str(e))
    bad = [n for n, it in enumerate(items) if not isinstance(it, dict) or not _is_id(it.get("id"))]
    if bad:
        problems.append(f"catalogue items {bad[:5]} have no string id")
    else:
        repeated = [i for i, n in Counter(it["id"] for it in items).items() if n > 1]
        if repeated:
            problems.append(f"catalogue id {repeated[0]!r} appears more than once")
    raw = catalog.get("popularity") if isinstance(catalog, dict) else None
    popularity = np.ones(len(items))
    if raw is not None:
        try:
            popularity = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            popularity = np.full(1, np.nan)
        if popularity.shape != (len(items),) or not np.isfinite(popularity).all():
            problems.append(f"popularity must be {len(items)} finite numbers")
    if problems or index is None:
        raise BundleError(f"bundle tables are invalid: {'; '.join(problems)}; {REEXPORT}")
    return items, popularity, index


def _code_embeddings(folder: Path, manifest: Manifest) -> NDArray[np.float32] | None:
    """The decoder's output table, checked; None when the bundle has none (older exports)."""
    name = manifest.semantic_ids.code_embeddings
    if name is None:
        return None
    layout = manifest.semantic_ids
    expected = (layout.num_levels, layout.codebook_size, manifest.hidden)
    try:
        table = np.load(folder / name, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BundleError(
            f"cannot read the bundle's code embeddings {name}: {e}; {REEXPORT}"
        ) from e
    if (
        table.shape != expected
        or not np.issubdtype(table.dtype, np.floating)
        or not np.isfinite(table).all()
    ):
        raise BundleError(
            f"the code embeddings {name} must be {expected} finite floats, got {table.shape} "
            f"of {table.dtype}; {REEXPORT}"
        )
    out: NDArray[np.float32] = table.astype(np.float32)
    return out


def _is_id(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def check_bundle(
    folder: Path,
    *,
    trusted_keys: Sequence[str | bytes | Path] | None = None,
    verify: bool = True,
) -> tuple[Manifest, str | None, tuple[list[dict[str, Any]], NDArray[np.float64], PrefixIndex]]:
    """Everything `open_bundle` checks before it creates sessions: signature (with
    `trusted_keys`), manifest, runtime version, files, tables.

    Returns:
        The manifest, the id of the key that signed it (None without `trusted_keys`), and the
        catalogue items, popularity and prefix index.
    """
    signed_by, data = None, None
    if trusted_keys is not None:
        # Before the manifest is parsed: an untrusted manifest is not worth reading.
        signed_by, data = verify_signature(folder, load_public_keys(trusted_keys))
    manifest = read_manifest(folder, data=data)
    _check_runtime(manifest)
    if verify or signed_by is not None:
        _verify_files(folder, manifest)
    try:
        table = np.load(folder / manifest.semantic_ids.table, allow_pickle=False)
        # NaN or Infinity in metadata would make every answer naming the item invalid JSON
        catalog = json.loads((folder / manifest.catalog).read_text(), parse_constant=_no_constant)
    except (OSError, ValueError) as e:
        raise BundleError(f"cannot read the bundle's tables: {e}") from e
    return manifest, signed_by, _check_tables(manifest, table, catalog)


def _no_constant(name: str) -> None:
    raise ValueError(f"the catalogue holds {name}, which JSON does not allow; re-export it")


def open_bundle(
    folder: Path | str,
    *,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    verify: bool = True,
    trusted_keys: Sequence[str | bytes | Path] | None = None,
) -> Bundle:
    """Read and check a bundle, then create its ONNX Runtime sessions.

    With `trusted_keys`, the bundle must carry a signature by one of them over its manifest as
    it is now, and every file is checked against the manifest whatever `verify` says.

    Raises:
        BundleError: missing or altered files, invalid manifest or tables.
        SignatureError: with `trusted_keys`: unsigned, untrusted signer, or a manifest that
            changed after signing.
        IncompatibleRuntimeError: onnxruntime is older than the bundle needs.
        ProviderUnavailableError: a requested execution provider is not available.
    """
    given = Path(folder)
    # Every file is read through the folder the path points to now, so a bundle switched in
    # by `install_bundle` while this runs is read whole, old or new, never a mix of both.
    folder = given.resolve()
    checked = check_bundle(folder, trusted_keys=trusted_keys, verify=verify)
    manifest, signed_by, (items, popularity, index) = checked
    code_embeddings = _code_embeddings(folder, manifest)
    chosen = _providers(providers, manifest)
    try:
        encoder = _session(folder, manifest.encoder, _session_options(threads), chosen, manifest)
        decoder = _session(folder, manifest.decoder, _session_options(threads), chosen, manifest)
        search = None
        if manifest.search_graph is not None and chosen[0] != QNN:
            search = _session(
                folder, manifest.search_graph, _session_options(threads), chosen, manifest
            )
    except RecommenderError:
        raise
    except Exception as e:  # onnxruntime raises its own exception types
        raise BundleError(f"onnxruntime could not load the bundle's graphs: {e}") from e
    adapters: tuple[Adapter, ...] = ()
    if manifest.adapter:
        shared = Adapter.load(folder / manifest.adapter)
        expected = (manifest.semantic_ids.num_levels, manifest.semantic_ids.codebook_size)
        if shared.bias.shape != expected:
            raise BundleError(f"shared adapter has shape {shared.bias.shape}, expected {expected}")
        if shared.model is not None and shared.model != manifest.model_id:
            raise BundleError(
                f"the shared adapter {manifest.adapter} was published for model "
                f"{shared.model[:16]}..., but this bundle's files are model "
                f"{manifest.model_id[:16]}...; fetch the published version of this bundle again "
                "(its adapter and files must come from the same publish)"
            )
        adapters = (shared,)
    return Bundle(
        folder=given,
        manifest=manifest,
        semantic_ids=index.semantic_ids,
        item_ids=tuple(item["id"] for item in items),
        metadata=tuple({k: v for k, v in item.items() if k != "id"} for item in items),
        popularity=popularity,
        encoder=encoder,
        decoder=decoder,
        providers=tuple(encoder.get_providers()),
        adapters=adapters,
        index=index,
        search=search,
        signed_by=signed_by,
        code_embeddings=code_embeddings,
    )
