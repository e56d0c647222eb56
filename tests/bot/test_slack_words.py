"""What Slack's replies say about skips, versions and ids (an outside tester's findings F7, F8,
F14 and F20): no reply sends a Slack user to a command only the terminal has; a skip is shown
as a skip, never counted as a label (the leaderboard cannot be climbed by skipping); a question
set aside by skips says what became of it; the items waiting are called "waiting" everywhere."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.blocks import Question, question_blocks
from bot.store import Store
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_slack_commands import reply
from tests.fake_slack import CHANNEL
from tests.query_plans import query_plans

TEXTS = ["refund please", "app crashes", "delete my account", "charged twice", "login fails"]


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item(f"i{n}", text) for n, text in enumerate(TEXTS)])
    settings = make_settings(fake_slack, tmp_path, max_open=3, skips_to_discard=3)
    async for running in start_bot(fake_slack, settings):
        yield running


async def ana_labels_two_and_skips_one_raj_skips_one(bot: Bot) -> None:
    assert await bot.dispatcher.fill() == 3
    first, second, third = bot.posted()
    await bot.action(bot.select_payload(first, "U0ANA", "bug"))
    await bot.action(bot.select_payload(second, "U0ANA", "billing"))
    await bot.action(bot.button_payload(third, "U0ANA", None))
    await bot.action(bot.button_payload(third, "U0RAJ", None))
    await bot.settled()


# -- F7: Slack names what Slack has -----------------------------------------------------------


async def test_rollback_in_slack_points_at_the_versions_slack_shows_not_at_hitl_models(
    bot: Bot,
):
    usage = await reply(bot, "rollback", user="U0ADMIN")
    assert usage == (
        "Usage: `/hitl rollback VERSION [--force]`, e.g. `/hitl rollback 3`; `/hitl accuracy`"
        " lists the recent versions under *Trend*."
    )
    missing = await reply(bot, "rollback 9", user="U0ADMIN")
    assert missing == (
        "Cannot roll back: model v9 does not exist (`/hitl accuracy` lists the recent versions"
        " under *Trend*)"
    )
    assert bot.store.runs("rollback") == []


async def test_review_of_an_unknown_id_says_what_the_id_is(bot: Bot):
    text = await reply(bot, "review NOPE-1", user="U0ADMIN")
    assert text == (
        "No item with id `NOPE-1`. `/hitl review ID` takes the id an item was imported with"
        " (`hitl import`'s id column) or sent to the API with; `/hitl review` alone opens the"
        " items waiting in review."
    )
    assert "hitl export" not in text


# -- F8: a skip is not a label ----------------------------------------------------------------


async def test_skips_do_not_climb_the_weeks_leaderboard(bot: Bot):
    await ana_labels_two_and_skips_one_raj_skips_one(bot)
    board = await reply(bot, "leaderboard")
    week, all_time = board.split("\n\n")
    assert week == "*This week* (labels)\n🥇 <@U0ANA> — 2 labels (1 skip)"  # Raj only skipped
    # all time too (the counts kept per person): Raj only skipped
    assert all_time == "*All time* (labels)\n🥇 <@U0ANA> — 2 labels (1 skip)"


async def test_nobody_on_the_board_until_someone_labels(bot: Bot):
    assert await bot.dispatcher.fill() == 3
    await bot.action(bot.button_payload(bot.posted()[0], "U0RAJ", None))
    await bot.settled()
    board = await reply(bot, "leaderboard")
    assert board == "No labels yet. `/hitl label` to be the first on the board!"


async def test_stats_split_the_answers_into_labels_and_skips(bot: Bot):
    await ana_labels_two_and_skips_one_raj_skips_one(bot)
    text = await reply(bot, "stats", user="U0ADMIN")
    today = "4 (2 labels, 2 skips): <@U0ANA> 2 labels + 1 skip, <@U0RAJ> 1 skip"
    assert f"*Answers today:* {today}\n*Answers this week:* {today}\n" in text


async def test_app_home_says_what_you_labeled_and_skipped(bot: Bot):
    await ana_labels_two_and_skips_one_raj_skips_one(bot)
    for user, said in [
        ("U0ANA", "This week you labeled *2 items* and skipped 1; *2 items* of all time."),
        ("U0RAJ", "This week you labeled *0 items* and skipped 1; *0 items* of all time."),
    ]:
        assert (await bot.event(signing.app_home_opened_event(user))).status == 200
        await bot.fake.next_call("views.publish")
        home = json.dumps(bot.fake.home[user], ensure_ascii=False)
        assert said in home
        assert "*Leaderboard (this week, by labels)*\\n1. <@U0ANA> — 2 labels (1 skip)" in home
        assert "<@U0RAJ> —" not in home


def test_a_persons_latest_answer_in_the_period_is_what_counts(memory_store: Store):
    store = memory_store
    store.add_items([Item(f"i{n}", f"text {n}") for n in range(3)], "api")
    clicks = [  # U1: on i0 a skip, then a label; on i1 a label, then a skip; U2: as on i0
        ("i0", "U1", None), ("i0", "U1", "bug"), ("i1", "U1", "bug"), ("i1", "U1", None),
        ("i2", "U2", None), ("i2", "U2", "bug"),
    ]  # fmt: skip
    for n, (item, user, label) in enumerate(clicks):
        store.record_answer(item, user, label, source="button", dedupe_key=f"k{n}", votes_needed=3)
    since = "2000-01-01"
    assert store.labels_by_user(since) == [("U1", 1, 1), ("U2", 1, 0)]
    assert store.labels_since(since) == (2, 1)
    assert store.labels_since(since, "U1") == (1, 1) and store.labels_since(since, "U9") == (0, 0)
    assert store.answers_since(since) == 3  # the answers are the labels and skips together


def test_the_labels_and_skips_of_a_period_are_read_from_the_periods_index(memory_store: Store):
    for call in (
        lambda: memory_store.labels_by_user("2026-11-24"),
        lambda: memory_store.labels_since("2026-11-24"),
        lambda: memory_store.labels_since("2026-11-24", "U1"),
    ):
        [(_, plan)] = query_plans(memory_store, call)
        assert "SEARCH answers USING INDEX answers_by_people (created_at>?)" in plan, plan
        assert not any(line.startswith("SCAN answers") for line in plan), plan


async def test_the_leaderboard_reads_the_weeks_answers_off_the_event_loop(bot: Bot):
    await ana_labels_two_and_skips_one_raj_skips_one(bot)
    on_the_loop: list[str] = []
    bot.store.db.conn.set_trace_callback(on_the_loop.append)
    try:
        assert "🥇 <@U0ANA> — 2 labels" in await reply(bot, "leaderboard")
        bot.store.db.execute("SELECT 1").fetchone()  # the trace works on this connection
    finally:
        bot.store.db.conn.set_trace_callback(None)
    assert on_the_loop
    assert [sql for sql in on_the_loop if "created_at >=" in sql] == []


# -- F14: what a skip means -------------------------------------------------------------------


def test_a_question_set_aside_by_skips_says_no_one_is_asked_and_how_to_label_it():
    aside = Question("T-7", "t", ["a", "b"], skips=["U0ANA", "U0RAJ"], status="skipped")
    [_, line, _] = [b.to_dict() for b in question_blocks(aside)]
    assert line["text"]["text"] == (
        "⏭ Set aside after skips by <@U0ANA>, <@U0RAJ>: no one will be asked again (an admin"
        " can still label it: `/hitl review T-7`)"
    )


def tally_of(q: Question) -> str:
    context = next(b for b in (x.to_dict() for x in question_blocks(q)) if b["type"] == "context")
    return context["elements"][-1]["text"]


def test_with_one_vote_a_skip_says_the_first_answer_decides():
    one = Question("i1", "t", ["a", "b"], skips=["U0ANA"], votes_needed=1)
    for shown in (one, replace(one, show_votes=True)):
        assert tally_of(shown) == "Skipped by <@U0ANA>; the first answer decides."
    two = replace(one, votes_needed=2)
    assert tally_of(two) == (
        "skipped by <@U0ANA>. 2 matching answers decide; answers show once it is decided."
    )


# -- F20: waiting, one word -------------------------------------------------------------------


async def test_stats_call_the_waiting_items_waiting_as_the_queue_and_app_home_do(bot: Bot):
    await bot.dispatcher.fill()
    stats = await reply(bot, "stats", user="U0ADMIN")
    queue = await reply(bot, "queue")
    assert "*Items:* 2 waiting · 3 posted · 0 resolved" in stats
    assert "*Waiting:* 2 items" in queue and "pending" not in stats
    assert f"<#{CHANNEL}>: 3 of 3 open" in queue
