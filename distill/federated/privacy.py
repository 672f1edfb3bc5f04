"""The privacy spent by federated rounds: epsilon for a delta, from dp-accounting's RDP accountant.

Two guarantees, for two observers (a user is the unit: one user's events, one upload a round):

- local, against anyone who sees a user's uploads, the server included. Each upload is the
  Gaussian mechanism on the user's clipped change (sensitivity clip_norm, noise
  noise_multiplier * clip_norm, added on the device). The server knows who uploaded, so sampling
  does not help: epsilon composes over every round the user may take part in. It bounds telling
  the user's change from no change (sensitivity clip_norm); telling two given histories apart
  is the same mechanism at sensitivity 2 * clip_norm, as if with half the noise multiplier. It
  does not hide that the user took part. It holds for every aggregator, and for the published
  adapter too (post-processing).
- central, against anyone who sees only the published shared adapter, when the server is honest:
  DP-FedAvg accounting (McMahan et al., 2018), the Poisson-subsampled Gaussian mechanism with
  the noise the server adds to the sum of accepted updates (std central_noise * clip_norm),
  divided by a count fixed before the round, one release every round, adding or removing one
  user. It is accounted only without device noise: a user's upload is then their clipped
  change, of norm at most clip_norm. With device noise the upload's norm is unbounded (the
  user's own noise comes and goes with the user), and this analysis does not apply; the local
  guarantee does. Only FedAvg has this analysis; a coordinate-wise median or trimmed mean does
  not have bounded L2 sensitivity. Server noise from a known seed protects nothing, so it is
  drawn from the OS unless a reproduction asks for a seed.

dp-accounting's RDP accountant is used directly rather than Flower's `RdpAccountant` wrapper
(which wraps the same accountant): the wrapper takes integer sample and population sizes, while
a device's sampling rate here is a probability.
"""

from __future__ import annotations

import logging
import math
from typing import Any

__all__ = ["dp_epsilon", "privacy_spent"]


def dp_epsilon(
    *, noise_multiplier: float, sampling_rate: float, rounds: int, delta: float
) -> float:
    """Epsilon of `rounds` releases of the Poisson-subsampled Gaussian mechanism at `delta`.

    Args:
        noise_multiplier: noise std divided by the L2 sensitivity (the clip norm); 0 gives inf.
        sampling_rate: probability that a user takes part in a round (1.0: no amplification).
        rounds: releases composed.
        delta: the delta of (epsilon, delta)-DP; below 1 / number of users.

    Returns:
        epsilon (0.0 for no rounds, inf with no noise).

    Raises:
        ValueError: an argument out of range.
    """
    if not noise_multiplier >= 0 or not 0 < sampling_rate <= 1 or rounds < 0:
        raise ValueError(
            f"need noise_multiplier >= 0, 0 < sampling_rate <= 1, rounds >= 0; got "
            f"{noise_multiplier}, {sampling_rate}, {rounds}"
        )
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    from dp_accounting import dp_event
    from dp_accounting.privacy_accountant import NeighboringRelation
    from dp_accounting.rdp.rdp_privacy_accountant import RdpAccountant

    accountant = RdpAccountant(neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE)
    event = dp_event.PoissonSampledDpEvent(
        sampling_rate, dp_event.GaussianDpEvent(noise_multiplier)
    )
    accountant.compose(event, rounds)
    # For large sampling rates some fractional RDP orders do not converge; the accountant drops
    # them (its bound stays valid) and logs a warning per order through absl.
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        return float(accountant.get_epsilon(delta))
    finally:
        absl.setLevel(level)


def privacy_spent(
    *,
    noise_multiplier: float,
    central_noise: float,
    sampling_rate: float,
    rounds: int,
    releases: int | None = None,
    delta: float,
    aggregator: str,
) -> dict[str, Any]:
    """Both guarantees after `rounds` rounds (see the module docstring).

    Args:
        noise_multiplier: device noise, in units of the clip norm.
        central_noise: server noise on the sum of accepted updates, in units of the clip norm.
        sampling_rate: probability that a user uploads in a round.
        rounds: rounds run so far (a user may have uploaded in each).
        releases: rounds that published an adapter (default: all); a round that published
            nothing released nothing.
        delta: target delta.
        aggregator: "fedavg", "median" or "trimmed".

    Returns:
        {"local": epsilon, "central": epsilon, or None where not accounted (another
        aggregator than FedAvg, no server noise, or device noise on: see the module
        docstring), "delta": delta}; epsilon is math.inf without noise.
    """
    local = dp_epsilon(
        noise_multiplier=noise_multiplier, sampling_rate=1.0, rounds=rounds, delta=delta
    )
    central = None
    if aggregator == "fedavg" and central_noise > 0 and noise_multiplier == 0:
        central = dp_epsilon(
            noise_multiplier=central_noise,
            sampling_rate=sampling_rate,
            rounds=rounds if releases is None else releases,
            delta=delta,
        )
    return {"local": local, "central": central, "delta": delta}
