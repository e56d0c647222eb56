"""aggregation_speed.py: the product's Dawid–Skene against the loops it replaced, same answers."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

from tests.benchmarks.runner import ROOT, benchmark_module, run_quick


def test_the_benchmark_times_both_on_each_size_and_they_agree():
    out = run_quick("aggregation_speed.py")
    rows = re.findall(
        r"^\| 300 \| 600 \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)× \|$", out, re.M
    )
    assert [labels for labels, *_ in rows] == ["6", "30"], out
    assert all(float(before) > 0 and float(now) > 0 for _, before, now, _ in rows)
    assert "the product's defaults on 300 items (600 votes, 30 labels):" in out
    assert "converged True" in out
    stopping = re.search(
        r"^without the likelihood rule \(gain_tol=0\): [\d.]+ s, (\d+) iterations, converged"
        r" (True|False); (\d+) of 300 labels differ; right against the truth: ([\d.]+) with it,"
        r" ([\d.]+) without$",
        out,
        re.M,
    )
    assert stopping, out
    assert int(stopping[3]) <= 300 and 0 < float(stopping[4]) <= 1 and 0 < float(stopping[5]) <= 1


def test_the_baseline_is_the_same_model_as_the_product():
    bench = benchmark_module("aggregation_speed.py")
    tally, gold = bench["votes"](120, 5, people=6, per_item=3, seed=2)
    before = bench["dawid_skene_before"](tally, gold=gold)
    now = bench["dawid_skene"](tally, gold=gold, gain_tol=0)  # the baseline has no such rule
    assert np.allclose(before, now.posteriors, atol=1e-9)


def test_no_timed_run_pays_for_an_import():
    """The product's first call imports scipy.sparse (0.15-0.4 s): timed, it made the first
    row's "now" read 8.5x where the code is 10-20x faster (outside audit of the benchmarks)."""
    code = (
        "import sys, runpy\n"
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
        f"bench = runpy.run_path({str(ROOT / 'benchmarks' / 'aggregation_speed.py')!r},"
        " run_name='benchmark')\n"
        "main = bench['main']\n"
        "timed = main.__globals__['timed']\n"
        "seen = []\n"
        "def watched(run, repeat=1):\n"
        "    seen.append('scipy.sparse' in sys.modules)\n"
        "    return timed(run, repeat)\n"
        "main.__globals__['timed'] = watched\n"
        "main(['--quick'])\n"
        "print('IMPORTED-BEFORE', all(seen), len(seen))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert "IMPORTED-BEFORE True" in done.stdout, done.stdout[-2000:]
