"""predict_throughput.py: /api/predict throughput against an earlier commit."""

from __future__ import annotations

import re
from pathlib import Path

from tests.benchmarks.runner import run_quick


def test_predict_throughput_benchmark_runs_both_sides_and_gives_their_ratio(standin: Path):
    out = run_quick("predict_throughput.py", standin)
    rows = re.findall(r"^\| (old|new) \(\S+\) \| (\d+) \| (\d+) \|.*\| (\d+) \|  \|$", out, re.M)
    assert [(side, calls, errors) for side, _, calls, errors in rows] == [
        ("old", "40", "0"),
        ("new", "40", "0"),
    ], out  # a row with a note (a server's exit code and last line) does not match: shown
    ratio = r"^throughput: new [\d.,]+ calls/s, old [\d.,]+ calls/s: new / old = [\d.]+$"
    assert re.search(ratio, out, re.M)
