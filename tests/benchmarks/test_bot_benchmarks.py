"""The bot under load and faults: bot_load.py and soak.py."""

from __future__ import annotations

import re
from pathlib import Path

from tests.benchmarks.runner import run_quick


def test_bot_load_benchmark_stores_every_acknowledged_click_once(standin: Path):
    out = run_quick("bot_load.py", standin)
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
        assert (clicks, acked, errors, stored) == ("60", "60", "0", "60")
    assert '"status": "running"' in out  # the retrain was under way while the clicks came


def test_soak_benchmark_loses_no_answer_under_faults():
    out = run_quick("soak.py")
    assert "| acked clicks lost / stored twice | 0 / 0 |" in out
    assert "| PRAGMA integrity_check | ok |" in out
    assert "| tracebacks in the server log | 0 |" in out
    assert out.strip().endswith("verdict: ok")
