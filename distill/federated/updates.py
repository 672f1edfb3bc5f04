"""Checking device uploads before they count: size, schema, bundle, model, version, shape,
values, norm.

An upload is the `pocketrec-update/2` JSON payload that `Recommender.federated_update` returns
(see `pocketrec._adapter.make_update`). Every check runs on the raw bytes a network would deliver,
cheapest first, and a rejected upload gets exactly one reason from `REASONS`; rounds count them.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pocketrec._adapter import MAX_UPDATE_BYTES, UPDATE_FORMAT, _decode
from pocketrec._errors import ConfigError, InvalidRequestError

__all__ = ["MAX_UPDATE_BYTES", "REASONS", "RoundTally", "UpdateRules", "Verdict", "check_update"]

# MAX_UPDATE_BYTES (the SDK's, which devices check before uploading): a (4, 256) adapter
# uploads as ~5.7 KB; the cap leaves room for larger codebooks and refuses anything that could
# make parsing itself expensive.

# Every reason an upload can be rejected for, with what it means (reports use the keys).
REASONS = {
    "oversized": "payload larger than the size cap (checked before it is parsed)",
    "malformed": "not a JSON object, or a field is missing or of the wrong type",
    "wrong_schema": f"format is not {UPDATE_FORMAT}",
    "other_bundle": "computed on another bundle (its name differs)",
    "other_model": "computed on another model of the bundle's name (another export of it)",
    "stale_version": "computed against another version of the shared adapter",
    "wrong_shape": "delta is not a float32 (num_levels, codebook_size) array",
    "non_finite": "delta holds NaN or inf",
    "dp_settings": "declared clip_norm or noise_multiplier differ from the round's",
    "norm_too_large": "L2 norm larger than clipping plus the declared noise can give",
    "too_little_noise": "L2 norm smaller than the declared noise gives: it was not added",
}

# How far, in noise standard deviations, an honest upload's norm may stray from the noise's:
# the norm of a d-dimensional N(0, s^2 I) vector is 1-Lipschitz in the vector, so it leaves
# [s * sqrt(d - 1) - s * t, s * sqrt(d) + s * t] with probability below 2 exp(-t^2 / 2) (its
# mean lies between s * d / sqrt(d + 1) >= s * sqrt(d - 1) and s * sqrt(d)). t = 6 wrongly
# rejects fewer than 4 honest uploads in 100 million.
_NOISE_TAIL = 6.0


@dataclass(frozen=True)
class UpdateRules:
    """What the server accepts in one round.

    Attributes:
        bundle: manifest name of the bundle the devices run.
        models: `Manifest.model_id` of the bundle the round distributes (a set, as a server
            that moves its devices to a re-export of the same name can accept both during the
            move); uploads must name one of them.
        version: shared-adapter version the round distributed; uploads name it as base_version.
        shape: (num_levels, codebook_size) of the adapter.
        clip_norm: L2 bound of a device's change, set by the server for the round.
        noise_multiplier: device noise std in units of clip_norm, set for the round.
        max_bytes: size cap of one upload.
    """

    bundle: str
    models: frozenset[str]
    version: int
    shape: tuple[int, int]
    clip_norm: float
    noise_multiplier: float
    max_bytes: int = MAX_UPDATE_BYTES

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.models, str | bytes):  # frozenset("ab12") would be its characters
            problems.append(
                f"models must be a set of model ids, such as {{manifest.model_id}}, got the "
                f"string {self.models!r}"
            )
        else:
            try:
                object.__setattr__(self, "models", frozenset(self.models))
            except TypeError:
                problems.append(f"models must be a set of model ids, got {self.models!r}")
            else:
                if not self.models or not all(isinstance(m, str) and m for m in self.models):
                    problems.append(
                        f"models must name at least one model id (manifest.model_id), got "
                        f"{set(self.models)}"
                    )
        if not self.clip_norm > 0:
            problems.append(f"clip_norm must be > 0, got {self.clip_norm}")
        if not self.noise_multiplier >= 0:
            problems.append(f"noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if self.max_bytes <= 0:
            problems.append(f"max_bytes must be positive, got {self.max_bytes}")
        if problems:
            raise ConfigError(problems, where="update rules")

    @property
    def max_norm(self) -> float:
        """Largest L2 norm an honest upload reaches: the clipped change plus its noise."""
        dim = math.prod(self.shape)
        noise_std = self.noise_multiplier * self.clip_norm
        # float32 rounding of a clipped change grows with its norm: a relative margin
        return self.clip_norm * (1 + 1e-5) + noise_std * (math.sqrt(dim) + _NOISE_TAIL)

    @property
    def min_norm(self) -> float:
        """Smallest L2 norm an honest upload reaches: its noise less the clipped change.

        0 where the noise is too small for the bound to say anything (few dimensions, little
        noise). Uploads below it did not add the noise they declare.
        """
        dim = math.prod(self.shape)
        noise_std = self.noise_multiplier * self.clip_norm
        return max(0.0, noise_std * (math.sqrt(dim - 1) - _NOISE_TAIL) - self.clip_norm)


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one upload: the delta if accepted, else the reason."""

    num_bytes: int
    delta: np.ndarray | None = None
    reason: str | None = None
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.reason is None


def _reject(num_bytes: int, reason: str, detail: str) -> Verdict:
    return Verdict(num_bytes=num_bytes, reason=reason, detail=detail)


def check_update(payload: bytes, rules: UpdateRules) -> Verdict:
    """Check one upload against the round's rules; never raises for any payload.

    Args:
        payload: the bytes a device sent.
        rules: what the round accepts.

    Returns:
        A Verdict with the (num_levels, codebook_size) float32 delta, or a reason from REASONS
        and a human-readable detail.
    """
    size = len(payload)
    if size > rules.max_bytes:
        return _reject(size, "oversized", f"{size} bytes > {rules.max_bytes}")
    try:
        return _check(payload, size, rules)
    except Exception as e:  # one hostile upload must not end the round
        return _reject(size, "malformed", f"could not be read ({type(e).__name__}: {e})")


def _check(payload: bytes, size: int, rules: UpdateRules) -> Verdict:
    try:
        obj: Any = json.loads(payload)
    except (ValueError, RecursionError) as e:  # not JSON, deep nesting, a 5,000-digit number
        return _reject(size, "malformed", f"not JSON ({type(e).__name__}: {e})")
    if not isinstance(obj, dict):
        return _reject(size, "malformed", f"a JSON {type(obj).__name__}, not an object")
    if obj.get("format") != UPDATE_FORMAT:
        return _reject(size, "wrong_schema", f"format {obj.get('format')!r}")
    fields: dict[str, type | tuple[type, ...]] = {
        "bundle": str,
        "model": str,
        "base_version": int,
        "clip_norm": (int, float),
        "noise_multiplier": (int, float),
        "delta": dict,
    }
    for key, kind in fields.items():
        value = obj.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return _reject(size, "malformed", f"{key} is {value!r}")
    if obj["bundle"] != rules.bundle:
        return _reject(size, "other_bundle", f"bundle {obj['bundle']!r}, not {rules.bundle!r}")
    if obj["model"] not in rules.models:
        detail = f"model {obj['model'][:16]!r}..., not one this round distributes"
        return _reject(size, "other_model", detail)
    if obj["base_version"] != rules.version:
        detail = f"base_version {obj['base_version']}, current {rules.version}"
        return _reject(size, "stale_version", detail)
    declared = (float(obj["clip_norm"]), float(obj["noise_multiplier"]))  # check_update catches
    if not (
        math.isclose(declared[0], rules.clip_norm, rel_tol=1e-6)
        and math.isclose(declared[1], rules.noise_multiplier, rel_tol=1e-6, abs_tol=1e-12)
    ):
        detail = f"clip_norm, noise_multiplier = {declared}, round uses "
        return _reject(size, "dp_settings", detail + f"{(rules.clip_norm, rules.noise_multiplier)}")
    if not isinstance(obj["delta"].get("shape"), list):
        return _reject(size, "wrong_shape", "delta has no shape list")
    try:
        delta = _decode(obj["delta"], "delta")
    except InvalidRequestError as e:
        return _reject(size, "wrong_shape", str(e))
    if delta.shape != rules.shape:
        return _reject(size, "wrong_shape", f"shape {delta.shape}, expected {rules.shape}")
    if not np.isfinite(delta).all():
        return _reject(size, "non_finite", f"{int((~np.isfinite(delta)).sum())} entries")
    norm = float(np.linalg.norm(delta))
    if norm > rules.max_norm:
        return _reject(size, "norm_too_large", f"L2 norm {norm:.3g} > {rules.max_norm:.3g}")
    if norm < rules.min_norm:
        return _reject(size, "too_little_noise", f"L2 norm {norm:.3g} < {rules.min_norm:.3g}")
    return Verdict(num_bytes=size, delta=delta)


@dataclass
class RoundTally:
    """Counts of one round's uploads, for the round report."""

    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    bytes_by_client: dict[str, int] = field(default_factory=dict)
    upload_sizes: list[int] = field(default_factory=list)

    def add(self, client: str, verdict: Verdict) -> None:
        self.bytes_by_client[client] = self.bytes_by_client.get(client, 0) + verdict.num_bytes
        self.upload_sizes.append(verdict.num_bytes)
        if verdict.accepted:
            self.accepted += 1
        else:
            self.rejected[str(verdict.reason)] += 1

    def to_json(self) -> dict[str, Any]:
        sizes = np.asarray(self.upload_sizes or [0])
        return {
            "uploads": len(self.upload_sizes),
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "upload_bytes": {
                "per_client": dict(sorted(self.bytes_by_client.items())),
                "per_upload_mean": round(float(sizes.mean()), 1),
                "per_upload_max": int(sizes.max()),
                "total": int(sizes.sum()),
            },
        }
