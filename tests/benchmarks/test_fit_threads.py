"""fit_threads.py: the product's one-thread fits beside BLAS's default, in child processes."""

from __future__ import annotations

import re
from pathlib import Path

from tests.benchmarks.runner import run_quick
from tests.standin_data import STANDIN


def test_fit_threads_benchmark_fits_both_ways_alone_and_in_pairs_with_the_same_model(
    standin: Path,
):
    out = run_quick("fit_threads.py", standin)
    rows = re.findall(
        rf"^\| {STANDIN} \| 60 \| (\d+) \| (alone|pair) \|((?: [\d.]+ \|){{6}}) ([\d.e+-]+) \|$",
        out,
        flags=re.M,
    )
    assert [setting for _, setting, _, _ in rows] == ["alone", "pair"], out
    for _, _, figures, difference in rows:
        wall_default, wall_one, cpu_default, cpu_one, wall_ratio, cpu_ratio = map(
            float, figures.strip(" |").split(" | ")
        )
        assert min(wall_default, wall_one, cpu_default, cpu_one, wall_ratio, cpu_ratio) > 0
        # the ratio of the unrounded medians, next to the rounded ones
        assert abs(wall_default / wall_one - wall_ratio) <= 0.02 * wall_ratio + 0.01
        assert float(difference) < 1e-3  # one thread or several: the same model (to rounding)
