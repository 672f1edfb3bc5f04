"""Stage: federated rounds on a dataset with Flower's simulation engine, then a new bundle.

    simulate(cfg, out) -> out

The ServerApp runs `AdapterStrategy` in this process; the ClientApps (`client.client_app`) run
in Ray workers, one per core. After every round the shared adapter is scored on held-out users
(in no client) with the project's protocol through the SDK (`evaluate_recommender`, validation
targets). At the end the adapter is published as a new bundle version (`out/bundle`), which is
opened with `Recommender.from_bundle` and scored once on the held-out users' test targets, next
to the starting bundle. `out/metrics.json` holds the per-round report; `out/config.json` the
resolved config and the command line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from pocketrec import Adapter, Recommender
from pocketrec._evaluate import evaluate_recommender
from pocketrec.distill.data import Dataset
from pocketrec.distill.federated.aggregate import BIAS_KEY, AdapterStrategy, make_aggregator
from pocketrec.distill.federated.client import client_app
from pocketrec.distill.federated.config import SimulationConfig, World, load_world, subset_users
from pocketrec.distill.federated.privacy import privacy_spent
from pocketrec.distill.federated.publish import write_bundle_version
from pocketrec.distill.federated.updates import REASONS, UpdateRules
from pocketrec.distill.runinfo import command_line, git_commit, machine_info, utc_now, write_json

__all__ = ["simulate"]

# Ray: 2 CPUs are what the build machines have; one client per CPU; no dashboard; Ray's own
# logs stay in its session folder.
BACKEND_CONFIG: dict[str, Any] = {
    "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
    "init_args": {
        "num_cpus": 2,
        "include_dashboard": False,
        "logging_level": "ERROR",
        "log_to_driver": False,
    },
}
_ROUND_TIMEOUT_S = 3600.0


@contextlib.contextmanager
def _flower_logs(verbose: bool) -> Iterator[None]:
    """Flower logs every step at INFO (and a deprecation notice for run_simulation); keep
    errors only unless asked."""
    logger = logging.getLogger("flwr")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _plain(value: Any) -> Any:
    """inf as the string "inf": JSON has no infinity."""
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def simulate(
    cfg: SimulationConfig, out: Path, *, progress: bool = True, verbose: bool = False
) -> Path:
    """Run `cfg.num_rounds` federated rounds and publish the shared adapter as a new bundle.

    Args:
        cfg: the simulation.
        out: folder to write (metrics.json, config.json, bundle/).
        progress: show a progress bar over rounds.
        verbose: show Flower's own logs.

    Returns:
        `out`.

    Raises:
        ConfigError: the config does not fit the dataset (too few users).
        BundleError: the bundle is missing or altered.
    """
    started = time.perf_counter()
    if cfg.signing_key is not None:  # a locked or missing key fails now, not after the rounds
        from pocketrec.export.sign import load_private_key

        load_private_key(Path(cfg.signing_key))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    provenance = {"command": command_line(), "git_commit": git_commit(), "created": utc_now()}
    write_json(out / "config.json", {"config": cfg.to_json()} | provenance)
    world = load_world(
        cfg.dataset, cfg.bundle, cfg.data_root, cfg.num_clients, cfg.num_eval_users, cfg.seed, None
    )
    held_out = subset_users(world.dataset, world.held_out)
    manifest = world.recommender.manifest
    shared = [a for a in world.recommender.adapters if a.kind == "shared"]
    shape = (manifest.semantic_ids.num_levels, manifest.semantic_ids.codebook_size)
    start_bias = shared[0].bias if shared else np.zeros(shape, np.float32)
    start_version = shared[0].version if shared else 0
    with _flower_logs(verbose):  # FedAvg warns that federated evaluation is off: it is central
        strategy = AdapterStrategy(
            rules=UpdateRules(
                bundle=manifest.name,
                models=frozenset({manifest.model_id}),
                version=start_version,
                shape=shape,
                clip_norm=cfg.clip_norm,
                noise_multiplier=cfg.noise_multiplier,
                max_bytes=cfg.max_bytes,
            ),
            aggregator=make_aggregator(cfg.aggregator, trim_fraction=cfg.trim_fraction),
            num_clients=cfg.num_clients,
            central_noise=cfg.central_noise,
            # the DP-FedAvg denominator, fixed before any round: uploads expected per round
            expected_uploads=cfg.sampling_rate * sum(len(users) for users in world.clients),
            server_lr=cfg.server_lr,
            noise_seed=cfg.central_noise_seed,
        )
    bias, evaluations = _run_rounds(
        cfg, strategy, start_bias, world, held_out, progress=progress, verbose=verbose
    )
    rounds = _round_records(cfg, strategy.reports, evaluations, start_version)

    result: dict[str, Any] = {
        "version": strategy.rules.version,
        "test_before": evaluate_recommender(world.recommender, held_out, stage="test"),
        "bundle": None,  # stays None when no round accepted an upload: nothing to publish
    }
    if strategy.rules.version > start_version:
        adapter = Adapter(
            bundle=manifest.name,
            bias=bias,
            kind="shared",
            version=strategy.rules.version,
            info={"federated": {"config": cfg.to_json()} | provenance},
            model=manifest.model_id,
        )
        quality = {"held_out_valid": rounds[-1]["valid"]}
        bundle = write_bundle_version(
            Path(cfg.bundle),
            adapter,
            out / "bundle",
            quality=quality,
            signing_key=None if cfg.signing_key is None else Path(cfg.signing_key),
        )
        after = evaluate_recommender(Recommender.from_bundle(bundle), held_out, stage="test")
        result |= {"bundle": str(bundle), "test_after": after}

    record = {
        "what": f"federated personalization of {manifest.name} on {world.dataset.name}: "
        f"{cfg.num_clients} clients x {cfg.num_rounds} rounds, {cfg.aggregator}",
        "config": cfg.to_json(),
        "partition": {
            "held_out_users": len(world.held_out),
            "client_users": int(sum(len(c) for c in world.clients)),
            "users_per_client": [len(c) for c in world.clients],
        },
        "reasons": REASONS,
        "rounds": rounds,
        "final": result,
        "machine": machine_info(),
        "wall_time_s": round(time.perf_counter() - started, 1),
    } | provenance
    write_json(out / "metrics.json", record)
    return out


def _run_rounds(
    cfg: SimulationConfig,
    strategy: AdapterStrategy,
    start_bias: np.ndarray,
    world: World,
    held_out: Dataset,
    *,
    progress: bool,
    verbose: bool,
) -> tuple[np.ndarray, dict[int, dict[str, Any]]]:
    """Flower's simulation of the rounds; returns the final bias and each round's evaluation."""
    from tqdm.auto import tqdm

    evaluations: dict[int, dict[str, Any]] = {}
    final = {"bias": start_bias}
    bar = tqdm(
        total=cfg.num_rounds + 1, desc="federated rounds", unit="round", disable=not progress
    )
    clock = {"last": time.perf_counter()}

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        round_s = time.perf_counter() - clock["last"]
        final["bias"] = arrays[BIAS_KEY].numpy()
        rec = world.with_shared(final["bias"], strategy.rules.version)
        metrics = evaluate_recommender(rec, held_out, stage="valid")
        evaluations[server_round] = {"valid": metrics}
        if server_round > 0:  # the round itself: devices (round 1: their start too), checks
            evaluations[server_round]["round_s"] = round(round_s, 2)
        bar.update(1)
        bar.set_postfix(version=strategy.rules.version, ndcg10=f"{metrics['ndcg@10']:.4f}")
        clock["last"] = time.perf_counter()
        return MetricRecord({k: float(v) for k, v in metrics.items()})

    server_app = ServerApp()
    failure: list[BaseException] = []

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            strategy.start(
                grid=grid,
                initial_arrays=ArrayRecord({BIAS_KEY: Array(start_bias)}),
                num_rounds=cfg.num_rounds,
                timeout=_ROUND_TIMEOUT_S,
                train_config=ConfigRecord({"run": json.dumps(cfg.to_json())}),
                evaluate_fn=evaluate,
            )
        except BaseException as e:  # the engine only logs it; re-raised below
            failure.append(e)

    # Ray's next default; silences its warning about accelerator variables for CPU clients.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    with _flower_logs(verbose):
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=cfg.num_clients,
            backend_config=BACKEND_CONFIG,
        )
    bar.close()
    if failure:
        raise failure[0]
    if len(strategy.reports) != cfg.num_rounds:
        raise RuntimeError(
            f"the simulation stopped after {len(strategy.reports)} of {cfg.num_rounds} rounds; "
            "rerun with --verbose to see Flower's log"
        )
    return final["bias"], evaluations


def _round_records(
    cfg: SimulationConfig,
    reports: list[dict[str, Any]],
    evaluations: dict[int, dict[str, Any]],
    start_version: int,
) -> list[dict[str, Any]]:
    """Round 0 (the starting adapter) and each round's report, privacy spent and evaluation."""
    records = [{"round": 0, "version": start_version} | evaluations[0]]
    published = 0
    for report in reports:
        published += bool(report["published"])
        epsilon = privacy_spent(
            noise_multiplier=cfg.noise_multiplier,
            central_noise=cfg.central_noise,
            sampling_rate=cfg.sampling_rate,
            rounds=report["round"],
            releases=published,
            delta=cfg.delta,
            aggregator=cfg.aggregator,
        )
        records.append(report | {"epsilon": _plain(epsilon)} | evaluations[report["round"]])
    return records
