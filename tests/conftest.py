"""Shared fixtures. No test ever sees a developer's real Slack tokens or settings."""

from __future__ import annotations

import gc
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# One BLAS thread per process, set before numpy is first imported (this module's imports below
# bring it in) and inherited by every subprocess the tests start (the benchmark scripts, `hitl
# serve` and its fit and scoring children). The product's fits limit themselves
# (model.classifier.FIT_BLAS_THREADS); this covers the rest of the suite's BLAS work, whose
# spare OpenBLAS threads would spin for a core that another xdist worker holds (RESULTS "Fit
# threads": 1.8-8.9x slower beside another busy process). A developer's own count is kept.
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
BLAS_THREADS_GIVEN = {name: os.environ.get(name) for name in BLAS_THREADS}
for _name in BLAS_THREADS:
    os.environ.setdefault(_name, "1")

# Bytecode caches are written, also where PYTHONDONTWRITEBYTECODE is set (as in some CI
# images): the suite starts over a hundred interpreters (`hitl` commands, servers, benchmark
# scripts) that would each compile the project's modules anew, and each xdist worker would
# rewrite the test modules' asserts anew (pytest keeps them in __pycache__ too).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

import pytest  # noqa: E402

from bot.store import Store  # noqa: E402
from tests.ramdisk import RAM_DISK, ram_disk_usable  # noqa: E402


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict:
    """Every async test runs on the event loop `hitl serve` runs on, its fast lane included
    (``bot.eventloop``): on asyncio's own, a defect of the lane's ordering went unseen by the
    whole in-process suite."""
    from bot.eventloop import FastLaneEventLoop

    return {"fast_lane": FastLaneEventLoop}


@pytest.fixture
def tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh folder on a RAM disk (``/dev/shm``) when the machine has one with room, else
    one from ``tmp_path_factory``. The store commits at ``synchronous = FULL``: on a disk every
    commit waits for an fsync (1-2 ms here, more on a CI runner's network disk), and a test that
    posts and answers hundreds of questions spends most of its time there. On a RAM disk the
    same commits, the same SQL and the same files cost nothing. No test here is about
    durability against a power cut (a killed process's writes survive on a RAM disk as on any
    other: they are in the kernel's page cache either way), so every test gets its folder there
    (pytest's own ``tmp_path``, overridden)."""
    if not ram_disk_usable():
        yield tmp_path_factory.mktemp("ram")
        return
    folder = Path(tempfile.mkdtemp(prefix="hitl-test-", dir=RAM_DISK))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if sys.version_info >= (3, 13):

    @pytest.fixture(autouse=True)
    def collect_garbage() -> Iterator[None]:
        """From Python 3.13 an SQLite connection that is garbage-collected unclosed warns
        (``ResourceWarning: unclosed database``), and ``filterwarnings = error`` fails the test
        that is running when the collector happens to run: often another test than the one that
        left it open. A collection at each test's end (autouse: set up before the test's own
        fixtures, so torn down after them) fails the test that left it, at its teardown;
        ``python -X tracemalloc=10 -m pytest`` then names the line that opened it. Before 3.13
        nothing warns, and the fixture is not defined at all: no cost there."""
        yield
        gc.collect()


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection imported (the project, numpy, scikit-learn, the test modules) is moved
    out of the collector's sight (``gc.freeze``, as ``hitl serve`` does at start): each
    collection then looks at what was made since, not at every object of the process. On 3.13,
    with a collection at each test's end (above), 310 s of collections on one worker of a full
    run (2026-12-05); on 3.11, the collector's automatic runs took 7 % of the CPU of four
    in-process test files, 4.5 % with the freeze (2026-12-06)."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("SLACK_", "HITL_")):
            monkeypatch.delenv(name)
    # A hitl.toml in the developer's working folder must not leak into tests either.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket listens on: for a start whose refusal must not
    depend on what else holds a port (the default 3000 may be any program's)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "hitl.db"


@pytest.fixture
def store(db_path: Path):
    with Store.open(db_path) as opened:
        yield opened


@pytest.fixture
def memory_store():
    with Store.memory() as opened:
        yield opened


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: a worker per core and one more (``--maxprocesses`` caps it). The tests
    wait for a third of their time (servers, the fork server and Chromium starting, the
    benchmarks' children), so a third worker keeps 2 cores busy: on a quiet 2-core machine
    the suite took 251 s with 2 workers and 220 s with 3 (2026-12-01)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) + 1
    return (os.cpu_count() or 1) + 1


# The folders whose files take longest, first: with `--dist loadfile` pytest-xdist hands the
# files to its workers in collection order, so the long ones (benchmarks' --quick runs, the
# crash and fault tests, the browser) start early and the many short unit tests under bot/ and
# model/ fill the workers' last minutes, instead of one worker running a 30 s file alone.
SLOW_FOLDERS_FIRST = ("benchmarks", "reliability", "e2e", "bot")
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        parts = item.path.relative_to(TESTS).parts
        folder = parts[0] if len(parts) > 1 else ""
        if folder in SLOW_FOLDERS_FIRST:
            return SLOW_FOLDERS_FIRST.index(folder)
        return len(SLOW_FOLDERS_FIRST)

    items.sort(key=rank)  # stable: the order within a folder stays
