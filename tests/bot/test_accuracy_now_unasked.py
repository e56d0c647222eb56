"""Accuracy now counts, and names, the questions answered before the first model (a team's
first month, finding 4).

The questions asked before any model carry no confidence and cannot calibrate the estimate,
so they are not counted; but the first report said "it needs 30 answered questions, has 0
so far" after the team had answered dozens. The line says which questions it needs and how
many answered ones it cannot use.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.learning import stopping as learning_stopping
from bot.learning.jobs import Trainer, run_retrain
from bot.sandbox import FakeSlack
from tests.bot.harness import (
    Bot,
    Item,
    has_buttons,
    item_of,
    make_settings,
    remembered_curve,
    seed,
    start_bot,
)
from tests.bot.test_learning import labeled_items
from tests.bot.test_stopping import accuracy_text, reports_posted
from tests.bot.test_ttl_with_answers import age_open_posts

ASKED = [Item(f"q{n}", f"{item.text} {n}") for n, item in enumerate(labeled_items("Q"))]
TRUTH = {f"q{n}": item.label for n, item in enumerate(labeled_items("Q"))}


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(learning_stopping, "_curve", remembered_curve)
    # imported labels (no question) and items for people, with no model yet
    seed(tmp_path / "hitl.db", labeled_items("A") + labeled_items("B") + ASKED)
    settings = make_settings(
        fake_slack, tmp_path, labels=("billing", "bug"), max_open=1, audit_rate=0.0, threshold=1.0
    )
    async for running in start_bot(fake_slack, settings):
        yield running


async def answer(bot: Bot, n: int) -> None:
    """``n`` questions answered with signed clicks (the first before any model)."""
    answered: set[str] = set()
    while len(answered) < n:
        await bot.dispatcher.fill()
        await bot.settled()
        open_ = [m for m in bot.posted() if has_buttons(m) and item_of(m) not in answered]
        assert open_, "no question posted"
        for message in open_:
            item = item_of(message)
            response = await bot.action(bot.button_payload(message, "U0ANA", TRUTH[item]))
            assert response.status == 200
            answered.add(item)
        await bot.settled()
        await Trainer.of(bot.rt).settled()  # the working model the answers start, if any


async def test_the_line_names_the_questions_answered_before_the_first_model(bot: Bot):
    await answer(bot, 8)
    # the first answered before any model (no confidence); a working model asked the rest
    [(before,)] = bot.store.db.execute(
        "SELECT count(*) FROM posts WHERE model_version IS NULL AND confidence IS NULL"
    )
    asked = len(bot.store.asked_answers(100)[0])
    assert before > 0 and before + asked == 8
    await run_retrain(bot.rt, "cli")
    line = (
        "*Accuracy now:* not estimated: it needs 30 questions a model asked answered, has"
        f" {asked} so far (the {before} answered before the first model cannot calibrate it)"
    )
    [report] = reports_posted(bot)
    assert line in report
    assert line in await accuracy_text(bot)


async def test_a_question_asked_again_before_its_answer_counts_once(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Each question answered was first left past HITL_QUESTION_TTL, taken back and asked
    again: one item, two posts, one answer. The count was of posts (10 for 5)."""
    monkeypatch.setattr(learning_stopping, "_curve", remembered_curve)
    seed(tmp_path / "hitl.db", labeled_items("A") + labeled_items("B") + ASKED)
    settings = make_settings(
        fake_slack, tmp_path, labels=("billing", "bug"), max_open=1, audit_rate=0.0,
        threshold=1.0, refresh_every=0,
    )  # fmt: skip
    async for bot in start_bot(fake_slack, settings):
        answered: set[str] = set()
        while len(answered) < 5:
            await bot.dispatcher.fill()
            await bot.settled()
            [message] = [m for m in bot.posted() if has_buttons(m) and item_of(m) not in answered]
            item = item_of(message)
            if (
                bot.store.db.execute(
                    "SELECT 1 FROM posts WHERE item_id = ? LIMIT 1 OFFSET 1", [item]
                ).fetchone()
                is None
            ):
                age_open_posts(bot, 100)  # nobody answered: taken back and asked again
                continue
            response = await bot.action(bot.button_payload(message, "U0ANA", TRUTH[item]))
            assert response.status == 200
            answered.add(item)
            await bot.settled()
        [(posts,)] = bot.store.db.execute("SELECT count(*) FROM posts WHERE model_version IS NULL")
        assert posts >= 10  # each answered item was asked twice
        await run_retrain(bot.rt, "cli")
        [report] = reports_posted(bot)
        assert "(the 5 answered before the first model cannot calibrate it)" in report
