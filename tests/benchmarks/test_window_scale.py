"""window_scale.py: the labeling window's store calls as items grow, and what each reads."""

from __future__ import annotations

import re

from tests.benchmarks.runner import run_quick_here


def test_window_scale_benchmark_reads_a_routed_channels_window_without_the_other_items():
    out = run_quick_here("window_scale.py")
    rows = dict(re.findall(r"^\| ([^|]+?) \| (.+) \|$", out, re.M))
    assert "a click and its Undo (reopen)" in rows and "gold turn: a page of gold" in rows, out
    cells = rows["window, routed channel, nothing waits"].split(" | ")
    steps = [float(s) for cell in cells for s in re.findall(r"; ([\d.]+)k steps", cell)]
    # at 1,000 and 4,000 items: m049's index, not the status index past every waiting item
    assert len(steps) == 2 and all(s < 1 for s in steps), out
