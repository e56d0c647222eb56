"""label_efficiency.py, simulated_loop.py and annotators.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.benchmarks.runner import run, run_quick_here
from tests.standin_data import STANDIN


def test_label_efficiency_benchmark_runs_every_arm_through_the_product_code(standin: Path):
    out = run_quick_here("label_efficiency.py", standin)
    assert f"{STANDIN} full supervision: accuracy" in out
    arms = re.findall(r"^\| (\w+) \(1\) \| [\d.]+±", out, flags=re.M)
    assert arms[:4] == ["default", "random", "least_confidence", "entropy"]
    assert {"st_breaking_ties", "st_least_confidence"} <= set(arms) or "small-text is not" in out


def test_simulated_loop_benchmark_accuracy_rises_with_answers(standin: Path):
    out = run_quick_here("simulated_loop.py", standin)
    assert f"{STANDIN} accuracy on test.jsonl by labels: 20:" in out
    assert "the curve rises" in out


def test_annotators_benchmark_compares_majority_and_dawid_skene_on_a_simulated_team(
    standin: Path, tmp_path: Path
):
    out_file = tmp_path / "rows.jsonl"
    out = run_quick_here("annotators.py", standin, "--out", str(out_file))
    for variant in ("uniform", "confusable"):
        assert f"### {STANDIN}, {variant} errors: 100 items, 5 gold, 2 seeds" in out
    methods = re.findall(r"^\| (\w+) \| [\d.]+ ± [\d.]+ \|", out, flags=re.M)
    assert methods == ["truth", "majority", "dawid_skene", "dawid_skene_gold", "product"] * 2
    annotators = re.findall(r"^\| (\d+%) \| [\d.]+ ± ", out, flags=re.M)
    assert annotators == ["95%", "85%", "60%"] * 2
    rows = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 * 2 * 5  # variants × seeds × methods
    assert {r["method"] for r in rows} == {
        "truth", "majority", "dawid_skene", "dawid_skene_gold", "product"
    }  # fmt: skip
    truth = [r for r in rows if r["method"] == "truth"]
    assert all(r["resolved_accuracy"] == 1.0 and r["n_undecided"] == 0 for r in truth)
    # the product trains on what majority decided, with Dawid–Skene's labels
    by = {(r["variant"], r["seed"], r["method"]): r for r in rows}
    for variant, seed, method in by:
        if method == "product":
            assert by[variant, seed, method]["n_train"] == by[variant, seed, "majority"]["n_train"]


def test_annotators_benchmark_refuses_a_gold_share_out_of_range(standin: Path):
    result = run("annotators.py", "--quick", "--data", str(standin), "--datasets", STANDIN,
                 "--gold-share", "1.5")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --gold-share 1.5 is not in [0, 1); try 0.05"
    ]
