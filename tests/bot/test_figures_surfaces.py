"""One figure on two surfaces agrees (outside test of the figures each surface shows): what
`hitl export` says of a decided item's answers against the label it gives the item."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from tests.bot.harness import Item, item_of, make_settings, seed, start_bot


def export(db: Path) -> dict[str, dict]:
    """`hitl export`, as a terminal runs it beside the server: each row by its id."""
    result = CliRunner().invoke(cli, ["--db", str(db), "export"], prog_name="hitl")
    assert result.exit_code == 0, result.output
    return {row["id"]: row for row in map(json.loads, result.output.splitlines())}


async def test_export_gives_the_answers_that_decided_an_item_under_the_label_set_in_force(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Ana answers `billing`, Raj `bug`; then an admin renames `billing` to `payments` and
    merges `bug` into `account`. Every surface counts the old answers for the new labels (the
    tally, agreement, /hitl review's votes), and `hitl export` gave each item its new label,
    but its `answers` still said `billing` and `bug`: a row whose one vote was for a label
    the set no longer has, read back by `hitl import` as such."""
    db = tmp_path / "hitl.db"
    seed(db, [Item("i1", "refund my invoice"), Item("i2", "the app crashes")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=2)):
        assert await bot.dispatcher.fill() == 2
        await bot.settled()
        asked = {item_of(message): message for message in bot.posted()}
        for item, user, label in (("i1", "U0ANA", "billing"), ("i2", "U0RAJ", "bug")):
            assert (await bot.action(bot.select_payload(asked[item], user, label))).status == 200
            await bot.settled()
        for change in ("rename billing payments", "merge bug account"):
            assert (await bot.command(f"labels {change}", "U0ADMIN")).status == 200
            await bot.settled()

        rows = await asyncio.to_thread(export, db)
        said = {
            item: (row["label"], row["annotators"], [a["label"] for a in row["answers"]])
            for item, row in rows.items()
        }
        assert said == {
            "i1": ("payments", ["U0ANA"], ["payments"]),  # was ["billing"]
            "i2": ("account", ["U0RAJ"], ["account"]),  # was ["bug"]
        }
