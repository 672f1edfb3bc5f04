"""The `hf:PATH` teacher: any local Hugging Face causal LM that learns to write semantic IDs.

Semantic-ID tokens (`<a_12>`, `<b_7>`, ... from tokenizer.json) are added to the LM's
vocabulary; a prompt lists the user's recent items by title and semantic ID, and the LM is
fine-tuned with LoRA (peft) to write the next item's semantic ID. With `quant="nf4"` or
`"int8"` the frozen base is loaded through bitsandbytes (QLoRA). Its per-level code
distributions for distillation are the LM's next-token distributions restricted to each level's
tokens, under teacher forcing, so they are directly comparable with the student's.

Generation never samples: scoring uses explicit forward passes and constrained beam search,
not `generate()` (whose defaults can silently sample).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pocketrec._errors import ConfigError
from pocketrec.distill.data import Dataset
from pocketrec.distill.protocol import PAD, Split
from pocketrec.distill.sids.vocab import sid_token

__all__ = ["HFTeacher", "HFTeacherConfig", "check_causal_lm"]

_QUANT = ("none", "nf4", "int8")


@dataclass
class HFTeacherConfig:
    """Fine-tuning settings of an LM teacher."""

    path: str = ""
    quant: str = "none"  # "none", "nf4" (4-bit QLoRA) or "int8"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    history_items: int = 10  # items in the prompt
    title_chars: int = 60  # characters of each title in the prompt
    lr: float = 2e-4
    epochs: int = 1
    batch_size: int = 8
    positions_per_user: int = 1  # training positions per user (most recent first)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.quant not in _QUANT:
            raise ConfigError(
                f"--teacher-quant must be one of {', '.join(_QUANT)}, got {self.quant!r}",
                where="teacher config",
            )


def check_causal_lm(path: str) -> dict[str, Any]:
    """Fail before any training if `path` is not a local causal LM folder.

    Returns:
        The model's config.json.
    """
    folder = Path(path).expanduser()
    config_file = folder / "config.json"
    if not config_file.exists():
        raise ConfigError(
            f"hf:{path}: no config.json there; point --teacher hf:PATH at a folder "
            "saved by save_pretrained()",
            where="--teacher",
        )
    config = json.loads(config_file.read_text())
    archs = config.get("architectures") or []
    if not any(a.endswith("ForCausalLM") for a in archs):
        kind = ", ".join(archs) or config.get("model_type", "unknown")
        raise ConfigError(
            f"hf:{path} is a {kind}, not a causal language model (its architectures "
            "must end in ForCausalLM, e.g. Qwen2ForCausalLM, LlamaForCausalLM)",
            where="--teacher",
        )
    if not any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise ConfigError(f"hf:{path} has no tokenizer files", where="--teacher")
    return config


class HFTeacher:
    """A causal LM with semantic-ID tokens, LoRA-tuned to write the next item's semantic ID."""

    def __init__(
        self,
        cfg: HFTeacherConfig,
        dataset: Dataset,
        semantic_ids: np.ndarray,
        codebook_size: int,
        device: torch.device,
    ) -> None:
        check_causal_lm(cfg.path)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

        self.cfg, self.device = cfg, device
        self.sids = semantic_ids
        self.levels, self.k = semantic_ids.shape[1], codebook_size
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.path, local_files_only=True)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        new_tokens = [sid_token(level, c) for level in range(self.levels) for c in range(self.k)]
        self.tokenizer.add_tokens(new_tokens)
        # token id of (level, code) in the LM vocabulary
        self.level_tokens = torch.tensor(self.tokenizer.convert_tokens_to_ids(new_tokens)).view(
            self.levels, self.k
        )
        kwargs: dict[str, Any] = {"local_files_only": True}
        if cfg.quant == "nf4":
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.bfloat16 if device.type == "cuda" else torch.float32,
            )
        elif cfg.quant == "int8":
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        if cfg.quant != "none":
            kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else "cpu"
        torch.manual_seed(cfg.seed)
        model = AutoModelForCausalLM.from_pretrained(cfg.path, **kwargs)
        model.resize_token_embeddings(len(self.tokenizer))
        if cfg.quant != "none":
            model = prepare_model_for_kbit_training(model)
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            task_type="CAUSAL_LM",
            target_modules="all-linear",
            # The new semantic-ID tokens need trained embeddings; only their rows are trained.
            trainable_token_indices={"embed_tokens": self.level_tokens.flatten().tolist()},
        )
        self.model = get_peft_model(model, lora)
        if cfg.quant == "none":
            self.model.to(device)
        self.titles = [
            (t.title or t.render())[: cfg.title_chars] if t is not None else ""
            for t in (dataset.item_text or [None] * dataset.num_items)
        ]

    # --- prompts ---------------------------------------------------------------------------

    def _sid_text(self, item: int) -> str:
        return "".join(sid_token(level, int(c)) for level, c in enumerate(self.sids[item]))

    def prompt(self, history: np.ndarray) -> str:
        items = [int(i) for i in history if i != PAD][-self.cfg.history_items :]
        lines = [f"{self.titles[i]} {self._sid_text(i)}".strip() for i in items]
        return "Items the user chose, oldest first:\n" + "\n".join(lines) + "\nNext item:"

    def _encode(self, histories: list[np.ndarray], targets: np.ndarray | None):
        """Token ids (left-padded) of prompts followed by the target IDs' tokens (if given)."""
        texts = [self.prompt(h) for h in histories]
        enc = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        if targets is not None:
            enc = [
                e
                + self.level_tokens[
                    torch.arange(self.levels), torch.from_numpy(self.sids[t]).long()
                ].tolist()
                for e, t in zip(enc, targets, strict=True)
            ]
        width = max(len(e) for e in enc)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(enc), width), pad, dtype=torch.long)
        attention = torch.zeros((len(enc), width), dtype=torch.long)
        for row, e in enumerate(enc):
            ids[row, width - len(e) :] = torch.tensor(e)
            attention[row, width - len(e) :] = 1
        return ids.to(self.device), attention.to(self.device)

    def _forward(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """LM logits for left-padded rows; positions count from each row's first real token."""
        positions = (attention.cumsum(-1) - 1).clamp_min(0)
        return self.model(input_ids=ids, attention_mask=attention, position_ids=positions).logits

    def level_logits(self, histories: list[np.ndarray], targets: np.ndarray) -> torch.Tensor:
        """Teacher-forced per-level logits restricted to each level's tokens: (B, levels, K)."""
        ids, attention = self._encode(histories, targets)
        out = self._forward(ids, attention)  # (B, T, V)
        # The last `levels` tokens are the target ID; position t predicts token t + 1.
        predicting = out[:, -self.levels - 1 : -1, :]  # (B, levels, V)
        index = self.level_tokens.to(out.device)[None].expand(len(histories), -1, -1)
        return predicting.gather(-1, index)  # (B, levels, K)

    # --- training and scoring ---------------------------------------------------------------

    def training_examples(self, split: Split, window: int) -> list[tuple[np.ndarray, int]]:
        windows = split.train_windows(window)
        examples = []
        for row in windows:
            positions = np.flatnonzero((row[:-1] != PAD) & (row[1:] != PAD))
            for t in positions[::-1][: self.cfg.positions_per_user]:
                examples.append((row[: t + 1], int(row[t + 1])))
        return examples

    def train(self, split: Split, window: int) -> dict[str, float]:
        """LoRA fine-tuning on next-semantic-ID prediction (loss on the ID tokens only)."""
        examples = self.training_examples(split, window)
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.cfg.lr)
        rng = np.random.default_rng(self.cfg.seed)
        self.model.train()
        losses = []
        for _ in range(self.cfg.epochs):
            order = rng.permutation(len(examples))
            for s in tqdm(
                range(0, len(order), self.cfg.batch_size), desc="hf teacher", unit="batch"
            ):
                batch = [examples[i] for i in order[s : s + self.cfg.batch_size]]
                logits = self.level_logits([h for h, _ in batch], np.array([t for _, t in batch]))
                codes = torch.from_numpy(self.sids[[t for _, t in batch]]).long().to(logits.device)
                loss = F.cross_entropy(logits.reshape(-1, self.k).float(), codes.reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
        self.model.eval()
        return {
            "final_loss": float(np.mean(losses[-10:])) if losses else float("nan"),
            "examples": len(examples),
        }

    @torch.no_grad()
    def teacher_fn(self, inputs: torch.Tensor, targets: torch.Tensor):
        """Cache interface: per-level logits at every position with a next item."""
        valid = (inputs != PAD) & (targets != PAD)  # (B, L)
        histories, next_items = [], []
        rows, cols = torch.nonzero(valid, as_tuple=True)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            histories.append(inputs[r, : c + 1].numpy())
            next_items.append(int(targets[r, c]))
        logits = [
            self.level_logits(histories[s : s + 32], np.array(next_items[s : s + 32]))
            for s in range(0, len(histories), 32)
        ]
        return torch.cat(logits).float().cpu(), valid

    def predictor(self, index, *, beam_width: int, top_k: int = 20):
        """(B, L) histories -> (B, top_k) items by constrained beam search over the LM."""
        from pocketrec._search import beam_search

        def predict(hist: np.ndarray) -> np.ndarray:
            state = np.arange(len(hist), dtype=np.float32)[:, None]  # row numbers as states

            def step(states: np.ndarray, prefix: np.ndarray, level: int) -> np.ndarray:
                num_users, width = prefix.shape[:2]
                users = np.repeat(states[:, 0].astype(np.int64), width)  # (B*W,) user of each beam
                flat = prefix.reshape(num_users * width, -1)  # (B*W, levels - 1)
                ids, attention = self._encode([hist[u] for u in users], None)
                if level:
                    codes = torch.from_numpy(flat[:, :level]).long()
                    extra = self.level_tokens[torch.arange(level), codes].to(ids.device)
                    ids = torch.cat([ids, extra], 1)
                    attention = torch.cat([attention, torch.ones_like(extra)], 1)
                with torch.no_grad():
                    logits = self._forward(ids, attention)[:, -1]
                out = logits[:, self.level_tokens[level].to(logits.device)].float().cpu().numpy()
                return out.reshape(num_users, width, -1)  # (B, W, K)

            return beam_search(state, step, index, beam_width=beam_width, top_k=top_k).items

        return predict

    def save(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(out_dir / "lora"))  # safetensors adapter + config
        self.tokenizer.save_pretrained(str(out_dir / "lora"))

    def num_parameters(self) -> tuple[int, int]:
        """(total, trainable) parameters."""
        total = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return total, trainable
