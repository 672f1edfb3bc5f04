"""Publishing federated rounds: a new bundle version whose shared adapter is the aggregate."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from pocketrec._adapter import Adapter
from pocketrec._bundle import _verify_files, sha256_file
from pocketrec._errors import BundleError
from pocketrec._manifest import FileEntry, read_manifest
from pocketrec.distill.runinfo import staged_folder

__all__ = ["ADAPTER_FILE", "write_bundle_version"]

ADAPTER_FILE = "shared_adapter.json"


def write_bundle_version(
    bundle: Path,
    adapter: Adapter,
    out: Path,
    *,
    quality: dict[str, Any] | None = None,
    signing_key: Path | None = None,
) -> Path:
    """Copy `bundle` to `out` with `adapter` as its shared adapter, as version `adapter.version`.

    Model files are copied unchanged. The manifest names the adapter file and its sha256, and
    records the version and the sha256 of the parent's manifest.json, so
    `Recommender.from_bundle(out)` verifies and applies it like any bundle, and devices upload
    updates against the new version. The copy is built next to `out` and swapped in: a failure
    leaves an existing `out` as it was.

    Args:
        bundle: the bundle the adapter was trained on (verified before it is copied).
        adapter: a "shared" adapter for that bundle, newer than the bundle's version.
        out: folder of the new version (not `bundle` itself).
        quality: measured metrics of the new version; the parent's do not carry over, since
            the adapter changes what the bundle recommends.
        signing_key: Ed25519 private key (`pocketrec keygen`) that signs the new version
            before it is swapped in, for apps that pin the publisher's key. Default: unsigned
            (a parent's signature never carries over: it signs another manifest).

    Returns:
        `out`.

    Raises:
        BundleError: the source bundle is missing or altered, or the adapter does not fit it.
    """
    bundle, out = Path(bundle), Path(out)
    manifest = read_manifest(bundle)
    _verify_files(bundle, manifest)
    shape = (manifest.semantic_ids.num_levels, manifest.semantic_ids.codebook_size)
    problems = []
    if adapter.bundle != manifest.name or adapter.bias.shape != shape:
        problems.append(
            f"the adapter is for bundle {adapter.bundle!r} with shape {adapter.bias.shape}, "
            f"this bundle is {manifest.name!r} with {shape}"
        )
    elif adapter.model is not None and adapter.model != manifest.model_id:
        problems.append(
            f"the adapter was aggregated on model {adapter.model[:16]}..., this bundle's is "
            f"{manifest.model_id[:16]}... (another export of the same name); publish it on the "
            "bundle its round distributed"
        )
    if adapter.kind != "shared":
        problems.append(f"only a shared adapter is published, this one is {adapter.kind!r}")
    if adapter.version <= manifest.version:
        problems.append(
            f"adapter version {adapter.version} is not newer than the bundle's version "
            f"{manifest.version}"
        )
    source, target = bundle.resolve(), out.resolve()
    if target == source or target in source.parents:  # swapping out in would delete the source
        problems.append(
            "out is the source bundle or a folder that holds it; write the new version to "
            "another folder"
        )
    if problems:
        raise BundleError("cannot publish the adapter: " + "; ".join(problems))
    if adapter.model is None:  # the published file names its model, so devices can check it
        adapter = replace(adapter, model=manifest.model_id)
    with staged_folder(out) as tmp:
        files = {}
        for name, entry in manifest.files.items():
            if name == manifest.adapter:
                continue  # the parent's shared adapter is replaced
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(bundle / name, tmp / name)
            files[name] = entry
        path = adapter.save(tmp / ADAPTER_FILE)
        files[ADAPTER_FILE] = FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)
        replace(
            manifest,
            adapter=ADAPTER_FILE,
            files=dict(sorted(files.items())),
            version=adapter.version,
            parent=sha256_file(bundle / "manifest.json"),
            quality=dict(quality or {}),
        ).write(tmp)
        if signing_key is not None:
            from pocketrec.export.sign import sign_bundle

            sign_bundle(tmp, signing_key)
    return out
