"""Shared fixtures. No test ever sees a developer's real Slack tokens or settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.store import Store


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("SLACK_", "HITL_")):
            monkeypatch.delenv(name)
    # A hitl.toml in the developer's working folder must not leak into tests either.
    monkeypatch.chdir(tmp_path)


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
