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
    ], out[-3000:]  # a row whose stored answers differ from its acks reads "NO …" there
    assert "bare Bolt floor after each size: p50 " in out
    assert "(3,000 added in " in out and "s, beneath the running server)" in out  # --quick
    assert "server (one for every size) exit 0" in out  # read the answers once it stopped
    floor = re.search(r"ms; under the predict clients: p50 ([\d.]+) / ([\d.]+) ms$", out, re.M)
    fsyncs = re.search(r"over 100 ms\): 1,000: (\d+) / (\d+) / (\d+); 4,000: (\d+)", out)
    assert fsyncs and int(fsyncs[1]) >= 1 and int(fsyncs[4]) >= 1  # one at least per ack batch
    assert floor and all(float(p50) > 0 for p50 in floor.groups())
    served = re.findall(r"\| ([\d,]+) / ([\d,]+) \| 0 \| yes \|$", out, re.M)
    assert len(served) == 2 and all(int(n.replace(",", "")) > 0 for pair in served for n in pair)
    assert "load average (1, 5, 15 min) before / after each size: 1,000: " in out
