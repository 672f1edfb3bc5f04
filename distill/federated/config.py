"""The federated simulation's config and how it deals a dataset's users out to clients."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pocketrec import Adapter, Recommender
from pocketrec._errors import ConfigError
from pocketrec.distill.data import Dataset, load_dataset
from pocketrec.distill.federated import AGGREGATORS, ATTACKS
from pocketrec.distill.federated.updates import MAX_UPDATE_BYTES
from pocketrec.distill.protocol import Split, leave_one_out

__all__ = [
    "SimulationConfig",
    "World",
    "load_world",
    "malicious_clients",
    "partition_users",
    "subset_users",
]


@dataclass(frozen=True)
class SimulationConfig:
    """One federated simulation: data, clients, rounds, privacy, aggregation, attackers.

    A client is one Flower node standing for the devices of its users: the users of the
    dataset's training split (all but the held-out ones) are dealt out to clients at random,
    and each user who is sampled in a round uploads one update, computed on the device with
    the SDK from that user's own training events only.
    """

    dataset: str  # name under $POCKETREC_DATA, or a folder
    bundle: str  # the bundle devices run; its shared adapter, if any, is where rounds start
    num_clients: int = 10  # Flower nodes; 2 run at once on a 2-core machine
    num_rounds: int = 5
    # Chance that a user uploads in a round (Poisson sampling: the q of the central accounting).
    # On Beauty's ~20k client users, 0.01 is ~200 uploads a round, ~15 s of device fitting.
    sampling_rate: float = 0.01
    clip_norm: float = 1.0  # L2 bound of one upload's change (the SDK's default)
    noise_multiplier: float = 1.0  # device noise std / clip_norm (the SDK's default)
    central_noise: float = 0.0  # server noise std on the sum of accepted updates / clip_norm
    # Seed of the central noise, for reproducing a run only: noise whose seed is known can be
    # subtracted again, so a seeded run's central epsilon protects nothing. None: OS entropy.
    central_noise_seed: int | None = None
    aggregator: str = "fedavg"  # fedavg, median or trimmed
    # The round's aggregate is applied times this (FedAvg with a server learning rate).
    server_lr: float = 1.0
    trim_fraction: float = 0.2  # trimmed: share of values cut at each end (Flower's default)
    malicious_fraction: float = 0.0  # share of clients whose devices all attack
    # scale: the device's un-noised change times attack_scale; flip: times -attack_scale;
    # promote: every attacker sends attack_scale * clip_norm on one level-1 code (coordinated).
    # All then add and declare the round's noise, so only the norm checks can tell them apart.
    attack: str = "scale"
    attack_scale: float = 10.0
    num_eval_users: int = 2000  # held-out users (in no client), scored after every round
    max_events: int = 50  # FitSettings.max_events: recent events a device fits on
    max_bytes: int = MAX_UPDATE_BYTES
    delta: float = 1e-5  # of (epsilon, delta); below 1 / number of users
    seed: int = 0
    data_root: str | None = None
    # Ed25519 private key that signs the published version (`pocketrec keygen`); None: unsigned.
    signing_key: str | None = None

    def __post_init__(self) -> None:
        problems = []
        for name in ("num_clients", "num_rounds", "num_eval_users", "max_events", "max_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not 0 < self.sampling_rate <= 1:
            problems.append(f"sampling_rate must be in (0, 1], got {self.sampling_rate}")
        if not (math.isfinite(self.clip_norm) and self.clip_norm > 0):
            problems.append(f"clip_norm must be > 0, got {self.clip_norm}")
        if not (math.isfinite(self.server_lr) and self.server_lr > 0):
            problems.append(f"server_lr must be > 0, got {self.server_lr}")
        for name in ("noise_multiplier", "central_noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be >= 0, got {value}")
        if self.aggregator not in AGGREGATORS:
            problems.append(f"aggregator must be one of {AGGREGATORS}, got {self.aggregator!r}")
        if not 0 <= self.trim_fraction < 0.5:
            problems.append(f"trim_fraction must be in [0, 0.5), got {self.trim_fraction}")
        if not 0 <= self.malicious_fraction < 1:
            problems.append(f"malicious_fraction must be in [0, 1), got {self.malicious_fraction}")
        if self.attack not in ATTACKS:
            problems.append(f"attack must be one of {ATTACKS}, got {self.attack!r}")
        if not 0 < self.delta < 1:
            problems.append(f"delta must be in (0, 1), got {self.delta}")
        if self.central_noise > 0 and self.aggregator != "fedavg":
            problems.append(
                "central_noise is accounted for fedavg only (a median or trimmed mean has no "
                "bounded L2 sensitivity); use --aggregator fedavg or drop --central-noise"
            )
        if problems:
            raise ConfigError(problems, where="federated simulation config")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def partition_users(
    split: Split, *, num_clients: int, num_eval_users: int, seed: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Hold out evaluation users, and deal every other user out to the clients.

    Returns:
        (held-out users, sorted; one sorted user array per client). Held-out users are drawn
        from the users the protocol evaluates; no user is in two places.

    Raises:
        ConfigError: too few users for the held-out set and the clients.
    """
    num_users = split.dataset.num_users
    order = np.random.default_rng(seed).permutation(num_users)
    evaluable = np.zeros(num_users, dtype=bool)
    evaluable[split.eval_users] = True
    held_out = order[evaluable[order]][:num_eval_users]
    in_held_out = np.zeros(num_users, dtype=bool)
    in_held_out[held_out] = True
    rest = order[~in_held_out[order]]
    problems = []
    if len(held_out) < num_eval_users:
        problems.append(
            f"{num_eval_users} held-out users asked for, but the dataset has "
            f"{len(split.eval_users)} evaluable users; lower --eval-users"
        )
    if len(rest) < num_clients:
        problems.append(
            f"{len(rest)} users are left for {num_clients} clients; lower --clients or --eval-users"
        )
    if problems:
        raise ConfigError(problems, where="federated partition")
    return np.sort(held_out), [np.sort(part) for part in np.array_split(rest, num_clients)]


def malicious_clients(num_clients: int, fraction: float, seed: int) -> frozenset[int]:
    """Which clients attack: round(fraction * num_clients) of them, chosen by the seed."""
    count = round(fraction * num_clients)
    picked = np.random.default_rng([seed, 1]).permutation(num_clients)[:count]
    return frozenset(int(c) for c in picked)


def subset_users(dataset: Dataset, users: np.ndarray) -> Dataset:
    """The dataset restricted to `users` (same items and item ids)."""
    starts, ends = dataset.offsets[users], dataset.offsets[users + 1]
    index = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
    lengths = ends - starts
    return dataclasses.replace(
        dataset,
        name=f"{dataset.name} ({len(users)} held-out users)",
        user_ids=dataset.user_ids[users],
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=dataset.items[index],
        timestamps=None if dataset.timestamps is None else dataset.timestamps[index],
    )


@dataclass(frozen=True)
class World:
    """What both sides of a simulation load once per process: data, partition, bundle."""

    dataset: Dataset
    split: Split
    held_out: np.ndarray
    clients: list[np.ndarray]
    recommender: Recommender  # the bundle as given (with its shared adapter, if any)

    def with_shared(self, bias: np.ndarray, version: int) -> Recommender:
        """The bundle's model with `bias` as its shared adapter, at `version`."""
        manifest = self.recommender.manifest
        shared = Adapter(
            bundle=manifest.name,
            bias=bias,
            kind="shared",
            version=version,
            model=manifest.model_id,
        )
        return self.recommender.without_adapters().with_adapters(shared)


@lru_cache(maxsize=2)
def load_world(
    dataset: str,
    bundle: str,
    data_root: str | None,
    num_clients: int,
    num_eval_users: int,
    seed: int,
    threads: int | None,
) -> World:
    """Load the dataset, split it, partition its users, open the bundle (cached per process).

    Clients of the simulation run in Ray worker processes that each call this once and keep
    the result across rounds.
    """
    data = load_dataset(dataset, root=None if data_root is None else Path(data_root))
    split = leave_one_out(data)
    held_out, clients = partition_users(
        split, num_clients=num_clients, num_eval_users=num_eval_users, seed=seed
    )
    rec = Recommender.from_bundle(bundle, threads=threads)
    return World(data, split, held_out, clients, rec)
