"""Published numbers pocketrec is compared against, from the evaluation protocol's references.

All under the same protocol as pocketrec's own numbers: leave-one-out, full-catalogue ranking,
history window 20 (Amazon) or 200 (MovieLens-1M). `benchmarks/render.py` and the quickstart
report both print them beside measured results.
"""

from __future__ import annotations

__all__ = ["PUBLISHED"]

# dataset -> [(published model, {metric: value}, source)]
PUBLISHED: dict[str, list[tuple[str, dict[str, float], str]]] = {
    "beauty": [
        ("SASRec, sampled softmax", {"recall@10": 0.0921, "ndcg@10": 0.0531}, "eSASRec benchmark"),
        ("SASRec, BCE (as reported by TIGER)", {"recall@10": 0.0605, "ndcg@10": 0.0318}, "TIGER"),
        (
            "TIGER",
            {"recall@10": 0.0648, "ndcg@10": 0.0384, "recall@5": 0.0454, "ndcg@5": 0.0321},
            "NeurIPS'23",
        ),
        ("RPG", {"recall@10": 0.0809, "ndcg@10": 0.0464}, "KDD'25"),
    ],
    "sports": [
        ("SASRec, sampled softmax", {"recall@10": 0.0569, "ndcg@10": 0.0314}, "eSASRec benchmark"),
        ("SASRec, BCE (as reported by TIGER)", {"recall@10": 0.0350, "ndcg@10": 0.0192}, "TIGER"),
        (
            "TIGER",
            {"recall@10": 0.0400, "ndcg@10": 0.0225, "recall@5": 0.0264, "ndcg@5": 0.0181},
            "NeurIPS'23",
        ),
    ],
    "ml-1m": [
        ("SASRec, sampled softmax", {"recall@10": 0.2853, "ndcg@10": 0.1603}, "HSTU Table 4"),
        ("HSTU", {"recall@10": 0.3097, "ndcg@10": 0.1720}, "HSTU Table 4"),
        ("HSTU-large", {"recall@10": 0.3294, "ndcg@10": 0.1893}, "HSTU Table 4"),
    ],
}
