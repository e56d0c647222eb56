"""stopping.py: the stop-set signal and the extrapolation, on the default arm's own loop."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import pytest

from model.stopping import CurvePoints, Extrapolation
from tests.benchmarks.runner import ROOT, benchmark_module, run_quick_here
from tests.standin_data import STANDIN


@pytest.fixture(scope="module")
def quick_run(standin: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict]]:
    """One ``stopping.py --quick`` for the tests that read it: its report and its raw rows
    (``--out``), the default arm's loop, which the second test runs beside label_efficiency's."""
    rows_file = tmp_path_factory.mktemp("stopping") / "rows.jsonl"
    out = run_quick_here("stopping.py", standin, "--out", str(rows_file))
    return out, [json.loads(line) for line in rows_file.read_text().splitlines()]


def test_stopping_benchmark_reports_the_firing_point_and_the_forecast(
    quick_run: tuple[str, list[dict]],
):
    out, _ = quick_run
    # the stop set: --quick draws 300 items of the pool
    [row] = re.findall(rf"^\| {STANDIN} \| 0 \| 300 \| (.+)$", out, flags=re.M)
    cells = [c.strip() for c in row.split("|")]
    # at a share changed of 2 % (the product's), 1 %, 3 %, and kappa ≥ 0.99 ×3 (the rule
    # before): labels (accuracy, points gained after), or – within the run
    # then where the product advises stopping (the signal, unless a forecast is sure of more)
    fires = cells[:5]
    assert all(re.fullmatch(r"\d+ \([01]\.\d{3}, [+-]\d+\.\d\)|–", c) for c in fires), cells
    assert cells[8].startswith("150 (")  # the run's end
    # 95 % of full supervision: the stand-in has no stored rows to tell it, which reads
    # otherwise than a curve that does not get there ("> 150")
    assert cells[5] == "no stored rows", cells
    forecast = re.search(rf"^\| {STANDIN} \| 0 \| 75 \| ([+-]\d+\.\d) \| (.+)$", out, flags=re.M)
    assert forecast is not None, out  # the gain of the next 50 labels, forecast and measured


def test_stopping_benchmark_runs_the_same_loop_as_label_efficiency(
    standin: Path, quick_run: tuple[str, list[dict]]
):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        stopping = runpy.run_path(str(ROOT / "benchmarks" / "stopping.py"), run_name="bench")
        efficiency = runpy.run_path(str(ROOT / "benchmarks" / "label_efficiency.py"), run_name="b")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    # the quick run's rows (the stand-in, seed 0, 150 labels, a forecast at 75), and its pool
    # and test set for label_efficiency's loop
    _, rows = quick_run
    assert {(r["dataset"], r["seed"]) for r in rows} == {(STANDIN, 0)}
    load = stopping["load_jsonl"]
    pool, test = stopping["quick_sample"](
        load(standin / STANDIN / "train.jsonl"), load(standin / STANDIN / "test.jsonl")
    )
    # one forecast, the product's way only (--methods uniform)
    assert [(r["n_labels"], r["method"]) for r in rows if r["kind"] != "round"] == [(75, "uniform")]
    rounds = [r for r in rows if r["kind"] == "round"]
    ours = [(r["n_labels"], r["accuracy"]) for r in rounds]
    # the product's share changed (model.stopping), and the report's reading of the rows
    assert [r["changed"] for r in rounds] == [stopping["_changed"](r) for r in rounds]
    spans = [(r["n_labels"], r["span"]) for r in rounds]
    assert spans == [(25, None), (50, None), (75, None), (100, None), (125, 100), (150, 100)]
    theirs = [
        (r["n_labels"], r["accuracy"])
        for r in efficiency["run_arm"](STANDIN, "default", 0, pool, test, 150)
    ]
    assert ours == theirs and len(ours) >= 3
    # each round estimates accuracy now as the product does, once 30 questions were asked
    found = [r["accuracy_now"] for r in rounds]
    needs = "it needs 30 questions a model asked answered"
    assert found[0] == {"reason": f"{needs}, has 0 so far"}  # 25 labels
    assert found[1] == {"reason": f"{needs}, has 25 so far"}
    # then an estimate (the product's AccuracyNow, with the bootstrap's range beside it), or
    # why not (where the few audits span less than the newest model's confidences, the
    # estimate is withheld, as the product withholds it)
    estimate = {"estimate", "low", "high", "n_pool", "n_asked", "thin", "source"}
    assert all(set(f) in ({"reason"}, estimate | {"boot_low", "boot_high"}) for f in found), found


def test_the_accuracy_now_summary_sets_the_estimate_beside_the_pools_accuracy():
    bench = benchmark_module("stopping.py")
    estimate = {"estimate": 0.8, "low": 0.7, "high": 0.85, "n_pool": 100, "n_asked": 40}
    rounds = {
        ("d", 0): [
            {"n_labels": 100, "accuracy": 0.76, "pool_accuracy": 0.75, "accuracy_now": estimate},
            {"n_labels": 125, "accuracy": 0.8, "pool_accuracy": 0.9, "accuracy_now": estimate},
            {"n_labels": 150, "accuracy": 0.8, "pool_accuracy": 0.9, "accuracy_now": None},
            {
                "n_labels": 175,
                "accuracy": 0.8,
                "pool_accuracy": 0.9,
                "accuracy_now": {"reason": "x"},
            },
        ]
    }
    text = bench["accuracy_now_summary"]([], rounds)
    # +5 and −10 points: mean −2.5, abs. 7.5; against test +4 and 0: 2.0; inside 1 of 2
    assert "| d | 2 | -2.5 | 7.5 | 2.0 | 1 of 2 | – | 15.0 | – / – (0) | 2 of 4 |" in text, text
    assert "mean abs. error 7.5 points over 2 rounds" in text
    assert "allowance was chosen" not in text  # rows measured before the allowance


def test_the_accuracy_now_summary_tells_the_allowances_rounds_from_the_held_out_ones():
    bench = benchmark_module("stopping.py")
    # the shown range (bootstrap ± the allowance) holds 0.9; the bootstrap's alone does not
    shown = {"estimate": 0.8, "low": 0.7, "high": 0.9, "n_pool": 100, "n_asked": 40}
    shown |= {"boot_low": 0.76, "boot_high": 0.84}
    row = {"n_labels": 100, "accuracy": 0.8, "pool_accuracy": 0.9, "accuracy_now": shown}
    missed = {**row, "pool_accuracy": 0.95}
    rounds = {("trec", 0): [row, missed], ("trec", 3): [row], ("debian_topics", 0): [row]}
    text = bench["accuracy_now_summary"]([], rounds)
    assert "| trec | 3 | -11.7 | 11.7 | 0.0 | 2 of 3 | 0 of 3 | 20.0 |" in text, text
    assert "where its allowance was chosen (the four tuned sets, seeds 0–2): inside 1 of 2" in text
    assert "elsewhere (other seeds and data sets): inside 2 of 2" in text


def test_the_advice_waits_while_the_newest_fresh_forecast_expects_a_point_more():
    bench = benchmark_module("stopping.py")

    def round_row(n: int, changed: float) -> dict:  # changed against the model 100 labels older
        return {"n_labels": n, "disagree": [changed], "labels_back": [100]}

    def forecast(n: int, gain: float) -> Extrapolation:
        return Extrapolation(n, 500, 0.9, 1.0, 0.5, 0.8, gain, 0.0, gain + 0.01, 10)

    run = [round_row(100, 0.05)] + [round_row(n, 0.01) for n in (125, 150, 175, 200)]
    assert bench["first_firing"]([100, 125, 150, 175, 200], [0.05] + [0.01] * 4) == 125
    # expects 1.5 points from 125 labels: it holds at 125 and 150 (within 25 % more labels)
    sure = {125: forecast(125, 0.015)}
    assert bench["_advice_firing"](run, sure) == 175  # stale at 175 (≥ 1.25 × 125)
    assert bench["_advice_firing"](run, {**sure, 150: forecast(150, 0.005)}) == 150  # under 1
    assert bench["_advice_firing"](run, {}) == 125  # no forecast: the signal itself


def test_the_audit_method_tests_its_curve_on_the_audit_picks_only():
    bench = benchmark_module("stopping.py")
    seen: dict[str, list[bool] | None] = {}

    def curve_points(texts, labels, make_estimator, *, uniform=None):  # records what it tests on
        seen[method] = None if uniform is None else list(uniform)
        return CurvePoints([], [])

    bench["forecast_row"].__globals__["curve_points"] = curve_points
    why = ["cold_start"] * 4 + ["audit", "uncertain", "uncertain", "audit", "uncertain"]
    labeled = [7, 3, 11, 0, 5, 2, 9, 1, 4]  # pool indices, in the order they were labeled
    reasons = dict(zip(labeled, why, strict=True))
    pool = ([f"text {i}" for i in range(12)], ["a", "b", "c"] * 4)
    for method in ("labels", "uniform", "audit"):
        row = bench["forecast_row"]("d", 0, 9, labeled, pool, 500, method, reasons)
        assert (row["method"], row["predicted"]) == (method, None)  # no curve: no forecast
    assert seen["labels"] is None  # shuffled splits of all the labels
    assert seen["uniform"] == [r in ("cold_start", "audit") for r in why]  # unchanged
    # tested on the audit picks only: the cold start always trains
    assert seen["audit"] == [False] * 4 + [True, False, False, True, False]


def test_the_summary_sets_each_methods_accuracy_now_beside_the_test_accuracy():
    bench = benchmark_module("stopping.py")
    sizes = [20, 40, 60, 80] * 3
    scores = [0.9 - 0.5 * s**-0.5 for s in sizes]  # an inverse power law, fitted exactly
    rounds = {("d", 0): [{"n_labels": 100, "accuracy": 0.8}, {"n_labels": 600, "accuracy": 0.9}]}

    def forecast(method: str, curve: list) -> dict:  # at 100 labels, of the next 500
        return {
            "kind": "extrapolation",
            "method": method,
            "dataset": "d",
            "seed": 0,
            "n_labels": 100,
            "next_labels": 500,
            "curve": curve,
        }

    rows = [forecast("uniform", [sizes, scores]), forecast("audit", [[], []])]
    found = bench["extrapolate"](sizes, scores, 100, 500)
    out = bench["forecast_summary"](rows, rounds)
    bias = f"{100 * (found.at_n - 0.8):+.1f} (1)"  # the curve's accuracy now − the test's
    error = f"{100 * abs(found.gain - 0.1):.1f} (1)"  # against the 10 points measured
    # no pool accuracy in these rounds: that bias is not known ("–")
    assert f"| d | uniform | 1 of 1 | {bias} | – | {error} |" in out, out
    assert "| d | audit | 0 of 1 | – | – | – | 0 of 0 |" in out, out  # too few to test on: none
    rounds[("d", 0)][0]["pool_accuracy"] = 0.75  # the stop set's unlabeled items
    out = bench["forecast_summary"](rows, rounds)
    on_pool = f"{100 * (found.at_n - 0.75):+.1f} (1)"
    assert f"| d | uniform | 1 of 1 | {bias} | {on_pool} | {error} |" in out, out
    assert "| uniform | 1 of 1 |" in out and "| audit | 0 of 1 |" in out, out  # at 100 labels


def test_the_prequential_method_scores_each_audit_pick_by_the_model_that_asked_it(
    standin: Path,
):
    """No refit: a point per audit pick, at the label count of the model that picked it, 1
    when that model's guess was the answer (asked before the answer was known)."""
    bench = benchmark_module("stopping.py")
    texts, labels = bench["load_jsonl"](standin / STANDIN / "train.jsonl")
    pool = (texts[:400], labels[:400])
    test = bench["load_jsonl"](standin / STANDIN / "test.jsonl")
    expected: list[tuple[int, float]] = []
    n_labeled = 0
    pick = bench["pick"]

    def watched_pick(arm, clf, pool_x, unlabeled, labeled, st, rng, *, reasons, **kwargs):
        nonlocal n_labeled
        chosen = pick(arm, clf, pool_x, unlabeled, labeled, st, rng, reasons=reasons, **kwargs)
        audits = [i for i in chosen if reasons[i] == "audit"]
        if clf is not None:  # what the model that asked said, the answer not known yet
            said = clf.predict([pool[0][i] for i in audits]) if audits else []
            expected.extend(
                (n_labeled, float(s == pool[1][i])) for i, s in zip(audits, said, strict=True)
            )
        n_labeled += len(chosen)
        return chosen

    bench["run_default"].__globals__["pick"] = watched_pick
    try:
        # seed 1: its audits find the model wrong as well as right (seed 0's are all right)
        rows = list(bench["run_default"](STANDIN, 1, pool, test, 200, 200, (200,), 50,
                                         ["prequential"]))  # fmt: skip
    finally:
        bench["run_default"].__globals__["pick"] = pick
    [row] = [r for r in rows if r["kind"] == "extrapolation"]
    assert row["method"] == "prequential" and len(expected) >= 5
    assert [tuple(p) for p in zip(*row["curve"], strict=True)] == expected
    assert {n for n, _ in expected} <= {25, 50, 75, 100, 125, 150, 175}  # no cold start
    assert 0 < sum(right for _, right in expected) < len(expected)


def test_the_pools_accuracy_counts_the_stop_sets_items_not_labeled_yet():
    bench = benchmark_module("stopping.py")
    pool_y = ["a", "a", "a", "b"]
    labeled = [False, False, True, False]  # item 2 is labeled: it no longer counts
    # the stop set is items 3, 0, 2, 1 of the pool, predicted b, b, a, a: 3 and 1 right of 3
    assert bench["_pool_accuracy"](["b", "b", "a", "a"], [3, 0, 2, 1], pool_y, labeled) == 2 / 3
    assert bench["_pool_accuracy"](["a"], [2], pool_y, labeled) is None  # none left to count


def test_accuracy_now_rules_reads_the_same_rounds_with_every_rule(standin: Path):
    out = run_quick_here("accuracy_now_rules.py", standin)
    names = ("coverage only (before)", "questions (before)", "held-out labels")
    rule = "|".join(re.escape(name) for name in names)
    rows = re.findall(rf"^\| ({rule}) \| (all|{STANDIN}) \| (\d+) \|", out, flags=re.M)
    assert {(rule, key) for rule, key, _ in rows} == {
        (rule, key) for rule in names for key in ("all", STANDIN)
    }, out
    assert len({n for *_, n in rows}) == 1 and int(rows[0][2]) > 0  # the same rounds for all
