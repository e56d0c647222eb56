"""The counts people read (`hitl stats`, `/hitl stats`, ``/metrics``) agree with the producer
API and `hitl export` once a label is retired.

After `/hitl labels retire billing` the items decided billing left training and `hitl export`,
and ``GET /api/items/<id>`` said ``needs_review`` for them, but `/hitl stats`, `hitl stats` and
``hitl_items{status="resolved"}`` still counted them resolved: 6 resolved where the export had 3
items. They are counted apart now, as waiting in /hitl review for a label in force
(``Store.count_items_shown``), and counted resolved again once given a label in force or once
the label is added back. All through the real server (signed slash commands, the API, /metrics)
and the real CLI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot
from tests.bot.test_api import AUTH, start_api
from tests.bot.test_review import decision
from tests.query_plans import query_plans

ITEMS = [
    {"id": "b1", "text": "I was charged twice", "label": "billing"},
    {"id": "b2", "text": "Refund the annual plan", "label": "billing"},
    {"id": "b3", "text": "My invoice is wrong", "label": "billing"},
    {"id": "g1", "text": "The app crashes on start", "label": "bug"},
    {"id": "g2", "text": "Login page is blank", "label": "bug"},
    {"id": "a1", "text": "Please delete my account", "label": "account"},
    {"id": "u1", "text": "How do I export my data?"},
    {"id": "u2", "text": "Dark mode, please"},
]
RETIRED_NOTE = "waiting in /hitl review for a label in force"


def hitl(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")


def imported(tmp_path: Path, rows: list[dict] | None = None) -> Path:
    """``rows`` (``ITEMS`` when None) imported with `hitl import` into a new hitl.db."""
    db = tmp_path / "hitl.db"
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in (ITEMS if rows is None else rows)))
    result = hitl(db, "import", str(path))
    assert result.exit_code == 0, result.output
    return db


def items_line(text: str) -> str:
    """The items line of `/hitl stats` or `hitl stats`, without Slack's bold."""
    return next(line for line in text.splitlines() if "Items:" in line).replace("*", "")


def cli_stats(db: Path) -> str:
    result = hitl(db, "stats", "--quiet")
    assert result.exit_code == 0, result.output
    return items_line(result.stdout)


def exported(db: Path) -> list[str]:
    """The ids of the items `hitl export` writes (JSONL to stdout)."""
    result = hitl(db, "export")
    assert result.exit_code == 0, result.output
    return sorted(json.loads(line)["id"] for line in result.stdout.splitlines())


async def reply(bot: Bot, text: str, user: str = "U0ADMIN") -> str:
    response = await bot.command(text, user)
    assert response.status == 200
    body = await response.text()
    return json.loads(body)["text"] if body.startswith("{") else body


async def slack_stats(bot: Bot) -> str:
    return items_line(await reply(bot, "stats"))


async def metrics(bot: Bot) -> dict[str, float]:
    text = await (await bot.http.get("/metrics")).text()
    return {
        status: float(value)
        for status, value in re.findall(r'^hitl_items\{status="(\w+)"\} (\S+)$', text, re.M)
    }


async def api_status(bot: Bot, item_id: str) -> str:
    response = await bot.http.get(f"/api/items/{item_id}", headers=AUTH)
    assert response.status == 200
    return (await response.json())["status"]


def line(resolved: int, retired: int) -> str:
    """The items line with nothing posted, decided by the model or skipped (2 waiting)."""
    middle = f"{resolved} resolved"
    if retired:
        their = "its" if retired == 1 else "their"
        middle += f" · {retired} {RETIRED_NOTE} ({their} label was retired)"
    return f"Items: 2 waiting · 0 posted · {middle} · 0 decided by the model · 0 skipped"


async def test_after_a_retire_in_slack_stats_and_metrics_count_its_items_as_the_api_does(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = imported(tmp_path)
    async for bot in start_api(fake_slack, tmp_path):
        assert await slack_stats(bot) == line(6, 0)
        assert (await reply(bot, "labels retire billing")).startswith("Done. Labels now: ")

        # what the producer API and the export say of billing's items
        assert [await api_status(bot, i) for i in ("b1", "g1")] == ["needs_review", "resolved"]
        assert exported(db) == ["a1", "g1", "g2"]

        # the numbers people read agree: 3 resolved, the 3 billing items apart
        assert await slack_stats(bot) == line(3, 3)
        assert cli_stats(db) == line(3, 3)
        counts = await metrics(bot)
        assert (counts["resolved"], counts["label_retired"]) == (3.0, 3.0)
        assert sum(counts.values()) == len(ITEMS)  # every item still counted once

        # the internal count keeps its meaning: the items' status is still resolved
        assert bot.store.count_items()["resolved"] == 6


async def test_a_retired_labels_item_given_a_label_in_force_or_the_label_added_back_counts_resolved(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = imported(tmp_path)
    async for bot in start_api(fake_slack, tmp_path):
        assert (await reply(bot, "labels retire billing")).startswith("Done. Labels now: ")
        assert await slack_stats(bot) == line(3, 3)

        # an admin gives the first of them a label in force in /hitl review
        assert (await bot.command("review", "U0ADMIN")).status == 200
        view = (await bot.fake.next_call("views.open")).reply["view"]
        assert (await bot.action(decision(view, "label:account"))).status == 200
        await bot.settled()
        shown = {i: await api_status(bot, i) for i in ("b1", "b2", "b3")}
        [decided] = [i for i, status in shown.items() if status == "resolved"]
        assert len(exported(db)) == 4
        assert await slack_stats(bot) == line(4, 2)
        assert cli_stats(db) == line(4, 2)
        counts = await metrics(bot)
        assert (counts["resolved"], counts["label_retired"]) == (4.0, 2.0)

        # the label added back: its items are resolved again everywhere
        assert (await reply(bot, "labels add billing")).startswith("Done. Labels now: ")
        waiting = [i for i in ("b1", "b2", "b3") if i != decided]
        assert [await api_status(bot, i) for i in waiting] == ["resolved", "resolved"]
        assert len(exported(db)) == 6
        assert await slack_stats(bot) == line(6, 0)
        assert cli_stats(db) == line(6, 0)
        counts = await metrics(bot)
        assert (counts["resolved"], counts["label_retired"]) == (6.0, 0.0)


def test_after_hitl_labels_retire_hitl_stats_counts_what_hitl_export_keeps(tmp_path: Path):
    db = imported(tmp_path)
    assert cli_stats(db) == line(6, 0)
    retired = hitl(db, "labels", "retire", "bug")
    assert retired.exit_code == 0, retired.output
    assert exported(db) == ["a1", "b1", "b2", "b3"]
    assert cli_stats(db) == line(4, 2)
    # one item of them: "its"
    assert hitl(db, "labels", "set", "g1", "billing").exit_code == 0
    assert cli_stats(db) == line(5, 1)
    assert len(exported(db)) == 5


def test_the_counts_shown_read_the_kept_counts_not_the_items_or_labels(tmp_path: Path):
    """Flat in the item count (`/metrics` is scraped every few seconds, at a million items):
    the per-status and per-label counts the triggers keep and the label set's few rows."""
    db = imported(tmp_path)
    assert hitl(db, "labels", "retire", "bug").exit_code == 0
    with Store.open(db) as store:
        plans = query_plans(store, store.count_items_shown)
        tables = {t for sql, _ in plans for t in re.findall(r"(?:FROM|JOIN)\s+(\w+)", sql)}
        # a handful of rows each: per status, per label, the label set
        assert tables == {"item_counts", "label_counts", "label_set"}, plans
        assert store.count_items_shown()["label_retired"] == 2
