"""When to stop: does the stabilizing-predictions signal fire where the curves flatten?

Runs the ``default`` arm of ``label_efficiency.py`` (its ``pick`` and cold start, imported, so
the picks and accuracies are the stored curves' own: each round's accuracy is checked against
``label_efficiency.run_arm``'s in the tests) and, at every round, predicts a fixed stop set (up
to 2,000 items of the pool, ``model.stopping.stop_sample``) with the round's model: the share
of the stop set predicted otherwise than by the model 100 or more labels older, and where the
product's signal (at most 2 %, ``model.stopping``) first fires; beside it, the same at 1 % and
3 %, and the rule before (Cohen's kappa with the round before ≥ 0.99 over 3 rounds); and where
the product advises stopping (``StopSignal.advises_stop``: the signal, unless the newest
forecast below is sure of a gain of a point or more), when the run has forecasts. Each round
keeps its share changed against each of the 20 rounds before, so other rules can be read off
the rows. Beside the firing points: the label count where the stored curves
(``benchmarks/results/label_efficiency/*.jsonl.gz``, default arm, mean over seeds) and this run
reach 95 % of full supervision, and where this run gains at most 1 point more.

At a few label counts it also extrapolates the gain from the next 500 labels three ways (a
fourth, ``audit``, with ``--methods``) and compares it with the gain this run then measures
on test.jsonl: ``uniform``, the product's way (``model.stopping.curve_points``: a learning
curve on the labels themselves, tested on halves of the uniformly drawn ones, cold start and
audit picks, then ``extrapolate``; with fewer than 20 of those the product tests on all
labels, here there is no forecast); ``labels``, the same curve tested on shuffled splits of
all the labels (the product's before); ``history``: the inverse power law fitted to this
run's own test accuracies so far (what a team with a test set could do); ``audit``
(``--methods ... audit``), the curve tested on halves of the audit picks only, the cold
start always in training. The report sets each method's accuracy now (the curve at the
label count) beside the test accuracy then, and counts the forecasts each method could make.

Every round also estimates accuracy now the product's way (``model.stopping.accuracy_now``:
the round's model's confidence on the stop set's unlabeled items, mapped to accuracy by an
isotonic fit on every question asked so far, the asking model's confidence against whether its
guess was right) and the report sets it beside the stop set's measured accuracy.

    python benchmarks/stopping.py --out benchmarks/results/stopping.jsonl     # 4 datasets, seed 0
    python benchmarks/stopping.py --seeds 0 1 2 3 4 --curve-at --out s.jsonl   # no forecasts
    python benchmarks/stopping.py --datasets trec --seeds 0 1 2 --out s.jsonl
    python benchmarks/stopping.py --report benchmarks/results/stopping.jsonl.gz
    python benchmarks/stopping.py --quick                                      # stand-in, ~20 s
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from _common import ROOT, add_data_options, load_jsonl, machine, markdown_table, resolve_data
from label_efficiency import DATASETS, MAX_LABELS, _fit_ready, arm_embedding, pick, round_rng
from sklearn.metrics import accuracy_score

from bot.learning.stopping import CURVE_GROWTH
from model.classifier import DEFAULT_PIPELINE, TextClassifier, build_pipeline
from model.evaluation import cohens_kappa
from model.stopping import (
    ASKED_MAX,
    CURVE_MAX_LABELS,
    SETTLE_CHANGE,
    SETTLE_SPAN,
    STOP_SET_SIZE,
    CurvePoints,
    Extrapolation,
    NoAccuracyNow,
    StopSignal,
    accuracy_now,
    baseline,
    changed_share,
    curve_points,
    extrapolate,
    first_firing,
    stop_sample,
)

ARM = "default"
STORED = ROOT / "benchmarks" / "results" / "label_efficiency"
CURVE_AT = (100, 200, 300, 500)  # label counts where the gain of the next labels is forecast
THRESHOLDS = (SETTLE_CHANGE, 0.01, 0.03)  # the product's share changed, and two beside it
KAPPA = 0.99  # the rule before: kappa with the update before ≥ 0.99 over the last 3 updates
METHODS = ("labels", "uniform", "audit", "prequential")  # how a forecast's curve is made
# (forecast_row); the labels each method tests on, by their pick's reason (None: all labels)
TESTED_ON = {"labels": None, "uniform": ("cold_start", "audit"), "audit": ("audit",)}
# ``prequential``: no refit; each audit pick scored by the model that asked it (its labels then)
DEFAULT_METHODS = ("labels", "uniform")  # run unless --methods names others
BACK = 20  # each round stores its disagreement with this many rounds before it (500 labels)


def run_default(
    name: str,
    seed: int,
    pool: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    max_labels: int,
    stop_size: int = STOP_SET_SIZE,
    curve_at: Iterable[int] = CURVE_AT,
    next_labels: int = 500,
    methods: Iterable[str] = DEFAULT_METHODS,
) -> Iterable[dict]:
    """``label_efficiency.run_arm(..., "default", ...)``'s loop, with the stop set predicted by
    each round's model and the product's extrapolation at ``curve_at`` labels. Yields a
    ``round`` row per fitted round and an ``extrapolation`` row per forecast."""
    pool_x, pool_y = pool
    test_x, test_y = test
    stop_at = stop_sample(len(pool_x), stop_size, random_state=seed)
    stop = [pool_x[i] for i in stop_at]
    labeled: list[int] = []
    is_labeled = np.zeros(len(pool_x), dtype=bool)
    clf: TextClassifier | None = None
    history: list[tuple[int, list[str]]] = []  # every round's (labels, predictions), oldest 1st
    reasons: dict[int, str] = {}  # each pick's reason (cold_start, audit, uncertain)
    asked: list[tuple[int, bool]] = []  # each audit pick: (its model's labels, right?)
    # every pick a model asked: (its confidence, right?, the labels that model was trained on)
    calibration: list[tuple[float, bool, int]] = []
    forecast = sorted(set(curve_at))
    n_classes = len(set(pool_y))  # the label set, for TypiClust's budget (HITL_TYPICAL_UNTIL)
    embedding, _ = arm_embedding(ARM, pool_x, n_classes, seed)
    rnd = 0
    while True:
        if clf is not None:
            proba = clf.predict_proba(stop)
            predicted = [clf.classes[j] for j in proba.argmax(axis=1)]  # = clf.predict(stop)
            n = len(labeled)
            older = baseline([m for m, _ in history], n)  # the product's comparison
            still = [not is_labeled[i] for i in stop_at]  # the product compares on these
            recent = history[::-1][:BACK]
            row = {
                "kind": "round",
                "dataset": name,
                "seed": seed,
                "n_labels": n,
                "accuracy": accuracy_score(test_y, clf.predict(test_x)),
                "kappa": cohens_kappa(history[-1][1], predicted) if history else None,
                "changed": None
                if older is None
                else _unlabeled_share(history[older][1], predicted, still),
                "span": None if older is None else n - history[older][0],
                # the share of the stop set predicted otherwise than by the model this many
                # labels before, for the last BACK rounds (other rules can be read off them)
                "disagree": [_unlabeled_share(old, predicted, still) for _, old in recent],
                "labels_back": [n - m for m, _ in recent],
                "stop_set": len(stop),
                # accuracy on the stop set's items not labeled yet: a uniform sample of what
                # the team's items are now (test.jsonl can differ from the pool: trec's does)
                "pool_accuracy": _pool_accuracy(predicted, stop_at, pool_y, is_labeled),
                # the product's estimate of that accuracy, or why there is none
                "accuracy_now": _accuracy_now(proba, stop_at, is_labeled, calibration),
            }
            history.append((n, predicted))
            yield row
            if n in forecast:
                for method in methods:
                    yield forecast_row(
                        name, seed, n, labeled, pool, next_labels, method, reasons, asked
                    )
        if len(labeled) >= max_labels or is_labeled.all():
            return
        rng = round_rng(ARM, seed, rnd, clf is not None, len(labeled), n_classes)
        unlabeled = np.flatnonzero(~is_labeled)
        chosen = pick(
            ARM, clf, pool_x, unlabeled, labeled, None, rng,
            reasons=reasons, n_classes=n_classes, embedding=embedding,
        )  # fmt: skip
        if clf is not None:  # what the asking model said, before the answer came
            chosen_proba = clf.predict_proba([pool_x[i] for i in chosen])
            said = [clf.classes[j] for j in chosen_proba.argmax(axis=1)]
            right = [s == pool_y[i] for i, s in zip(chosen, said, strict=True)]
            calibration += [
                (c, r, len(labeled))
                for c, r in zip(chosen_proba.max(axis=1).tolist(), right, strict=True)
            ]
            asked += [
                (len(labeled), r)
                for i, r in zip(chosen, right, strict=True)
                if reasons.get(i) == "audit"
            ]
        labeled += chosen
        is_labeled[chosen] = True
        rnd += 1
        ys = [pool_y[i] for i in labeled]
        if _fit_ready(ys):
            clf = TextClassifier(random_state=seed).fit([pool_x[i] for i in labeled], ys)


def _unlabeled_share(before: list[str], now: list[str], still: list[bool]) -> float | None:
    """``changed_share`` on the stop set's items not labeled yet, as the product compares
    (``bot.learning.stopping.compute_stop``): the labeled ones are training labels, which both
    models agree on. None when none is left."""
    pairs = [(b, p) for b, p, u in zip(before, now, still, strict=True) if u]
    return changed_share([b for b, _ in pairs], [p for _, p in pairs]) if pairs else None


def _accuracy_now(proba, stop_at, is_labeled, calibration) -> dict | None:
    """``accuracy_now`` as the product computed it before it calibrated on the retrain's
    held-out labels: the round's confidence on the stop set's unlabeled items, calibrated on
    the newest ``ASKED_MAX`` questions asked (``accuracy_now_rules.py`` compares the two)."""
    unlabeled = [not is_labeled[i] for i in stop_at]
    newest = calibration[-ASKED_MAX:]
    confidence, asked, right = (
        proba.max(axis=1)[unlabeled],
        [c for c, *_ in newest],
        [r for _, r, *_ in newest],
    )
    found = accuracy_now(confidence, asked, right)
    if isinstance(found, NoAccuracyNow):
        return found.as_dict()  # {"reason": why there is none}
    alone = accuracy_now(confidence, asked, right, allowance=0.0, min_per_bin=0)  # bootstrap alone
    return found.as_dict() | {"boot_low": alone.low, "boot_high": alone.high}


def _pool_accuracy(predicted, stop_at, pool_y, is_labeled) -> float | None:
    """The share of the stop set's unlabeled items predicted right (None: none is left)."""
    right = [p == pool_y[i] for p, i in zip(predicted, stop_at, strict=True) if not is_labeled[i]]
    return float(np.mean(right)) if right else None


def forecast_row(name, seed, n, labeled, pool, next_labels, method, reasons, asked=()) -> dict:
    """An extrapolation on the ``n`` labels so far (timed): ``labels``, a learning curve
    tested on shuffled splits of all of them; ``uniform``, tested on halves of those drawn
    uniformly (cold start and audit picks); ``audit``, tested on halves of the audit picks
    only, the cold start always in training (its items are the ones every later pick was
    chosen knowing: held out, they leave holes no other label covers); ``prequential``, no
    refit: each audit pick (``asked``) is a point at the label count of the model that asked
    it, 1 if that model's guess was the answer, else 0 (the model never saw the label)."""
    t0 = time.perf_counter()
    if method == "prequential":
        points = CurvePoints(
            [m for m, _ in asked], [float(right) for _, right in asked], len(asked)
        )
    else:
        labels = [pool[1][i] for i in labeled]
        points = curve_points(
            [pool[0][i] for i in labeled],
            labels,
            lambda: build_pipeline(
                DEFAULT_PIPELINE, n_samples=len(labels), n_classes=len(set(labels))
            ),
            uniform=tested_on(method, labeled, reasons),
        )
    found = extrapolate(points.sizes, points.scores, n, next_labels, n_test=points.n_test)
    return {
        "kind": "extrapolation",
        "method": method,
        "dataset": name,
        "seed": seed,
        "n_labels": n,
        "next_labels": next_labels,
        "predicted": found.as_dict() if found else None,
        "curve": [points.sizes, points.scores],
        "seconds": time.perf_counter() - t0,
    }


def tested_on(method: str, labeled: list[int], reasons: dict[int, str]) -> list[bool] | None:
    """The labels a ``method``'s curve may test on (``curve_points``' ``uniform``), in
    ``labeled``'s order; None: shuffled splits of all of them."""
    reasons_tested = TESTED_ON[method]
    if reasons_tested is None:
        return None
    return [reasons.get(i) in reasons_tested for i in labeled]


def quick_sample(pool: tuple[list, list], test: tuple[list, list]):
    """``--quick``'s pool and test set: 400 items of the pool (seeded), the test set's first
    200."""
    keep = np.random.default_rng(0).choice(len(pool[0]), 400, replace=False)
    return ([pool[0][i] for i in keep], [pool[1][i] for i in keep]), (test[0][:200], test[1][:200])


def simulate(args: argparse.Namespace, out) -> None:
    for name in args.datasets:
        pool = load_jsonl(args.data / name / "train.jsonl")
        test = load_jsonl(args.data / name / "test.jsonl")
        if args.quick:
            pool, test = quick_sample(pool, test)
        max_labels = args.max_labels or MAX_LABELS.get(name, 1025)
        for seed in args.seeds:
            t0 = time.perf_counter()
            rows = run_default(
                name,
                seed,
                pool,
                test,
                max_labels,
                args.stop_size,
                args.curve_at,
                args.next,
                args.methods,
            )
            for row in rows:
                out.write(json.dumps(row) + "\n")
                out.flush()
            print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)


# --- report --------------------------------------------------------------------------------


def stored_rows(name: str, stored: Path = STORED) -> list[dict]:
    path = stored / f"{name}.jsonl.gz"
    return [json.loads(line) for line in gzip.open(path, "rt")] if path.is_file() else []


def stored_difference(name: str, seed: int, run: list[dict], stored: Path = STORED) -> str:
    """The largest accuracy difference from the stored default curve of the same seed (0:
    the loop is the stored one's), over the label counts both have."""
    mine = {r["n_labels"]: r["accuracy"] for r in run}
    theirs = {
        r["n_labels"]: r["accuracy"]
        for r in stored_rows(name, stored)
        if r["arm"] == ARM and r["seed"] == seed and r["n_labels"] in mine
    }
    if not theirs:
        return "–"
    return f"{max(abs(mine[n] - a) for n, a in theirs.items()):.3f} ({len(theirs)})"


def stored_95(name: str, stored: Path = STORED) -> tuple[str, int | None, float | None]:
    """From the stored label-efficiency rows: (seeds, the first label count where the default
    arm's mean accuracy over those seeds reaches 95 % of full supervision, full accuracy)."""
    if not (stored / f"{name}.jsonl.gz").is_file():
        return "–", None, None
    rows = stored_rows(name, stored)
    full = next((r["accuracy"] for r in rows if r["arm"] == "full"), None)
    curves: dict[int, dict[int, float]] = defaultdict(dict)
    for r in rows:
        if r["arm"] == ARM:
            curves[r["seed"]][r["n_labels"]] = r["accuracy"]
    if not curves or full is None:
        return "–", None, full
    ns = sorted(set.intersection(*(set(c) for c in curves.values())))
    mean = {n: float(np.mean([c[n] for c in curves.values()])) for n in ns}
    hit = [n for n in ns if mean[n] >= 0.95 * full]
    seeds = ",".join(map(str, sorted(curves)))
    return seeds, (min(hit) if hit else None), full


def stored_end(name: str, stored: Path = STORED) -> int | None:
    """The largest label count of the stored default arm's rows (None: no stored rows)."""
    if not (stored / f"{name}.jsonl.gz").is_file():
        return None
    return max((r["n_labels"] for r in stored_rows(name, stored) if r["arm"] == ARM), default=None)


def _cell_95(at: int | None, seeds: str | None, full: float | None, end: int | None) -> str:
    """Where a curve reaches 95 % of full supervision: the count (with the seeds), '> end'
    when it does not within its rows, or why it cannot be told (no full-supervision figure
    stored for the dataset: a data set without stored rows)."""
    if full is None or end is None:
        return "no stored rows"
    seeds_text = f" ({seeds})" if seeds else ""
    return f"{at}{seeds_text}" if at is not None else f"> {end}{seeds_text}"


def report(rows: list[dict], stored: Path = STORED) -> str:
    rounds: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "round":
            rounds[(r["dataset"], r["seed"])].append(r)
    parts = [
        f"Signal (the product's): the newest model predicts at most {SETTLE_CHANGE:.0%} of the"
        f" stop set otherwise than the model {SETTLE_SPAN} or more labels older; ≤ 1 % and ≤ 3 %"
        f" beside it; κ ≥ {KAPPA} ×3: the rule before (kappa with the round before ≥ {KAPPA}"
        " over 3 rounds). 'fires at' = labels (accuracy then, points the run gains after it);"
        " '1-point flat' = the first label count after which this run gains at most 1 point"
        " (– = not within the run)."
    ]
    table = []
    for (name, seed), run in sorted(rounds.items()):
        run.sort(key=lambda r: r["n_labels"])
        seeds, at95, full = stored_95(name, stored)
        top = run[-1]
        own95 = next((r["n_labels"] for r in run if full and r["accuracy"] >= 0.95 * full), None)
        cells = [name, str(seed), f"{run[0]['stop_set']:,}"]
        ns = [r["n_labels"] for r in run]
        changed = [_changed(r) for r in run]
        fired = [first_firing(ns, changed, threshold) for threshold in THRESHOLDS]
        fired.append(_kappa_firing(run))
        cells += [_fired(run, n) for n in fired]
        forecasts = _uniform_forecasts(rows, name, seed)
        cells.append(_fired(run, _advice_firing(run, forecasts)) if forecasts else "(no forecast)")
        cells += [
            _cell_95(at95, seeds, full, stored_end(name, stored)),
            _cell_95(own95, None, full, top["n_labels"]),
            _flat(run),
            f"{top['n_labels']} ({top['accuracy']:.3f})",
            "–" if full is None else f"{full:.3f}",
            stored_difference(name, seed, run, stored),
        ]
        table.append(cells)
    head = ["dataset", "seed", "stop set"]
    head += [f"fires at ≤ {t:.0%} (acc, gain after)" for t in THRESHOLDS]
    head += [f"κ ≥ {KAPPA} ×3", "advises stopping (acc, gain after)"]
    head += ["95 % of full: stored mean (seeds)", "95 %: this run", "1-point flat"]
    head += ["end (acc)", "full acc", "max |Δacc| vs stored run (rounds)"]
    parts += ["", markdown_table(head, table)]
    parts += ["", extrapolation_table(rows, rounds)]
    parts += ["", forecast_summary(rows, rounds)]
    parts += ["", accuracy_now_summary(rows, rounds)]
    return "\n".join(parts)


# Where model.stopping.ALLOWANCE was chosen: the data sets every other choice was made on,
# seeds 0-2 (rows measured before it: the range was the bootstrap's alone)
ALLOWANCE_CHOSEN_ON = ({"trec", "sms_spam", "ag_news_7600", "banking77"}, {0, 1, 2})


def accuracy_now_summary(rows: list[dict], rounds) -> str:
    """Per dataset, the product's accuracy now (``accuracy_now`` rows) against the stop set's
    measured accuracy on its unlabeled items, over every round with both; beside it, the
    ``uniform`` learning curve's level (its ``at_n``) at the label counts it was forecast at."""
    errors: dict[str, list[float]] = defaultdict(list)
    inside: dict[str, list[bool]] = defaultdict(list)
    alone: dict[str, list[bool]] = defaultdict(list)  # inside the bootstrap's range alone
    held_out: dict[bool, list[bool]] = defaultdict(list)  # inside, by where ALLOWANCE was chosen
    width: dict[str, list[float]] = defaultdict(list)
    test: dict[str, list[float]] = defaultdict(list)
    curve: dict[str, list[float]] = defaultdict(list)
    withheld: dict[str, list[bool]] = defaultdict(list)  # per round from 100 labels: no estimate
    pool_at: dict[tuple[str, int, int], float] = {}
    for (name, seed), run in rounds.items():
        for r in run:
            found, truth = r.get("accuracy_now"), r.get("pool_accuracy")
            if truth is not None:
                pool_at[(name, seed, r["n_labels"])] = truth
            if r["n_labels"] >= 100:
                withheld[name].append(not found or "reason" in found)
            if not found or "reason" in found or truth is None:
                continue
            errors[name].append(found["estimate"] - truth)
            inside[name].append(found["low"] <= truth <= found["high"])
            if "boot_low" in found:
                alone[name].append(found["boot_low"] <= truth <= found["boot_high"])
                chosen = name in ALLOWANCE_CHOSEN_ON[0] and seed in ALLOWANCE_CHOSEN_ON[1]
                held_out[not chosen].append(inside[name][-1])
            width[name].append(found["high"] - found["low"])
            test[name].append(found["estimate"] - r["accuracy"])
    for r in rows:
        key = (r["dataset"], r["seed"], r["n_labels"])
        if r["kind"] == "extrapolation" and r.get("method") == "uniform" and key in pool_at:
            found = _refit(r) if r.get("curve") else None
            if found is not None:
                curve[r["dataset"]].append(found.at_n - pool_at[key])
    if not errors:
        return "(no accuracy now: rows stored before it, or under 30 questions asked)"

    def points(values: list[float], signed: bool = True) -> str:
        if not values:
            return "–"
        value = float(np.mean(values if signed else np.abs(values)))
        return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"

    table = [
        [
            name,
            str(len(errors[name])),
            points(errors[name]),
            points(errors[name], signed=False),
            points(test[name], signed=False),
            f"{sum(inside[name])} of {len(inside[name])}",
            f"{sum(alone[name])} of {len(alone[name])}" if alone[name] else "–",
            points(width[name], signed=False),
            f"{points(curve[name])} / {points(curve[name], signed=False)} ({len(curve[name])})",
            f"{sum(withheld[name])} of {len(withheld[name])}",
        ]
        for name in sorted(set(errors) | set(withheld))
    ]
    everything = [e for values in errors.values() for e in values]
    held = [i for values in inside.values() for i in values]
    head = ["dataset", "rounds", "accuracy now − the pool's: mean", "mean abs."]
    head += ["mean abs. − test", "pool's inside the range", "inside the bootstrap's alone"]
    head += ["range width"]
    head += ["uniform curve's level − the pool's: mean / abs. (n)"]
    head += ["rounds from 100 labels with no estimate"]
    return (
        "Accuracy now (the product's: confidence calibrated on the questions asked) against"
        " the stop set's unlabeled items, points:\n\n"
        + markdown_table(head, table)
        + f"\n\nall: mean abs. error {points(everything, signed=False)} points over"
        f" {len(everything)} rounds; the pool's accuracy inside the range {sum(held)} of"
        f" {len(held)}"
        + "".join(
            f"; {where}: inside {sum(held_out[key])} of {len(held_out[key])}"
            for key, where in (
                (False, "where its allowance was chosen (the four tuned sets, seeds 0–2)"),
                (True, "elsewhere (other seeds and data sets)"),
            )
            if held_out[key]
        )
    )


def _changed(row: dict) -> float | None:
    """The product's share changed, read off a round's ``disagree`` with the product's choice
    of the model to compare with (``baseline``; None: none ``SETTLE_SPAN`` labels older, or
    rows stored before ``disagree`` was)."""
    n, back = row["n_labels"], row.get("labels_back") or []
    older = baseline([n - b for b in reversed(back)], n)
    return None if older is None else row["disagree"][len(back) - 1 - older]


def _refit(row: dict) -> Extrapolation | None:
    """An extrapolation row's forecast, refitted from its stored curve points with this
    code's ``extrapolate`` (None: it does not fit), with the labels each point was tested on
    (``_n_test``) for the points' test noise. Each of the report's sections reads it (four
    times a row); it is fitted once (``extrapolate`` is seeded: the same points, the same
    forecast)."""
    sizes, scores = row["curve"]
    return _extrapolated(
        tuple(sizes), tuple(scores), row["n_labels"], row["next_labels"], _n_test(row)
    )


@functools.cache
def _extrapolated(
    sizes: tuple, scores: tuple, n_labels: int, next_labels: int, n_test: int | None
) -> Extrapolation | None:
    return extrapolate(sizes, scores, n_labels, next_labels, n_test=n_test)


def _n_test(row: dict) -> int | None:
    """The labels each of a row's curve points was tested on: stored (rows since it is), else
    the labels the curve was measured on (at most ``CURVE_MAX_LABELS``) less its largest
    training size (``curve_points`` trains the largest on every label it does not test on),
    when every score is a whole number of it; else the smallest count every score is a whole
    number of (a score is right/tested: 0.35 and 0.4 of 20); None when no count up to 2,000
    fits (the splits tested on different counts). The smallest count alone guessed 2 for
    scores all 1.0 (sms_spam at 475 labels, tested on 34-41) and 8 for 0.125 and 0.25 (16):
    the guess from the sizes equals the stored count on each of the 705 rows that store it.
    A prequential row's points are each one answer, tested on as many answers as points."""
    stored = (row.get("predicted") or {}).get("n_test")
    if stored:
        return int(stored)
    sizes, found = row["curve"]
    scores = np.asarray(found, dtype=float)

    def whole(n: int) -> bool:
        return bool(np.all(np.abs(scores * n - np.round(scores * n)) < 1e-6))

    if row.get("method") == "prequential":
        return len(scores) or None
    if sizes:
        guess = min(int(row["n_labels"]), CURVE_MAX_LABELS) - int(max(sizes))
        if guess > 0 and whole(guess):
            return guess
    for n in range(2, 2_001):
        if whole(n):
            return n
    return None


def _uniform_forecasts(rows: list[dict], name: str, seed: int) -> dict[int, Extrapolation]:
    """The run's forecasts the product's way (``uniform``) that fit, by label count."""
    mine = [
        r
        for r in rows
        if r["kind"] == "extrapolation"
        and r.get("method") == "uniform"
        and r.get("curve")
        and (r["dataset"], r["seed"]) == (name, seed)
    ]
    return {r["n_labels"]: fit for r in mine if (fit := _refit(r)) is not None}


def _advice_firing(run: list[dict], forecasts: dict[int, Extrapolation]) -> int | None:
    """Where the product first advises stopping: the signal fired and the newest forecast at
    or before that round (one measured within ``CURVE_GROWTH`` of its labels, as a refresh
    re-measures the curve) does not expect a gain of ``STILL_GAINING`` or more."""
    for r in run:
        n = r["n_labels"]
        newest = max((m for m in forecasts if m <= n), default=None)
        forecast = forecasts[newest] if newest and n < CURVE_GROWTH * newest else None
        if StopSignal(_changed(r), SETTLE_SPAN).advises_stop(forecast):
            return n
    return None


def _kappa_firing(run: list[dict]) -> int | None:
    """Where the rule before fires: kappa ≥ KAPPA at 3 rounds in a row."""
    streak = 0
    for r in run:
        streak = streak + 1 if r["kappa"] is not None and r["kappa"] >= KAPPA else 0
        if streak == 3:
            return r["n_labels"]
    return None


def _fired(run: list[dict], n: int | None) -> str:
    """'labels (accuracy, points the run gains after)' of a firing point, or –."""
    if n is None:
        return "–"
    accuracy = {r["n_labels"]: r["accuracy"] for r in run}
    after = max(a for m, a in accuracy.items() if m >= n)
    return f"{n} ({accuracy[n]:.3f}, {100 * (after - accuracy[n]):+.1f})"


def _flat(run: list[dict], points: float = 1.0) -> str:
    """The first label count after which the run gains at most ``points``."""
    accuracies = [r["accuracy"] for r in run]
    for i, r in enumerate(run):
        if 100 * (max(accuracies[i:]) - accuracies[i]) <= points:
            return str(r["n_labels"])
    return "–"


def extrapolation_table(rows: list[dict], rounds) -> str:
    """Predicted gain over the next labels (and range), by each method, against the gain
    measured; ✓ = inside the range. Then each method's count of gains inside its range."""
    forecasts: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        if r["kind"] == "extrapolation":
            key = (r["dataset"], r["seed"], r["n_labels"], r["next_labels"])
            forecasts[key][r.get("method", "labels")] = r
    methods = [m for m in METHODS if any(m in f for f in forecasts.values())]
    table = []
    inside: dict[str, list[bool]] = defaultdict(list)
    errors: dict[str, list[float]] = defaultdict(list)  # |predicted − measured| gain
    for (name, seed, n, next_labels), found_by in forecasts.items():
        run = {x["n_labels"]: x for x in rounds[(name, seed)]}
        later = n + next_labels
        if n not in run or later not in run:
            continue
        measured = run[later]["accuracy"] - run[n]["accuracy"]
        history = [m for m in sorted(run) if m <= n]
        cells = [name, str(seed), str(n), f"{100 * measured:+.1f}"]
        seconds = []
        for method in methods:
            r = found_by.get(method)
            predicted = None
            if r is not None:
                predicted = r["predicted"]
                if r.get("curve"):
                    predicted = _as_dict(_refit(r))
                seconds.append(f"{r['seconds']:.1f}")
                if predicted is not None and predicted["low"] is not None:
                    inside[method].append(predicted["low"] <= measured <= predicted["high"])
                    errors[method].append(abs(predicted["gain"] - measured))
            cells.append(_cell(predicted, measured) if r is not None else "–")
        history_fit = extrapolate(history, [run[m]["accuracy"] for m in history], n, later - n)
        cells.append(_cell(_as_dict(history_fit), measured))
        if history_fit is not None and history_fit.low is not None:
            inside["history"].append(history_fit.low <= measured <= history_fit.high)
            errors["history"].append(abs(history_fit.gain - measured))
        cells.append(" / ".join(seconds) + " s")
        table.append(cells)
    if not table:
        return "(no extrapolation with its next labels measured)"
    names = {
        "labels": "labels' curve",
        "uniform": "uniform picks' curve",
        "audit": "audit picks' curve",
        "prequential": "asking models on the audits",
    }
    head = ["dataset", "seed", "labels", "measured gain (points)"]
    head += [f"{names[m]}: predicted (range)" for m in methods]
    head += ["test-accuracy history: predicted (range)", "curve time"]
    counts = "; ".join(
        f"{names.get(m, 'test-accuracy history')} {sum(v)} of {len(v)}, mean |error|"
        f" {100 * float(np.mean(errors[m])):.1f} points"
        for m, v in inside.items()
    )
    return markdown_table(head, table) + f"\n\nmeasured gain inside the 90 % range: {counts}"


def forecast_summary(rows: list[dict], rounds) -> str:
    """Per dataset and method: forecasts made of those asked for (with too few labels to test
    on there is none), the mean bias of the curve's accuracy now (``at_n`` − the test
    accuracy at that label count, points; and − the pool's, the stop set's unlabeled items,
    where the rows have it), the mean |error| of the gain forecast against the
    gain measured over the next labels, and how often that gain falls inside the range. Then
    the forecasts made by label count, per method."""
    made: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    bias: dict[tuple[str, str], list[float]] = defaultdict(list)
    pool_bias: dict[tuple[str, str], list[float]] = defaultdict(list)
    errors: dict[tuple[str, str], list[float]] = defaultdict(list)
    inside: dict[tuple[str, str], list[bool]] = defaultdict(list)
    by_count: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        if r["kind"] != "extrapolation":
            continue
        method = r.get("method", "labels")
        key = (r["dataset"], method)
        run = {x["n_labels"]: x["accuracy"] for x in rounds[(r["dataset"], r["seed"])]}
        on_pool = {
            x["n_labels"]: x["pool_accuracy"]
            for x in rounds[(r["dataset"], r["seed"])]
            if x.get("pool_accuracy") is not None
        }
        n = r["n_labels"]
        found = _refit(r) if r.get("curve") else None
        made[key][1] += 1
        by_count[(method, n)][1] += 1
        if found is None:
            continue
        made[key][0] += 1
        by_count[(method, n)][0] += 1
        if n in run:
            bias[key].append(found.at_n - run[n])
        if n in on_pool:
            pool_bias[key].append(found.at_n - on_pool[n])
        later = n + r["next_labels"]
        if n in run and later in run:
            measured = run[later] - run[n]
            errors[key].append(abs(found.gain - measured))
            if found.low is not None:
                inside[key].append(found.low <= measured <= found.high)
    if not made:
        return "(no forecast)"

    def mean(values: list[float]) -> str:
        return f"{100 * float(np.mean(values)):+.1f} ({len(values)})" if values else "–"

    table = [
        [
            name,
            method,
            f"{made[(name, method)][0]} of {made[(name, method)][1]}",
            mean(bias[(name, method)]),
            mean(pool_bias[(name, method)]),
            mean(errors[(name, method)]).lstrip("+"),
            f"{sum(inside[(name, method)])} of {len(inside[(name, method)])}",
        ]
        for name, method in sorted(made, key=lambda k: (k[0], METHODS.index(k[1])))
    ]
    head = ["dataset", "method", "forecasts made", "accuracy now: mean bias, points (n)"]
    head += ["against the pool's accuracy (n)"]
    head += ["gain: mean abs. error, points (n)", "measured gain inside the range"]
    methods = [m for m in METHODS if any(k[0] == m for k in by_count)]
    counts = sorted({n for _, n in by_count})
    made_at = [
        [m] + [f"{by_count[(m, n)][0]} of {by_count[(m, n)][1]}" for n in counts] for m in methods
    ]
    return (
        markdown_table(head, table)
        + "\n\nforecasts made, by label count:\n\n"
        + markdown_table(["method"] + [str(n) for n in counts], made_at)
    )


def _as_dict(found) -> dict | None:
    return found.as_dict() if found is not None else None


def _cell(found: dict | None, measured: float) -> str:
    if found is None:
        return "–"
    text = f"{100 * found['gain']:+.1f}"
    if found["low"] is None:
        return text + " (no range)"
    inside = found["low"] <= measured <= found["high"]
    return f"{text} ({100 * found['low']:+.1f} to {100 * found['high']:+.1f})" + (
        " ✓" if inside else " ✗"
    )


def _open(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else path.open()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400-item pool, 150 labels")
    add_data_options(parser, DATASETS, quick="trec")
    parser.add_argument(
        "--seeds",
        nargs="*",
        type=int,
        default=[0],
        metavar="N",
        help="the seeds to run, one loop each per dataset (default 0)",
    )
    parser.add_argument("--max-labels", type=int, help="stop here (default 1,025; 2,025 banking77)")
    parser.add_argument(
        "--stop-size",
        type=int,
        default=STOP_SET_SIZE,
        metavar="N",
        help=f"items of the pool in the stop set (default {STOP_SET_SIZE:,}, the product's; "
        "--quick: 300)",
    )
    parser.add_argument(
        "--curve-at",
        nargs="*",
        type=int,
        default=list(CURVE_AT),
        metavar="LABELS",
        help="label counts where the gain of the next --next labels is forecast (default "
        f"{' '.join(map(str, CURVE_AT))}; --quick: 75); given with no value: no forecasts, "
        "the rounds and the signal only",
    )
    parser.add_argument("--next", type=int, default=500, help="forecast the gain of this many")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        help="how the forecasts' learning curves are tested (uniform: the product's way;"
        f" audit: on the audit picks only; default {' '.join(DEFAULT_METHODS)}; --quick:"
        " uniform)",
    )
    parser.add_argument("--out", type=Path, help="append the raw rows (JSONL) here")
    parser.add_argument("--report", nargs="*", type=Path, help="only report these JSONL files")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # a benchmark, not a test: keep the output readable
    print(machine())
    if args.report:
        print(report([json.loads(line) for path in args.report for line in _open(path)]))
        return 0
    args.data, args.datasets = resolve_data(args)
    if args.quick:
        args.max_labels, args.stop_size, args.curve_at, args.next = 150, 300, [75], 50
        # the product's way only: a forecast row to show, one learning curve fitted, not two
        args.methods = args.methods or ["uniform"]
    args.methods = args.methods or list(DEFAULT_METHODS)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out_path = args.out or Path(tmp) / "rows.jsonl"
        with out_path.open("a") as out:
            simulate(args, out)
        print(report([json.loads(line) for line in out_path.open()]))
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
