"""``hitl_items{status="gold"}`` is always reported (0 when no gold question waits), and the
gold questions held back while their gold label is retired are counted apart, as `hitl stats`
counts them.

The series vanished from /metrics once the last gold question was asked or deleted (every
other status reads 0), so an alert on the gold backlog went stale; and it counted the held-back
questions that `hitl stats` shows apart ("1 waiting · 3 gold questions held back" beside
``new 1, gold 3``). Through the real server (/metrics, signed `/hitl stats`) and the real CLI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from tests.bot.harness import Bot
from tests.bot.test_api import start_api

LABELS = ("billing", "bug", "account")
ITEMS = [
    {"id": "b1", "text": "I was charged twice", "label": "billing"},
    {"id": "g1", "text": "The app crashes on start", "label": "bug"},
    {"id": "a1", "text": "Please delete my account", "label": "account"},
    {"id": "u1", "text": "How do I export my data?"},
]
GOLD = [
    {"id": "G1", "text": "gold: refund me please", "label": "billing"},
    {"id": "G2", "text": "gold: it crashes on save", "label": "bug"},
]


def hitl(db: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")
    assert result.exit_code == 0, result.output
    return result.output


def write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


async def metrics(bot: Bot) -> dict[str, float]:
    text = await (await bot.http.get("/metrics")).text()
    return {
        status: float(value)
        for status, value in re.findall(r'^hitl_items\{status="(\w+)"\} (\S+)$', text, re.M)
    }


async def stats_line(bot: Bot) -> str:
    response = await bot.command("stats", "U0ADMIN")
    assert response.status == 200
    body = await response.text()
    text = json.loads(body)["text"] if body.startswith("{") else body
    return next(line for line in text.splitlines() if "Items:" in line).replace("*", "")


async def test_gold_metrics_read_zero_and_count_held_back_gold_apart_as_stats_does(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = tmp_path / "hitl.db"
    hitl(db, "import", write(tmp_path / "items.jsonl", ITEMS))
    hitl(db, "import", "--gold", write(tmp_path / "gold.jsonl", GOLD))
    async for bot in start_api(fake_slack, tmp_path, labels=LABELS):
        counts = await metrics(bot)
        assert (counts["gold"], counts["gold_held_back"]) == (2.0, 0.0)
        assert sum(counts.values()) == 6

        hitl(db, "labels", "add", "how_to")  # a set of three once billing goes
        hitl(db, "labels", "retire", "billing")
        line = await stats_line(bot)
        assert line.startswith(
            "Items: 2 waiting (1 of them gold questions) · 1 gold question held back"
        ), line
        counts = await metrics(bot)
        assert (counts["gold"], counts["gold_held_back"]) == (1.0, 1.0)
        # new + queued + gold is the waiting that /hitl stats shows
        assert counts["new"] + counts["queued"] + counts["gold"] == 2
        assert sum(counts.values()) == 6

        # the label back: its gold question waits again
        hitl(db, "labels", "add", "billing")
        counts = await metrics(bot)
        assert (counts["gold"], counts["gold_held_back"]) == (2.0, 0.0)

        # no gold question left: the series reads 0, it does not vanish
        hitl(db, "delete", "G1", "G2", "--yes")
        counts = await metrics(bot)
        assert (counts["gold"], counts["gold_held_back"]) == (0.0, 0.0)
        assert sum(counts.values()) == 4
