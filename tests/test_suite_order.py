"""The suite's own order: the slow folders' files reach the xdist workers first; and its
processes' BLAS threads: one each."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

from tests.conftest import TESTS, pytest_collection_modifyitems

ROOT = TESTS.parent


def test_slow_folders_come_first_and_the_order_within_a_folder_stays():
    paths = [
        "model/test_registry.py",
        "bot/test_api.py",
        "test_docs.py",
        "benchmarks/test_throughput.py",
        "bot/test_answers.py",
        "reliability/test_crash.py",
        "e2e/test_sandbox_browser.py",
        "benchmarks/test_bot_load.py",
    ]
    items = [SimpleNamespace(path=TESTS / p) for p in paths]
    pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [str(Path(item.path).relative_to(TESTS)) for item in items] == [
        "benchmarks/test_throughput.py",
        "benchmarks/test_bot_load.py",
        "reliability/test_crash.py",
        "e2e/test_sandbox_browser.py",
        "bot/test_api.py",
        "bot/test_answers.py",
        "model/test_registry.py",
        "test_docs.py",
    ]


def test_xdist_hands_out_files_in_that_order():
    """xdist's default (--loadscope-reorder) sorts files by their number of tests, most first:
    the one-test benchmark files, 30-50 s each, went last and one worker ran them alone."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    addopts = shlex.split(options["ini_options"]["addopts"])
    assert "--dist" in addopts and addopts[addopts.index("--dist") + 1] == "loadfile"
    assert "--no-loadscope-reorder" in addopts


def test_each_worker_and_its_subprocesses_use_one_blas_thread():
    """tests/conftest.py: OpenBLAS threads fighting the other workers for the cores made every
    small fit several times slower."""
    import numpy  # noqa: F401 - the BLAS libraries loaded, as every test that fits loads them
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    from tests.conftest import BLAS_THREADS_GIVEN

    for name, given in BLAS_THREADS_GIVEN.items():  # a developer's own count is kept
        assert os.environ[name] == (given or "1")
    expected = int(BLAS_THREADS_GIVEN["OPENBLAS_NUM_THREADS"] or 1)  # numpy's BLAS: OpenBLAS
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == expected for pool in blas), blas
    child = subprocess.run(  # a subprocess inherits it: `hitl serve`, a benchmark script
        [sys.executable, "-c", PRINT_BLAS_THREADS], capture_output=True, text=True, check=True
    )
    assert child.stdout.split() == [str(expected)] * len(blas), child.stdout


PRINT_BLAS_THREADS = """import numpy, scipy.linalg, threadpoolctl
for pool in threadpoolctl.threadpool_info():
    if pool["user_api"] == "blas":
        print(pool["num_threads"])
"""


def test_auto_starts_a_worker_per_core_and_one_more_capped_by_maxprocesses():
    from tests.conftest import pytest_xdist_auto_num_workers

    cores = len(os.sched_getaffinity(0))
    assert pytest_xdist_auto_num_workers(None) == cores + 1  # type: ignore[arg-type]
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    addopts = shlex.split(options["ini_options"]["addopts"])
    assert "-n" in addopts and addopts[addopts.index("-n") + 1] == "auto"
    assert "--maxprocesses=4" in addopts
