"""calibration.py: what HITL_THRESHOLD buys (the share the model answers, and how often right)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tests.benchmarks.runner import benchmark_module, run_quick
from tests.standin_data import STANDIN


def test_expected_calibration_error_is_the_weighted_gap_per_confidence_bin():
    ece = benchmark_module("calibration.py")["expected_calibration_error"]
    # two bins: 0.95 (4 items, 3 right: gap 0.2) and 0.55 (4 items, 2 right: gap 0.05)
    confidence = np.array([0.95] * 4 + [0.55] * 4)
    correct = np.array([1, 1, 1, 0, 1, 1, 0, 0], dtype=bool)
    assert np.isclose(ece(confidence, correct), 0.5 * 0.2 + 0.5 * 0.05)
    assert ece(np.array([1.0, 1.0]), np.array([True, True])) == 0.0  # 1.0 is in the last bin


def test_calibration_benchmark_reports_each_thresholds_share_and_accuracy(standin: Path):
    out = run_quick("calibration.py", standin)
    cells = r"((?: \d+% / [\d.–]+ \|){3})"
    rows = re.findall(
        rf"^\| {STANDIN} \| ([\d,]+) \| (\w+) \| ([\d.]+) \| ([\d.]+) \|{cells}$",
        out,
        flags=re.M,
    )
    assert [(n, model) for n, model, *_ in rows] == [
        ("200", "LogisticRegression"),
        ("1,000", "LogisticRegression"),
    ], out
    for _, _, accuracy, ece, cells in rows:
        assert 0 < float(accuracy) <= 1 and 0 <= float(ece) <= 1
        pairs = [cell.split(" / ") for cell in cells.strip(" |").split(" | ")]
        shares = [int(share.rstrip("%")) for share, _ in pairs]
        assert shares == sorted(shares, reverse=True)  # a higher threshold answers fewer
        assert all(right == "–" or 0 <= float(right) <= 1 for _, right in pairs)
