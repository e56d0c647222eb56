"""label_change.py: a change of the label set and the pass after it, timed."""

from __future__ import annotations

import re

from tests.benchmarks.runner import run_quick


def test_label_change_benchmark_times_the_change_and_the_pass_in_bounded_steps():
    out = run_quick("label_change.py")
    rows = re.findall(
        r"^\| 20,000 \| (retire|add) \| ([\d.]+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+)"
        r" \| ([\d.]+) \| ([\d.]+) \|$",
        out,
        re.M,
    )
    assert [action for action, *_ in rows] == ["retire", "add"], out
    (_, _, steps, changed, *_), (_, _, steps_back, changed_back, *_) = rows
    assert int(steps) == int(steps_back) >= 40  # 500 items a step, the posted ones last
    assert int(changed) == int(changed_back) > 0  # the retired label's items, then back
    for _, _, _, _, total, median, p99, longest in rows:  # the change's seconds: any number
        assert 0 < float(median) <= float(p99) <= float(longest)
        # the pass's seconds are its steps' sum (printed to 0.01 s, its longest step to 0.01 ms)
        assert float(total) > 0 and 1000 * float(total) + 5 >= float(longest)
