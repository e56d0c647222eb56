"""The import arrow: bot/ uses model/, never the reverse; only bot/store/ speaks SQL."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_store_imports_sqlite():
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("bot", "model")
        for path in (ROOT / package).rglob("*.py")
        if {"sqlite_utils", "sqlite3"} & imported_modules(path)
        and ROOT / "bot" / "store" not in path.parents
    ]
    assert offenders == []


def test_model_knows_nothing_of_bot_slack_or_sqlite():
    banned = {"bot", "slack_bolt", "slack_sdk", "sqlite_utils", "sqlite3", "aiohttp"}
    offenders = {
        str(path.relative_to(ROOT)): sorted(banned & imported_modules(path))
        for path in (ROOT / "model").rglob("*.py")
        if banned & imported_modules(path)
    }
    assert offenders == {}
