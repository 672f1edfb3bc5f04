"""Stage: train the SASRec baseline on a dataset, over one or more seeds, and score it.

    train_baseline(cfg, out_dir) -> out_dir

Writes, per seed, `seed_<s>/` with the model (safetensors), the item embeddings (.npy, the
collaborative embeddings the semantic-ID stage uses for catalogues without text), metrics and a
training log; and at the top `metrics.json` with mean ± std over seeds, the resolved config,
the command line, the machine and wall times. An interrupted run resumes from
`seed_<s>/checkpoint_<phase>/`. A finished run made without refit, rerun with it, trains only
the refit and names the run it extended under `refit_added_to`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm.auto import tqdm

from pocketrec.distill import dist
from pocketrec.distill.data import Dataset, load_dataset
from pocketrec.distill.metrics import summarize_seeds
from pocketrec.distill.protocol import PAD, Split, evaluate, leave_one_out
from pocketrec.distill.runinfo import (
    command_line,
    git_commit,
    machine_info,
    recover_staged,
    seed_everything,
    utc_now,
    write_json,
)
from pocketrec.distill.sasrec import SASRec, SASRecConfig
from pocketrec.distill.training import (
    EarlyStopping,
    cpu_state,
    load_best,
    load_checkpoint,
    pick_device,
    save_checkpoint,
    save_durably,
    set_threads,
    trim_log,
)

__all__ = ["train_baseline"]


def _loss(
    model: SASRec,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    cfg: SASRecConfig,
    gen: torch.Generator,
) -> torch.Tensor:
    """Cross-entropy of the next item at every real position of a (B, L) batch."""
    hidden = model(inputs + 1)  # (B, L, D)
    valid = (inputs != PAD) & (targets != PAD)  # (B, L)
    h = hidden[valid]  # (M, D)
    y = targets[valid].long()  # (M,)
    h, weights = model.head(h, model.item_weights())  # (M, D), (N, D)
    if cfg.loss == "ce":
        return F.cross_entropy(h @ weights.T, y)
    negatives = torch.randint(0, model.num_items, (cfg.num_negatives,), generator=gen).to(h.device)
    pos_logit = (h * weights[y]).sum(-1, keepdim=True)  # (M, 1)
    neg_logits = h @ weights[negatives].T  # (M, K)
    neg_logits = neg_logits.masked_fill(negatives[None, :] == y[:, None], float("-inf"))
    logits = torch.cat([pos_logit, neg_logits], dim=1)  # (M, 1 + K)
    return F.cross_entropy(logits, torch.zeros_like(y))


def _predictor(model: SASRec, device: torch.device):
    def predict(hist: np.ndarray) -> np.ndarray:
        tokens = torch.from_numpy(hist.astype(np.int64) + 1).to(device)
        with torch.no_grad():
            return model.score_last(tokens).float().cpu().numpy()

    return predict


def _fit(
    cfg: SASRecConfig, split: Split, seed: int, out: Path, *, name: str, epochs: int, select: bool
) -> tuple[SASRec, EarlyStopping, float]:
    """Train one model; with `select`, keep the epoch with the best validation NDCG@10.

    Writes `<name>.safetensors`; resumes from `checkpoint_<name>/` after an interruption.
    Returns the model (best weights loaded), the early-stopping record and the training time.
    """
    device = pick_device(cfg.device)
    rng = seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SASRec(cfg, split.dataset.num_items).to(device)
    weights, finished = out / f"{name}.safetensors", out / f"{name}.done.json"
    if finished.exists() and weights.exists():  # this phase already ran to the end
        done = json.loads(finished.read_text())
        model.load_state_dict(load_file(weights))
        model.eval()
        return model, EarlyStopping(**done["stopper"]), done["elapsed_s"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    windows = split.train_windows(cfg.max_len)  # (U, L + 1)
    windows = windows[(windows != PAD).sum(1) >= 2]  # users with at least one training pair
    stopper = EarlyStopping(cfg.patience)
    start_epoch, elapsed = 0, 0.0
    best: dict[str, torch.Tensor] | None = None  # the weights this phase keeps
    ckpt = out / f"checkpoint_{name}"
    if recover_staged(ckpt):  # resume an interrupted run exactly where it stopped
        meta = load_checkpoint(ckpt, model, optimizer)
        start_epoch, elapsed = meta["epoch"] + 1, meta["elapsed_s"]
        stopper = EarlyStopping(**meta["stopper"])
        rng.bit_generator.state = meta["numpy_rng"]
        gen.set_state(torch.tensor(meta["sampler_rng"], dtype=torch.uint8))
        best = load_best(ckpt, fallback=weights)
        if select and stopper.should_stop:  # stopped, then killed before it was marked done
            start_epoch = epochs
        trim_log(out / "log.jsonl", meta["epoch"], phase=name)
    predict = _predictor(model, device)
    bar = tqdm(range(start_epoch, epochs), desc=f"sasrec {name} seed {seed}", unit="epoch")
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(len(windows))
        total, batches = 0.0, 0
        for s in range(0, len(order), cfg.batch_size):
            batch = torch.from_numpy(windows[order[s : s + cfg.batch_size]]).to(device)
            loss = _loss(model, batch[:, :-1], batch[:, 1:], cfg, gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        record: dict[str, Any] = {"phase": name, "epoch": epoch, "loss": total / batches}
        improved = not select
        if select and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == epochs):
            model.eval()
            valid = evaluate(predict, split, "valid", max_len=cfg.max_len)
            record["valid_ndcg@10"] = valid["ndcg@10"]
            improved = stopper.step(valid["ndcg@10"], epoch)
        if improved:
            best = cpu_state(model)
        elapsed += time.perf_counter() - t0
        record["elapsed_s"] = round(elapsed, 1)
        bar.set_postfix(loss=f"{record['loss']:.3f}", best=f"{stopper.best:.4f}")
        state = {
            "epoch": epoch,
            "elapsed_s": elapsed,
            "stopper": asdict(stopper),
            "numpy_rng": rng.bit_generator.state,
            "sampler_rng": gen.get_state().tolist(),
        }
        save_checkpoint(ckpt, model, optimizer, state, best=best)
        # after the checkpoint: an epoch replayed after a kill logs once
        with open(out / "log.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        if select and stopper.should_stop:
            break
    if best is None:  # validation never improved on -inf (a NaN loss): the last weights
        best = cpu_state(model)
    save_durably(best, weights)
    model.load_state_dict(load_file(weights))
    model.eval()
    write_json(finished, {"stopper": asdict(stopper), "elapsed_s": elapsed})
    shutil.rmtree(ckpt, ignore_errors=True)
    return model, stopper, elapsed


def _train_seed(cfg: SASRecConfig, split: Split, seed: int, out: Path) -> dict[str, Any]:
    """Select on validation; with `cfg.refit`, refit on train + validation and test that too."""
    out.mkdir(parents=True, exist_ok=True)
    done = out / "metrics.json"
    metrics: dict[str, Any] | None = json.loads(done.read_text()) if done.exists() else None
    if metrics is not None and (not cfg.refit or "test_refit" in metrics):
        return metrics
    # A seed scored without refit and now asked for one keeps its selection-phase scores; the
    # selected weights load from disk and only the refit phase trains.
    model, stopper, elapsed = _fit(
        cfg, split, seed, out, name="model", epochs=cfg.max_epochs, select=True
    )
    if metrics is None:
        predict = _predictor(model, next(model.parameters()).device)
        metrics = {
            "seed": seed,
            "best_epoch": stopper.best_epoch,
            "train_time_s": round(elapsed, 1),
            "valid": evaluate(predict, split, "valid", max_len=cfg.max_len),
            "test": evaluate(predict, split, "test", max_len=cfg.max_len),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        np.save(out / "item_embeddings.npy", model.item_weights().detach().cpu().numpy())
    if cfg.refit:
        refit, _, refit_time = _fit(
            cfg,
            split.with_validation_in_training(),
            seed,
            out,
            name="refit",
            epochs=stopper.best_epoch + 1,
            select=False,
        )
        predict = _predictor(refit, next(refit.parameters()).device)
        metrics["test_refit"] = evaluate(predict, split, "test", max_len=cfg.max_len)
        metrics["refit_time_s"] = round(refit_time, 1)
    write_json(out / "metrics.json", metrics)
    return metrics


def _reusable_seeds(reuse: dict[str, Any], resolved: dict[str, Any]) -> dict[int, Any]:
    """Per-seed results of an earlier run, after checking it ran the same config."""
    from pocketrec._errors import ConfigError

    earlier = asdict(SASRecConfig(dataset=resolved["dataset"])) | reuse.get("config", {})
    differs = sorted(
        k for k in resolved if k not in ("seeds", "threads") and earlier.get(k) != resolved[k]
    )
    if differs:
        raise ConfigError(
            "the record to reuse was made with another config ("
            + ", ".join(f"{k}: {earlier.get(k)!r} there, {resolved[k]!r} here" for k in differs)
            + "); run those seeds again instead of reusing them",
            where="--reuse",
        )
    return {int(m["seed"]): m for m in reuse.get("per_seed", [])}


def train_baseline(
    cfg: SASRecConfig,
    out_dir: Path,
    *,
    data_root: Path | None = None,
    dataset: Dataset | None = None,
    reuse: dict[str, Any] | None = None,
) -> Path:
    """Train and score SASRec for every seed in `cfg.seeds`; returns `out_dir`.

    Args:
        cfg: model and training settings (see `sasrec_preset`).
        out_dir: run folder; an existing one with the same config resumes.
        data_root: dataset root (default `$POCKETREC_DATA`).
        dataset: the already loaded `cfg.dataset`, to skip loading it again.
        reuse: the summary of an earlier run of the same config (its `metrics.json`); the
            seeds it scored are taken from it instead of retrained, so seeds run on different
            days or machines merge into one record. Its provenance is kept under `merged_from`.
    """
    dist.refuse_ranks("the SASRec baseline")
    set_threads(cfg.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / "config.json"
    resolved = asdict(cfg)
    extended: dict[str, Any] | None = None  # the earlier run this one adds the refit phase to
    if config_path.exists():
        # Settings added after a run was made count as their defaults, so it still resumes.
        previous = asdict(SASRecConfig(dataset=cfg.dataset)) | json.loads(config_path.read_text())
        # Turning refit on only adds a phase after selection, so a run made without it resumes
        # and gains its refit scores; every other setting must match.
        free = {"seeds"} | ({"refit"} if cfg.refit and not previous["refit"] else set())
        if {k: v for k, v in previous.items() if k not in free} != {
            k: v for k, v in resolved.items() if k not in free
        }:
            from pocketrec._errors import ConfigError

            raise ConfigError(
                f"{out_dir} holds a run with another config ({config_path}); choose a new --out "
                "or delete the folder",
                where="output folder",
            )
        summary_path = out_dir / "metrics.json"
        if summary_path.exists():
            earlier_run = json.loads(summary_path.read_text())
            # Read from the summary, not config.json: an extension cut short has already
            # written its config, and its rerun must still name the run it extends.
            if cfg.refit and not earlier_run.get("config", {}).get("refit", True):
                keys = ("command", "git_commit", "machine", "started", "wall_time_s")
                extended = {k: earlier_run.get(k) for k in keys}
            else:  # a later command in the same folder (seeds merged in) keeps the note
                extended = earlier_run.get("refit_added_to")
    reused = _reusable_seeds(reuse, resolved) if reuse is not None else {}
    write_json(config_path, resolved)
    started, t0 = utc_now(), time.perf_counter()
    if dataset is None:
        dataset = load_dataset(cfg.dataset, root=data_root)
    split = leave_one_out(dataset)
    per_seed = [
        reused[seed] if seed in reused else _train_seed(cfg, split, seed, out_dir / f"seed_{seed}")
        for seed in cfg.seeds
    ]
    summary = {
        "what": f"SASRec ({cfg.loss} loss) baseline on {dataset.name}",
        "model": "sasrec",
        "dataset": dataset.name,
        "dataset_stats": {k: dataset.stats()[k] for k in ("users", "items", "interactions")},
        "split": split.describe(cfg.max_len),
        "seeds": list(cfg.seeds),
        "test": summarize_seeds([m["test"] for m in per_seed]),
        **(
            {"test_refit": summarize_seeds([m["test_refit"] for m in per_seed])}
            if cfg.refit
            else {}
        ),
        "valid": summarize_seeds([m["valid"] for m in per_seed]),
        "per_seed": per_seed,
        "config": resolved,
        "command": command_line(),
        "git_commit": git_commit(),
        "machine": machine_info(),
        "started": started,
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "data_source": dict(dataset.source),
    }
    if extended is not None:
        summary["refit_added_to"] = extended
    if reused:
        earlier = reuse or {}
        previous = earlier.get("merged_from", [])
        summary["merged_from"] = [
            *previous,
            {
                "seeds": sorted(s for s in reused if s in cfg.seeds),
                **{
                    k: earlier.get(k)
                    for k in ("command", "git_commit", "machine", "started", "refit_added_to")
                },
            },
        ]
    write_json(out_dir / "metrics.json", summary)
    return out_dir
