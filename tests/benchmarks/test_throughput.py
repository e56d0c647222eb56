"""throughput.py."""

from __future__ import annotations

import re
from pathlib import Path

from tests.benchmarks.runner import run_quick


def test_throughput_benchmark_reports_growth_and_query_plans(standin: Path):
    out = run_quick("throughput.py", standin)
    assert re.search(r"^\| 2,000 \| .* \| [\d.]+ \| \d+ \|$", out, flags=re.M)
    assert "score_items: 1,000 pending items" in out
    assert "Retrain (`hitl retrain`, time ∝ labels^" in out
    for query in ("Store.pool", "Store.open_post_counts", "Store.next_for_user"):
        assert f"- `{query}` (" in out
    assert "EXPLAIN QUERY PLAN" in out
