"""Train generative semantic-ID models (students and the MiniLM teacher).

One loop for every model: next-item semantic-ID cross-entropy at every position of every
training window (teacher forcing), plus, for a distilled student, the temperature-scaled KL to
the teacher's cached per-level code distributions. Validation NDCG@10 from constrained beam
search (`genrec_eval`) selects the epoch; checkpoints make interrupted runs resume where they
stopped. Runs unchanged under torch distributed data parallel (see `pocketrec.distill.dist`).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm.auto import tqdm

from pocketrec._errors import ConfigError
from pocketrec._prefix import PrefixIndex
from pocketrec.distill import dist
from pocketrec.distill.genrec import GenRec, code_loss
from pocketrec.distill.genrec_eval import evaluate_genrec
from pocketrec.distill.kd import valid_children
from pocketrec.distill.metrics import KS
from pocketrec.distill.protocol import PAD, Split
from pocketrec.distill.runinfo import recover_staged, seed_everything, write_json
from pocketrec.distill.training import (
    EarlyStopping,
    cpu_state,
    load_best,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    save_durably,
    trim_log,
)

__all__ = ["TrainConfig", "next_item_loss", "train_genrec"]


@dataclass
class TrainConfig:
    """Optimisation settings of one model."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128  # users per step, summed over distributed ranks
    max_epochs: int = 100
    eval_every: int = 2  # epochs between validation runs
    patience: int = 8  # validation runs without improvement before stopping
    eval_limit: int | None = None  # validate on the first N users only (None: all)
    beam_width: int = 20  # constrained beam search width for evaluation
    constrained: bool = True  # softmax over the valid children of each prefix, as at inference
    kd_weight: float = 0.0  # weight of the distillation term (0 = no teacher)
    kd_temperature: float = 1.0
    # "random": batches of random users. "length": users of similar history length batched
    # together, whose all-padding columns are cut: about half the work per epoch on Amazon
    # data, but the batches' gradients are correlated and models generalise worse (Beauty,
    # item-level teacher, validation NDCG@10 after 2 epochs: 0.0302 by length, 0.0339 random).
    batching: str = "random"
    # "bf16": the forward pass under torch.autocast in bfloat16 (weights, optimizer state and
    # evaluation stay float32). On CPUs with AVX-512 BF16 a d=128 MovieLens student step runs
    # 1.63x faster (benchmarks/results/train_step_time_ml-1m.json); on CPUs without it,
    # torch emulates bfloat16, which is expected to be slower (not measured).
    precision: str = "fp32"
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.beam_width < max(KS):
            problems.append(
                f"beam_width must be >= {max(KS)} (the largest K scored), got {self.beam_width}"
            )
        for name in ("batch_size", "max_epochs", "eval_every", "patience"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if self.precision not in ("fp32", "bf16"):
            problems.append(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.batching not in ("random", "length"):
            problems.append(f"batching must be 'random' or 'length', got {self.batching!r}")
        if self.lr <= 0 or self.kd_weight < 0 or self.kd_temperature <= 0:
            problems.append("lr and kd_temperature must be > 0 and kd_weight >= 0")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            problems.append(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if problems:
            raise ConfigError(problems, where="training config")


def make_batches(
    users: np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    batching: str = "random",
) -> list[np.ndarray]:
    """One epoch's batches of users (see `TrainConfig.batching`).

    "length": Amazon histories are mostly far shorter than the window (mean 9 of 20), so
    batching similar lengths and cutting the all-padding columns roughly halves the work per
    epoch. Users of equal length are shuffled, and so is the order of the batches.
    """
    if batching == "random":
        order = rng.permutation(len(users))
        return [users[order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
    order = np.lexsort((rng.random(len(users)), lengths))
    batches = [users[order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _kd_loss(
    student_logits: torch.Tensor,
    teacher_logp: torch.Tensor,
    teacher_codes: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """KL(teacher || student) on the teacher's cached top-k codes, per level, times T^2.

    Args:
        student_logits: (M, levels, K).
        teacher_logp: (M, levels, k) teacher log-probabilities at temperature T (renormalised
            over its top-k codes).
        teacher_codes: (M, levels, k) the codes those log-probabilities belong to.
    """
    student_logp = F.log_softmax(student_logits / temperature, dim=-1)  # (M, levels, K)
    picked = student_logp.gather(-1, teacher_codes.long())  # (M, levels, k)
    support = torch.isfinite(teacher_logp)  # the teacher's cached top-k can hold masked codes
    terms = torch.where(support, teacher_logp.exp() * (teacher_logp - picked), 0.0)
    return terms.sum((-1, -2)).mean() * temperature**2


def next_item_loss(
    model: torch.nn.Module,
    batch: torch.Tensor,
    index: PrefixIndex,
    *,
    constrained: bool = True,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """The ground-truth loss of one batch of windows: every position predicts the next item.

    Args:
        model: a GenRec (code cross-entropy per level) or the item-level teacher (item
            cross-entropy, which equals the summed code cross-entropy), or either under DDP.
        batch: (b, width) item ids, PAD on the left.
        index: prefix index; with `constrained`, each level's softmax covers only the valid
            children of the target's prefix, as at inference.
        precision: "bf16" runs the forward pass under torch.autocast (torch's own mixed
            precision: float32 master weights; bfloat16 needs no loss scaling). Losses are
            taken in float32 either way.

    Returns:
        (loss, logits, target_codes, valid): logits (M, levels, K) for the distillation term,
        None for the item-level teacher; target_codes (M, levels); valid (b, width - 1) marks
        the M real positions.
    """
    autocast = torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    item_level = getattr(getattr(model, "module", model), "item_level", False)
    inputs, targets = batch[:, :-1], batch[:, 1:]  # (b, width - 1): each position's next item
    if item_level:
        with autocast:
            scores, target_codes, valid = model(inputs, targets, marginals=False)  # (M, N)
        loss = F.cross_entropy(scores.float(), targets[valid].long())  # targets[valid]: (M,)
        return loss, None, target_codes, valid
    with autocast:
        logits, target_codes, valid = model(inputs, targets)  # logits (M, levels, K)
    logits = logits.float()
    if constrained:
        logits = logits.masked_fill(~valid_children(index, target_codes), float("-inf"))
    return code_loss(logits, target_codes), logits, target_codes, valid


def train_genrec(
    model: GenRec,
    split: Split,
    index: PrefixIndex,
    cfg: TrainConfig,
    out_dir: Path,
    *,
    teacher_cache: dict[str, np.ndarray] | None = None,
    desc: str = "train",
) -> dict[str, Any]:
    """Train `model` on the split's training windows; returns its validation/test metrics.

    Args:
        model: the model to train (its `cfg.max_len` is the window).
        split: leave-one-out split.
        index: prefix index of the semantic IDs (for beam-search validation).
        cfg: optimisation settings.
        out_dir: where the best weights, checkpoint, log and metrics go.
        teacher_cache: for distillation, arrays from `pocketrec.distill.kd.load_teacher_cache`.
        desc: progress-bar label.

    Raises:
        ConfigError: a teacher cache given to the item-level teacher, which learns from the
            data only.
    """
    if getattr(model, "item_level", False) and teacher_cache is not None:
        raise ConfigError("the item-level teacher learns from the data only, not from a cache")
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "metrics.json").exists():
        model.load_state_dict(load_file(out_dir / "model.safetensors"), strict=False)
        return json.loads((out_dir / "metrics.json").read_text())
    rank, world = dist.rank(), dist.world_size()
    device = next(model.parameters()).device
    rng = seed_everything(cfg.seed)
    windows = split.train_windows(model.cfg.max_len)  # (U, L + 1)
    lengths = (windows != PAD).sum(1)  # (U,) real items per window
    users = np.flatnonzero(lengths >= 2)  # users with a training pair
    trained = dist.wrap(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stopper = EarlyStopping(cfg.patience)
    start_epoch, elapsed = 0, 0.0
    best: dict[str, torch.Tensor] | None = None  # rank 0: weights of the best validation so far
    ckpt = out_dir / "checkpoint"
    log_path = out_dir / "log.jsonl"
    final_path = out_dir / "model.safetensors"
    if rank == 0:  # one rank puts back what a crash left aside; then every rank reads it
        recover_staged(ckpt)
    dist.barrier()
    if ckpt.exists():
        meta = load_checkpoint(ckpt, model, optimizer, rank=rank)
        start_epoch, elapsed = meta["epoch"] + 1, meta["elapsed_s"]
        stopper = EarlyStopping(**meta["stopper"])
        rng.bit_generator.state = meta["numpy_rng"]
        best = load_best(ckpt, fallback=final_path)
        if stopper.should_stop:  # it had stopped, and was killed during the final evaluation
            start_epoch = cfg.max_epochs
        if rank == 0:
            trim_log(log_path, meta["epoch"])
    bar = tqdm(range(start_epoch, cfg.max_epochs), desc=desc, unit="epoch", disable=rank != 0)
    for epoch in bar:
        t0 = time.perf_counter()
        trained.train()
        batches = make_batches(users, lengths[users], cfg.batch_size, rng, cfg.batching)
        steps, total = len(batches), 0.0
        for batch_users in batches:
            if len(batch_users) < world:  # a tail batch too small to give every rank a user
                continue
            mine = np.array_split(batch_users, world)[rank]  # this rank's share
            width = int(lengths[batch_users].max())  # drop columns that are padding for all
            batch = torch.from_numpy(windows[mine][:, -width:]).to(device)  # (b, width)
            loss, logits, target_codes, valid = next_item_loss(
                trained, batch, index, constrained=cfg.constrained, precision=cfg.precision
            )
            loss = loss * dist.share_of_batch(len(target_codes))
            # logits is None only for the item-level teacher, which takes no cache (see above)
            if teacher_cache is not None and cfg.kd_weight > 0 and logits is not None:
                positions = teacher_cache["position_index"][mine][:, -(width - 1) :]  # (b, w-1)
                rows = positions[valid.cpu().numpy()]  # (M,)
                has = rows >= 0
                share = dist.share_of_batch(int(has.sum()))  # every rank calls it, even with 0
                if has.any():
                    r = rows[has]
                    t_logp = torch.from_numpy(teacher_cache["logp"][r].astype(np.float32))
                    t_codes = torch.from_numpy(teacher_cache["codes"][r].astype(np.int64))
                    kd_levels = t_logp.shape[1]
                    kd = _kd_loss(
                        logits[torch.from_numpy(has).to(device), :kd_levels],
                        t_logp.to(device),
                        t_codes.to(device),
                        cfg.kd_temperature,
                    )
                    loss = loss + cfg.kd_weight * kd * share
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # under DDP, gradients are averaged across ranks here
            optimizer.step()
            total += loss.item()
        record: dict[str, Any] = {"epoch": epoch, "loss": total / max(1, steps)}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.max_epochs:
            valid_metrics = evaluate_genrec(
                model,
                split,
                index,
                "valid",
                beam_width=cfg.beam_width,
                limit=cfg.eval_limit,
                shared=True,
            )
            score = valid_metrics["ndcg@10"]  # the same on every rank
            record["valid_ndcg@10"] = score
            if stopper.step(score, epoch) and rank == 0:
                best = cpu_state(model)
        elapsed += time.perf_counter() - t0
        record["elapsed_s"] = round(elapsed, 1)
        random_states = dist.gather(rng_state())  # each rank's dropout stream, to resume exactly
        if rank == 0:
            save_checkpoint(
                ckpt,
                model,
                optimizer,
                {
                    "epoch": epoch,
                    "elapsed_s": elapsed,
                    "stopper": asdict(stopper),
                    "numpy_rng": rng.bit_generator.state,
                },
                best=best,
                rng=random_states,
            )
            with open(log_path, "a") as log:  # after the checkpoint: a replayed epoch logs once
                log.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{record['loss']:.3f}", best=f"{stopper.best:.4f}")
        if stopper.should_stop:
            break
    if rank == 0:
        if best is None:  # validation never scored (a NaN loss): the last weights
            best = cpu_state(model)
        save_durably(best, final_path)
    dist.barrier()
    model.load_state_dict(load_file(final_path), strict=False)
    scores = {
        stage: evaluate_genrec(model, split, index, stage, beam_width=cfg.beam_width, shared=True)
        for stage in ("valid", "test")
    }
    metrics: dict[str, Any] = {}
    if rank == 0:
        metrics = {
            "seed": cfg.seed,
            "best_epoch": stopper.best_epoch,
            "train_time_s": round(elapsed, 1),
            "parameters": model.num_parameters(),
            **scores,
            "train_config": asdict(cfg),
            "world_size": world,
        }
        write_json(out_dir / "metrics.json", metrics)
        shutil.rmtree(ckpt, ignore_errors=True)
    dist.barrier()
    return metrics
