"""What `pocketrec export --precision ...` builds, and how hard each precision is checked."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pocketrec._errors import ConfigError

__all__ = [
    "PRECISIONS",
    "REQUIRED_RETENTION",
    "PrecisionConfig",
    "parse_precisions",
    "parse_retention",
]

PRECISIONS = ("fp32", "int8", "int4", "npu")
# Share of fp32's NDCG@10 each precision must keep on the quality probe. int8 is nearly
# lossless on transformer weights; 4-bit weights and an all-integer NPU graph cost more.
REQUIRED_RETENTION = {"int8": 0.995, "int4": 0.99, "npu": 0.98}


@dataclass
class PrecisionConfig:
    """What to export and how hard to check it."""

    precisions: tuple[str, ...] = ("fp32",)
    # Evenly spaced test users of the quality gate; None = every test user. 2000 users score a
    # precision in seconds on CPU (minutes on the NPU simulator).
    quality_users: int | None = 2000
    selection_users: int = 256  # validation users that rank int4 settings and node groups
    calibration_windows: int = 256  # training windows that calibrate the NPU graphs
    max_fallback_rounds: int = 3  # node groups kept at higher precision before giving up
    # The QNN SoC model the NPU graphs are compiled for. The HTP simulator refuses to start
    # without one, and a compiled (EPContext) graph runs only on the SoC it was built for.
    qnn_soc_model: str = "60"
    seed: int | None = None  # student seed; None = the best on validation
    data_root: Path | None = None  # datasets folder; None = $POCKETREC_DATA
    required_retention: dict[str, float] = field(default_factory=lambda: dict(REQUIRED_RETENTION))

    def __post_init__(self) -> None:
        problems = []
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if unknown:
            problems.append(
                f"unknown precision(s) {', '.join(map(repr, unknown))}; choose from "
                f"{', '.join(PRECISIONS)}"
            )
        if not self.precisions or len(set(self.precisions)) != len(self.precisions):
            problems.append(f"precisions must be distinct and non-empty, got {self.precisions}")
        if self.quality_users is not None and self.quality_users < 1:
            problems.append(f"quality_users must be >= 1 or None, got {self.quality_users}")
        for name in ("selection_users", "calibration_windows"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_fallback_rounds < 0:
            problems.append(f"max_fallback_rounds must be >= 0, got {self.max_fallback_rounds}")
        bad = {p: r for p, r in self.required_retention.items() if not 0 < r <= 1}
        if bad:
            problems.append(f"required_retention values must be in (0, 1], got {bad}")
        if problems:
            raise ConfigError(problems, where="export config")

    def retention_for(self, precision: str) -> float:
        return self.required_retention.get(precision, REQUIRED_RETENTION[precision])

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["data_root"] = None if self.data_root is None else str(self.data_root)
        return out


def parse_precisions(text: str) -> tuple[str, ...]:
    """ "fp32,int8" -> ("fp32", "int8"); unknown names are a ConfigError listing valid ones."""
    names = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    PrecisionConfig(precisions=names)  # validates
    return names


def parse_retention(text: str) -> dict[str, float]:
    """ "int8=0.99,npu=0.97" -> {"int8": 0.99, "npu": 0.97} over the default gates.

    Raises:
        ConfigError: a malformed entry, a precision without a gate, or a share outside (0, 1].
    """
    gates = dict(REQUIRED_RETENTION)
    problems = []
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        name, _, value = entry.partition("=")
        name = name.strip().lower()
        if name not in REQUIRED_RETENTION:
            problems.append(f"{entry!r}: gates exist for {', '.join(REQUIRED_RETENTION)}")
            continue
        try:
            gates[name] = float(value)
        except ValueError:
            problems.append(f"{entry!r}: expected PRECISION=SHARE, e.g. int8=0.99")
    if problems:
        raise ConfigError(problems, where="--min-retention")
    return gates
