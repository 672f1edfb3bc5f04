"""The teacher's outputs, computed once and cached on disk for distillation.

For every position of every training window (the same windows the student trains on), the
teacher's per-level code distribution given the true earlier codes, at temperature T. Only the
top-k codes of each level are kept, renormalised over those k (the tail of a 256-way softmax
carries little mass and would make the cache 8x larger):

| file | shape | what |
|---|---|---|
| `logp.npy` | (P, levels, k) float16 | teacher log-probabilities at temperature T |
| `codes.npy` | (P, levels, k) int16 | the codes they belong to |
| `position_index.npy` | (num_users, window) int32 | row of each (user, position), -1 if none |
| `meta.json` | | teacher, temperature, k, window, semantic-ID hash |

A position may lack teacher outputs (an LM teacher can be run on a subset); the student then
learns that position from the ground truth alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pocketrec._prefix import PrefixIndex
from pocketrec.distill import dist
from pocketrec.distill.errors import DataError
from pocketrec.distill.protocol import PAD, Split
from pocketrec.distill.runinfo import write_json

__all__ = [
    "TeacherFn",
    "cache_teacher_outputs",
    "check_cache_settings",
    "load_teacher_cache",
    "sid_hash",
    "teacher_fingerprint",
    "valid_children",
]

TeacherFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""teacher(inputs (B, L), targets (B, L)) -> (logits (M, levels, K), valid mask (B, L))."""


def valid_children(index: PrefixIndex, codes: torch.Tensor) -> torch.Tensor:
    """(M, levels, K) True where a code continues the prefix of `codes` before that level."""
    prefix = codes.cpu().numpy()
    masks = [
        index.child_mask(level, index.keys(prefix[:, :level])) for level in range(prefix.shape[1])
    ]
    return torch.from_numpy(np.stack(masks, 1)).to(codes.device)


def sid_hash(semantic_ids: np.ndarray) -> str:
    """Fingerprint of a semantic-ID table: teacher, student and cache must agree on it."""
    return hashlib.sha256(np.ascontiguousarray(semantic_ids, dtype=np.int64).tobytes()).hexdigest()[
        :16
    ]


def _save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


@torch.no_grad()
def cache_teacher_outputs(
    teacher: TeacherFn,
    split: Split,
    window: int,
    out_dir: Path,
    *,
    index: PrefixIndex,
    semantic_ids: np.ndarray,
    meta: dict[str, Any],
    top_k: int = 32,
    temperature: float = 1.0,
    batch_size: int = 256,
    users: np.ndarray | None = None,
) -> Path:
    """Run the teacher over the training windows and write the cache.

    Under torch distributed, each rank scores a slice of the users and rank 0 merges them.

    Args:
        teacher: maps (inputs, targets) windows to teacher-forced logits (see `TeacherFn`).
        split: the leave-one-out split the student trains on.
        index: prefix index; each level's distribution is renormalised over the codes that
            continue the true prefix, as the student's constrained softmax is.
        semantic_ids: (num_items, levels) table, for the true prefixes.
        window: history window (the student's `max_len`).
        out_dir: cache folder.
        meta: recorded in meta.json (teacher name, semantic-ID hash, ...).
        top_k: codes kept per level.
        temperature: softmax temperature of the cached distributions.
        batch_size: users per teacher call.
        users: score only these users (default: all with a training pair).
    """
    settings = meta | {"top_k": top_k, "temperature": temperature, "window": window}
    if (out_dir / "meta.json").exists():
        check_cache_settings(out_dir, settings)
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    windows = split.train_windows(window)  # (U, window + 1)
    if users is None:
        users = np.flatnonzero((windows != PAD).sum(1) >= 2)
    mine = np.array_split(users, dist.world_size())[dist.rank()]
    logps, codes, coords = [], [], []
    starts = range(0, len(mine), batch_size)
    for s in tqdm(starts, desc="teacher outputs", unit="batch", disable=dist.rank() != 0):
        batch_users = mine[s : s + batch_size]
        batch = torch.from_numpy(windows[batch_users])
        logits, valid = teacher(batch[:, :-1], batch[:, 1:])  # (M, levels, K), (b, L)
        next_items = batch[:, 1:][valid].numpy()
        allowed = valid_children(index, torch.from_numpy(semantic_ids[next_items]).long())
        logits = logits.float().masked_fill(~allowed, float("-inf"))
        logp = F.log_softmax(logits / temperature, dim=-1)
        values, top_codes = logp.topk(min(top_k, logp.shape[-1]), dim=-1)  # (M, levels, k)
        values = values - torch.logsumexp(values, dim=-1, keepdim=True)
        logps.append(values.cpu().numpy().astype(np.float16))
        codes.append(top_codes.cpu().numpy().astype(np.int16))
        u, t = np.nonzero(valid.cpu().numpy())
        coords.append(np.stack([batch_users[u], t], 1))
    part = out_dir / f"part{dist.rank()}"
    part.mkdir(exist_ok=True)
    _save(
        part / "logp.npy", np.concatenate(logps) if logps else np.zeros((0, 1, top_k), np.float16)
    )
    _save(part / "codes.npy", np.concatenate(codes) if codes else np.zeros((0, 1, top_k), np.int16))
    _save(part / "coords.npy", np.concatenate(coords) if coords else np.zeros((0, 2), np.int64))
    dist.barrier()
    if dist.rank() == 0:
        # This run's parts only: a run killed here with more ranks may have left others.
        parts = [out_dir / f"part{r}" for r in range(dist.world_size())]
        all_logp = np.concatenate([np.load(p / "logp.npy") for p in parts])
        all_codes = np.concatenate([np.load(p / "codes.npy") for p in parts])
        all_coords = np.concatenate([np.load(p / "coords.npy") for p in parts])
        position_index = np.full((split.dataset.num_users, window), -1, dtype=np.int32)
        position_index[all_coords[:, 0], all_coords[:, 1]] = np.arange(len(all_coords))
        _save(out_dir / "logp.npy", all_logp)
        _save(out_dir / "codes.npy", all_codes)
        _save(out_dir / "position_index.npy", position_index)
        for p in out_dir.glob("part*"):
            shutil.rmtree(p)
        write_json(
            out_dir / "meta.json",
            settings | {"positions": len(all_coords), "levels": int(all_logp.shape[1])},
        )
    dist.barrier()
    return out_dir


# What shapes the cached distributions (the teacher, window and semantic IDs are checked by
# `load_teacher_cache`), with the value of one a cache written before it was recorded has.
_SHAPING = {"top_k": None, "temperature": None, "exclude_history": False}


def check_cache_settings(out_dir: Path, settings: dict[str, Any]) -> None:
    """Refuse to reuse a cache whose distributions were made with another temperature, top-k
    or history rule than this run asks for.

    Args:
        out_dir: a cache folder with its meta.json.
        settings: this run's `top_k`, `temperature` and `exclude_history` (others ignored).

    Raises:
        DataError: naming each setting the cache was made with and the one asked for.
    """
    made = json.loads((out_dir / "meta.json").read_text())
    recorded = {key: made.get(key, default) for key, default in _SHAPING.items()}
    changed = {
        key: (recorded[key], settings.get(key, default))
        for key, default in _SHAPING.items()
        if recorded[key] != settings.get(key, default)
    }
    if changed:
        raise DataError(
            f"teacher cache {out_dir} was made with "
            + ", ".join(f"{key}={old!r}" for key, (old, _) in changed.items())
            + ", but this run asks for "
            + ", ".join(f"{key}={new!r}" for key, (_, new) in changed.items())
            + "; delete the cache folder to recompute it"
        )


def teacher_fingerprint(folder: Path) -> str:
    """Fingerprint of a trained teacher: every weights file under `folder`, names and bytes.

    Args:
        folder: the run's `teacher/` folder (training checkpoints in it are left out).

    Returns:
        16 hex digits of a sha256.
    """
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        if "checkpoint" in path.relative_to(folder).parts:  # training state, not the teacher
            continue
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def load_teacher_cache(
    cache_dir: Path, *, window: int, sid_fingerprint: str, teacher: str | None = None
) -> dict[str, Any]:
    """Memory-map a cache, refusing one made for other windows, semantic IDs or teacher weights
    (`teacher`: `teacher_fingerprint` of the teacher now in the run; caches written before it
    was recorded are taken as they are)."""
    meta = json.loads((cache_dir / "meta.json").read_text())
    if meta["window"] != window or meta.get("sid_hash") != sid_fingerprint:
        raise DataError(
            f"teacher cache {cache_dir} was made for window {meta['window']} and semantic IDs "
            f"{meta.get('sid_hash')}, but the student uses window {window} and {sid_fingerprint}; "
            "delete the cache folder to recompute it"
        )
    made_with = meta.get("teacher_weights")
    if teacher is not None and made_with is not None and made_with != teacher:
        raise DataError(
            f"teacher cache {cache_dir} holds the outputs of other teacher weights ({made_with}; "
            f"the run's teacher is {teacher}): the teacher was trained again after the cache "
            "was written, and students distilled from the cache learned from the old one. "
            "Rerun with --force, or delete teacher_cache/, student/ and student_nokd/ to "
            "distill again from this teacher"
        )
    return {
        "logp": np.load(cache_dir / "logp.npy", mmap_mode="r"),
        "codes": np.load(cache_dir / "codes.npy", mmap_mode="r"),
        "position_index": np.load(cache_dir / "position_index.npy"),
        "meta": meta,
    }
