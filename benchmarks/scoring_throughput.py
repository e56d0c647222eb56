"""Texts per second when scoring 100,000 texts, and the time to retrain on 50,000 labels.

Texts are synthesized by resampling the train files of the datasets folder (``--data``,
``$HITL_DATASETS`` or ../shared/datasets; read in place, never copied); labels are
"<dataset>/<label>" (89 classes). Measures, for the default pipeline:

* ``fit``: one ``TextClassifier.fit`` on ``--n-train`` labels;
* ``train_candidate``: the full retrain step (k-fold cross-validation + final fit);
* ``score``: ``TextClassifier.score`` (label, confidence, top-3) over ``--n-score`` texts.

    python benchmarks/scoring_throughput.py            # 50,000 labels, 100,000 texts
    python benchmarks/scoring_throughput.py --quick    # 5,000 labels, 10,000 texts (< 60 s)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import DATASETS, add_data_options, load_mixture, resolve_data  # noqa: E402

from model.classifier import DEFAULT_PIPELINE, TextClassifier  # noqa: E402
from model.training import train_candidate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 labels, 10,000 texts")
    parser.add_argument("--n-train", type=int)
    parser.add_argument("--n-score", type=int)
    parser.add_argument("--pipeline", default=DEFAULT_PIPELINE)
    parser.add_argument("--skip-cv", action="store_true", help="do not time train_candidate")
    add_data_options(parser, DATASETS)
    args = parser.parse_args(argv)
    n_train = args.n_train or (5_000 if args.quick else 50_000)
    n_score = args.n_score or (10_000 if args.quick else 100_000)
    warnings.simplefilter("ignore")

    rng = np.random.default_rng(0)
    pool_x, pool_y = load_mixture(*resolve_data(args))
    train_idx = rng.integers(0, len(pool_x), n_train)
    xs = [pool_x[i] for i in train_idx]
    ys = [pool_y[i] for i in train_idx]
    score_x = [pool_x[i] for i in rng.integers(0, len(pool_x), n_score)]

    results = []
    t0 = time.perf_counter()
    clf = TextClassifier(args.pipeline).fit(xs, ys)
    fit_s = time.perf_counter() - t0
    results.append(("fit", n_train, fit_s))
    kind = type(clf.pipeline_.named_steps["clf"]).__name__

    if not args.skip_cv:
        t0 = time.perf_counter()
        cand = train_candidate(xs, ys, pipeline_name=args.pipeline)
        results.append(("train_candidate", n_train, time.perf_counter() - t0))
        if not cand.is_trained:
            print(f"train_candidate failed: {cand.reason}", file=sys.stderr)
            return 1

    t0 = time.perf_counter()
    scores = clf.score(score_x, top_k=3)
    score_s = time.perf_counter() - t0
    results.append(("score", len(scores), score_s))

    print(f"pipeline {args.pipeline} ({kind}), {len(set(ys))} classes\n")
    print("| step | rows | seconds | rows / s |")
    print("|---|---:|---:|---:|")
    for step, n, s in results:
        print(f"| {step} | {n:,} | {s:.1f} | {n / s:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
