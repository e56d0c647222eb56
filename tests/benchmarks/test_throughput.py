"""throughput.py and refresh.py."""

from __future__ import annotations

import re
from pathlib import Path

from tests.benchmarks.runner import run_quick
from tests.standin_data import STANDIN


def test_throughput_benchmark_reports_growth_and_query_plans(standin: Path):
    out = run_quick("throughput.py", standin)
    assert re.search(r"^\| 2,000 \| .* \| [\d.]+ \| \d+ \|$", out, flags=re.M)
    assert "score_items: 1,000 pending items" in out
    assert "Retrain (`hitl retrain`, time ∝ labels^" in out
    for query in ("Store.pool", "Store.open_post_counts", "Store.next_for_user"):
        assert f"- `{query}` (" in out
    assert "EXPLAIN QUERY PLAN" in out


def test_refresh_benchmark_compares_nightly_the_product_and_the_fast_loop(standin: Path):
    out = run_quick("refresh.py", standin)
    for arm, refreshes in (("nightly", "0 refreshes"), ("product", ""), ("every5", "")):
        [line] = [ln for ln in out.splitlines() if ln.startswith(f"{STANDIN} {arm}: ")]
        assert "30 labels in" in line and refreshes in line
    product = re.search(r"product: .*, (\d+) refreshes", out)
    fast = re.search(r"every5: .*, (\d+) refreshes", out)
    assert product and fast and 0 < int(product[1]) < int(fast[1])
