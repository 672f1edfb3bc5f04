"""Training helpers shared by every torch stage: device, threads, resumable checkpoints.

Checkpoints are safetensors (tensors) + JSON (everything else): no pickle on any load path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pocketrec._files import fsync
from pocketrec.distill import dist
from pocketrec.distill.runinfo import read_json, staged_folder, write_json

__all__ = [
    "EarlyStopping",
    "cpu_state",
    "load_best",
    "load_checkpoint",
    "pick_device",
    "rng_state",
    "save_checkpoint",
    "save_durably",
    "set_threads",
    "trim_log",
]

BEST_FILE = "best.safetensors"  # in a checkpoint folder: the best weights so far


def pick_device(name: str = "auto") -> torch.device:
    """ "auto" picks CUDA when present, else CPU. A CUDA device without an index is the
    current one: under torchrun, this rank's GPU (`dist.init` selects it)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU; use 'cpu'")
    if device.type == "cuda" and device.index is None:  # this rank's GPU under torchrun
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def set_threads(threads: int | None) -> None:
    """Use `threads` CPU threads (default: every core this process may run on)."""
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if threads:
        torch.set_num_threads(threads)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, slots in state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "plain": plain}


def rng_state() -> dict[str, torch.Tensor]:
    """This process's torch random state: the CPU's, and its GPUs' where CUDA is in use (one
    GPU per rank under torch distributed)."""
    state = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on the GPU
        if dist.is_distributed():
            device = torch.cuda.current_device()
            state[f"cuda_rng.{device}"] = torch.cuda.get_rng_state(device)
        else:
            state |= {f"cuda_rng.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return state


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    meta: dict[str, Any],
    *,
    best: dict[str, torch.Tensor] | None = None,
    rng: list[dict[str, torch.Tensor]] | None = None,
) -> None:
    """Write model, optimizer and RNG state so training can resume exactly; atomic per folder.

    `best` (the weights of the best validation so far) is written into the same folder, so the
    weights a run will be tested with always match the early-stopping state beside them.
    `rng`: every rank's `rng_state()` in rank order, under torch distributed (default: this
    process's).
    """
    with staged_folder(folder) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            tmp / "model.safetensors",
        )
        if best is not None:
            save_file(best, tmp / BEST_FILE)
        # Rank 0's state unprefixed (as single-process checkpoints have it), rank r's as "rank{r}.".
        extra = {
            (key if r == 0 else f"rank{r}.{key}"): value
            for r, state in enumerate(rng or [rng_state()])
            for key, value in state.items()
        }
        if optimizer is not None:
            tensors, plain = _optimizer_tensors(optimizer)
            save_file(tensors | extra, tmp / "optimizer.safetensors")
            meta = meta | {"optimizer": plain}
        else:
            save_file(extra, tmp / "optimizer.safetensors")
        write_json(tmp / "state.json", meta)


def save_durably(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors written to a temp file, flushed, and renamed over `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, tmp)
    fsync(tmp)
    os.replace(tmp, path)
    fsync(path.parent)


def trim_log(path: Path, last_epoch: int, *, phase: str | None = None) -> None:
    """Keep a JSON-lines training log's records up to a checkpoint's epoch.

    The epochs after it run again on resume and log themselves again. With `phase`, only that
    phase's records (`"phase"` key) are trimmed. A partial line (a kill mid-write) is dropped.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        ours = phase is None or record.get("phase") == phase
        if not ours or record.get("epoch", last_epoch + 1) <= last_epoch:
            kept.append(line)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of `model`'s weights that later training steps do not change."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def load_best(folder: Path, fallback: Path) -> dict[str, torch.Tensor] | None:
    """The best weights `save_checkpoint` kept in `folder`; for checkpoints written before it
    kept them, the weights file `fallback` the trainer wrote beside it; else None."""
    for path in (folder / BEST_FILE, fallback):
        if path.exists():
            return load_file(path)
    return None


def load_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, rank: int = 0
) -> dict[str, Any]:
    """Restore what `save_checkpoint` wrote (and rank `rank`'s random state); returns its meta."""
    model.load_state_dict(load_file(folder / "model.safetensors"))
    meta = read_json(folder / "state.json")
    tensors = load_file(folder / "optimizer.safetensors")
    states: dict[str, dict[str, torch.Tensor]] = {}  # rank prefix -> its random state
    for key in list(tensors):  # the rest are the optimizer's "<param>.<slot>" tensors
        owner, _, name = key.partition(".") if key.startswith("rank") else ("", "", key)
        if name == "torch_rng" or name.startswith("cuda_rng."):
            states.setdefault(owner, {})[name] = tensors.pop(key)
    # This rank's own state; checkpoints from one process (or before ranks had their own)
    # hold only rank 0's, which every rank then takes.
    mine = states.get(f"rank{rank}", states[""])
    torch.set_rng_state(mine["torch_rng"])
    cuda = {int(k[9:]): v for k, v in mine.items() if k.startswith("cuda_rng.")}
    if dist.is_distributed() and cuda:
        # one GPU per rank: touching the others would open a CUDA context on each of them
        here = torch.cuda.current_device()
        cuda = {here: cuda[here]} if here in cuda else {}
    if cuda and torch.cuda.is_available() and max(cuda) < torch.cuda.device_count():
        for device, cuda_state in cuda.items():
            torch.cuda.set_rng_state(cuda_state, device)
    if optimizer is not None and "optimizer" in meta:
        plain = meta.pop("optimizer")
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            pid, slot = key.split(".", 1)
            state.setdefault(int(pid), {})[slot] = value
        for pid, slots in plain["plain"].items():
            state.setdefault(int(pid), {}).update(slots)
        optimizer.load_state_dict({"state": state, "param_groups": plain["param_groups"]})
    return meta


@dataclass
class EarlyStopping:
    """Stop after `patience` evaluations without improving the best validation score."""

    patience: int
    best: float = float("-inf")
    best_epoch: int = -1
    bad_evals: int = 0

    def step(self, score: float, epoch: int) -> bool:
        """Record a validation score; True when it is a new best."""
        if score > self.best:
            self.best, self.best_epoch, self.bad_evals = score, epoch, 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_evals >= self.patience
