"""The generative semantic-ID recommender: the student.

A causal transformer reads the history, one token per item, and a small code head generates
the next item's semantic ID level by level:

    item token   = sum_l E_l[code_l]  (+ item-id embedding)
    h_t          = Transformer(item tokens)_t                  (causal, pre-LayerNorm)
    level-l head = LN(u + MLP(u)), u = h_t + level_l + sum_{j<l} P_j[code_j]
    logits_l     = head · E_l^T + b_l                          (tied to the input code table)

Why this shape (measured, see benchmarks/README.md): the history is encoded once and each
level costs one small MLP, so beam search over 4 levels is 4 tiny calls, not a decoder pass per
generated token as in an encoder-decoder; every position of a sequence trains at once under
teacher forcing, which makes CPU training fast; and the graph has no data-dependent control
flow, so it exports to static-shape ONNX. The code head takes the level as an input, so one
exported `decode` graph serves every level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pocketrec._errors import ConfigError
from pocketrec.distill.sasrec import Block, Dropout, attention

__all__ = ["GenRec", "GenRecConfig"]


@dataclass
class GenRecConfig:
    """Shape of a generative semantic-ID model (student or teacher)."""

    num_levels: int = 4  # semantic-ID length including the collision level
    codebook_size: int = 256
    max_len: int = 20  # history window
    hidden: int = 64
    num_layers: int = 2
    num_heads: int = 2
    ffn_mult: int = 4
    head_mult: int = 2  # code-head MLP width = head_mult * hidden
    dropout: float = 0.3
    num_items: int = 0  # > 0 adds an item-id embedding to the input (catalogue-sized table)

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "num_levels",
            "codebook_size",
            "max_len",
            "hidden",
            "num_layers",
            "num_heads",
            "ffn_mult",
            "head_mult",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        heads_ok = isinstance(self.num_heads, int) and self.num_heads > 0
        if heads_ok and isinstance(self.hidden, int) and self.hidden % self.num_heads:
            problems.append(f"hidden {self.hidden} is not divisible by num_heads {self.num_heads}")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.num_items < 0:
            problems.append("num_items must be >= 0")
        if problems:
            raise ConfigError(problems, where="model config")


class GenRec(nn.Module):
    """History encoder plus level-by-level code head.

    The semantic-ID table is a buffer, so callers pass item ids; `encode_codes` takes the codes
    directly (what the exported graph does).
    """

    def __init__(self, cfg: GenRecConfig, semantic_ids: torch.Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        levels = semantic_ids.shape[1]
        if levels != cfg.num_levels:
            raise ConfigError(
                f"semantic IDs have {levels} levels, the model expects {cfg.num_levels}",
                where="model",
            )
        if int(semantic_ids.max()) >= cfg.codebook_size:
            raise ConfigError(
                f"semantic-ID codes reach {int(semantic_ids.max())}, beyond the "
                f"codebook size {cfg.codebook_size}",
                where="model",
            )
        # Row 0 is padding (item -1); item i is row i + 1.
        table = torch.cat([torch.zeros(1, levels, dtype=torch.long), semantic_ids.long()])
        self.register_buffer("sid_table", table, persistent=False)
        d, k = cfg.hidden, cfg.codebook_size
        self.code_emb = nn.Parameter(torch.randn(levels, k, d) * 0.02)  # E_l, tied to the output
        self.code_bias = nn.Parameter(torch.zeros(levels, k))
        self.item_emb = nn.Embedding(cfg.num_items + 1, d, padding_idx=0) if cfg.num_items else None
        self.pos_emb = nn.Embedding(cfg.max_len, d)
        self.dropout = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.ffn_mult, cfg.dropout) for _ in range(cfg.num_layers)
        )
        self.ln_f = nn.LayerNorm(d)
        # Code head. Prefix code j has its own table with one extra "empty" row (index k).
        self.prefix_emb = nn.Parameter(torch.randn(max(levels - 1, 1), k + 1, d) * 0.02)
        self.level_emb = nn.Parameter(torch.randn(levels, d) * 0.02)
        self.head_ln_q = nn.LayerNorm(d)
        self.head_q = nn.Linear(d, d)
        self.head_kv = nn.Linear(d, 2 * d)
        self.head_proj = nn.Linear(d, d)
        self.head_ln = nn.LayerNorm(d)
        self.head_mlp = nn.Sequential(
            nn.Linear(d, cfg.head_mult * d),
            nn.GELU(),
            Dropout(cfg.dropout),
            nn.Linear(cfg.head_mult * d, d),
        )
        self.head_out_ln = nn.LayerNorm(d)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.item_emb is not None:
            with torch.no_grad():
                self.item_emb.weight[0].zero_()

    # --- history encoder -----------------------------------------------------------------

    def lookup(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) item ids with -1 padding -> codes (B, L, levels) and rows (B, L) (0 = pad)."""
        rows = items.long() + 1
        return self.sid_table[rows], rows

    def encode_codes(self, codes: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """(B, L, levels) codes and (B, L) table rows (0 = padding) -> (B, L, D) states."""
        L, levels = codes.shape[1], codes.shape[2]
        k, d = self.cfg.codebook_size, self.cfg.hidden
        # One flat table and one Gather (not GatherND, which the Qualcomm HTP rejects).
        offsets = torch.arange(levels, device=codes.device) * k  # (levels,)
        x = self.code_emb.reshape(levels * k, d)[codes + offsets].sum(2)  # (B, L, D)
        if self.item_emb is not None:
            x = x + self.item_emb(rows)
        real = rows > 0  # (B, L)
        x = x * math.sqrt(self.cfg.hidden) * 0.5
        positions = torch.arange(self.cfg.max_len - L, self.cfg.max_len, device=codes.device)
        x = self.dropout(x + self.pos_emb(positions)) * real.unsqueeze(-1)
        causal = torch.ones(L, L, dtype=torch.bool, device=codes.device).tril()  # (L, L)
        eye = torch.eye(L, dtype=torch.bool, device=codes.device)
        mask = ((causal & real[:, None, :]) | eye).unsqueeze(1)  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """(B, L) item ids (-1 = padding) -> (B, L, D) states; the last one encodes the history."""
        codes, rows = self.lookup(items)
        return self.encode_codes(codes, rows)

    # --- code head -----------------------------------------------------------------------

    def head(
        self,
        memory: torch.Tensor,
        query: torch.Tensor,
        prefix: torch.Tensor,
        level: torch.Tensor,
        mask: torch.Tensor,
        *,
        every_level: bool = False,
    ) -> torch.Tensor:
        """The code head: logits of `level`'s codes given the history and the earlier codes.

        A one-layer decoder: the query (a history state plus the level and prefix embeddings)
        attends over the history states, so which earlier codes were chosen can change which
        history items matter, then an MLP and the tied output table give the logits.

        Args:
            memory: (B, L, D) history states to attend over.
            query: (B, Q, D) the states the predictions are made from.
            prefix: (B, Q, levels - 1) earlier codes; codebook_size marks "empty".
            level: () long tensor (a tensor so one exported graph serves every level).
            mask: (B, Q, L) True where a query may attend to a history position ((B, 1, L):
                the same positions for every query).
            every_level: score against every level's output table, then keep `level`'s
                logits (the same numbers). The Qualcomm NPU export falls back to it when the
                default form fails its quality gate: the table stays a constant MatMul
                weight, quantized like every other weight.
                Picking the level's table first makes it an activation, and the NPU's
                activation-by-activation MatMul lost precision (the last level's logits
                3.2e-2 off fp32 on the HTP simulator versus 5e-3 for the same graph on CPU).
                The price is num_levels times the output MatMul's work: 1.6-1.9x the HTP
                cycles per decode step at hidden 64 and 256 codes (benchmarks/README.md).

        Returns:
            (B, Q, codebook_size) logits.
        """
        B, Q, D = query.shape
        H = self.cfg.num_heads
        slots = self.prefix_emb.shape[1]  # codebook_size + 1 (the "empty" code)
        offsets = torch.arange(prefix.shape[-1], device=prefix.device) * slots  # (levels - 1,)
        flat = self.prefix_emb.reshape(-1, D)[prefix + offsets].sum(-2)  # (B, Q, D)
        u = query + self.level_emb[level] + flat
        q = self.head_q(self.head_ln_q(u)).view(B, Q, H, D // H).transpose(1, 2)  # (B, H, Q, D/H)
        k, v = self.head_kv(memory).split(D, dim=-1)  # (B, L, D) each
        k = k.view(B, -1, H, D // H).transpose(1, 2)  # (B, H, L, D/H)
        v = v.view(B, -1, H, D // H).transpose(1, 2)
        attn = attention(q, k, v, mask.unsqueeze(1), 0.0)  # (B, H, Q, D/H)
        u = u + self.dropout(self.head_proj(attn.transpose(1, 2).reshape(B, Q, D)))
        z = self.head_out_ln(u + self.head_mlp(self.head_ln(u)))  # (B, Q, D)
        if every_level:
            levels, k = self.code_bias.shape
            every = z @ self.code_emb.reshape(levels * k, D).T + self.code_bias.reshape(-1)
            return every.unflatten(-1, (levels, k))[:, :, level]  # (B, Q, K)
        return z @ self.code_emb[level].T + self.code_bias[level]  # (B, Q, K)

    def level_logits(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        prefix: torch.Tensor,
        level: torch.Tensor,
        *,
        every_level: bool = False,
    ) -> torch.Tensor:
        """Next-level logits for every beam of every user (the decode step of beam search).

        Each user's history is passed once and its beams are the head's queries, so the
        attention keys and values of a history are computed once per user, not once per beam.

        Args:
            memory: (U, L, D) states of each user's history (`encode` output).
            memory_mask: (U, L) True at real (non-padding) history positions.
            prefix: (U, W, levels - 1) codes each of a user's W beams chose so far;
                codebook_size marks "empty".
            level: () long tensor.
            every_level: see `head`.

        Returns:
            (U, W, codebook_size) logits.
        """
        # (U, W, D): every beam queries from the state after the most recent item
        query = memory[:, -1:, :].expand(-1, prefix.shape[1], -1)
        mask = (
            memory_mask
            | (torch.arange(memory.shape[1], device=memory.device) == memory.shape[1] - 1)
        )[:, None, :]  # (U, 1, L): the same positions for every beam of a user
        return self.head(memory, query, prefix, level, mask, every_level=every_level)

    def forward(
        self, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: teacher-forced logits at every position that has a next item.

        Args:
            inputs: (B, L) history item ids (-1 = padding).
            targets: (B, L) the next item at each position (-1 = none).

        Returns:
            logits (M, levels, K), the targets' semantic IDs (M, levels), and the (B, L) mask
            of the M positions.
        """
        states = self.encode(inputs)  # (B, L, D)
        L, k = inputs.shape[1], self.cfg.codebook_size
        real = inputs >= 0  # (B, L)
        causal = torch.ones(L, L, dtype=torch.bool, device=inputs.device).tril()
        eye = torch.eye(L, dtype=torch.bool, device=inputs.device)
        mask = (causal & real[:, None, :]) | eye  # (B, L, L): position t sees history <= t
        codes = self.sid_table[targets.long() + 1]  # (B, L, levels)
        levels = codes.shape[-1]
        out = []
        for level in range(levels):
            prefix = codes[..., :-1].clone()  # (B, L, levels - 1)
            prefix[..., level:] = k  # codes at and after this level are not known yet
            level_t = torch.tensor(level, device=inputs.device)
            out.append(self.head(states, states, prefix, level_t, mask))  # (B, L, K)
        logits = torch.stack(out, 2)  # (B, L, levels, K)
        valid = real & (targets >= 0)  # (B, L)
        return logits[valid], codes[valid], valid

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def code_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over positions of the summed per-level cross-entropy: -log p(item)."""
    m, levels, k = logits.shape
    return F.cross_entropy(logits.reshape(m * levels, k), targets.reshape(-1).long()) * levels
