"""What every artifact records about how it was made: command, machine, versions, time.

Also the small helpers every stage shares: atomic JSON writes, seeding, and device choice.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pocketrec._cli import plain_json as to_jsonable  # one conversion for every record
from pocketrec._files import fsync, write_atomic

__all__ = [
    "staged_folder",
    "command_line",
    "cpu_model",
    "git_commit",
    "machine_info",
    "provenance",
    "read_json",
    "recover_staged",
    "seed_everything",
    "to_jsonable",
    "utc_now",
    "write_json",
]


def command_line() -> str:
    """The command that is running, as a user would type it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("pocketrec", "__main__.py")):
        argv[0] = "pocketrec"
    # torchrun (and accelerate) start each rank with the module's own argv; the launcher and
    # its process count are what a rerun needs to reproduce the run, so they are put back.
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and argv and argv[0] == "pocketrec":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        nodes = ["--nnodes", str(world // local)] if local != world else []
        argv = ["torchrun", *nodes, "--nproc_per_node", str(local), "-m", *argv]
    return shlex.join(argv)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_GIT_STATUS = ["git", "status", "--porcelain", "--untracked-files=no", "--"]


def git_commit() -> str | None:
    """The commit of the pocketrec checkout, when running from one.

    Ends in "+dirty" when tracked files differ from that commit: the record then does not pin
    the code that made it. Result records (`benchmarks/results/`) are not code, so a
    benchmark that writes one does not make the next one dirty.
    """
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        status = subprocess.run(
            # result records are not code: writing one does not make the next one dirty
            [*_GIT_STATUS, ":(top)", ":(top,exclude)benchmarks/results"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0 or not head.stdout.strip():
        return None
    dirty = status.returncode == 0 and bool(status.stdout.strip())
    return head.stdout.strip() + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    """Machine and library versions, for results files."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    if hasattr(os, "getloadavg"):  # runnable processes over 1/5/15 min: shows a busy machine
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    for module in ("torch", "onnxruntime", "onnx"):
        mod = sys.modules.get(module)
        if mod is not None:
            info[module] = getattr(mod, "__version__", "?")
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        info["world_size"] = int(os.environ.get("WORLD_SIZE", "1"))
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@functools.cache
def commit_at_start() -> str | None:
    """`git_commit()` when this process first asked, which importing this module does.

    A benchmark imports this module before its work begins, so its record names the code that
    ran even when commits land in the checkout while it runs.
    """
    return git_commit()


def provenance(created: str, started_s: float) -> dict[str, Any]:
    """What every benchmark record states about how it was made.

    `git_commit` is the checkout when the process began (`commit_at_start`); when it changed
    before the record was written, `git_commit_finished` says to what.

    Args:
        created: `utc_now()` when the work began.
        started_s: `time.perf_counter()` when the work began.
    """
    now = git_commit()
    return {
        "command": command_line(),
        "git_commit": commit_at_start(),
        **({"git_commit_finished": now} if now != commit_at_start() else {}),
        "machine": machine_info(),
        "created": created,
        "wall_time_s": round(time.perf_counter() - started_s, 1),
    }


commit_at_start()  # at import: before any work of the process that imports this module


def write_json(path: Path, obj: Any) -> Path:
    """Write JSON atomically: a temp file in the same folder, then rename over the target."""
    write_atomic(path, json.dumps(to_jsonable(obj), indent=2) + "\n")
    return path


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, numpy and torch (when imported); return a numpy Generator for the caller."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds libraries that use the global state
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
    return np.random.default_rng(seed)


@contextlib.contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """Build a folder in a temporary sibling; swap it in at `folder` only on success.

    On any error the temporary folder is removed and the previous `folder` (if any) is left
    untouched, so a reader never sees a half-written bundle, checkpoint or run stage.
    """
    tmp = folder.with_name(folder.name + ".tmp")
    old = folder.with_name(folder.name + ".old")
    recover_staged(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_tree(tmp)  # the new files are on disk before any name points at them
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    fsync(folder.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover_staged(folder: Path) -> bool:
    """Put back the previous `folder` that a crash between `staged_folder`'s two renames left
    as `<folder>.old`; returns whether `folder` exists. Call it before reading `folder`."""
    old = folder.with_name(folder.name + ".old")
    if old.exists() and not folder.exists():
        old.rename(folder)
    return folder.exists()


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (a bundle or checkpoint: a few dozen files)."""
    for folder, _, files in os.walk(root):
        for name in files:
            fsync(Path(folder) / name)
        fsync(Path(folder))
