"""refresh_backlog.py: how soon a refresh asks, through the real server, round by round."""

from __future__ import annotations

import re
from pathlib import Path

from tests.benchmarks.runner import run_quick


def test_refresh_backlog_benchmark_times_each_round_from_the_last_ack_to_the_refresh(
    standin: Path,
):
    out = run_quick("refresh_backlog.py", standin)
    rows = re.findall(r"^\| 500 \| (\d) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert [k for k, *_ in rows] == ["1", "2"], out
    assert all(float(wait) > 0 and ratio == "1.00" for _, wait, ratio in rows), out
    [scored] = re.findall(r"^- 500 waiting: .* the walks scored ([\d,]+) items", out, re.M)
    assert int(scored.replace(",", "")) >= 0, out
