"""Accuracy now with and without the thin-tenths rule, on the same rounds of the product's loop.

`stopping.py`'s loop (the default arm, rounds only: no forecasts) is run, and each round's
inputs to ``model.stopping.accuracy_now`` are kept (the stop set's unlabeled items' confidences,
the newest questions asked with whether each guess was right) beside the pool's measured
accuracy. Both rules then read the same rounds: the coverage check alone (``min_per_bin=0``,
the rule before) and the product's (a tenth of confidence with fewer than ``MIN_PER_BIN``
answered questions widens the range, and a range over 50 points is withheld).

    python benchmarks/accuracy_now_rules.py [--data DIR] --seeds 0 1 2 --out rounds.jsonl
    python benchmarks/accuracy_now_rules.py --report rounds.jsonl          # both rules' figures
    python benchmarks/accuracy_now_rules.py --quick                         # trec, 150 labels
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import stopping
from _common import add_data_options, load_jsonl, machine, resolve_data

from model.stopping import ASKED_MAX, NoAccuracyNow, accuracy_now

FROM_LABELS = 100  # rounds from here: before, the product says it needs more answers anyway


def capture(rounds: list[dict]):
    """A stand-in for ``stopping._accuracy_now`` that keeps the round's inputs in ``rounds``."""

    def keep(proba, stop_at, is_labeled, calibration) -> None:
        unlabeled = [not is_labeled[i] for i in stop_at]
        rounds.append(
            {
                "pool": [round(float(c), 5) for c in proba.max(axis=1)[unlabeled]],
                "asked": [[round(float(c), 5), bool(r)] for c, r in calibration[-ASKED_MAX:]],
            }
        )

    return keep


def simulate(args: argparse.Namespace, out) -> None:
    for name in args.datasets:
        pool = load_jsonl(args.data / name / "train.jsonl")
        test = load_jsonl(args.data / name / "test.jsonl")
        if args.quick:  # stopping.py --quick's pool and test set
            keep = np.random.default_rng(0).choice(len(pool[0]), 400, replace=False)
            pool = ([pool[0][i] for i in keep], [pool[1][i] for i in keep])
            test = (test[0][:200], test[1][:200])
        for seed in args.seeds:
            kept: list[dict] = []
            stopping._accuracy_now = capture(kept)
            rows = stopping.run_default(
                name, seed, pool, test, args.max_labels, curve_at=(), methods=()
            )
            for row in rows:
                if row["kind"] != "round":
                    continue
                inputs = kept.pop() if kept else {"pool": [], "asked": []}
                record = {"dataset": name, "seed": seed, "n_labels": row["n_labels"]}
                record |= {"pool_accuracy": row["pool_accuracy"], **inputs}
                out.write(json.dumps(record) + "\n")
                out.flush()


def report(rows: list[dict]) -> str:
    rows = [r for r in rows if r["n_labels"] >= FROM_LABELS and r["pool_accuracy"] is not None]
    lines = [
        "| rule | dataset | rounds | shown | inside its range | mean abs. error (points)"
        " | mean width (max) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for rule, options in (("coverage only (before)", {"min_per_bin": 0}), ("product", {})):
        groups: dict[str, list[tuple[float, object]]] = {}
        for r in rows:
            found = accuracy_now(r["pool"], [c for c, _ in r["asked"]], [b for _, b in r["asked"]],
                                 **options)  # fmt: skip
            for key in (r["dataset"], "all"):
                groups.setdefault(key, []).append((r["pool_accuracy"], found))
        for key in sorted(groups, key=lambda k: (k == "all", k)):
            shown = [(t, f) for t, f in groups[key] if not isinstance(f, NoAccuracyNow)]
            inside = sum(f.low <= t <= f.high for t, f in shown)
            error = np.mean([abs(f.estimate - t) * 100 for t, f in shown]) if shown else 0.0
            widths = [(f.high - f.low) * 100 for _, f in shown] or [0.0]
            lines.append(
                f"| {rule} | {key} | {len(groups[key])} | {len(shown)} | {inside}/{len(shown)}"
                f" | {error:.1f} | {np.mean(widths):.1f} ({max(widths):.1f}) |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400-item pool, 150 labels")
    add_data_options(parser, stopping.DATASETS, quick="trec")
    parser.add_argument(
        "--seeds",
        nargs="*",
        type=int,
        default=[0],
        metavar="N",
        help="the seeds to run, one loop each per dataset (default 0)",
    )
    parser.add_argument(
        "--max-labels",
        type=int,
        default=525,
        help="labels each loop runs to (default 525; --quick: 150)",
    )
    parser.add_argument("--out", type=Path, help="append the rounds (JSONL) here")
    parser.add_argument("--report", nargs="*", type=Path, help="only report these JSONL files")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # a benchmark, not a test: keep the output readable
    print(machine())
    if args.report:
        print(report([json.loads(line) for path in args.report for line in path.open()]))
        return 0
    args.data, args.datasets = resolve_data(args)
    if args.quick:
        args.max_labels = 150
    with tempfile.TemporaryDirectory() as tmp:
        out_path = args.out or Path(tmp) / "rounds.jsonl"
        with out_path.open("a") as out:
            simulate(args, out)
        print(report([json.loads(line) for line in out_path.open()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
