"""Semantic IDs: item embeddings, residual quantizers, the collision level, the vocabulary."""
