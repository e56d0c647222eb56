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
