"""On-device personalization: a code-bias adapter fitted on the user's own events.

The adapter is one bias per level and code (num_levels x codebook_size floats) added to the
decoder's logits before the prefix mask, so it shifts which codes the beam search prefers but
can never produce an item that does not exist. Two adapters are used:

- the shared adapter: shipped with the bundle and improved by federated rounds;
- a personal adapter: fitted on the device from the user's history and never uploaded.

Fitting needs no gradient through the network: the model's logits for every position of the
user's history are computed once (teacher-forced), and then only the bias is optimised (L2-
regularised cross-entropy, a few hundred numpy steps; `pocketrec._personalize`), which takes
milliseconds. A personal adapter is fitted either freely (a bias per code) or as a shift of
the decoder's state (`FitSettings.form`): the decoder's logits are its state times the
bundle's code embeddings, so a shift s of the state adds the code bias `code_embeddings @ s`,
and only s (`manifest.hidden` numbers) is fitted.

Federated updates (`federated_update`) are the change a client's data makes to the shared
adapter, L2-clipped to `clip_norm` and with Gaussian noise of standard deviation
`noise_multiplier * clip_norm` added on the device, serialised as JSON (no pickle).
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pocketrec._checks import is_int, is_real
from pocketrec._errors import BundleError, InvalidRequestError
from pocketrec._files import fsync

__all__ = [
    "ADAPTER_FORMAT",
    "FORMS",
    "MAX_UPDATE_BYTES",
    "UPDATE_FORMAT",
    "Adapter",
    "FitSettings",
    "check_privacy",
    "make_update",
]

ADAPTER_FORMAT = "pocketrec-adapter/1"
# 2: an update names the model it was computed on (`Manifest.model_id`), not only the bundle's
# name, which another export can share.
UPDATE_FORMAT = "pocketrec-update/2"
MAX_UPDATE_BYTES = 16 * 1024  # the largest upload a server accepts (the device checks it too)


def _encode(a: NDArray[np.float32]) -> dict[str, Any]:
    data = np.ascontiguousarray(a, dtype="<f4").tobytes()
    return {"dtype": "float32", "shape": list(a.shape), "b64": base64.b64encode(data).decode()}


def _decode(obj: Any, where: str) -> NDArray[np.float32]:
    if not isinstance(obj, dict) or obj.get("dtype") != "float32" or "b64" not in obj:
        raise InvalidRequestError(f"{where}: expected a float32 array object")
    shape = obj.get("shape")
    if not isinstance(shape, list) or not all(is_int(n) and n > 0 for n in shape):
        raise InvalidRequestError(
            f"{where}: shape must be a list of positive integers, got {shape!r}"
        )
    try:
        raw = base64.b64decode(obj["b64"], validate=True)
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise InvalidRequestError(f"{where}: array data does not match its shape ({e})") from e


@dataclass(frozen=True)
class Adapter:
    """A code bias for one bundle.

    Attributes:
        bundle: name of the bundle (manifest) it belongs to.
        bias: (num_levels, codebook_size) float32 added to the decoder logits of each level.
        kind: "shared" (from the server) or "personal" (fitted on the device).
        version: shared-adapter version; each federated round that changes it adds one.
        model: `Manifest.model_id` of the bundle it was fitted on. A bundle refuses an adapter
            of another model (an earlier or later export under the same name), whose codes
            may mean other items. None (files saved without it) fits any model of the name.
    """

    bundle: str
    bias: NDArray[np.float32]
    kind: str = "personal"
    version: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    model: str | None = None

    def __post_init__(self) -> None:
        """Every adapter is usable: a NaN or infinite bias would remove every item."""
        problems = []
        try:
            bias = np.asarray(self.bias)
        except ValueError:  # ragged nested lists
            bias = np.empty(0, dtype=object)
        real = np.issubdtype(bias.dtype, np.floating) or np.issubdtype(bias.dtype, np.integer)
        if bias.ndim != 2 or not real:
            problems.append(
                "bias must be a real (num_levels, codebook_size) array, got shape "
                f"{bias.shape} of {bias.dtype}"
            )
        elif not np.isfinite(bias.astype(np.float32)).all():
            problems.append(
                "bias holds NaN, infinite or non-numeric values, which would remove every item; "
                "refit it"
            )
        if not isinstance(self.bundle, str) or not self.bundle:
            problems.append(f"bundle must name the bundle, got {self.bundle!r}")
        if self.kind not in ("personal", "shared"):
            problems.append(f"kind must be personal or shared, got {self.kind!r}")
        if not is_int(self.version) or self.version < 0:
            problems.append(f"version must be an integer >= 0, got {self.version!r}")
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            problems.append(f"model must be a model id string or None, got {self.model!r}")
        if not isinstance(self.info, dict):
            problems.append(f"info must be an object, got {type(self.info).__name__}")
        if problems:
            raise InvalidRequestError(f"Adapter: {'; '.join(problems)}")
        # a float32 copy nobody can write to: the checks above hold for the adapter's lifetime
        frozen = np.array(bias, dtype=np.float32)
        frozen.flags.writeable = False
        object.__setattr__(self, "bias", frozen)
        object.__setattr__(self, "version", int(self.version))

    def check_fits(self, bundle: str, model: str, shape: tuple[int, ...]) -> None:
        """Raise InvalidRequestError unless this adapter applies to that bundle's model.

        Args:
            bundle: the bundle's name (`Manifest.name`).
            model: the bundle's `Manifest.model_id`.
            shape: (num_levels, codebook_size) of the bundle's code bias.
        """
        if self.bundle != bundle or self.bias.shape != shape:
            raise InvalidRequestError(
                f"adapter for bundle {self.bundle!r} with shape {self.bias.shape} does not fit "
                f"bundle {bundle!r} ({shape}); fit it on this bundle"
            )
        if self.model is not None and self.model != model:
            fix = (
                "fit it again on this bundle (fit_adapter)"
                if self.kind == "personal"
                else "use the shared adapter published with this bundle"
            )
            raise InvalidRequestError(
                f"this {self.kind} adapter was fitted on another model of bundle "
                f"{self.bundle!r} (another export, or a changed catalogue), whose semantic IDs "
                f"may mean other items; {fix}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ADAPTER_FORMAT,
            "bundle": self.bundle,
            "kind": self.kind,
            "version": self.version,
            "bias": _encode(self.bias),
            "info": self.info,
        } | ({"model": self.model} if self.model is not None else {})

    @classmethod
    def from_json(cls, obj: Any) -> Adapter:
        """An adapter from `to_json`'s data; anything else raises `BundleError`."""
        fix = "delete the file and fit the adapter again (or fetch the shared one again)"
        if not isinstance(obj, dict) or obj.get("format") != ADAPTER_FORMAT:
            found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
            raise BundleError(f"not a pocketrec adapter (format {found!r}); {fix}")
        try:
            bias = _decode(obj.get("bias"), "adapter bias")
        except InvalidRequestError as e:
            raise BundleError(f"{e}; {fix}") from e
        try:
            return cls(
                bundle=obj.get("bundle"),  # type: ignore[arg-type]
                bias=bias,
                kind=obj.get("kind", "personal"),
                version=obj.get("version", 0),
                info=obj.get("info", {}),
                model=obj.get("model"),
            )
        except InvalidRequestError as e:
            raise BundleError(f"invalid adapter file: {e}; {fix}") from e

    def save(self, path: str | Path) -> Path:
        """Write atomically and durably (temp file, fsync, rename).

        A personal adapter is better kept in the event store (`EventStore.save_adapter`), so
        that the user's `export` and `forget` cover it.
        """
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json()), encoding="utf-8")
        fsync(tmp)
        tmp.replace(path)
        fsync(path.parent)  # the rename itself survives a power loss once its folder is synced
        return path

    @classmethod
    def load(cls, path: str | Path) -> Adapter:
        try:
            obj = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BundleError(
                f"cannot read adapter {path}: {e}; delete the file and fit the adapter again"
            ) from e
        return cls.from_json(obj)


FORMS = ("bias", "shift")


@dataclass(frozen=True)
class FitSettings:
    """What a personal adapter is, and how strongly and how long it is fitted.

    Two forms of personal adapter exist; both are a code bias at recommend time, so the search
    still returns only catalogue items:

    - "bias" (default): a free bias per level and code (num_levels x codebook_size numbers).
    - "shift": a vector of `manifest.hidden` numbers added to the decoder's state before its
      output table, the same for every level, stored as the code bias it amounts to
      (`code_embeddings @ shift`). Needs a bundle with `code_embeddings`.

    Federated updates always change the shared code bias; `form` and `holdout` apply to
    personal adapters only. The defaults are a starting point, not a measured optimum: no
    setting measured made either form help long histories consistently from validation to
    test (benchmarks/README.md, personalization), so choose settings on your own validation
    data before turning personalization on.
    """

    # L2 penalty on what is fitted (the bias's change, or the shift), so one value is not the
    # same strength for both forms; larger = more conservative
    l2: float = 8.0
    steps: int = 200
    lr: float = 0.1
    # Histories with fewer known items are not fitted: `fit_adapter` returns a zero adapter
    # and `federated_update` refuses (a history of n items gives n - 1 next-item targets).
    min_events: int = 2
    # Only the most recent this-many next-item targets are fitted, each read with its full
    # window of earlier events: time and memory grow with it, not with the history (Beauty
    # bundle, one x86 core: 0.17 s and 35 MB at 100; 10,000 targets took 27 s and 2.6 GB).
    max_events: int = 100
    form: str = "bias"
    # A per-user check before a personal adapter is kept: fit on all but the most recent
    # `holdout` targets, and keep the adapter (refitted on every target) only if it lowers
    # the loss on those; otherwise the user gets a zero adapter. Histories with no more than
    # `holdout` targets are not adapted. 0: no check. Personal adapters only.
    holdout: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name, least in (("steps", 1), ("min_events", 0), ("max_events", 1), ("holdout", 0)):
            value = getattr(self, name)
            if not is_int(value) or value < least:
                problems.append(f"{name} must be an integer >= {least}, got {value!r}")
        for name in ("l2", "lr"):
            value = getattr(self, name)
            if not is_real(value) or not math.isfinite(value) or value < 0:
                problems.append(f"{name} must be a finite number >= 0, got {value!r}")
        if self.form not in FORMS:
            problems.append(f"form must be one of {', '.join(FORMS)}, got {self.form!r}")
        if problems:
            raise InvalidRequestError("FitSettings: " + "; ".join(problems))
        for name in ("steps", "min_events", "max_events", "holdout"):  # numpy -> JSON-able
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("l2", "lr"):
            object.__setattr__(self, name, float(getattr(self, name)))


def check_privacy(clip_norm: object, noise_multiplier: object) -> None:
    """Refuse privacy settings that would leak or break an update, before any work is done.

    An infinite clip norm would upload the unclipped change; NaN would upload NaN.
    """
    problems = []
    for name, value, positive in (
        ("clip_norm", clip_norm, True),
        ("noise_multiplier", noise_multiplier, False),
    ):
        x = float(value) if is_real(value) else math.nan  # type: ignore[arg-type]
        if not math.isfinite(x) or x < 0 or (positive and x == 0):
            bound = "> 0" if positive else ">= 0"
            problems.append(f"{name} must be a finite number {bound}, got {value!r}")
    if problems:
        raise InvalidRequestError("federated update: " + "; ".join(problems))


def make_update(
    delta: NDArray[np.float32],
    *,
    bundle: str,
    model: str,
    base_version: int,
    clip_norm: float,
    noise_multiplier: float,
    num_events: int,
    rng: np.random.Generator,
) -> bytes:
    """Clip `delta` to L2 norm `clip_norm`, add Gaussian noise, serialise (pocketrec-update/2).

    Raises:
        InvalidRequestError: `delta` is not finite (a diverged fit: lower `FitSettings.lr`),
            or the payload would exceed `MAX_UPDATE_BYTES` (codebooks too large to upload).

    Args:
        delta: the change to the shared adapter the local data asks for.
        bundle: bundle name the update was computed on.
        model: that bundle's `Manifest.model_id`; servers reject updates from other models.
        base_version: shared-adapter version it starts from (older ones are rejected as stale).
        clip_norm: L2 bound of one client's contribution (the DP sensitivity).
        noise_multiplier: noise std as a multiple of clip_norm, added here on the device.
        num_events: how many next-item targets the update was fitted on, at most
            `FitSettings.max_events`, so it does not reveal a longer history's length (not
            used as a weight by the server, which would leak it; reported for monitoring only).
        rng: randomness for the noise (a fresh OS-seeded Generator in production).
    """
    check_privacy(clip_norm, noise_multiplier)
    clip_norm, noise_multiplier = float(clip_norm), float(noise_multiplier)
    delta = np.asarray(delta, dtype=np.float64)
    if not np.isfinite(delta).all():  # NaN would skip the clipping below and reach the server
        raise InvalidRequestError(
            "federated update: the fitted change is not finite (the fit diverged); lower "
            "FitSettings.lr and fit again"
        )
    norm = float(np.linalg.norm(delta))
    clipped = delta * min(1.0, clip_norm / norm) if norm > 0 else delta
    noised = clipped + rng.normal(0.0, noise_multiplier * clip_norm, size=delta.shape)
    upload = noised.astype(np.float32)
    if not np.isfinite(upload).all():
        raise InvalidRequestError(
            "federated update: the noised change overflows float32; lower noise_multiplier "
            "or clip_norm"
        )
    payload = {
        "format": UPDATE_FORMAT,
        "bundle": bundle,
        "model": model,
        "base_version": int(base_version),
        "clip_norm": clip_norm,
        "noise_multiplier": noise_multiplier,
        "num_events": int(num_events),
        "delta": _encode(upload),
    }
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_UPDATE_BYTES:
        raise InvalidRequestError(
            f"federated update: {len(data):,} bytes for a {delta.shape} adapter, over the "
            f"{MAX_UPDATE_BYTES:,}-byte upload limit servers accept; federated rounds need "
            "bundles with fewer levels or codes"
        )
    return data
