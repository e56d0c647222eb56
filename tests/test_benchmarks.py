"""Benchmarks are not timed tests, but their --quick modes run here so the scripts don't rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_quick(script: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_memory_benchmark_prints_a_ratio_per_size():
    out = run_quick("import_memory.py")
    rows = re.findall(r"^\s+([\d,]+)\s+[\d.]+\s+([\d.]+)\s+([\d.]+)\s", out, flags=re.M)
    assert [r[0] for r in rows] == ["2,000", "20,000"]
    assert rows[0][2] == "1.00"
    assert "imported 20,000" in out


def test_label_efficiency_benchmark_runs_every_arm_through_the_product_code():
    out = run_quick("label_efficiency.py")
    assert "trec full supervision: accuracy" in out
    arms = re.findall(r"^\| (\w+) \(1\) \| [\d.]+±", out, flags=re.M)
    assert arms[:4] == ["default", "random", "least_confidence", "entropy"]
    assert {"st_breaking_ties", "st_least_confidence"} <= set(arms) or "small-text is not" in out


def test_bot_load_benchmark_stores_every_acknowledged_click_once():
    out = run_quick("bot_load.py")
    phases = {}
    for row in re.findall(
        r"^\| ([^|]+?) \| ([\d,]+) \| (\d+) \| (\d+) \|.*\| ([\d,–]+) \| [^|]*\|$", out, flags=re.M
    ):
        phases[row[0]] = row[1:]
    assert set(phases) == {
        "bare Bolt (before)",
        "hitl serve",
        "bare Bolt (after)",
        "hitl serve + retrain",
    }
    for name in ("hitl serve", "hitl serve + retrain"):
        clicks, acked, errors, stored = phases[name]
        assert (clicks, acked, errors, stored) == ("120", "120", "0", "120")
    assert '"status": "running"' in out  # the retrain was under way while the clicks came


def test_throughput_benchmark_reports_growth_and_query_plans():
    out = run_quick("throughput.py")
    assert re.search(r"^\| 2,000 \| .* \| [\d.]+ \| \d+ \|$", out, flags=re.M)
    assert "score_items: 1,000 pending items" in out
    assert "Retrain (`hitl retrain`, time ∝ labels^" in out
    for query in ("Store.pool", "Store.open_post_counts", "Store.next_for_user"):
        assert f"- `{query}` (" in out
    assert "EXPLAIN QUERY PLAN" in out


def test_soak_benchmark_loses_no_answer_under_faults():
    out = run_quick("soak.py")
    assert "| acked clicks lost / stored twice | 0 / 0 |" in out
    assert "| PRAGMA integrity_check | ok |" in out
    assert "| tracebacks in the server log | 0 |" in out
    assert out.strip().endswith("verdict: ok")


def test_simulated_loop_benchmark_accuracy_rises_with_answers():
    out = run_quick("simulated_loop.py")
    assert "trec accuracy on test.jsonl by labels: 20:" in out
    assert "the curve rises" in out
