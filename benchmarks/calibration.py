"""Calibration: what ``HITL_THRESHOLD`` buys, and whether the model's confidence means what it says.

A producer's item is answered by the model (``status: auto``) when the model's confidence is at
or above ``HITL_THRESHOLD`` (0.8 by default), and asked of people otherwise. So the share of
items the model answers, and how often those answers are right, are what the threshold trades.
This fits the product's model (``TextClassifier()``, ``word_char_auto``: balanced logistic
regression up to 2,000 labels, SGD with a modified Huber loss above) on N labels drawn at random
from a dataset's train file (seeded), scores its test file and reports, per dataset and size:

* accuracy over every test item;
* the expected calibration error (ECE: the gap between confidence and accuracy in 10 equal-width
  confidence bins, weighted by the bins' shares; scikit-learn has no ECE of the top label);
* at each threshold: the share of test items at or above it (answered by the model) and the
  accuracy on those.

    python benchmarks/calibration.py [--data DIR] [--datasets NAME …] [--sizes 500 1500 2500 5000]
    python benchmarks/calibration.py --quick     # trec, 200 and 1,000 labels, a few seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import add_data_options, load_jsonl, machine, markdown_table, resolve_data

from model.classifier import TextClassifier

THRESHOLDS = (0.6, 0.8, 0.9)
SIZES = (500, 1500, 2500, 5000)
BINS = 10


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    """ECE over BINS equal-width bins of the top label's confidence (a confidence of 1.0 falls
    in the last bin)."""
    which = np.minimum((confidence * BINS).astype(int), BINS - 1)
    gap = 0.0
    for b in np.unique(which):
        inside = which == b
        gap += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(gap)


def measure(
    name: str, train: tuple[list[str], list[str]], test: tuple[list[str], list[str]], n: int
) -> dict:
    rng = np.random.default_rng([0, n])
    picks = rng.choice(len(train[0]), n, replace=False)
    started = time.perf_counter()
    clf = TextClassifier().fit([train[0][i] for i in picks], [train[1][i] for i in picks])
    fit_s = time.perf_counter() - started
    scores = clf.score(test[0], top_k=1)
    confidence = np.asarray(scores.confidence, dtype=float)
    correct = np.asarray(scores.labels) == np.asarray(test[1])
    row = {
        "dataset": name,
        "n_labels": n,
        "model": type(clf.pipeline_[-1]).__name__,
        "accuracy": float(correct.mean()),
        "ece": expected_calibration_error(confidence, correct),
        "fit_s": fit_s,
    }
    for t in THRESHOLDS:
        auto = confidence >= t
        row[f"share@{t}"] = float(auto.mean())
        row[f"accuracy@{t}"] = float(correct[auto].mean()) if auto.any() else None
    return row


def table(rows: list[dict]) -> str:
    head = ["dataset", "labels", "model", "accuracy", "ECE"]
    head += [f"≥ {t}: answered / right" for t in THRESHOLDS]
    body = []
    for r in rows:
        cells = [r["dataset"], f"{r['n_labels']:,}", r["model"], f"{r['accuracy']:.3f}"]
        cells.append(f"{r['ece']:.3f}")
        for t in THRESHOLDS:
            right = r[f"accuracy@{t}"]
            cells.append(f"{r[f'share@{t}']:.0%} / " + ("–" if right is None else f"{right:.3f}"))
        body.append(cells)
    return markdown_table(head, body, "lllrr" + "r" * len(THRESHOLDS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_options(parser, quick="trec")
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        default=list(SIZES),
        metavar="N",
        help="label counts the model is fitted on, drawn from each train file (default "
        f"{' '.join(map(str, SIZES))}; --quick: 200 1000; a size over a train file's texts "
        "is skipped)",
    )
    parser.add_argument("--json", type=Path, help="write the raw rows here")
    parser.add_argument("--quick", action="store_true", help="trec, 200 and 1,000 labels")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [200, 1000]
    data, datasets = resolve_data(args)
    print(machine())
    rows = []
    for name in datasets:
        train = load_jsonl(data / name / "train.jsonl")
        test = load_jsonl(data / name / "test.jsonl")
        for n in sorted(args.sizes):
            if n > len(train[0]):
                print(f"{name}: {n:,} labels is more than its {len(train[0]):,} train texts")
                continue
            rows.append(measure(name, train, test, n))
            r = rows[-1]
            print(f"{name} {n:,} labels ({r['model']}): accuracy {r['accuracy']:.3f}, "
                  f"ECE {r['ece']:.3f}, fit {r['fit_s']:.1f} s", flush=True)  # fmt: skip
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
