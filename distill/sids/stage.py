"""Stage: build semantic IDs for a dataset's items.

    build_semantic_ids(cfg, out_dir) -> out_dir

Writes to `out_dir`:

| file | what |
|---|---|
| `semantic_ids.npy` | (num_items, num_levels + 1) int32: row i is internal item i's semantic ID |
| `item_ids.json` | the source item id of every row, in order |
| `codebooks.npy` | (num_levels, codebook_size, dim) float32 codebooks of the quantizer |
| `quantizer.safetensors` | the RQ-VAE weights (method rqvae), to place new items |
| `embeddings.npy` | the item embeddings that were quantized (to place new items, rqkmeans) |
| `tokenizer.json` | the shared semantic-ID vocabulary (`tokenizers` library) |
| `stats.json` | collision rate, utilisation, perplexity, reconstruction error, coherence, time |
| `config.json` | resolved config, command line, machine |
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pocketrec._errors import ConfigError
from pocketrec.distill.data import Dataset, load_dataset
from pocketrec.distill.protocol import Split, leave_one_out
from pocketrec.distill.runinfo import command_line, git_commit, machine_info, utc_now, write_json
from pocketrec.distill.sids.embed import (
    DEFAULT_ENCODER,
    cf_embeddings,
    check_embeddings,
    encode_texts,
    item_texts,
    load_cf_embeddings,
)
from pocketrec.distill.sids.vocab import code_stats, disambiguate, write_tokenizer

__all__ = ["SIDConfig", "build_semantic_ids", "default_source", "load_semantic_ids"]


def default_source(dataset: Dataset) -> str:
    """Item text when the catalogue has it, collaborative embeddings otherwise."""
    return "text" if dataset.item_text is not None else "cf"


@dataclass
class SIDConfig:
    """How to build semantic IDs."""

    dataset: str = "beauty"
    source: str = "text"  # "text": item metadata; "cf": co-occurrence SVD; "both": concatenated
    method: str = "rqkmeans"  # "rqkmeans" or "rqvae"; default chosen by measurement (README)
    num_levels: int = 3
    codebook_size: int = 256
    encoder: str = DEFAULT_ENCODER  # "minilm" or a local encoder folder
    cf_dim: int = 64  # dimensions of the collaborative embeddings
    cf_embeddings: str | None = None  # a SASRec baseline run folder or an .npy; None: PPMI-SVD
    balanced: bool = True  # rqkmeans: capacity-balanced clusters (fewer collisions)
    rqvae_epochs: int = 300
    seed: int = 0
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.source not in ("text", "cf", "both"):
            problems.append(f"source must be text, cf or both, got {self.source!r}")
        if self.method not in ("rqkmeans", "rqvae"):
            problems.append(f"method must be rqkmeans or rqvae, got {self.method!r}")
        for name in ("num_levels", "codebook_size", "cf_dim", "rqvae_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.codebook_size, int) and self.codebook_size < 2:
            problems.append("codebook_size must be at least 2")
        if problems:
            raise ConfigError(problems, where="semantic-ID config")

    def check_capacity(self, num_items: int) -> None:
        """Refuse up front when codebook_size ** num_levels cannot tell the items apart."""
        if self.codebook_size**self.num_levels >= num_items:
            return
        min_size = math.ceil(num_items ** (1 / self.num_levels) - 1e-9)
        while min_size**self.num_levels < num_items:
            min_size += 1
        min_levels = math.ceil(math.log(num_items) / math.log(self.codebook_size) - 1e-9)
        raise ConfigError(
            f"codebook_size ** num_levels = {self.codebook_size}**{self.num_levels} = "
            f"{self.codebook_size**self.num_levels} codes cannot separate {num_items:,} items; "
            f"use --codebook-size {min_size} or more, or --levels {min_levels} or more",
            where="semantic-ID config",
        )


def _leaf_categories(dataset: Dataset) -> list[str] | None:
    if dataset.item_text is None or not any(t.categories for t in dataset.item_text):
        return None
    return [t.categories[-1] if t.categories else "" for t in dataset.item_text]


def _embeddings(
    cfg: SIDConfig, dataset: Dataset, split: Split, device: str | None
) -> tuple[np.ndarray, dict]:
    info: dict[str, Any] = {"source": cfg.source}
    if cfg.source == "text":
        vectors = encode_texts(item_texts(dataset), cfg.encoder, device=device)
        info["encoder"] = cfg.encoder
        return check_embeddings(vectors, "text embeddings"), info
    if cfg.cf_embeddings is not None:
        cf = check_embeddings(load_cf_embeddings(Path(cfg.cf_embeddings), dataset.num_items), "cf")
        info["cf_embeddings"] = cfg.cf_embeddings
    else:
        cf = check_embeddings(cf_embeddings(split, cfg.cf_dim, seed=cfg.seed), "cf")
        info["cf_embeddings"] = "ppmi-svd"
        info["cf_training_interactions"] = int(split.train_lengths().sum())
    if cfg.source == "cf":
        return cf, info
    # both: text where an item has it, collaborative always; halves weighted equally.
    has_text = [t is not None and not t.is_empty() for t in (dataset.item_text or [])]
    text = np.zeros((dataset.num_items, 0), np.float32)
    if any(has_text):
        texts = [t.render() for t in dataset.item_text or []]
        idx = [i for i, ok in enumerate(has_text) if ok]
        encoded = encode_texts([texts[i] for i in idx], cfg.encoder, device=device)
        text = np.zeros((dataset.num_items, encoded.shape[1]), np.float32)
        text[idx] = encoded
    info.update(encoder=cfg.encoder, items_without_text=int(dataset.num_items - sum(has_text)))
    return check_embeddings(np.concatenate([text, cf], 1) / math.sqrt(2), "both"), info


def build_semantic_ids(
    cfg: SIDConfig,
    out_dir: Path,
    *,
    data_root: Path | None = None,
    dataset: Dataset | None = None,
    split: Split | None = None,
) -> Path:
    """Encode items, quantize them, separate collisions and write the artifacts.

    `split` gives the training events that collaborative embeddings (source "cf" or "both",
    without `cf_embeddings`) are built from; by default the plain leave-one-out split. A distill
    run passes its own split, so events it holds back for on-device personalization never shape
    the IDs.

    Raises:
        ConfigError: the codebooks cannot hold the catalogue (before any encoding).
        DataError: items lack text under source "text", or embeddings contain NaN/inf.
    """
    t0 = time.perf_counter()
    if dataset is None:
        dataset = load_dataset(cfg.dataset, root=data_root)
    cfg.check_capacity(dataset.num_items)
    import torch

    from pocketrec.distill.sids.quantize import RQVAEConfig, rq_kmeans, train_rqvae
    from pocketrec.distill.training import pick_device

    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    x, info = _embeddings(cfg, dataset, split or leave_one_out(dataset), str(device))
    t_embed = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.method == "rqkmeans":
        codes, books = rq_kmeans(
            x, cfg.num_levels, cfg.codebook_size, seed=cfg.seed, balanced=cfg.balanced
        )
        residual = x - sum(books[level][codes[:, level]] for level in range(cfg.num_levels))
        recon = {"reconstruction_mse": float((residual**2).sum(1).mean())}
    else:
        rq_cfg = RQVAEConfig(
            num_levels=cfg.num_levels,
            codebook_size=cfg.codebook_size,
            epochs=cfg.rqvae_epochs,
            seed=cfg.seed,
        )
        model, codes, recon = train_rqvae(x, rq_cfg, device=str(device))
        books = model.codebooks.detach().cpu().numpy()
        from safetensors.torch import save_file

        save_file(
            {k: v.cpu().contiguous() for k, v in model.state_dict().items()},
            out_dir / "quantizer.safetensors",
        )
    recon["relative_reconstruction_error"] = recon["reconstruction_mse"] / float(
        (x**2).sum(1).mean()
    )
    sids = disambiguate(codes, cfg.codebook_size)
    stats = code_stats(codes, cfg.codebook_size, _leaf_categories(dataset))
    stats.update(recon)
    stats.update(
        dataset=dataset.name,
        method=cfg.method,
        embedding=info | {"dim": int(x.shape[1])},
        collision_levels_used=int(sids[:, -1].max()) + 1,
        unique_semantic_ids=len({tuple(r) for r in sids.tolist()}),
        embed_time_s=round(t_embed, 1),
        wall_time_s=round(time.perf_counter() - t0, 1),
    )
    np.save(out_dir / "semantic_ids.npy", sids)
    np.save(out_dir / "codebooks.npy", books.astype(np.float32))
    np.save(out_dir / "embeddings.npy", x.astype(np.float32))
    write_json(out_dir / "item_ids.json", [str(i) for i in dataset.item_ids])
    write_tokenizer(out_dir / "tokenizer.json", cfg.num_levels, cfg.codebook_size)
    write_json(out_dir / "stats.json", stats)
    write_json(
        out_dir / "config.json",
        {
            "config": asdict(cfg),
            "command": command_line(),
            "git_commit": git_commit(),
            "machine": machine_info(),
            "created": utc_now(),
        },
    )
    return out_dir


def load_semantic_ids(sid_dir: Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """(semantic_ids (N, L+1), source item ids, config) of a semantic-ID folder."""
    sids = np.load(sid_dir / "semantic_ids.npy", allow_pickle=False)
    item_ids = json.loads((sid_dir / "item_ids.json").read_text())
    config = json.loads((sid_dir / "config.json").read_text())["config"]
    return sids, item_ids, config
