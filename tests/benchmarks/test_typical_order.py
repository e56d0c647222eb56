"""typical_order.py: TypiClust's order as the backlog grows, in the scoring child and a thread."""

from __future__ import annotations

import re

from tests.benchmarks.runner import run_quick_here


def test_typical_order_benchmark_computes_an_order_in_the_child_and_in_a_thread():
    out = run_quick_here("typical_order.py")
    rows = re.findall(r"^\| ([\d,]+) \| (child|thread) \| (.+) \|$", out, re.M)
    assert [(items, path) for items, path, _ in rows] == [
        ("1,000", "child"),
        ("1,000", "thread"),
        ("4,000", "child"),
        ("4,000", "thread"),
    ], out
    # every order holds its budget: HITL_REFRESH_EVERY (25) + HITL_MAX_OPEN (5) picks
    assert all(cells.split(" | ")[-1] == "30" for _, _, cells in rows), out
    # the sample and the covered texts are read on a connection of their own, in a worker
    # thread: no statement of the order runs on the loop's (its VM steps, the fifth column)
    assert all(cells.split(" | ")[2] == "0" for _, _, cells in rows), out
