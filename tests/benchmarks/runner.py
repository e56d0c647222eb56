"""Running a benchmark script as a user would: ``python benchmarks/<script> --quick``."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

from tests.standin_data import STANDIN

ROOT = Path(__file__).resolve().parents[2]
DATA_SCRIPTS = (
    "annotators.py",
    "bot_load.py",
    "fit_threads.py",
    "label_efficiency.py",
    "model_comparison.py",
    "model_footprint.py",
    "predict_growth.py",
    "predict_throughput.py",
    "refresh.py",
    "scoring_throughput.py",
    "simulated_loop.py",
    "stopping.py",
    "throughput.py",
)


def run(script: str, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
        env=env,
    )


def run_quick(script: str, data: Path | None = None) -> str:
    extra = ["--data", str(data), "--datasets", STANDIN] if data is not None else []
    result = run(script, "--quick", *extra)
    assert result.returncode == 0, result.stderr + result.stdout[-3000:]  # a verdict goes to stdout
    return result.stdout


def benchmark_module(script: str) -> dict:
    """The globals of a benchmark script, loaded as ``python benchmarks/<script>`` loads it
    (its folder on the import path), without running its ``main``."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return runpy.run_path(str(ROOT / "benchmarks" / script), run_name="benchmark")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def benchmark_main(script: str):
    """The ``main`` of a benchmark script (see ``benchmark_module``)."""
    return benchmark_module(script)["main"]
