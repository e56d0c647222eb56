"""predict_growth.py: /api/predict and clicks as the backlog grows."""

from __future__ import annotations

import re
from pathlib import Path

from tests.benchmarks.runner import run_quick


def test_predict_growth_benchmark_serves_every_size_and_stores_every_click_once(standin: Path):
    out = run_quick("predict_growth.py", standin)
    rows = re.findall(r"^\| ([\d,]+) \| ([\d.]+) \|.*\| (\d+) \| (\S+) \|$", out, flags=re.M)
    assert [(size, errors, stored) for size, _, errors, stored in rows] == [
        ("1,000", "0", "yes"),
        ("4,000", "0", "yes"),
    ]
    assert "bare Bolt floor (after the first size / the last): p50 " in out
