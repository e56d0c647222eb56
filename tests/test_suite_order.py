"""The suite's own order: the slow folders' files reach the xdist workers first."""

from __future__ import annotations

import shlex
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
