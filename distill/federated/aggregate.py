"""Combining accepted uploads with Flower's strategies, and the Flower strategy that runs rounds.

The unit of aggregation is one upload (one user's change in one round). A Flower node of the
simulation stands for many users' devices, so its reply carries many uploads; each is checked
on its own (`updates.check_update`) and the accepted ones are handed to Flower's FedAvg,
FedMedian or FedTrimmedAvg as one reply each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from flwr.app import (
    DEFAULT_TTL,
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    Metadata,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedMedian, FedTrimmedAvg

from pocketrec._errors import ConfigError
from pocketrec.distill.federated import AGGREGATORS
from pocketrec.distill.federated.updates import RoundTally, UpdateRules, check_update

__all__ = [
    "BIAS_KEY",
    "UPLOADS_KEY",
    "AdapterStrategy",
    "aggregate_deltas",
    "aggregate_uploads",
    "make_aggregator",
]

BIAS_KEY = "bias"  # the shared adapter's bias in the ArrayRecord sent to clients
UPLOADS_KEY = "uploads"  # the ConfigRecord of a client's reply: "client" and "payloads"
_DELTA_KEY = "delta"


def make_aggregator(name: str, *, trim_fraction: float = 0.2) -> FedAvg:
    """Flower's strategy for the aggregation rule `name`.

    Flower's FedAvg (mean), FedMedian (coordinate-wise median, Yin et al. 2018) and
    FedTrimmedAvg (coordinate-wise mean after cutting `trim_fraction` of the values at each
    end) implement the three rules over ArrayRecords already, so they are used as they are.

    Raises:
        ConfigError: an unknown name, or trim_fraction outside [0, 0.5).
    """
    if name not in AGGREGATORS:
        raise ConfigError(f"aggregator must be one of {AGGREGATORS}, got {name!r}")
    if not 0 <= trim_fraction < 0.5:
        raise ConfigError(f"trim_fraction must be in [0, 0.5), got {trim_fraction}")
    if name == "median":
        return FedMedian()
    if name == "trimmed":
        return FedTrimmedAvg(beta=trim_fraction)
    return FedAvg()


def _upload_reply(delta: np.ndarray) -> Message:
    """One accepted upload as a Flower reply.

    Metadata is given explicitly so that this works outside a running ServerApp as well (tests,
    aggregating stored uploads), where Flower has no run to take it from. Every upload has
    weight 1: weighting by a device's own event count would let a device boost itself.
    """
    metadata = Metadata(
        run_id=0,
        message_id="",
        src_node_id=0,
        dst_node_id=0,
        reply_to_message_id="",
        group_id="",
        created_at=0.0,
        ttl=DEFAULT_TTL,
        message_type=MessageType.TRAIN,
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord({_DELTA_KEY: Array(np.ascontiguousarray(delta))}),
            "metrics": MetricRecord({"num-examples": 1}),
        }
    )
    # Flower's typing stubs list only the run-bound constructors; `metadata` is the keyword
    # its own runtime uses to rebuild messages.
    return Message(content=content, metadata=metadata)  # type: ignore[call-overload]


def trimmed_per_end(aggregator: FedAvg, count: int) -> int:
    """How many values a trimmed mean cuts at each end of `count` uploads (0: not trimmed).

    Flower cuts int(beta * count), which is none at all below 1 / beta uploads (fewer than
    5 at beta 0.2), where a trimmed mean would silently be FedAvg; from 3 uploads on at least
    one is cut at each end.
    """
    if not isinstance(aggregator, FedTrimmedAvg) or aggregator.beta <= 0:
        return 0
    cut = int(aggregator.beta * count)
    return max(cut, 1) if count >= 3 else cut


def aggregate_deltas(deltas: Sequence[np.ndarray], aggregator: FedAvg) -> np.ndarray:
    """Combine accepted deltas (each (num_levels, codebook_size)) with a Flower strategy."""
    if not deltas:
        raise ValueError("no deltas to aggregate")
    cut = trimmed_per_end(aggregator, len(deltas))
    if cut and int(aggregator.beta * len(deltas)) < cut:  # type: ignore[attr-defined]
        # the smallest cut fraction Flower turns into `cut` values (always below 0.5 here)
        aggregator = FedTrimmedAvg(beta=(cut + 1e-6) / len(deltas))
    arrays, _ = aggregator.aggregate_train(0, [_upload_reply(d) for d in deltas])
    if arrays is None:
        raise RuntimeError(f"{type(aggregator).__name__} returned no arrays")
    return np.asarray(arrays[_DELTA_KEY].numpy(), dtype=np.float32)


def aggregate_uploads(
    uploads: Iterable[tuple[str, bytes]],
    *,
    bias: np.ndarray,
    rules: UpdateRules,
    aggregator: FedAvg,
    central_noise: float = 0.0,
    expected_uploads: float | None = None,
    server_lr: float = 1.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Check uploads, aggregate the accepted ones and apply them to the shared adapter's bias.

    Args:
        uploads: (client, payload) pairs; client names the sender in the report.
        bias: (num_levels, codebook_size) current shared bias (version `rules.version`).
        rules: what the round accepts.
        aggregator: from `make_aggregator`.
        central_noise: server noise std on the sum of accepted updates, in units of the clip
            norm (0: none; FedAvg only). Flower's DifferentialPrivacy*FixedClipping wrappers
            add the same noise, but per Flower reply and for a fixed number of sampled replies;
            here the unit is the upload and their number varies from round to round. As in
            DP-FedAvg (McMahan et al., 2018) the noised sum is divided by `expected_uploads`,
            a number fixed before the round, not by the count that arrived (which depends on
            who took part), and every round releases a new adapter, even with no upload.
        expected_uploads: the denominator with central noise: the expected number of
            uploads a round (sampling rate x users); required when central_noise > 0.
        server_lr: the aggregate (noise included) is applied times this factor: FedAvg with
            a server learning rate ("Adaptive Federated Optimization", Reddi et al. 2021).
            Each device's change is clipped, so the mean of a round is small; the factor
            lets a few rounds move the adapter as far as central training would. Scaling
            an already-privatised aggregate is post-processing: epsilon does not change.
        rng: randomness for the central noise.

    Returns:
        The new bias (None when no upload was accepted; the adapter stays as it was) and the
        round report: uploads, accepted, rejected reasons, upload bytes, update norm.
    """
    central = central_noise > 0
    if central and (type(aggregator) is not FedAvg or not (expected_uploads or 0) > 0):
        raise ConfigError(
            "central noise needs the fedavg aggregator and expected_uploads > 0 (the DP-FedAvg "
            f"denominator), got {type(aggregator).__name__} and {expected_uploads!r}"
        )
    tally = RoundTally()
    accepted = []
    for client, payload in uploads:
        verdict = check_update(payload, rules)
        tally.add(client, verdict)
        if verdict.delta is not None:
            accepted.append(verdict.delta)
    report = tally.to_json()
    if not accepted and not central:
        return None, report | {"published": False, "update_norm": 0.0}
    if central:  # (sum + noise) / a fixed count: the mechanism privacy.py accounts for
        # each clipped to exactly clip_norm: the norm check's float margin is not sensitivity
        clipped = [
            d * min(1.0, rules.clip_norm / max(float(np.linalg.norm(d)), 1e-30)) for d in accepted
        ]
        total = np.sum(clipped, axis=0) if clipped else np.zeros_like(bias, dtype=np.float64)
        noise = (rng or np.random.default_rng()).normal(
            0.0, central_noise * rules.clip_norm, size=bias.shape
        )
        assert expected_uploads is not None  # checked above
        step = (total + noise) / float(expected_uploads)
    else:
        step = aggregate_deltas(accepted, aggregator)
        report |= {"trimmed_per_end": trimmed_per_end(aggregator, len(accepted))}
    step = server_lr * step
    report |= {"published": True, "update_norm": float(np.linalg.norm(step))}
    return (bias + step).astype(np.float32), report


class AdapterStrategy(FedAvg):
    """The Flower strategy of the shared adapter.

    Each round it sends every client the current bias and the round's rules (version, clip
    norm, noise multiplier), checks every upload that comes back, aggregates the accepted ones
    and moves the adapter to the next version. FedAvg is subclassed for what it does as it is:
    waiting for the nodes, sampling them, building the train messages, and (through
    `Strategy.start`) the loop over rounds with a server-side evaluation callback.
    `aggregate_train` is replaced because a reply carries many users' uploads.

    Attributes:
        rules: the current round's rules; `rules.version` is the adapter's current version.
        reports: one report per finished round.
    """

    def __init__(
        self,
        *,
        rules: UpdateRules,
        aggregator: FedAvg,
        num_clients: int,
        central_noise: float = 0.0,
        expected_uploads: float | None = None,
        server_lr: float = 1.0,
        noise_seed: int | None = None,
    ) -> None:
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=0.0,  # evaluation is central, on held-out users
            min_train_nodes=num_clients,
            min_available_nodes=num_clients,
        )
        self.rules = rules
        self.aggregator = aggregator
        self.central_noise = central_noise
        self.expected_uploads = expected_uploads
        self.server_lr = server_lr
        # Central noise whose seed is known can be subtracted again: it comes from the OS
        # unless a test or a reproduction asks for a seed (and then protects nothing).
        self._noise = np.random.SeedSequence(noise_seed)
        self.reports: list[dict[str, Any]] = []
        self._bias: np.ndarray | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._bias = arrays[BIAS_KEY].numpy()
        config["version"] = self.rules.version
        config["clip-norm"] = self.rules.clip_norm
        config["noise-multiplier"] = self.rules.noise_multiplier
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        assert self._bias is not None, "configure_train runs first"
        uploads: list[tuple[str, bytes]] = []
        failed = 0
        for reply in replies:
            record = None if reply.has_error() else reply.content.config_records.get(UPLOADS_KEY)
            if record is None:
                failed += 1
                continue
            payloads = record.get("payloads", [])
            if not isinstance(payloads, list):
                failed += 1
                continue
            client = str(record.get("client", reply.metadata.src_node_id))
            # Anything but bytes is checked as an empty payload, so it counts as malformed.
            uploads.extend((client, p if isinstance(p, bytes) else b"") for p in payloads)
        uploads.sort(key=lambda u: u[0])  # replies arrive in any order; sums must not depend on it
        bias, report = aggregate_uploads(
            uploads,
            bias=self._bias,
            rules=self.rules,
            aggregator=self.aggregator,
            central_noise=self.central_noise,
            expected_uploads=self.expected_uploads,
            server_lr=self.server_lr,
            rng=np.random.default_rng(self._noise.spawn(1)[0]),
        )
        if bias is not None:
            self.rules = replace(self.rules, version=self.rules.version + 1)
        self.reports.append(
            {"round": server_round, "version": self.rules.version, "failed_clients": failed}
            | report
        )
        if bias is None:
            return None, None
        metrics = {"accepted": report["accepted"], "version": self.rules.version}
        return ArrayRecord({BIAS_KEY: Array(bias)}), MetricRecord(metrics)
