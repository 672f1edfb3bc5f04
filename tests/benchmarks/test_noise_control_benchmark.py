"""benchmarks/federated_noise_control.py: the spread of the device noise in a published adapter."""

from __future__ import annotations

import math

import pytest

from tests.benchmarks.scripts import load_script


def _module():
    return load_script("federated_noise_control")


def _record(**config: float) -> dict:
    rounds = [{"round": 0}, {"accepted": 100, "published": True}]
    rounds += [{"accepted": 25, "published": True}, {"accepted": 0, "published": False}]
    cfg = {"aggregator": "fedavg", "noise_multiplier": 2.0, "clip_norm": 0.5} | config
    return {"config": cfg, "rounds": rounds}


def test_noise_std_sums_the_rounds_and_scales_with_the_server_learning_rate() -> None:
    noise_std = _module().noise_std
    plain = math.sqrt(1.0 / 100 + 1.0 / 25)  # (2.0 * 0.5)^2 per upload, over published rounds
    assert noise_std(_record()) == pytest.approx(plain)  # records made before server_lr
    assert noise_std(_record(server_lr=30.0)) == pytest.approx(30.0 * plain)
    with pytest.raises(SystemExit, match="fedavg only"):
        noise_std(_record(aggregator="median"))
