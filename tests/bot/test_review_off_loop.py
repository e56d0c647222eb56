"""`/hitl review` counts the items waiting in review (the modal's "N waiting in review") in a
worker thread, on a connection of its own: the count reads every open review (6,377 at a
million items: 51,600 SQLite steps), and runs again after every decision. What the modal reads
on the event loop's connection is found by key, so it costs the same at 4 open reviews as at
204. Through signed requests to the real server."""

from __future__ import annotations

import json
from pathlib import Path

from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_review import decision


def steps_on_the_loop(bot: Bot) -> list[int]:
    """A counter of the SQLite VM steps the event loop's own connection runs."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    bot.store.db.conn.set_progress_handler(count, 1)
    return steps


async def review_reads(fake_slack: FakeSlack, tmp_path: Path, n: int) -> tuple[int, int, str]:
    """``n`` items in review: the VM steps on the loop's connection of `/hitl review` and of
    one decision in its modal, and what the modal said after the decision."""
    db = tmp_path / f"{n}" / "hitl.db"
    db.parent.mkdir()
    seed(db, [Item(f"r{i}", f"text {i}") for i in range(n)])
    with Store.open(db) as store:
        for i in range(n):
            store.flag_review(f"r{i}", "low_agreement")
    settings = make_settings(fake_slack, db.parent, labels=("bug", "billing"))
    async for bot in start_bot(fake_slack, settings):
        await bot.settled()
        steps = steps_on_the_loop(bot)
        trigger = f"13345224609.738474920.{n:032x}"  # a trigger of its own: one modal each
        assert (await bot.command("review", "U0ADMIN", trigger_id=trigger)).status == 200
        view = (await bot.fake.next_call("views.open")).reply["view"]
        opened, steps[0] = steps[0], 0
        assert f"{n} waiting in review" in json.dumps(view["blocks"])
        reply = await bot.action(decision(view, "label:bug"))
        decided = steps[0]
        bot.store.db.conn.set_progress_handler(None, 1)
        assert reply.status == 200
        return opened, decided, json.dumps(json.loads(await reply.text())["view"]["blocks"])
    raise AssertionError("the bot did not start")


async def test_the_review_modal_reads_the_same_on_the_loop_at_4_and_at_204_open_reviews(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The count of open reviews is read apart, and is right: 204 waiting, 203 after a
    decision. On the loop's connection, the modal's reads (the oldest open review, the item,
    its votes, by key) take the same steps at both sizes (old code: the count ran there, ~8
    steps an open review: +1,600 at 204)."""
    small = await review_reads(fake_slack, tmp_path, 4)
    large = await review_reads(fake_slack, tmp_path, 204)
    assert "3 waiting in review" in small[2] and "203 waiting in review" in large[2]
    assert large[0] - small[0] < 100, (small, large)  # `/hitl review`
    assert large[1] - small[1] < 100, (small, large)  # a decision, and the next item drawn
