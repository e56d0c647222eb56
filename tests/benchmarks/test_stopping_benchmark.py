"""stopping.py: the stop-set signal and the extrapolation, on the default arm's own loop."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

from tests.benchmarks.runner import ROOT, run_quick
from tests.standin_data import STANDIN


def test_stopping_benchmark_reports_the_firing_point_and_the_forecast(standin: Path):
    out = run_quick("stopping.py", standin)
    # the stop set: --quick draws 300 items of the pool
    [row] = re.findall(rf"^\| {STANDIN} \| 0 \| 300 \| (.+)$", out, flags=re.M)
    cells = [c.strip() for c in row.split("|")]
    # at a share changed of 2 % (the product's), 1 %, 3 %, and kappa ≥ 0.99 ×3 (the rule
    # before): labels (accuracy, points gained after), or – within the run
    fires = cells[:4]
    assert all(re.fullmatch(r"\d+ \([01]\.\d{3}, [+-]\d+\.\d\)|–", c) for c in fires), cells
    assert cells[7].startswith("150 (")  # the run's end
    forecast = re.search(rf"^\| {STANDIN} \| 0 \| 75 \| ([+-]\d+\.\d) \| (.+)$", out, flags=re.M)
    assert forecast is not None, out  # the gain of the next 50 labels, forecast and measured


def test_stopping_benchmark_runs_the_same_loop_as_label_efficiency(standin: Path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        stopping = runpy.run_path(str(ROOT / "benchmarks" / "stopping.py"), run_name="bench")
        efficiency = runpy.run_path(str(ROOT / "benchmarks" / "label_efficiency.py"), run_name="b")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    pool = stopping["load_jsonl"](standin / STANDIN / "train.jsonl")
    test = stopping["load_jsonl"](standin / STANDIN / "test.jsonl")
    rounds = [r for r in stopping["run_default"](STANDIN, 0, pool, test, 150, 200, ())]
    ours = [(r["n_labels"], r["accuracy"]) for r in rounds if r["kind"] == "round"]
    # the product's share changed (model.stopping), and the report's reading of the rows
    assert [r["changed"] for r in rounds] == [stopping["_changed"](r) for r in rounds]
    spans = [(r["n_labels"], r["span"]) for r in rounds]
    assert spans == [(25, None), (50, None), (75, None), (100, None), (125, 100), (150, 100)]
    theirs = [
        (r["n_labels"], r["accuracy"])
        for r in efficiency["run_arm"](STANDIN, "default", 0, pool, test, 150)
    ]
    assert ours == theirs and len(ours) >= 3
