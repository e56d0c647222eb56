"""soak.py: the bot under faults, for a while."""

from __future__ import annotations

from tests.benchmarks.runner import run_quick


def test_soak_benchmark_loses_no_answer_under_faults():
    out = run_quick("soak.py")
    assert "| acked clicks lost / stored twice | 0 / 0 |" in out
    assert "| PRAGMA integrity_check | ok |" in out
    assert "| tracebacks in the server log | 0 |" in out
    assert out.strip().endswith("verdict: ok")
