"""The simulated devices: a Flower ClientApp over a pure function that makes a client's uploads.

A client stands for the devices of its users. Each round, each of its users is sampled with
probability `sampling_rate`; a sampled user's device fits the shared adapter on that user's own
training events and uploads `Recommender.federated_update(...)`, byte for byte what the SDK
sends from a phone. Devices of a malicious client scale or flip their un-noised change, or
all push one level-1 code ("promote", a coordinated attack), then add the round's noise, so
that their uploads look like honest ones to every check but the norm.
"""

from __future__ import annotations

import json

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from pocketrec._adapter import FitSettings, _decode, _encode
from pocketrec.distill.federated.aggregate import BIAS_KEY, UPLOADS_KEY
from pocketrec.distill.federated.config import SimulationConfig, load_world, malicious_clients

__all__ = ["attack_payload", "client_app", "client_uploads", "promoted_code"]


def attack_payload(
    payload: bytes,
    *,
    attack: str,
    scale: float,
    noise_multiplier: float,
    rng: np.random.Generator,
    promoted_code: int = 0,
) -> bytes:
    """A malicious upload from an un-noised one, plus the round's noise, declared as an honest
    upload would: it passes every check that an upload of that norm can pass.

    "scale" sends the device's change times `scale`, "flip" times `-scale`. Honest changes point
    every which way and mostly cancel in a mean, and so do these. "promote" is the coordinated
    attack they are not: every attacking device sends the same change, `scale * clip_norm` on
    level-1 code `promoted_code` and nothing else, which steers every user's beam search
    towards that code's items if the aggregate lets it through.
    """
    obj = json.loads(payload)
    change = _decode(obj["delta"], "delta")
    if attack == "promote":
        delta = np.zeros_like(change)
        delta[0, promoted_code] = scale * float(obj["clip_norm"])
    else:
        delta = change * (scale if attack == "scale" else -scale)
    noised = delta + rng.normal(0.0, noise_multiplier * obj["clip_norm"], size=delta.shape)
    obj["delta"] = _encode(noised.astype(np.float32))
    obj["noise_multiplier"] = noise_multiplier
    return json.dumps(obj, separators=(",", ":")).encode()


def promoted_code(seed: int, codebook_size: int) -> int:
    """The level-1 code "promote" attackers push: one per seed, the same on every device."""
    return int(np.random.default_rng([seed, 2]).integers(codebook_size))


def client_uploads(
    cfg: SimulationConfig,
    client: int,
    *,
    bias: np.ndarray,
    version: int,
    server_round: int,
    clip_norm: float,
    noise_multiplier: float,
) -> list[bytes]:
    """The uploads of one client's sampled users in one round (deterministic given the seed).

    Args:
        cfg: the simulation.
        client: the client's index (its Flower partition id).
        bias: the shared adapter's bias the server sent.
        version: that adapter's version.
        server_round: the round (seeds sampling and device noise).
        clip_norm: the round's clip norm.
        noise_multiplier: the round's device noise.

    Returns:
        One `pocketrec-update/2` payload per sampled user with at least 2 known events.
    """
    world = load_world(
        cfg.dataset,
        cfg.bundle,
        cfg.data_root,
        cfg.num_clients,
        cfg.num_eval_users,
        cfg.seed,
        1,  # one ONNX Runtime thread per client: clients run side by side, one per core
    )
    rec = world.with_shared(bias, version)
    users = world.clients[client]
    sampled = users[
        np.random.default_rng([cfg.seed, server_round, client]).random(len(users))
        < cfg.sampling_rate
    ]
    malicious = client in malicious_clients(cfg.num_clients, cfg.malicious_fraction, cfg.seed)
    item_ids = world.dataset.item_ids
    payloads = []
    for user in sampled.tolist():
        events = world.split.train_sequence(user)  # the SDK fits the last max_events of them
        if len(events) < 2:
            continue  # nothing to learn from; a device would not upload
        device_rng = np.random.default_rng([cfg.seed, server_round, user])
        payload = rec.federated_update(
            [str(item_ids[i]) for i in events],
            clip_norm=clip_norm,
            noise_multiplier=0.0 if malicious else noise_multiplier,
            settings=FitSettings(max_events=cfg.max_events),
            seed=int(device_rng.integers(2**62)),
        )
        if malicious:
            payload = attack_payload(
                payload,
                attack=cfg.attack,
                scale=cfg.attack_scale,
                noise_multiplier=noise_multiplier,
                rng=device_rng,
                promoted_code=promoted_code(cfg.seed, bias.shape[1]),
            )
        payloads.append(payload)
    return payloads


# Module level, so that Ray's worker processes import it by name.
client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """One round on one client: read the server's adapter and rules, reply with the uploads."""
    client = int(context.node_config["partition-id"])
    config = msg.content.config_records["config"]
    cfg = SimulationConfig(**json.loads(str(config["run"])))
    payloads = client_uploads(
        cfg,
        client,
        bias=msg.content.array_records["arrays"][BIAS_KEY].numpy(),
        version=int(config["version"]),  # type: ignore[arg-type]
        server_round=int(config["server-round"]),  # type: ignore[arg-type]
        clip_norm=float(config["clip-norm"]),  # type: ignore[arg-type]
        noise_multiplier=float(config["noise-multiplier"]),  # type: ignore[arg-type]
    )
    reply = ConfigRecord({"client": client, "payloads": payloads})
    return Message(RecordDict({UPLOADS_KEY: reply}), reply_to=msg)
