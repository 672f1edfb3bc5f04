"""Residual quantizers that turn item embeddings into codes: residual k-means and RQ-VAE.

Both produce, per item, one code per level; level l quantizes what levels < l left unexplained.

- `rq_kmeans`: k-means on the embeddings, then on the residuals, level by level.
- `RQVAE`: TIGER's residual-quantized autoencoder: MLP encoder to a small latent, residual
  codebooks (k-means initialised, straight-through gradients, commitment loss), MLP decoder;
  codes that fall out of use are restarted on residuals of the current batch, which keeps every
  level's codebook utilised.

k-means is written here in torch (a few lines) rather than taken from a library because the
RQ-VAE needs it inside training, on the training device, for initialisation and restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RQVAE", "RQVAEConfig", "deconflict_last_level", "kmeans", "rq_kmeans", "train_rqvae"]


def kmeans(
    x: torch.Tensor, k: int, *, iters: int = 50, seed: int = 0, balanced: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding.

    Args:
        x: (N, D) points.
        k: clusters (k <= N).
        iters: Lloyd iterations.
        seed: seeding randomness.
        balanced: after the Lloyd iterations, reassign points so that no cluster holds more
            than ceil(N / k) of them (greedy by distance). Balanced clusters spread items over
            codes evenly, which lowers collisions at the next level.

    Returns:
        centroids (k, D) and assignments (N,).
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    centroids = [x[first]]
    d2 = ((x - x[first]) ** 2).sum(1)  # (N,)
    for _ in range(1, k):
        probs = (d2 / d2.sum().clamp_min(1e-12)).cpu()
        idx = int(torch.multinomial(probs, 1, generator=gen)) if probs.sum() > 0 else 0
        centroids.append(x[idx])
        d2 = torch.minimum(d2, ((x - x[idx]) ** 2).sum(1))
    c = torch.stack(centroids)  # (k, D)
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(1)  # (N,)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        c = torch.where(empty[:, None], c, sums / counts.clamp_min(1)[:, None])
        if empty.any():  # move empty clusters to the points farthest from their centroid
            far = ((x - c[assign]) ** 2).sum(1).topk(int(empty.sum())).indices
            c[empty] = x[far]
    assign = torch.cdist(x, c).argmin(1)
    if balanced:
        assign = _balance(x, c, assign)
    return c, assign


def _balance(x: torch.Tensor, c: torch.Tensor, assign: torch.Tensor) -> torch.Tensor:
    """Capacity-constrained reassignment: no cluster takes more than ceil(N / k) points.

    Rounds of proposals: every unplaced point proposes its nearest cluster that still has room,
    each cluster accepts its closest proposers up to its remaining room, full clusters close.
    Vectorised; converges in a few dozen rounds.
    """
    n, k = x.shape[0], c.shape[0]
    capacity = -(-n // k)
    dist = torch.cdist(x, c)  # (N, k)
    out = torch.full((n,), -1, dtype=torch.long, device=x.device)
    load = torch.zeros(k, dtype=torch.long, device=x.device)
    while True:
        free = (out < 0).nonzero().flatten()
        if free.numel() == 0:
            return out
        choice = dist[free].argmin(1)  # (F,)
        cost = dist[free, choice]
        order = torch.argsort(choice * (cost.max() + 1) + cost)  # by cluster, then distance
        choice, free = choice[order], free[order]
        first = torch.searchsorted(choice, choice)  # start of each cluster's group
        rank = torch.arange(len(choice), device=x.device) - first
        accept = rank < (capacity - load[choice])
        out[free[accept]] = choice[accept]
        load += torch.bincount(choice[accept], minlength=k)
        dist[:, load >= capacity] = float("inf")


def deconflict_last_level(
    codes: torch.Tensor, residual: torch.Tensor, codebook: torch.Tensor
) -> torch.Tensor:
    """Give items that share every earlier code distinct last-level codes, nearest first.

    Near-duplicate items (colour variants, sizes of one product) have almost equal embeddings
    and would share a full code. Within each group of items with the same prefix, each item
    takes the nearest last-level code that no closer item of its group has taken, so the last
    level separates them by meaning instead of leaving it to the collision level. Groups larger
    than the codebook keep their overflow on the nearest code (the collision level numbers it).

    Args:
        codes: (N, L) codes; the last column is rewritten.
        residual: (N, D) what the last level quantizes.
        codebook: (K, D) the last level's codebook.
    """
    n, k = residual.shape[0], codebook.shape[0]
    _, group = torch.unique(codes[:, :-1], dim=0, return_inverse=True)  # (N,)
    dist = torch.cdist(residual, codebook)  # (N, K)
    taken = torch.zeros(int(group.max()) + 1, k, dtype=torch.bool, device=residual.device)
    out = torch.full((n,), -1, dtype=torch.long, device=residual.device)
    for _ in range(k):
        free = (out < 0).nonzero().flatten()
        if free.numel() == 0:
            break
        d = dist[free].masked_fill(taken[group[free]], float("inf"))  # (F, K)
        choice = d.argmin(1)
        cost = d[torch.arange(len(free)), choice]
        live = torch.isfinite(cost)  # groups with every code taken stay for the fallback
        if not live.any():
            break
        free, choice, cost = free[live], choice[live], cost[live]
        key = group[free] * k + choice
        order = torch.argsort(key.double() * (float(cost.max()) + 1) + cost.double())
        key, free, choice = key[order], free[order], choice[order]
        winner = torch.ones_like(key, dtype=torch.bool)
        winner[1:] = key[1:] != key[:-1]  # the closest proposer of each (group, code)
        out[free[winner]] = choice[winner]
        taken[group[free[winner]], choice[winner]] = True
    leftover = out < 0  # groups with more than K items
    if leftover.any():
        out[leftover] = torch.cdist(residual[leftover], codebook).argmin(1)
    codes = codes.clone()
    codes[:, -1] = out
    return codes


def rq_kmeans(
    x: np.ndarray,
    num_levels: int,
    codebook_size: int,
    *,
    seed: int = 0,
    balanced: bool = True,
    unique_last_level: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Residual k-means.

    Args:
        x: (N, D) item embeddings.
        num_levels: levels of codes.
        codebook_size: codes per level.
        seed: k-means seeding.
        balanced: capacity-balanced clusters at every level.
        unique_last_level: separate items sharing every earlier code at the last level
            (`deconflict_last_level`).

    Returns:
        codes (N, num_levels) int64 and codebooks (num_levels, codebook_size, D) float32.
    """
    residual = torch.from_numpy(np.asarray(x, dtype=np.float32))
    codes, books = [], []
    for level in range(num_levels):
        centroids, assign = kmeans(residual, codebook_size, seed=seed + level, balanced=balanced)
        if balanced:  # centroids of the balanced assignment
            sums = torch.zeros_like(centroids).index_add_(0, assign, residual)
            counts = torch.bincount(assign, minlength=codebook_size).clamp_min(1)
            centroids = sums / counts[:, None]
        codes.append(assign)
        books.append(centroids)
        last_residual = residual
        residual = residual - centroids[assign]
    stacked = torch.stack(codes, 1)
    if unique_last_level and num_levels > 1:
        stacked = deconflict_last_level(stacked, last_residual, books[-1])
    return stacked.numpy(), torch.stack(books).numpy()


@dataclass
class RQVAEConfig:
    """RQ-VAE settings (TIGER: 3 levels of 256 codes, latent 32, beta 0.25)."""

    num_levels: int = 3
    codebook_size: int = 256
    latent_dim: int = 32
    hidden: tuple[int, ...] = (512, 256, 128)  # encoder widths; the decoder mirrors them
    beta: float = 0.25  # commitment weight
    lr: float = 1e-3
    epochs: int = 300
    batch_size: int = 1024
    restart_every: int = 1  # epochs between dead-code restarts
    restart_until: float = 0.8  # stop restarting after this share of epochs, to settle
    unique_last_level: bool = True  # deconflict_last_level on the final codes
    seed: int = 0


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    """Encoder -> residual quantization over `num_levels` codebooks -> decoder."""

    def __init__(self, input_dim: int, cfg: RQVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = _mlp([input_dim, *cfg.hidden, cfg.latent_dim])
        self.decoder = _mlp([cfg.latent_dim, *reversed(cfg.hidden), input_dim])
        self.codebooks = nn.Parameter(
            torch.zeros(cfg.num_levels, cfg.codebook_size, cfg.latent_dim)
        )

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, d) latents -> codes (B, levels), quantized latent (B, d), codebook loss."""
        residual, quantized = z, torch.zeros_like(z)
        codes, loss = [], z.new_zeros(())
        for level in range(self.cfg.num_levels):
            book = self.codebooks[level]  # (K, d)
            code = torch.cdist(residual, book).argmin(1)  # (B,)
            chosen = book[code]  # (B, d)
            loss = loss + F.mse_loss(chosen, residual.detach())
            loss = loss + self.cfg.beta * F.mse_loss(residual, chosen.detach())
            quantized = quantized + chosen
            residual = residual - chosen.detach()
            codes.append(code)
        quantized = z + (quantized - z).detach()  # straight-through estimator
        return torch.stack(codes, 1), quantized, loss

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        codes, zq, commit = self.quantize(self.encoder(x))
        return codes, self.decoder(zq), commit

    @torch.no_grad()
    def last_residual(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(B, d) what the last level quantizes, given the codes of the earlier levels."""
        residual = self.encoder(x)
        for level in range(self.cfg.num_levels - 1):
            residual = residual - self.codebooks[level][codes[:, level]]
        return residual

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, seed: int) -> None:
        """k-means on the encoder's latents, level by level on the residuals."""
        residual = self.encoder(x)
        for level in range(self.cfg.num_levels):
            centroids, assign = kmeans(
                residual, self.cfg.codebook_size, iters=20, seed=seed + level
            )
            self.codebooks[level] = centroids
            residual = residual - centroids[assign]

    @torch.no_grad()
    def restart_dead_codes(self, x: torch.Tensor, gen: torch.Generator) -> int:
        """Move codes no item of `x` uses onto random residuals of `x`; returns how many."""
        residual = self.encoder(x)
        restarted = 0
        for level in range(self.cfg.num_levels):
            book = self.codebooks[level]
            code = torch.cdist(residual, book).argmin(1)
            used = torch.bincount(code, minlength=self.cfg.codebook_size) > 0
            dead = (~used).nonzero().flatten()
            if dead.numel():
                pick = torch.randint(residual.shape[0], (dead.numel(),), generator=gen)
                book[dead] = residual[pick.to(residual.device)]
                restarted += dead.numel()
                code = torch.cdist(residual, book).argmin(1)
            residual = residual - book[code]
        return restarted


def train_rqvae(
    x: np.ndarray, cfg: RQVAEConfig, *, device: str = "cpu", progress: bool = True
) -> tuple[RQVAE, np.ndarray, dict[str, float]]:
    """Train an RQ-VAE on item embeddings.

    Returns:
        the model, codes (N, num_levels) int64, and {"reconstruction_mse", "restarts"}.
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = torch.from_numpy(np.asarray(x, dtype=np.float32)).to(device)
    model = RQVAE(data.shape[1], cfg).to(device)
    model.init_codebooks(data, cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    epochs = range(cfg.epochs)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="rq-vae", unit="epoch")
    restarts = 0
    for epoch in epochs:
        order = torch.randperm(data.shape[0], generator=gen).to(device)
        for s in range(0, len(order), cfg.batch_size):
            batch = data[order[s : s + cfg.batch_size]]
            _, recon, commit = model(batch)
            loss = F.mse_loss(recon, batch) + commit
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if (epoch + 1) % cfg.restart_every == 0 and epoch + 1 < cfg.restart_until * cfg.epochs:
            restarts += model.restart_dead_codes(data, gen)
    model.eval()
    with torch.no_grad():
        codes, recon, _ = model(data)
        mse = F.mse_loss(recon, data).item()
        if cfg.unique_last_level and cfg.num_levels > 1:
            codes = deconflict_last_level(
                codes, model.last_residual(data, codes), model.codebooks[-1]
            )
    return model, codes.cpu().numpy(), {"reconstruction_mse": mse, "restarts": float(restarts)}
