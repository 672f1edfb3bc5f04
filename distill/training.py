"""Training helpers shared by every torch stage: device, threads, resumable checkpoints.

Checkpoints are safetensors (tensors) + JSON (everything else): no pickle on any load path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pocketrec.distill.runinfo import read_json, staged_folder, write_json

__all__ = ["EarlyStopping", "load_checkpoint", "pick_device", "save_checkpoint", "set_threads"]


def pick_device(name: str = "auto") -> torch.device:
    """ "auto" picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU; use 'cpu'")
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


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    meta: dict[str, Any],
) -> None:
    """Write model, optimizer and RNG state so training can resume exactly; atomic per folder."""
    with staged_folder(folder) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            tmp / "model.safetensors",
        )
        extra = {"torch_rng": torch.get_rng_state()}
        if optimizer is not None:
            tensors, plain = _optimizer_tensors(optimizer)
            save_file(tensors | extra, tmp / "optimizer.safetensors")
            meta = meta | {"optimizer": plain}
        else:
            save_file(extra, tmp / "optimizer.safetensors")
        write_json(tmp / "state.json", meta)


def load_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict[str, Any]:
    """Restore what `save_checkpoint` wrote; returns its meta dict."""
    model.load_state_dict(load_file(folder / "model.safetensors"))
    meta = read_json(folder / "state.json")
    tensors = load_file(folder / "optimizer.safetensors")
    torch.set_rng_state(tensors.pop("torch_rng"))
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
