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
    # the window of a person whose answers wait for others: looked up in a worker thread, the
    # loop's connection reads only the check by key and the holds' votes
    lookup = rows["window, the person answered 200 waiting"].split(" | ")
    hold = rows["window, the person answered 200 waiting: loop's hold"].split(" | ")
    for before, now in zip(lookup, hold, strict=True):
        [before_steps] = re.findall(r"; ([\d.]+)k steps", before)
        [steps_now] = re.findall(r"; ([\d.]+)k steps", now)
        assert float(steps_now) < float(before_steps) / 2, out
