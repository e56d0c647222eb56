"""One figure on two surfaces agrees (outside test of the figures each surface shows): what
`hitl export` says of a decided item's answers against the label it gives the item; the
retrain report's queue against `/hitl stats`'s."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.store import Store
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


def retrain_report(db: Path) -> list[str]:
    """`hitl retrain --force`, as a terminal runs it beside the server: its report's lines."""
    env = {"HITL_LABELS": "billing,bug"}
    result = CliRunner().invoke(cli, ["--db", str(db), "retrain", "--force"], env=env)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


async def test_the_retrain_report_counts_the_items_waiting_for_people_as_hitl_stats_does(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Five items wait to be asked, two of them gold questions, and two are open in Slack.
    `/hitl stats` (and `/hitl queue`, App Home) said 5 waiting while the retrain report of
    that moment said "for people 3 → 3": it left out the gold questions, which are asked of
    people too, and no line said so."""
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        store.add_gold(
            [Item("g1", "refund the gold charge", "billing"), Item("g2", "gold crash", "bug")]
        )
    seed(
        db,
        [Item(f"b{n}", f"refund invoice card payment {n}", "billing") for n in range(6)]
        + [Item(f"c{n}", f"app crashes error page {n}", "bug") for n in range(6)]
        + [Item(f"u{n}", f"refund crash text {n}") for n in range(5)],
    )
    settings = make_settings(
        fake_slack, tmp_path, max_open=2, gold_rate=0.0, labels=("billing", "bug")
    )
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 2
        await bot.settled()
        report = await asyncio.to_thread(retrain_report, db)
        stats = (await (await bot.command("stats", "U0ADMIN")).json())["text"]
        assert "*Items:* 5 waiting (2 of them gold questions) · 2 posted" in stats
        assert report[-1] == (  # was "for people 3 → 3"
            "Queue: re-scored 3 items; waiting for people 5 → 5 (2 of them gold questions),"
            " left to the model 0 → 0"
        )
