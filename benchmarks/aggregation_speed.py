"""Dawid–Skene's cost as the votes grow: the product's ``model.aggregation.dawid_skene`` against
the implementation before 2026-12-04 (kept below as the baseline, measured in the same run).

Every retrain and refresh re-aggregates the multi-vote items with it (``HITL_AGGREGATION``'s
default), and admins' ``/hitl stats`` estimates each person's accuracy with it. An outside
tester's backlog (20 people, 47,600 answers, 154 labels) took 82 s to read for a retrain, most
of it here: the baseline's M step loops over the annotators with a (labels × votes) @ (votes ×
labels) product each, and its E step adds with ``np.add.at``. The product sums over groups of
votes with ``np.add.reduceat`` instead.

Synthetic votes (no data set needed): ``--items`` items with a true label each among
``--labels``, each answered by ``--per-item`` of ``--people`` people, right 60–95 % of the time
(else a uniformly random label); every 160th item gold. Each size runs both implementations for
a fixed number of EM iterations (``tol=0``), and checks that they agree; then the product alone
with its defaults on the largest size (up to 500 iterations, until no posterior moves by more
than 1e-6 or the log-likelihood per item rises by less than 1e-6), and once more without the
likelihood rule (``gain_tol=0``): its rounds, time, and how many resolved labels differ.

    python benchmarks/aggregation_speed.py           # 2,000 / 8,000 / 24,000 items; 77, 154 labels
    python benchmarks/aggregation_speed.py --quick   # small, ~2 s
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import ROOT, machine  # noqa: F401 (ROOT: the repository on the import path)

from model.aggregation import (
    Aggregation,
    _expected_accuracy,
    _resolve,
    _vote_shares,
    dawid_skene,
)
from model.agreement import MISSING, Tally


def dawid_skene_before(
    tally: Tally, *, gold: dict[str, str] | None = None, max_iter: int = 500, tol: float = 1e-6,
    smoothing: float = 0.01,
) -> np.ndarray:  # fmt: skip
    """The EM loop as it was before the groups: a loop over annotators in the M step,
    ``np.add.at`` in the E step; it returns the posteriors, after the same resolution and
    per-person accuracy the product computes at the end."""
    gold = gold or {}
    n_items, n_labels = len(tally.items), len(tally.labels)
    row = {item: i for i, item in enumerate(tally.items)}
    fixed = np.array(sorted(row[k] for k in gold if k in row), dtype=np.int64)
    fixed_post = np.zeros((len(fixed), n_labels))
    for j, i in enumerate(fixed):
        fixed_post[j, tally.labels.index(gold[tally.items[i]])] = 1.0
    item_of, annotator_of = np.nonzero(tally.codes != MISSING)
    label_of = tally.codes[item_of, annotator_of]
    one_hot = np.zeros((len(label_of), n_labels))
    one_hot[np.arange(len(label_of)), label_of] = 1.0
    has_votes = np.bincount(item_of, minlength=n_items) > 0
    posteriors = _vote_shares(tally)
    posteriors[fixed] = fixed_post
    confusion = np.zeros((len(tally.annotators), n_labels, n_labels))
    for _ in range(max_iter):
        weight = posteriors[has_votes]
        priors = (weight.sum(axis=0) + smoothing) / (weight.sum() + smoothing * n_labels)
        for a in range(len(tally.annotators)):
            mine = annotator_of == a
            counts = posteriors[item_of[mine]].T @ one_hot[mine] + smoothing
            confusion[a] = counts / counts.sum(axis=1, keepdims=True)
        log_post = np.tile(np.log(priors), (n_items, 1))
        np.add.at(log_post, item_of, np.log(confusion[annotator_of, :, label_of]))
        log_post -= log_post.max(axis=1, keepdims=True)
        updated = np.exp(log_post)
        updated /= updated.sum(axis=1, keepdims=True)
        updated[~has_votes] = 0.0
        updated[fixed] = fixed_post
        change = float(np.abs(updated - posteriors).max())
        posteriors = updated
        if change <= tol:
            break
    _resolve(tally, posteriors), _expected_accuracy(tally, posteriors)
    return posteriors


def votes(
    n_items: int, n_labels: int, people: int = 20, per_item: int = 2, seed: int = 0
) -> tuple[Tally, dict[str, str]]:
    """Synthetic answers (see the module's docstring) and the gold labels."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_labels, n_items)
    skill = rng.uniform(0.6, 0.95, people)
    rows = []
    for i in range(n_items):
        for a in rng.choice(people, per_item, replace=False):
            given = truth[i] if rng.uniform() < skill[a] else rng.integers(0, n_labels)
            rows.append((f"i{i}", f"p{a}", f"l{given}"))
    gold = {f"i{i}": f"l{truth[i]}" for i in range(0, n_items, 160)}
    return Tally.from_votes(rows), gold


def truth_of(n_items: int, n_labels: int, seed: int = 0) -> dict[str, str]:
    """The true labels :func:`votes` drew (its first draw from the same seed)."""
    truth = np.random.default_rng(seed).integers(0, n_labels, n_items)
    return {f"i{i}": f"l{t}" for i, t in enumerate(truth)}


def timed(run, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - started)
    return best, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 iterations")
    parser.add_argument("--items", type=int, nargs="+", default=[2_000, 8_000, 24_000])
    parser.add_argument("--labels", type=int, nargs="+", default=[77, 154])
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--per-item", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5, help="EM iterations timed per size")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.labels, args.iterations = [300], [6, 30], 3
    print(machine())
    print(
        f"{args.people} people, {args.per_item} answers an item; {args.iterations} EM iterations"
        " each (tol=0); seconds are the best of 1 run"
    )
    print()
    print(
        "| items | votes | labels | before (s / iteration) | now (s / iteration) | before / now |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    # one untimed run of each side first: the product's first call imports scipy.sparse
    # (0.15-0.4 s), which the first row's "now" counted (8.5x read for about 10-20x)
    tally, gold = votes(50, 3, args.people, args.per_item)
    dawid_skene_before(tally, gold=gold, max_iter=2, tol=0)
    dawid_skene(tally, gold=gold, max_iter=2, tol=0)
    largest = None
    for n_labels in args.labels:
        for n_items in args.items:
            tally, gold = votes(n_items, n_labels, args.people, args.per_item)
            n_votes = int((tally.codes != MISSING).sum())
            it = args.iterations
            before, old = timed(
                lambda t=tally, g=gold: dawid_skene_before(
                    t, gold=g, max_iter=args.iterations, tol=0
                )
            )
            now, new = timed(
                lambda t=tally, g=gold: dawid_skene(t, gold=g, max_iter=args.iterations, tol=0)
            )
            assert isinstance(new, Aggregation)
            if not np.allclose(old, new.posteriors, atol=1e-9):
                raise SystemExit(f"{n_items} items, {n_labels} labels: the two disagree")
            print(
                f"| {n_items:,} | {n_votes:,} | {n_labels} | {before / it:.3f} | {now / it:.3f}"
                f" | {before / now:.1f}× |"
            )
            largest = (tally, gold, n_items, n_votes, n_labels)
    assert largest is not None
    tally, gold, n_items, n_votes, n_labels = largest
    seconds, found = timed(lambda: dawid_skene(tally, gold=gold))
    assert isinstance(found, Aggregation)
    resolved = sum(r.label is not None for r in _resolve(tally, found.posteriors))
    print()
    print(
        f"the product's defaults on {n_items:,} items ({n_votes:,} votes, {n_labels} labels):"
        f" {seconds:.1f} s, {found.n_iter} iterations, converged {found.converged};"
        f" {resolved:,} items resolved"
    )
    # the stopping rule on the likelihood (gain_tol) against running on until no posterior
    # moves (gain_tol=0, the rule before it): rounds, time, and what people would see
    drift_seconds, drift = timed(lambda: dawid_skene(tally, gold=gold, gain_tol=0))
    assert isinstance(drift, Aggregation)
    differ = sum(a.label != b.label for a, b in zip(found.resolved, drift.resolved, strict=True))
    truth = truth_of(n_items, n_labels)
    right = [
        np.mean([truth[r.item] == r.label for r in result.resolved]) for result in (found, drift)
    ]
    print(
        f"without the likelihood rule (gain_tol=0): {drift_seconds:.1f} s, {drift.n_iter}"
        f" iterations, converged {drift.converged}; {differ:,} of {n_items:,} labels differ;"
        f" right against the truth: {right[0]:.4f} with it, {right[1]:.4f} without"
    )


if __name__ == "__main__":
    main()
