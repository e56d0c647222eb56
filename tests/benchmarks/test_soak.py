"""soak.py: the bot under faults, for a while."""

from __future__ import annotations

import re

from tests.benchmarks.runner import run_quick


def test_soak_benchmark_loses_no_answer_under_faults():
    out = run_quick("soak.py")
    [(sent, acked, errors)] = re.findall(
        r"^\| clicks sent / acked / errors \| ([\d,]+) / ([\d,]+) / (\d+) \|$", out, re.M
    )
    sent, acked, errors = (int(n.replace(",", "")) for n in (sent, acked, errors))
    # answers were taken: no acknowledged click lost says nothing when none was acknowledged
    assert acked > 0 and acked + errors == sent, out
    assert "| acked clicks lost / stored twice | 0 / 0 |" in out
    assert "| PRAGMA integrity_check | ok |" in out
    assert "| tracebacks in the server log | 0 |" in out
    assert out.strip().endswith("verdict: ok")
