"""Export a trained student to two ONNX graphs and check them against torch.

- `encoder.onnx`: `history_codes` (batch, window, levels) int64 and `history_rows`
  (batch, window) int64 (catalogue item + 1; 0 = padding) -> `memory` (batch, window, hidden).
- `decoder.onnx`: `memory` (users, window, hidden), `memory_mask` (users, window) bool,
  `prefix` (users, beams, levels - 1) int64 (codebook_size = not chosen yet) and `level` ()
  int64 -> `logits` (users, beams, codebook_size). Each user's history comes once and its beams
  query it, so the code head projects a history to attention keys and values once per user, not
  once per beam. One graph serves every level: the level picks rows of the embedding tables
  inside it.

The batch axes are dynamic, except for NPU graphs, which are exported with fixed shapes. With
`every_level`, the decoder scores every level's output table in one MatMul before keeping the
level's logits, so that the table is a quantized constant weight (see `GenRec.head`); the NPU
export falls back to that form when the default one fails its quality gate.
Attention is exported as MatMul/Softmax with a finite additive mask (see
`pocketrec.distill.sasrec.explicit_attention`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pocketrec._manifest import GraphSpec, TensorSpec
from pocketrec._search import StepFn
from pocketrec.distill.genrec import GenRec
from pocketrec.distill.sasrec import explicit_attention

__all__ = ["ExportedGraphs", "export_graphs", "torch_step"]


class _Encoder(nn.Module):
    def __init__(self, model: GenRec) -> None:
        super().__init__()
        self.model = model

    def forward(self, history_codes: torch.Tensor, history_rows: torch.Tensor) -> torch.Tensor:
        return self.model.encode_codes(history_codes, history_rows)


class _Decoder(nn.Module):
    def __init__(self, model: GenRec, *, every_level: bool = False) -> None:
        super().__init__()
        self.model = model
        self.every_level = every_level

    def forward(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        prefix: torch.Tensor,
        level: torch.Tensor,
    ) -> torch.Tensor:
        return self.model.level_logits(
            memory, memory_mask, prefix, level, every_level=self.every_level
        )


@dataclass(frozen=True)
class ExportedGraphs:
    encoder: GraphSpec
    decoder: GraphSpec


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    names: list[str],
    output: str,
    dynamic: dict[str, dict[int, str]] | None,
) -> None:
    """torch.onnx.export (torch.export-based), quietly; dynamic axes by input name."""
    shapes: Any = None
    if dynamic is not None:
        dims: dict[str, Any] = {}
        shapes = tuple(
            {
                axis: dims.setdefault(label, torch.export.Dim(label))
                for axis, label in dynamic.get(name, {}).items()
            }
            or None
            for name in names
        )
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), explicit_attention():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=[output],
            dynamo=True,
            dynamic_shapes=shapes,
            optimize=True,
            external_data=False,
        )


def export_graphs(
    model: GenRec,
    out_dir: Path,
    *,
    static_rows: tuple[int, int] | None = None,
    every_level: bool = False,
) -> ExportedGraphs:
    """Write encoder.onnx and decoder.onnx for `model` into `out_dir`.

    Args:
        model: the trained student (eval mode is set here).
        out_dir: bundle folder being built.
        static_rows: (encoder batch, decoder beams) for fixed-shape graphs (NPU), whose decoder
            takes the encoder batch's users with that many beams each; None exports dynamic
            user, batch and beam axes.
        every_level: the decoder multiplies by every level's output table, a constant (see
            `GenRec.head`); same inputs and outputs.
    """
    model = model.eval()
    cfg = model.cfg
    window, levels, hidden = cfg.max_len, cfg.num_levels, cfg.hidden
    enc_b, dec_w = static_rows or (2, 3)
    codes = torch.zeros(enc_b, window, levels, dtype=torch.long)
    rows = torch.ones(enc_b, window, dtype=torch.long)
    enc_names = ["history_codes", "history_rows"]
    _export(
        _Encoder(model),
        (codes, rows),
        out_dir / "encoder.onnx",
        enc_names,
        "memory",
        None if static_rows else {"history_codes": {0: "batch"}, "history_rows": {0: "batch"}},
    )
    memory = torch.zeros(enc_b, window, hidden)
    mask = torch.ones(enc_b, window, dtype=torch.bool)
    prefix = torch.full((enc_b, dec_w, levels - 1), cfg.codebook_size, dtype=torch.long)
    level = torch.tensor(0, dtype=torch.long)
    dec_names = ["memory", "memory_mask", "prefix", "level"]
    _export(
        _Decoder(model, every_level=every_level),
        (memory, mask, prefix, level),
        out_dir / "decoder.onnx",
        dec_names,
        "logits",
        None
        if static_rows
        else {
            "memory": {0: "users"},
            "memory_mask": {0: "users"},
            "prefix": {0: "users", 1: "beams"},
        },
    )
    b: int | str = enc_b if static_rows else "batch"
    u: int | str = enc_b if static_rows else "users"
    w: int | str = dec_w if static_rows else "beams"
    encoder = GraphSpec(
        file="encoder.onnx",
        inputs=(
            TensorSpec("history_codes", "int64", (b, window, levels)),
            TensorSpec("history_rows", "int64", (b, window)),
        ),
        outputs=(TensorSpec("memory", "float32", (b, window, hidden)),),
    )
    decoder = GraphSpec(
        file="decoder.onnx",
        inputs=(
            TensorSpec("memory", "float32", (u, window, hidden)),
            TensorSpec("memory_mask", "bool", (u, window)),
            TensorSpec("prefix", "int64", (u, w, levels - 1)),
            TensorSpec("level", "int64", ()),
        ),
        outputs=(TensorSpec("logits", "float32", (u, w, cfg.codebook_size)),),
    )
    return ExportedGraphs(encoder, decoder)


def torch_step(model: GenRec) -> StepFn:
    """The beam-search step of the torch model, for parity checks against ONNX (see `StepFn`)."""

    def step(states: tuple[np.ndarray, np.ndarray], prefix: np.ndarray, level: int) -> np.ndarray:
        memory, memory_mask = states
        with torch.no_grad():
            logits = model.level_logits(
                torch.from_numpy(memory),
                torch.from_numpy(memory_mask),
                torch.from_numpy(prefix),
                torch.tensor(level),
            )
        return logits.numpy()

    return step
