"""Running a benchmark script as a user would: ``python benchmarks/<script> --quick``."""

from __future__ import annotations

import contextlib
import gc
import io
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import warnings
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


# The warning filters of a fresh interpreter (Python 3.11's, no -W or PYTHONWARNINGS), first
# listed first: a script run here sees what it would see as its own process, not the suite's
# "error" (pyproject.toml), which would turn a fit's ConvergenceWarning into a failure.
FRESH_WARNING_FILTERS = (
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, None),
    ("ignore", PendingDeprecationWarning, None),
    ("ignore", ImportWarning, None),
    ("ignore", ResourceWarning, None),
)


def run_quick_here(script: str, data: Path | None = None, *args: str) -> str:
    """``run_quick`` in this process, for a quick run whose test reads only its report (no
    exit code, stream or environment of its own): the script runs as ``python
    benchmarks/<script> --quick`` runs it (as ``__main__``, its folder first on the import
    path, from the repository's folder, its temporary files on the RAM disk), and its stdout is
    returned. It saves the interpreter's start and a second import of scikit-learn (about a
    second of CPU a run). Its benchmark modules are its own, imported afresh and dropped after
    (as a process's would be), and the import path, the environment, the warning filters and
    the temporary folder are given back as they were."""
    folder = str(ROOT / "benchmarks")

    def ours() -> dict:  # the benchmark modules loaded (the scripts, _common)
        return {
            name: module
            for name, module in sys.modules.items()
            if (getattr(module, "__file__", None) or "").startswith(folder + os.sep)
        }

    before = ours()
    for name in before:
        del sys.modules[name]
    argv, path, environ, tempdir = sys.argv, list(sys.path), dict(os.environ), tempfile.tempdir
    extra = ["--data", str(data), "--datasets", STANDIN] if data is not None else []
    out = io.StringIO()
    try:
        sys.argv = [str(ROOT / "benchmarks" / script), "--quick", *extra, *args]
        sys.path.insert(0, folder)
        if ram_disk_usable():
            tempfile.tempdir = str(RAM_DISK)
        with (
            warnings.catch_warnings(),
            contextlib.chdir(ROOT),
            contextlib.redirect_stdout(out),
        ):
            warnings.resetwarnings()
            for action, category, module in reversed(FRESH_WARNING_FILTERS):
                warnings.filterwarnings(action, category=category, module=module or "")
            try:
                runpy.run_path(sys.argv[0], run_name="__main__")
            except SystemExit as stopped:
                assert stopped.code in (0, None), f"{stopped.code}\n{out.getvalue()[-3000:]}"
            gc.collect()  # what it left open is closed under its own filters
    finally:
        sys.argv, sys.path[:], tempfile.tempdir = argv, path, tempdir
        os.environ.clear()
        os.environ.update(environ)
        for name in ours():
            del sys.modules[name]
        sys.modules.update(before)
    return out.getvalue()


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
