"""refresh_backlog.py: how soon a refresh asks, through the real server, round by round."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from tests.benchmarks.runner import benchmark_module, run_quick_here


def test_refresh_backlog_benchmark_times_each_round_from_the_last_ack_to_the_refresh(
    standin: Path,
):
    out = run_quick_here("refresh_backlog.py", standin)
    rows = re.findall(r"^\| 500 \| (\d) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert [k for k, *_ in rows] == ["1", "2"], out
    assert all(float(wait) > 0 for _, wait, _ in rows), out
    # --quick measures one size: its "× smallest size" is each wait over itself, which says
    # nothing; the ratios are checked on two sizes below
    [scored] = re.findall(r"^- 500 waiting: .* the walks scored ([\d,]+) items", out, re.M)
    # round 2 is asked after round 1's refresh, which the queue is re-scored with
    assert int(scored.replace(",", "")) > 0, out


def test_refresh_backlog_report_gives_each_rounds_wait_over_the_smallest_sizes_same_round():
    report = benchmark_module("refresh_backlog.py")["report"]
    found = {"scored": 0, "seed_s": 1, "retrain_s": 1, "classes": 6}
    text = report(
        [
            {**found, "items": 500, "waits": [2.0, 0.5]},
            {**found, "items": 1_000_000, "waits": [3.0, 2.0], "scored": 1_500_000},
            {**found, "items": 2_000_000, "waits": [4.0, None]},
        ],
        argparse.Namespace(rounds=2, wait=60.0),
    )
    rows = re.findall(r"^\| ([\d,]+) \| (\d) \| ([^|]+) \| ([^|]+) \|$", text, re.M)
    assert rows == [
        ("500", "1", "2.0", "1.00"),
        ("500", "2", "0.5", "1.00"),
        ("1,000,000", "1", "3.0", "1.50"),
        ("1,000,000", "2", "2.0", "4.00"),
        ("2,000,000", "1", "4.0", "2.00"),
        ("2,000,000", "2", "> 60", "–"),  # the round that waited past --wait
    ], text
    assert "- 1,000,000 waiting: rounds 2–2 median 2.0 s; the walks scored 1,500,000 items" in text
