"""Subcommands of the federated server side: `federated simulate` and `federated epsilon`.

Argument definitions import no Flower, Ray or dp-accounting (the config is numpy and the SDK);
handlers import them when they run, with an install hint for the `[federated]` extra.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from pocketrec._cli import emit_json
from pocketrec.distill.arguments import add_data_root, positive_int
from pocketrec.distill.federated import AGGREGATORS, ATTACKS
from pocketrec.distill.federated.config import SimulationConfig

# (flag, SimulationConfig field, type or choices, help); an unset flag keeps the config's
# commented default, which the help shows.
_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--clients", "num_clients", positive_int, "Flower nodes the users are dealt out to"),
    ("--rounds", "num_rounds", positive_int, "federated rounds"),
    ("--sample-rate", "sampling_rate", float, "chance that a user uploads in a round"),
    ("--clip", "clip_norm", float, "L2 clip norm of an upload"),
    ("--dp-noise", "noise_multiplier", float, "device noise std, in units of --clip"),
    (
        "--central-noise",
        "central_noise",
        float,
        "server noise std on the sum of accepted updates, in units of --clip (fedavg only)",
    ),
    (
        "--central-noise-seed",
        "central_noise_seed",
        int,
        "seed the central noise (reproductions only: a known seed voids its privacy)",
    ),
    ("--aggregator", "aggregator", AGGREGATORS, "mean, coordinate-wise median, trimmed mean"),
    (
        "--server-lr",
        "server_lr",
        float,
        "the round's aggregate is applied times this (server learning rate)",
    ),
    ("--trim-fraction", "trim_fraction", float, "trimmed: share cut at each end"),
    ("--malicious-fraction", "malicious_fraction", float, "share of clients that attack"),
    (
        "--attack",
        "attack",
        ATTACKS,
        "scale: the un-noised change times --attack-scale; flip: times minus it; promote: "
        "every attacker sends --attack-scale x --clip on one level-1 code",
    ),
    ("--attack-scale", "attack_scale", float, "attack factor"),
    ("--eval-users", "num_eval_users", positive_int, "held-out users scored after each round"),
    ("--max-events", "max_events", positive_int, "recent events a device fits on"),
    ("--delta", "delta", float, "delta of (epsilon, delta)"),
    ("--seed", "seed", int, "partition, sampling and simulated device noise seed"),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    federated = subparsers.add_parser(
        "federated", help="server side of on-device personalization: simulate rounds, privacy"
    )
    actions = federated.add_subparsers(dest="federated_command", metavar="ACTION", required=True)
    sim = actions.add_parser(
        "simulate",
        help="run federated rounds on a dataset with Flower's simulation engine",
        description="Deal the users of a dataset's training split out to N clients (Flower "
        "nodes, simulated with Ray), hold out evaluation users, and run R rounds: sampled users "
        "fit the shared adapter on their own events with the SDK and upload a clipped, noised "
        "update; the server checks every upload, aggregates the accepted ones and scores the "
        "new adapter on the held-out users. Writes metrics.json (per round: NDCG@10, accepted "
        "and rejected uploads with reasons, upload bytes, epsilon), config.json, and the new "
        "bundle version to --out.",
    )
    sim.add_argument("dataset", help="ml-1m, beauty, sports, amazon2014_<category>, or a folder")
    sim.add_argument("--bundle", type=Path, required=True, help="the bundle devices run")
    sim.add_argument("--out", type=Path, required=True, help="folder to write")
    defaults = {f.name: f.default for f in dataclasses.fields(SimulationConfig)}
    for flag, name, kind, text in _OPTIONS:
        metavar = flag.lstrip("-").replace("-", "_").upper()
        typed = {"choices": kind} if isinstance(kind, tuple) else {"type": kind, "metavar": metavar}
        sim.add_argument(flag, dest=name, help=f"{text} (default {defaults[name]})", **typed)
    sim.add_argument(
        "--signing-key",
        type=Path,
        default=None,
        metavar="PRIVATE_PEM",
        help="sign the published bundle version with this Ed25519 key (`pocketrec keygen`)",
    )
    sim.add_argument("--verbose", action="store_true", help="show Flower's own logs")
    add_data_root(sim)
    sim.add_argument(
        "--json", nargs="?", const="-", metavar="FILE", help="print metrics.json (or write it)"
    )
    sim.set_defaults(handler=_simulate)

    eps = actions.add_parser(
        "epsilon",
        help="privacy spent by R rounds (RDP accountant)",
        description="Epsilon at --delta of R rounds of the Poisson-subsampled Gaussian "
        "mechanism (dp-accounting's RDP accountant). --sample-rate 1 gives the local guarantee "
        "of device noise against the server, which sees every upload.",
    )
    eps.add_argument("--noise", type=float, required=True, help="noise std / clip norm")
    eps.add_argument("--sample-rate", type=float, required=True, help="chance a user takes part")
    eps.add_argument("--rounds", type=positive_int, required=True)
    eps.add_argument("--delta", type=float, default=1e-5)
    eps.add_argument("--json", nargs="?", const="-", metavar="FILE")
    eps.set_defaults(handler=_epsilon)


def _simulate(args: argparse.Namespace) -> int:
    from pocketrec._cli import require_extra

    require_extra("tqdm", "distill")
    require_extra("flwr", "federated")
    require_extra("dp_accounting", "federated")
    from pocketrec.distill.federated.simulate import simulate

    given = {name: getattr(args, name) for _, name, _, _ in _OPTIONS}
    cfg = SimulationConfig(
        dataset=args.dataset,
        bundle=str(args.bundle),
        data_root=None if args.data_root is None else str(args.data_root),
        signing_key=None if args.signing_key is None else str(args.signing_key),
        **{k: v for k, v in given.items() if v is not None},
    )
    out = simulate(cfg, args.out, verbose=args.verbose)
    record = json.loads((out / "metrics.json").read_text())
    for r in record["rounds"]:
        line = f"round {r['round']:>3}  version {r['version']:>3}"
        if r["round"] > 0:
            rejected = ", ".join(f"{k} {v}" for k, v in r["rejected"].items()) or "none"
            line += (
                f"  accepted {r['accepted']}/{r['uploads']} (rejected: {rejected})"
                f"  epsilon local {_fmt(r['epsilon']['local'])}"
                f" central {_fmt(r['epsilon']['central'])}"
            )
        print(line + f"  held-out valid NDCG@10 {r['valid']['ndcg@10']:.4f}")
    final = record["final"]
    summary = f"held-out test NDCG@10 {final['test_before']['ndcg@10']:.4f} before"
    if final["bundle"]:
        summary += f", {final['test_after']['ndcg@10']:.4f} after -> {final['bundle']}"
    else:
        summary += "; no upload was accepted, no bundle written"
    print(summary)
    if args.json is not None:
        emit_json(record, args.json)
    return 0


def _fmt(value: Any) -> str:
    return "n/a" if value is None else str(value) if isinstance(value, str) else f"{value:.2f}"


def _epsilon(args: argparse.Namespace) -> int:
    from pocketrec._cli import require_extra

    require_extra("dp_accounting", "federated")
    from pocketrec._errors import ConfigError
    from pocketrec.distill.federated.privacy import dp_epsilon

    try:
        epsilon = dp_epsilon(
            noise_multiplier=args.noise,
            sampling_rate=args.sample_rate,
            rounds=args.rounds,
            delta=args.delta,
        )
    except ValueError as e:
        raise ConfigError(str(e), where="epsilon arguments") from e
    record = {
        "epsilon": "inf" if math.isinf(epsilon) else epsilon,  # JSON has no infinity
        "delta": args.delta,
        "noise_multiplier": args.noise,
        "sampling_rate": args.sample_rate,
        "rounds": args.rounds,
        "accountant": "RDP (dp-accounting), Poisson-subsampled Gaussian, add or remove one user",
    }
    if args.json is not None:
        emit_json(record, args.json)
    else:
        print(f"epsilon {epsilon:.4g} at delta {args.delta:g}")
    return 0
