"""throughput.py."""

from __future__ import annotations

import re
from pathlib import Path

from tests.benchmarks.runner import run_quick_here


def test_throughput_benchmark_reports_growth_and_query_plans(standin: Path):
    out = run_quick_here("throughput.py", standin)
    assert re.search(r"^\| 2,000 \| .* \| [\d.]+ \| \d+ \|$", out, flags=re.M)
    assert "score_items: 1,000 pending items" in out
    assert "Retrain (`hitl retrain`, time ∝ labels^" in out
    for query in ("Store.pool", "Store.open_post_counts", "Store.next_for_user"):
        assert f"- `{query}` (" in out
    assert "EXPLAIN QUERY PLAN" in out
    # few unlabeled among the largest size: one row per share, each unlabeled count smaller
    sparse = re.findall(
        r"^\| ([\d.]+)% \| ([\d,]+) \| [\d.]+ \| ([\d.]+)× \| [\d.]+ \| ([\d.]+)× \|$",
        out,
        flags=re.M,
    )
    assert [share for share, *_ in sparse] == ["50.0", "10.0", "5.0", "2.0", "1.0", "0.5"], out
    counts = [int(n.replace(",", "")) for _, n, *_ in sparse]
    assert counts == sorted(counts, reverse=True) and counts[-1] > 0
    assert sparse[0][2:] == ("1.0", "1.0")  # the first row is the baseline
    # a new model's first dispatcher round at the largest size: it chooses among items the
    # new model scored (100 %), against the walk's way to the window's last item
    [window] = re.findall(
        r"^\| 10,000 \| 500 \| (\d+) \| ([\d.]+) \| (\d+)% \| ([\d,]+) \| ([\d,]+) \|$",
        out,
        flags=re.M,
    )
    assert window[2] == "100" and int(window[3].replace(",", "")) > 500, out
