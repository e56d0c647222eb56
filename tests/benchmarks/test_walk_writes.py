"""walk_writes.py: how long a walk's writes hold the event loop, before and now."""

from __future__ import annotations

import re

from tests.benchmarks.runner import run_quick_here


def test_walk_writes_benchmark_times_both_ways_on_the_same_items():
    out = run_quick_here("walk_writes.py")  # its report only: in this process
    rows = re.findall(
        r"^\| 6,000 \| (before|now) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", out, re.M
    )
    assert [(way, n) for way, n, *_ in rows] == [("before", "6"), ("now", "60")], out
    for _, _, median, p90, longest in rows:
        assert 0 < float(median) <= float(p90) <= float(longest)
    assert re.search(
        r"^\| 6,000 \| before / now \|\s+\| [\d.]+ \|\s+\| [\d.]+ \| [\d.]+ \|$", out, re.M
    ), out
