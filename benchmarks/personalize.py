"""Does on-device personalization help? Shared model against a personal adapter, by history length.

    python benchmarks/personalize.py runs/quickstart/bundles/fp32 beauty \
        --json benchmarks/results/personalize_beauty.json

Protocol (`pocketrec.distill.protocol`): leave-one-out, full-catalogue constrained beam search,
the project's metric code (`pocketrec.distill.metrics`). A device holds every event of its user
before the item being predicted. For each sampled user:

- shared: the bundle as shipped ranks the held-out item from the user's history;
- adapted: a personal adapter fitted with the SDK (`fit_personal`, numpy, 1 thread) on the
  most recent `--max-events` of those events (each read with the events before it) is added,
  and the same item is ranked again.

Users are grouped by how many events they have before the test item (`--edges`), sampled per
group with a fixed seed (every user of a group smaller than the cap), and each group gets the
paired difference adapted - shared with a bootstrap 95% CI over its users. The population line
weights groups by their size in the dataset (so sampling does not skew it).

Settings are chosen on the validation item (the device then holds the events before it): every
`--l2` candidate is fitted and scored there, and the rule in `choose_settings` picks one, with a
`min_events` gate if short histories are hurt. Only the chosen settings are run on the test
item, once.
"""

from __future__ import annotations

import os

# One thread everywhere before numpy loads: the fit time reported is a phone's single core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from pocketrec import Recommender  # noqa: E402
from pocketrec._adapter import FORMS, FitSettings  # noqa: E402
from pocketrec._personalize import check_form, fit_personal, min_rows  # noqa: E402
from pocketrec._search import beam_search, exclusion_batch, search_excluding  # noqa: E402
from pocketrec.distill.data import load_dataset  # noqa: E402
from pocketrec.distill.metrics import metrics_from_ranks, ranks_from_topk  # noqa: E402
from pocketrec.distill.protocol import Split, leave_one_out  # noqa: E402
from pocketrec.distill.runinfo import (  # noqa: E402
    provenance,
    utc_now,
    write_json,
)

KEYS = ("ndcg@10", "recall@10")


def bucket_labels(edges: tuple[int, ...]) -> list[str]:
    """Names of the groups `edges` make: (5, 10) -> ["<=5", "6-10", ">10"]."""
    middle = [f"{a + 1}-{b}" for a, b in itertools.pairwise(edges)]
    return [f"<={edges[0]}", *middle, f">{edges[-1]}"]


def bucket_of(num_events: np.ndarray, edges: tuple[int, ...]) -> np.ndarray:
    """Group index of each count: 0 for <= edges[0], i for (edges[i-1], edges[i]], ..."""
    return np.searchsorted(np.asarray(edges), num_events, side="left")


def stratified_sample(
    buckets: np.ndarray, num_buckets: int, per_bucket: int, rng: np.random.Generator
) -> np.ndarray:
    """Sorted positions: at most `per_bucket` drawn without replacement from each group."""
    picked = []
    for b in range(num_buckets):
        members = np.flatnonzero(buckets == b)
        take = min(per_bucket, len(members))
        picked.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(picked))


def paired_bootstrap(
    shared: np.ndarray,
    adapted: np.ndarray,
    groups: np.ndarray,
    weights: np.ndarray,
    *,
    num_samples: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Adapted - shared per group and population-weighted, with percentile 95% CIs.

    Users are resampled within their group, the same draw for both models (paired); each
    resample is scored with `metrics_from_ranks`, the project's one metric implementation.

    Args:
        shared, adapted: (N,) 0-based target ranks of the same users under each model.
        groups: (N,) group index of each user.
        weights: (G,) share of the population in each group (sums to 1).
        num_samples: bootstrap resamples.
        rng: randomness for the resamples.

    Returns:
        {"groups": [{key: {"diff", "lo", "hi"}} per group], "population": {...}}; a group with
        no users gets None.
    """
    members = [np.flatnonzero(groups == g) for g in range(len(weights))]
    draws = np.zeros((num_samples, len(weights), len(KEYS)))
    point = np.zeros((len(weights), len(KEYS)))
    for g, idx in enumerate(members):
        if len(idx) == 0:
            continue
        point[g] = _diff(shared[idx], adapted[idx])
        for s in range(num_samples):
            pick = idx[rng.integers(0, len(idx), size=len(idx))]
            draws[s, g] = _diff(shared[pick], adapted[pick])
    present = np.array([len(m) > 0 for m in members])
    w = np.where(present, weights, 0.0) / max(float(np.where(present, weights, 0.0).sum()), 1e-12)
    population = (point * w[:, None]).sum(axis=0)
    population_draws = (draws * w[None, :, None]).sum(axis=1)  # (S, K)

    def interval(value: np.ndarray, samples: np.ndarray) -> dict[str, dict[str, float]]:
        lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
        return {
            key: {"diff": float(value[k]), "lo": float(lo[k]), "hi": float(hi[k])}
            for k, key in enumerate(KEYS)
        }

    return {
        "groups": [
            interval(point[g], draws[:, g]) if present[g] else None for g in range(len(weights))
        ],
        "population": interval(population, population_draws),
    }


def _diff(shared: np.ndarray, adapted: np.ndarray) -> np.ndarray:
    a, s = metrics_from_ranks(adapted, (10,)), metrics_from_ranks(shared, (10,))
    return np.array([a[key] - s[key] for key in KEYS])


def verdict(interval: dict[str, float]) -> str:
    """ "helps" / "hurts" when the 95% CI excludes 0, else "within noise"."""
    if interval["lo"] > 0:
        return "helps"
    if interval["hi"] < 0:
        return "hurts"
    return "within noise"


def adapts(num_events: int, settings: FitSettings) -> bool:
    """Whether `fit_personal` fits anything for a history of `num_events` rows.

    The SDK returns a zero adapter below `min_rows(settings)` rows. A test pins this to the
    SDK's behaviour, so the validation sweep can gate fitted adapters without refitting them.
    """
    return num_events >= min_rows(settings)


ADAPTER_FORMS = {
    "shift": "state shift: hidden numbers fitted, applied as code_embeddings @ shift",
    "bias": "free code bias: one number per level and code",
}

SELECTION_RULE = (
    "per l2: gate the adapter off (min_events) below the lowest group from which no group's "
    "validation NDCG@10 CI lies wholly below zero; then the best population-weighted "
    "validation NDCG@10 difference (gated groups count 0); ties to the larger l2"
)


def choose_settings(
    sweep: list[dict[str, Any]], edges: tuple[int, ...], base: FitSettings
) -> tuple[FitSettings, str]:
    """Pick fit settings from the validation sweep.

    Rule: for each l2, find the lowest group from which no group's validation NDCG@10 CI lies
    wholly below zero (gate the adapter off below it with `min_events`); among those candidates
    take the best population-weighted validation NDCG@10 difference, where gated groups count 0.
    Ties go to the larger l2 (the more conservative adapter).
    """
    best: tuple[float, float, FitSettings, str] | None = None
    for entry in sweep:
        groups = entry["bootstrap"]["groups"]
        weights = np.asarray(entry["weights"])
        start = 0
        for g, interval in enumerate(groups):
            if interval is not None and interval["ndcg@10"]["hi"] < 0:
                start = g + 1
        if start >= len(groups):
            continue
        # Group `start` begins just above edges[start - 1] events; gate below that.
        min_events = base.min_events if start == 0 else edges[start - 1] + 1
        gain = sum(
            weights[g] * groups[g]["ndcg@10"]["diff"]
            for g in range(start, len(groups))
            if groups[g] is not None
        )
        settings = replace(base, l2=entry["settings"]["l2"], min_events=min_events)
        why = f"l2={settings.l2}: population validation NDCG@10 {gain:+.5f} with " + (
            "every group adapted"
            if start == 0
            else f"groups below {bucket_labels(edges)[start]} events gated off"
        )
        key = (gain, settings.l2)
        if best is None or key > best[:2]:
            best = (gain, settings.l2, settings, why)
    if best is None:
        return replace(base, min_events=10**9), "every l2 hurts the longest histories: adapter off"
    return best[2], best[3]


@dataclass(frozen=True)
class Users:
    """The sampled users of one stage, in bundle rows."""

    positions: np.ndarray  # (N,) positions in split.eval_users
    groups: np.ndarray  # (N,) group index
    histories: np.ndarray  # (N, window) catalogue rows, -1 = padding
    targets: np.ndarray  # (N,) dataset item ids
    events: list[list[int]]  # each user's device events (bundle rows), oldest first


def stage_users(
    rec: Recommender,
    split: Split,
    positions: np.ndarray,
    groups: np.ndarray,
    stage: str,
    to_bundle: np.ndarray,
) -> Users:
    """What a device holds at `stage`: every event before the target, and the model's window."""
    hist, targets = split.histories(stage, rec.window)  # type: ignore[arg-type]
    users = split.eval_users[positions]
    ends = split.dataset.offsets[users + 1] - (2 if stage == "valid" else 1)
    events = []
    for user, end in zip(users.tolist(), ends.tolist(), strict=True):
        rows = to_bundle[split.dataset.items[split.dataset.offsets[user] : end]]
        events.append([int(r) for r in rows if r >= 0])  # items the bundle lacks are dropped
    return Users(
        positions=positions,
        groups=groups,
        histories=to_bundle[hist[positions]],
        targets=targets[positions],
        events=events,
    )


def rank_with_biases(
    rec: Recommender,
    histories: np.ndarray,
    biases: np.ndarray,
    *,
    k: int,
    beam_width: int,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """(B, k) catalogue rows ranked with a different adapter bias per user.

    The same batched beam search `Recommender.rank` runs, with the step adding each user's own
    (num_levels, codebook_size) bias to the raw model's logits; `with_adapters` per user gives
    the same ranking but rebuilds the prefix index each time (tens of ms per user). With
    `exclude` ((B, E) rows, -1 padded) those items are left out as `rank` leaves them out
    (`search_excluding`).
    """
    raw = rec.without_adapters()
    total = rec.total_bias[None] + biases  # (B, L, K)
    # Each user's bias travels with its encoded history, so users searched again (long
    # exclusion lists) keep their own.
    states = (*raw.encode(histories), total)

    def step(states: Any, prefix: np.ndarray, level: int) -> np.ndarray:
        return raw.step(states[:2], prefix, level) + states[2][:, level][:, None, :]  # (B, W, K)

    if exclude is None:
        return beam_search(states, step, rec.prefix_index, beam_width=beam_width, top_k=k).items
    return search_excluding(
        states,
        step,
        rec.prefix_index,
        beam_width=beam_width,
        top_k=k,
        exclude=exclude,
        window=rec.window,
    ).items


def score_stage(
    rec: Recommender,
    users: Users,
    settings: FitSettings,
    *,
    beam_width: int,
    levels: int | None = None,
    to_dataset: np.ndarray,
    exclude_seen: bool = False,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Fit each user's adapter, rank the target with and without it; per-user ranks and times.

    `levels` keeps only the first that-many levels of each fitted bias. The fit's loss is a sum
    over levels with one bias row per level, so this equals fitting those levels alone: an
    experiment on which levels carry personal signal (the SDK adapts every level).
    `exclude_seen` leaves every event the device holds out of both rankings, as
    `Recommender.recommend` does by default for the history it is given.
    """
    k = 20
    shape = rec.total_bias.shape
    biases = np.zeros((len(users.targets), *shape), np.float32)  # (N, L, K)
    fit_ms = np.full(len(users.targets), np.nan)
    for i, rows in enumerate(users.events):
        if not adapts(len(rows), settings):
            continue
        t0 = time.perf_counter()
        biases[i] = fit_personal(rec, rows, settings).bias
        if levels is not None:
            biases[i, levels:] = 0.0
        fit_ms[i] = (time.perf_counter() - t0) * 1e3
    shared, adapted = [], []
    for s in range(0, len(users.targets), batch_size):
        hist = users.histories[s : s + batch_size]
        seen = exclusion_batch(users.events[s : s + batch_size]) if exclude_seen else None
        shared.append(to_dataset[rec.rank(hist, k=k, beam_width=beam_width, exclude=seen).items])
        found = rank_with_biases(
            rec, hist, biases[s : s + batch_size], k=k, beam_width=beam_width, exclude=seen
        )
        adapted.append(to_dataset[found])
    return {
        "shared": ranks_from_topk(np.concatenate(shared), users.targets),
        "adapted": ranks_from_topk(np.concatenate(adapted), users.targets),
        "fit_ms": fit_ms,
        # a user is adapted when the adapter applied is not zero (not gated off by
        # min_events, nor dropped by the holdout check)
        "adapted_users": biases.reshape(len(biases), -1).any(axis=1),
    }


def summarize(
    scored: dict[str, Any],
    users: Users,
    labels: list[str],
    population: np.ndarray,
    *,
    bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """Per-group and population metrics, differences with CIs, and fit times."""
    weights = population / population.sum()
    boot = paired_bootstrap(
        scored["shared"],
        scored["adapted"],
        users.groups,
        weights,
        num_samples=bootstrap,
        rng=np.random.default_rng(seed),
    )
    groups = []
    for g, label in enumerate(labels):
        idx = np.flatnonzero(users.groups == g)
        entry: dict[str, Any] = {"group": label, "users_total": int(population[g])}
        entry["users_scored"] = len(idx)
        if len(idx):
            entry["shared"] = metrics_from_ranks(scored["shared"][idx])
            entry["adapted"] = metrics_from_ranks(scored["adapted"][idx])
            entry["diff"] = boot["groups"][g]
            entry["verdict"] = verdict(boot["groups"][g]["ndcg@10"])
            entry["fit_ms"] = _times(scored["fit_ms"][idx])
            entry["users_adapted"] = int(scored["adapted_users"][idx].sum())
            entry["events_mean"] = float(np.mean([len(users.events[i]) for i in idx]))
        groups.append(entry)
    return {
        "weights": weights.tolist(),
        "groups": groups,
        "bootstrap": boot,
        "population_diff": boot["population"],
        "fit_ms": _times(scored["fit_ms"]),
    }


def _times(ms: np.ndarray) -> dict[str, Any]:
    fitted = ms[np.isfinite(ms)]
    if len(fitted) == 0:
        return {"fitted_users": 0}
    p50, p90, p99 = np.percentile(fitted, [50, 90, 99])
    return {"fitted_users": len(fitted), "p50": p50, "p90": p90, "p99": p99, "max": fitted.max()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("dataset")
    parser.add_argument("--json", type=Path, required=True, help="record to write")
    parser.add_argument(
        "--edges",
        default="5,10,20,50",
        help="upper edges of the history-length groups, in events before the test item",
    )
    parser.add_argument("--per-group", type=int, default=2000, help="test users per group")
    parser.add_argument(
        "--tune-per-group", type=int, default=300, help="validation users per group (sweep)"
    )
    parser.add_argument("--l2", default="2,8,32", help="l2 values swept on validation")
    parser.add_argument("--steps", type=int, default=FitSettings.steps)
    parser.add_argument("--lr", type=float, default=FitSettings.lr)
    parser.add_argument(
        "--max-events", type=int, default=50, help="most recent events a device fits on"
    )
    parser.add_argument(
        "--form",
        choices=FORMS,
        default="bias",
        help="personal adapter form (FitSettings.form): a free code bias (default) or a state "
        "shift (bundles with code embeddings)",
    )
    parser.add_argument(
        "--holdout",
        type=int,
        default=0,
        help="keep a user's adapter only if, fitted without their most recent N targets, it "
        "lowers the loss on those (FitSettings.holdout; default 0: always keep)",
    )
    parser.add_argument(
        "--levels",
        type=int,
        default=None,
        help="adapt only the first N semantic-ID levels (default: every level, as the SDK does)",
    )
    parser.add_argument(
        "--device-users",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="score only the users a bundle trained with `pocketrec distill --device-users "
        "FRACTION` never saw (the same fixed draw; default: every user)",
    )
    parser.add_argument(
        "--exclude-seen",
        action="store_true",
        help="leave every event the device holds out of both rankings, as recommend() does by "
        "default (default: rank the whole catalogue, the protocol of the distill records)",
    )
    parser.add_argument("--beam-width", type=int, default=None, help="default: the bundle's")
    parser.add_argument(
        "--sweep-only", action="store_true", help="run the validation sweep, not the test"
    )
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=None)
    args = parser.parse_args(argv)

    started, t_start = utc_now(), time.perf_counter()
    edges = tuple(int(e) for e in args.edges.split(","))
    labels = bucket_labels(edges)
    rec = Recommender.from_bundle(args.bundle, threads=1)
    dataset = load_dataset(args.dataset, root=args.data_root)
    split = leave_one_out(dataset)
    beam = max(20, args.beam_width or int(rec.manifest.search.get("beam_width", 20)))
    lookup = {item: row for row, item in enumerate(rec.item_ids)}
    to_bundle = np.array([lookup.get(str(i), -1) for i in dataset.item_ids] + [-1], np.int64)
    to_dataset = np.full(len(rec.item_ids) + 1, -1, np.int64)
    known = to_bundle[:-1] >= 0
    to_dataset[to_bundle[:-1][known]] = np.flatnonzero(known)

    # Events a device holds before the test item: everything but the test item.
    num_events = dataset.lengths()[split.eval_users] - 1
    groups = bucket_of(num_events, edges)
    if args.device_users:  # users outside the draw join no group, so none is sampled
        device = np.isin(split.eval_users, split.device_users(args.device_users))
        groups = np.where(device, groups, len(labels))
    population = np.bincount(groups, minlength=len(labels))[: len(labels)].astype(np.float64)
    rng = np.random.default_rng(args.seed)
    tune_pos = stratified_sample(groups, len(labels), args.tune_per_group, rng)
    test_pos = stratified_sample(groups, len(labels), args.per_group, rng)
    base = FitSettings(
        steps=args.steps,
        lr=args.lr,
        min_events=2,
        max_events=args.max_events,
        form=args.form,
        holdout=args.holdout,
    )
    check_form(rec, base)  # a shift on a bundle without code embeddings fails here, not later
    if args.levels is not None and args.holdout:
        parser.error("--levels cannot be combined with --holdout (the check reads every level)")
    if args.levels is not None and args.form == "shift":
        # Keeping the first levels of a fitted shift is not fitting those levels alone: one
        # shift moves every level.
        parser.error("--levels needs --form bias (a state shift moves every level at once)")

    sweep = []
    valid_users = stage_users(rec, split, tune_pos, groups[tune_pos], "valid", to_bundle)
    for l2 in (float(v) for v in args.l2.split(",")):
        settings = replace(base, l2=l2)
        t0 = time.perf_counter()
        scored = score_stage(
            rec,
            valid_users,
            settings,
            levels=args.levels,
            exclude_seen=args.exclude_seen,
            beam_width=beam,
            to_dataset=to_dataset,
        )
        summary = summarize(
            scored, valid_users, labels, population, bootstrap=args.bootstrap, seed=args.seed
        )
        sweep.append({"settings": asdict(settings), "wall_time_s": time.perf_counter() - t0})
        sweep[-1] |= summary
        print(
            f"valid l2={l2}: "
            + ", ".join(
                f"{g['group']} {g['diff']['ndcg@10']['diff']:+.4f}"
                for g in summary["groups"]
                if "diff" in g
            ),
            file=sys.stderr,
        )
    chosen, why = choose_settings(sweep, edges, base)
    print(f"chosen: {chosen} ({why})", file=sys.stderr)
    if args.sweep_only:  # exploring settings: the test item stays unseen
        write_json(args.json, {"kind": "personalize_sweep", "sweep": sweep, "chosen": chosen})
        return 0

    test_users = stage_users(rec, split, test_pos, groups[test_pos], "test", to_bundle)
    t0 = time.perf_counter()
    scored = score_stage(
        rec,
        test_users,
        chosen,
        beam_width=beam,
        to_dataset=to_dataset,
        levels=args.levels,
        exclude_seen=args.exclude_seen,
    )
    test = summarize(
        scored, test_users, labels, population, bootstrap=args.bootstrap, seed=args.seed
    )
    test["wall_time_s"] = time.perf_counter() - t0
    for g in test["groups"]:
        if "diff" in g:
            d = g["diff"]["ndcg@10"]
            print(
                f"test {g['group']:>6}: shared {g['shared']['ndcg@10']:.4f} adapted "
                f"{g['adapted']['ndcg@10']:.4f} diff {d['diff']:+.4f} "
                f"[{d['lo']:+.4f}, {d['hi']:+.4f}] {g['verdict']}",
                file=sys.stderr,
            )

    record = {
        "what": f"on-device personalization of {rec.manifest.name} on {dataset.name}: shared "
        "model against shared + personal adapter (SDK fit_personal), by history length",
        "kind": "personalize",
        "dataset": dataset.name,
        "bundle": str(args.bundle),
        "bundle_name": rec.manifest.name,
        "split": split.describe(rec.window),
        "scored_users": (
            f"only the {args.device_users:.0%} of evaluated users the bundle never trained on "
            "(Split.device_users)"
            if args.device_users
            else "every evaluated user"
        ),
        "device_events": "every event before the target item (test: the validation item "
        f"included); the fit predicts the most recent {args.max_events} of them, each from the "
        f"{rec.window} events before it (FitSettings.max_events)",
        "groups": {
            "by": "events before the test item",
            "edges": list(edges),
            "labels": labels,
            "users_total": population.astype(int).tolist(),
        },
        "sampling": {
            "test_per_group": args.per_group,
            "validation_per_group": args.tune_per_group,
            "how": "at most N users per group drawn without replacement (seeded); population "
            "figures weight groups by their share of all evaluated users",
            "test_users": len(test_pos),
            "validation_users": len(tune_pos),
        },
        "ranking": (
            "every event the device holds is left out of both rankings, as recommend() leaves "
            "out the history it is given"
            if args.exclude_seen
            else "the whole catalogue (no history filtering), as the distill records rank"
        ),
        "ci": f"paired bootstrap within each group, {args.bootstrap} resamples, percentile 95%",
        "beam_width": beam,
        "adapted_levels": "all" if args.levels is None else args.levels,
        "adapter_form": ADAPTER_FORMS[args.form],
        "selection": {
            "stage": "valid",
            "rule": SELECTION_RULE,
            "sweep": sweep,
            "chosen": asdict(chosen),
            "why": why,
        },
        "test": test,
        "threads": 1,
        "seed": args.seed,
        **provenance(started, t_start),
    }
    write_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
