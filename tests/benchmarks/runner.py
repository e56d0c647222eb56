"""Running a benchmark script as a user would: ``python benchmarks/<script> --quick``."""

from __future__ import annotations

import contextlib
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

from tests.ramdisk import RAM_DISK, ram_disk_usable
from tests.standin_data import STANDIN

ROOT = Path(__file__).resolve().parents[2]
DATA_SCRIPTS = (
    "accuracy_now_rules.py",
    "annotators.py",
    "bot_load.py",
    "calibration.py",
    "fit_threads.py",
    "label_efficiency.py",
    "model_comparison.py",
    "model_footprint.py",
    "predict_growth.py",
    "predict_throughput.py",
    "refresh.py",
    "refresh_backlog.py",
    "scoring_throughput.py",
    "simulated_loop.py",
    "stopping.py",
    "throughput.py",
    "vocabulary_growth.py",
)


TIMEOUT_S = 300  # a quick run takes under a minute alone; past this it waits on something


def run(script: str, *args: str, env: dict[str, str] | None = None):
    """Run the script in a session of its own. Its output is unbuffered, so that a run that has
    to be stopped at ``TIMEOUT_S`` still shows how far it came; it is then killed with every
    process it started (the servers, their children), which would otherwise run on."""
    env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
    if ram_disk_usable():  # its databases and model files (tempfile's folder) on the RAM disk
        env.setdefault("TMPDIR", str(RAM_DISK))
    command = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise AssertionError(
                f"{script} {' '.join(args)} still ran after {TIMEOUT_S} s; it printed:\n"
                f"{stdout[-6000:]}\n--- stderr ---\n{stderr[-6000:]}"
            ) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


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
