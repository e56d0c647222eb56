"""model_footprint.py: model files, loads and fits, before and now."""

from __future__ import annotations

import re
from pathlib import Path

from tests.benchmarks.runner import run_quick


def test_model_footprint_benchmark_compares_before_and_now_side_by_side(standin: Path):
    out = run_quick("model_footprint.py", standin)
    for n, estimator in (("60", "LogisticRegression"), ("2,001", "SGDClassifier")):
        assert re.search(rf"^{n} labels, 6 classes, {estimator} \(", out, flags=re.M), out
    rows = re.findall(r"^\| ([a-z][^|]+?) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert [r[0] for r in rows[:8]] == [
        "retrain s (CV + fit + save)",
        "retrain peak RSS MiB",
        "model file MiB",
        "load s",
        "load peak RSS +MiB",
        "predict one text ms (median)",
        "test accuracy",
        "test macro-F1",
    ]
    assert len(rows) == 16
    assert out.count("same probabilities after load as when fitted: True") == 2
    assert "coefficients Fortran-ordered: True (before: False)" in out  # the SGD model
