"""Accuracy now under several rules, on the same rounds of the product's loop.

`stopping.py`'s loop (the default arm, rounds only: no forecasts) is run, and each round's
inputs are kept beside the pool's measured accuracy: the stop set's unlabeled items'
confidences, the newest questions asked (each with whether its guess was right and the labels
its asking model was trained on), and the round's labels cross-validated as a retrain does it
(``out_of_fold``: each held-out label's confidence and whether the fold's guess was right).
The rules then read the same rounds (``RULES``):

- ``coverage only (before)``: the questions' map with the coverage check alone;
- ``questions (before)``: the questions' map with the thin-tenths rule (the product before
  the held-out labels);
- ``close askers``: only questions asked by models trained on at least half the labels;
- ``held-out labels``: the round's own cross-validation (the product's, for a retrain);
- ``held-out labels of the last retrain``: the map of the newest round at a multiple of 100
  labels, read on this round's confidences (the product's, for a refresh between retrains);
- ``the last retrain's estimate``: that round's estimate itself, shown until the next;
- ``held-out labels and questions``: both sets of pairs in one map;
- ``CV guard``, ``held-out guard``: the questions' map, withheld when the cross-validated
  accuracy's 90 % low bound lies above its range, or when the held-out map's range and its
  own do not meet.

    python benchmarks/accuracy_now_rules.py [--data DIR] --seeds 0 1 2 --out rounds.jsonl
    python benchmarks/accuracy_now_rules.py --report rounds.jsonl          # every rule
    python benchmarks/accuracy_now_rules.py --report rounds.jsonl --rules "held-out labels"
    python benchmarks/accuracy_now_rules.py --quick                         # trec, 150 labels
    python benchmarks/accuracy_now_rules.py --make-intents DIR   # DIR/intents150, then --data DIR

``intents150`` is an outside tester's data (150 intents, 8 examples each to label, 2 more each
to test): each intent's texts share a word of their own among common ones, so a model that has
a label of an intent knows it, and accuracy climbs fast as the labels meet new intents.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import stopping
from _common import add_data_options, load_jsonl, machine, resolve_data

from model.stopping import ASKED_MAX, HELD_OUT, NoAccuracyNow, accuracy_now

FROM_LABELS = 100  # rounds from here: before, the product says it needs more answers anyway


def capture(
    rounds: list[dict],
    pool: tuple[list[str], list[str]] | None = None,
    seed: int = 0,
    oof_from: int = 0,
):
    """A stand-in for ``stopping._accuracy_now`` that keeps the round's inputs in ``rounds``:
    with each question asked, the labels its asking model was trained on; with ``pool`` (the
    loop's texts and labels) also the round model's configuration cross-validated on the
    round's labels as a retrain does it (``oof``: each held-out label's confidence and whether
    the fold's guess was right), on rounds of ``oof_from`` labels or more (``--quick``: the
    rounds the report reads, from ``FROM_LABELS``; the others keep none)."""

    def keep(proba, stop_at, is_labeled, calibration) -> None:
        unlabeled = [not is_labeled[i] for i in stop_at]
        folded = pool is not None and int(is_labeled.sum()) >= oof_from
        rounds.append(
            {
                "pool": [round(float(c), 5) for c in proba.max(axis=1)[unlabeled]],
                "asked": [
                    [round(float(c), 5), bool(r), int(m)] for c, r, m in calibration[-ASKED_MAX:]
                ],
                "oof": out_of_fold(pool, is_labeled, seed) if folded else [],
            }
        )

    return keep


def out_of_fold(pool, is_labeled, seed: int) -> list[list]:
    """``model.training.train_candidate``'s cross-validation of the round's labels, keeping
    each held-out label's (confidence, right?) instead of the guess alone."""
    from model.classifier import TextClassifier
    from model.evaluation import make_folds
    from model.selection import text_key

    xs = [pool[0][i] for i in np.flatnonzero(is_labeled)]
    ys = [pool[1][i] for i in np.flatnonzero(is_labeled)]
    try:
        folds = make_folds(ys, random_state=0, groups=[text_key(t) for t in xs])
    except Exception:  # noqa: BLE001 - too few labels to fold: no pairs this round
        return []
    pairs = []
    for train, test in folds:
        clf = TextClassifier(random_state=seed).fit(
            [xs[i] for i in train], [ys[i] for i in train], sized_for=len(ys)
        )
        proba = clf.predict_proba([xs[i] for i in test])
        for i, row in zip(test, proba, strict=True):
            pairs.append([round(float(row.max()), 5), clf.classes[int(row.argmax())] == ys[i]])
    return pairs


def simulate(args: argparse.Namespace, out) -> None:
    for name in args.datasets:
        pool = load_jsonl(args.data / name / "train.jsonl")
        test = load_jsonl(args.data / name / "test.jsonl")
        if args.quick:  # stopping.py --quick's pool and test set
            pool, test = stopping.quick_sample(pool, test)
        for seed in args.seeds:
            kept: list[dict] = []
            # --quick folds only the rounds its report reads (a round below FROM_LABELS is
            # read by no rule: the last retrain's pairs come from a round at 100 labels)
            oof_from = FROM_LABELS if args.quick else 0
            stopping._accuracy_now = capture(kept, pool, seed, oof_from)
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


CLOSE = 0.5  # rule "close askers": questions asked by models trained on this share of its labels


def _asked(r: dict, close: float = 0.0) -> tuple[list[float], list[bool]]:
    kept = [q for q in r["asked"] if len(q) < 3 or q[2] >= close * r["n_labels"]]
    return [q[0] for q in kept], [q[1] for q in kept]


def _now(pool: list[float], conf: list[float], right: list[bool], **options):
    """``accuracy_now`` as the rules read it: several rules map the same pairs on the same
    pool (the questions' map is also both guards'; at a retrain's round its held-out labels
    are the last retrain's), and each map is a 201-fit bootstrap, so each is fitted once a
    report (``report`` clears the cache); the same inputs give the same answer."""
    return _now_once(tuple(pool), tuple(conf), tuple(right), tuple(sorted(options.items())))


@functools.cache
def _now_once(pool: tuple, conf: tuple, right: tuple, options: tuple):
    return accuracy_now(list(pool), list(conf), list(right), **dict(options))


def _guarded(r: dict):
    """The product's rule, withheld when the round's cross-validated accuracy, low bound, lies
    above the whole range."""
    from model.evaluation import wilson_interval

    found = _now(r["pool"], *_asked(r))
    oof = r.get("oof") or []
    if isinstance(found, NoAccuracyNow) or not oof:
        return found
    low, _ = wilson_interval(sum(b for _, b in oof), len(oof), confidence=0.9)
    return NoAccuracyNow("cross-validated accuracy above the range") if low > found.high else found


def _oof(r: dict, key: str = "oof") -> tuple[list[float], list[bool]]:
    pairs = r.get(key) or []
    return [c for c, _ in pairs], [b for _, b in pairs]


def _oof_guard(r: dict):
    """The product's rule, withheld when its range and the out-of-fold one do not meet."""
    found = _now(r["pool"], *_asked(r))
    other = _now(r["pool"], *_oof(r))
    if isinstance(found, NoAccuracyNow) or isinstance(other, NoAccuracyNow):
        return found
    apart = found.high < other.low or other.high < found.low
    return NoAccuracyNow("the two ranges do not meet") if apart else found


RULES = {
    "coverage only (before)": lambda r: _now(r["pool"], *_asked(r), min_per_bin=0),
    "questions (before)": lambda r: _now(r["pool"], *_asked(r)),
    "close askers": lambda r: _now(r["pool"], *_asked(r, CLOSE)),
    "held-out labels": lambda r: _now(r["pool"], *_oof(r), source=HELD_OUT),
    "held-out labels of the last retrain": lambda r: _now(
        r["pool"], *_oof(r, "retrain_oof"), source=HELD_OUT
    ),
    "the last retrain's estimate": lambda r: _now(r["retrain_pool"], *_oof(r, "retrain_oof")),
    "held-out labels and questions": lambda r: _now(
        r["pool"], *(a + b for a, b in zip(_oof(r), _asked(r), strict=True))
    ),
    "CV guard": _guarded,
    "held-out guard": _oof_guard,
}
RETRAIN_EVERY = (
    100  # "at the last retrain": the out-of-fold pairs of the newest round at a multiple
)


def report(rows: list[dict], rules: list[str] | None = None) -> str:
    last: dict[tuple, list] = {}
    for r in sorted(rows, key=lambda r: (r["dataset"], r["seed"], r["n_labels"])):
        if r["n_labels"] % RETRAIN_EVERY == 0 or (r["dataset"], r["seed"]) not in last:
            last[r["dataset"], r["seed"]] = r
        r["retrain_oof"] = last[r["dataset"], r["seed"]].get("oof") or []
        r["retrain_pool"] = last[r["dataset"], r["seed"]]["pool"]
    rows = [r for r in rows if r["n_labels"] >= FROM_LABELS and r["pool_accuracy"] is not None]
    lines = [
        "| rule | dataset | rounds | shown | inside its range | mean abs. error (points)"
        " | mean width (max) | worst miss (points) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for rule in rules or RULES:
        groups: dict[str, list[tuple[float, object]]] = {}
        for r in rows:
            found = RULES[rule](r)
            for key in (r["dataset"], "all"):
                groups.setdefault(key, []).append((r["pool_accuracy"], found))
        for key in sorted(groups, key=lambda k: (k == "all", k)):
            shown = [(t, f) for t, f in groups[key] if not isinstance(f, NoAccuracyNow)]
            inside = sum(f.low <= t <= f.high for t, f in shown)
            error = np.mean([abs(f.estimate - t) * 100 for t, f in shown]) if shown else 0.0
            widths = [(f.high - f.low) * 100 for _, f in shown] or [0.0]
            miss = max([max(f.low - t, t - f.high, 0) * 100 for t, f in shown] or [0.0])
            lines.append(
                f"| {rule} | {key} | {len(groups[key])} | {len(shown)} | {inside}/{len(shown)}"
                f" | {error:.1f} | {np.mean(widths):.1f} ({max(widths):.1f}) | {miss:.1f} |"
            )
    _now_once.cache_clear()
    return "\n".join(lines)


INTENT_WORDS = (
    "alpha beta gamma delta error login refund invoice crash slow password card payment"
    " shipping order late broken screen app update"
).split()


def write_intents(folder: Path, n_intents: int = 150) -> Path:
    """``folder/intents150/{train,test}.jsonl``: the outside tester's generator (8 examples of
    each intent to label, the next 2 to test), shuffled as it was."""
    import random

    out = folder / f"intents{n_intents}"
    out.mkdir(parents=True, exist_ok=True)
    for name, examples in (("train", range(8)), ("test", range(8, 10))):
        rows = []
        for k in range(n_intents):
            for j in examples:
                rng = random.Random(f"{k}-{j}")
                words = " ".join(rng.choice(INTENT_WORDS) for _ in range(6))
                rows.append({"text": f"t{k} w {words} #{k * 100 + j}", "label": f"intent_{k}"})
        random.Random(11).shuffle(rows)
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def _open(path: Path):
    """A rounds file, gzipped (``.gz``, as benchmarks/results keeps them) or not."""
    import gzip

    return gzip.open(path, "rt") if path.suffix == ".gz" else path.open()


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
    parser.add_argument(
        "--make-intents", type=Path, metavar="DIR", help="write DIR/intents150 and stop"
    )
    parser.add_argument(
        "--rules", nargs="+", choices=list(RULES), help="report these rules (default: all)"
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # a benchmark, not a test: keep the output readable
    if args.make_intents:
        print(write_intents(args.make_intents))
        return 0
    print(machine())
    if args.report:
        rows = [json.loads(line) for path in args.report for line in _open(path)]
        print(report(rows, args.rules))
        return 0
    args.data, args.datasets = resolve_data(args)
    if args.quick:
        args.max_labels = 150
    with tempfile.TemporaryDirectory() as tmp:
        out_path = args.out or Path(tmp) / "rounds.jsonl"
        with out_path.open("a") as out:
            simulate(args, out)
        print(report([json.loads(line) for line in out_path.open()], args.rules))
    return 0


if __name__ == "__main__":
    sys.exit(main())
