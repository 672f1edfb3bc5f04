"""Distributed data parallel, with the single-process path as the special case.

Launch `pocketrec distill` with `torchrun --nproc_per_node N -m pocketrec ...` (or
`accelerate launch`): ranks split each batch of users, DDP averages the gradients, ranks
split each evaluation's batches of users and share their ranks, rank 0 writes artifacts and
logs. Without a launcher, every helper here is a no-op, so there is one code path. CPU ranks
use the gloo backend; CUDA ranks use NCCL for the model and gloo for small CPU collectives.
Stages that run in one process only (the `hf:` teacher, `pocketrec baseline`) refuse torchrun.
"""

from __future__ import annotations

import atexit
import datetime
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as td
from torch import nn

from pocketrec._errors import ConfigError

T = TypeVar("T")

__all__ = [
    "abandon",
    "barrier",
    "gather",
    "init",
    "is_distributed",
    "launched_ranks",
    "rank",
    "refuse_ranks",
    "share_of_batch",
    "world_size",
    "wrap",
]


def is_distributed() -> bool:
    return td.is_available() and td.is_initialized()


def launched_ranks() -> int:
    """How many processes the launcher started (WORLD_SIZE; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def refuse_ranks(what: str) -> None:
    """Stop before any work when `what` runs in one process only and torchrun started several.

    Raises:
        ConfigError: WORLD_SIZE > 1; the message names `what` and says to drop torchrun.
    """
    if launched_ranks() > 1:
        raise ConfigError(
            f"{what} runs in one process; start it without torchrun (WORLD_SIZE is "
            f"{launched_ranks()})",
            where="torchrun",
        )


def init() -> None:
    """Join the process group when launched by torchrun/accelerate (WORLD_SIZE > 1)."""
    if is_distributed() or launched_ranks() <= 1:
        return
    # NCCL serves CUDA tensors only; the small CPU collectives (loss shares, gathered
    # evaluation ranks) go over gloo on every machine.
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # Ranks wait while rank 0 alone builds semantic IDs or writes the teacher cache: minutes on
    # a big catalogue, longer than the backends' default timeouts (10 min for NCCL).
    td.init_process_group(backend=backend, timeout=datetime.timedelta(hours=2))
    # Leave the group before the interpreter tears down: a gloo group still alive at exit can
    # abort the process ("terminate called without an active exception", SIGABRT) after the
    # work is done, which a launcher reports as a failed rank.
    global _abandoned, _hooked
    _abandoned = False
    if not _hooked:  # once per process, however often a group is joined
        atexit.register(_leave)
        sys.excepthook = _abandon_on_uncaught(sys.excepthook)
        _hooked = True


_abandoned = False  # this rank failed (`abandon`)
_hooked = False  # `init` has installed the exit handler and the excepthook


def abandon() -> None:
    """This rank failed: at exit it leaves the group without waiting for the other ranks.

    The exit barrier would hold a failed rank until rank 0 reached its own exit, while the
    launcher (torchrun) stops the other ranks and reports the failure only once a rank has
    exited. `init` calls this for an uncaught exception; code that reports its own errors
    (the CLI turns them into exit code 2) calls it before re-raising.
    """
    global _abandoned
    _abandoned = True


def _abandon_on_uncaught(previous: Callable[..., Any]) -> Callable[..., Any]:
    def hook(*exc_info: Any) -> Any:
        abandon()
        return previous(*exc_info)

    return hook


def _leave() -> None:
    if not (td.is_available() and td.is_initialized()):
        return
    if _abandoned:
        # gloo's teardown is local; NCCL's may wait on a collective the failure left in flight
        if not torch.cuda.is_available():
            td.destroy_process_group()
        return
    try:  # no rank tears its group down while another still talks to it
        td.monitored_barrier(timeout=datetime.timedelta(seconds=30))
    except RuntimeError:  # rank 0 gives up on a rank that never arrives, and exits
        return
    td.destroy_process_group()


def rank() -> int:
    return td.get_rank() if is_distributed() else 0


def world_size() -> int:
    return td.get_world_size() if is_distributed() else 1


def wrap(model: nn.Module) -> nn.Module:
    """DDP around the model when distributed, else the model itself."""
    if not is_distributed():
        return model
    device_ids = (
        [model_device.index]
        if (model_device := next(model.parameters()).device).type == "cuda"
        else None
    )
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def barrier() -> None:
    if is_distributed():
        td.barrier()


def share_of_batch(count: int) -> float:
    """Factor that turns this rank's mean loss into its share of the global mean.

    DDP averages gradients over ranks; ranks hold different numbers of positions, so each
    rank's mean is rescaled by world_size * count / global_count, and the averaged gradient is
    exactly the one a single process would compute on the whole batch.
    """
    if not is_distributed():
        return 1.0
    t = torch.tensor([float(count)], dtype=torch.float64)
    td.all_reduce(t)
    return world_size() * count / max(float(t.item()), 1.0)


def gather(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank (`[value]` in a single process).

    For small picklable results such as one rank's share of an evaluation.
    """
    if not is_distributed():
        return [value]
    out: list[Any] = [None] * world_size()
    td.all_gather_object(out, value)
    return out
