"""Many people at once: votes counted exactly, an item resolved once; one retrain at a time."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bot.learning import run_retrain
from bot.sandbox import FakeSlack
from tests.bot.harness import Item, make_settings, seed, start_bot
from tests.bot.test_learning import labeled_items
from tests.fake_slack import CHANNEL


async def test_twenty_people_answer_the_same_item_at_once(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("hot", "card charged twice and the app crashed")])
    settings = make_settings(fake_slack, tmp_path, votes=3, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        message = bot.posted()[0]
        users = [f"U{n:03d}" for n in range(20)]
        labels = ["billing" if n % 3 else "bug" for n in range(20)]
        payloads = [bot.button_payload(message, u, lb) for u, lb in zip(users, labels, strict=True)]
        responses = await asyncio.gather(*(bot.action(p) for p in payloads))
        assert [r.status for r in responses] == [200] * 20
        await bot.settled()

        answers = list(bot.store.iter_answers())
        assert len(answers) == 20 and {a["user_id"] for a in answers} == set(users)
        [resolved] = list(bot.store.iter_resolved())  # resolved once
        tally = bot.store.tally("hot")
        decided = resolved["annotators"]
        assert resolved["votes"] == len(decided) == 2  # a majority of 3
        assert all(tally.votes[resolved["label"]][i] == decided[i] for i in range(2))
        shown = json.dumps(bot.fake.message(CHANNEL, message["ts"]), ensure_ascii=False)
        winners = " · ".join(
            f"*{label}* {len(voters)}"
            for label, voters in _at_resolution(answers, resolved["resolved_at"]).items()
        )
        assert f"✅ *{resolved['label']}* by vote ({winners}" in shown


def _at_resolution(answers: list[dict], resolved_at: str) -> dict[str, list[str]]:
    """The tally as it stood when the item was decided (later answers are history only)."""
    votes: dict[str, list[str]] = {}
    for answer in answers:
        if answer["created_at"] <= resolved_at and answer["label"]:
            votes.setdefault(answer["label"], []).append(answer["user_id"])
    return votes


async def test_two_retrains_started_at_once_one_runs(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", labeled_items())
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))
    async for bot in start_bot(fake_slack, settings):
        first, second = await asyncio.gather(
            run_retrain(bot.rt, "<@U0ADMIN>"), run_retrain(bot.rt, "cli")
        )
        assert sorted([first.status, second.status]) == ["busy", "promoted"]
        assert len(bot.rt.registry.versions()) == 1
        assert [r["status"] for r in bot.store.runs("retrain")] == ["promoted"]
