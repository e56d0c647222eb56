"""A team's clicks through signed requests, in the situations an unlucky team meets: a click on
a button drawn before a label change, and what every view then says about the answers stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_slack_bot import buttons
from tests.fake_slack import CHANNEL


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "charged twice, app crashes"), Item("b", "hello")])
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        yield running


def answers_of(bot: Bot, item_id: str) -> list[tuple]:
    return bot.store.db.execute(
        "SELECT user_id, label, late FROM answers WHERE item_id = ? ORDER BY id", [item_id]
    ).fetchall()


def notes_to(bot: Bot, user: str) -> list[str]:
    calls = bot.fake.calls_to("chat.postEphemeral")
    return [c.params["text"] for c in calls if c.params["user"] == user]


async def test_a_second_click_on_a_button_drawn_before_a_rename_is_stored_once(bot: Bot):
    """The person who decided an item clicks its button again (a double click, or Slack's retry
    of the click under another action_ts) after the label was renamed, before the message was
    redrawn: their answer is the one that decided it, stored once; they are not told that the
    item "was already decided" by themselves, nor is a late answer of theirs kept as history."""
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    label = buttons(message)[0]
    item_id = message["metadata"]["event_payload"]["item_id"]
    assert (await bot.action(bot.button_payload(message, "U0ANA", label))).status == 200
    await bot.settled()
    assert bot.store.resolution(item_id)["label"] == label
    await bot.command(f"labels rename {label} {label}_x", "U0ADMIN")
    await bot.settled()

    assert (await bot.action(bot.button_payload(message, "U0ANA", label))).status == 200
    await bot.settled()
    assert answers_of(bot, item_id) == [("U0ANA", label, 0)]
    assert not [n for n in notes_to(bot, "U0ANA") if "already decided" in n]
    assert bot.store.resolution(item_id)["label"] == f"{label}_x"


async def test_a_vote_clicked_again_after_its_label_was_renamed_is_stored_once(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("a", "charged twice, app crashes")])
    settings = make_settings(fake_slack, tmp_path, max_open=1, votes=2)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        message = bot.posted()[0]
        label = buttons(message)[0]
        assert (await bot.action(bot.button_payload(message, "U0ANA", label))).status == 200
        await bot.settled()
        await bot.command(f"labels rename {label} {label}_x", "U0ADMIN")
        await bot.settled()
        redrawn = bot.posted()[0]
        again = bot.button_payload(redrawn, "U0ANA", f"{label}_x")  # the same vote, new name
        assert (await bot.action(again)).status == 200
        await bot.settled()
        assert answers_of(bot, "a") == [("U0ANA", label, 0)]
        exported = [r for r in bot.store.iter_answers() if r["item_id"] == "a"]
        assert [(r["user_id"], r["label"]) for r in exported] == [("U0ANA", label)]
        assert bot.store.get_item("a")["status"] == "posted"
        assert bot.store.tally("a").votes == {f"{label}_x": ["U0ANA"]}


async def test_an_undo_of_the_vote_that_broke_a_split_sends_it_back_to_review(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_VOTES=2: Ana and Ben split, Cy's vote decides it, then Cy clicks Undo. The answers
    that count are a split again: it is back in the review queue (where it was before Cy's
    vote) and holds no channel place, as a split just voted does; it did not wait, posted and
    out of review, for a fourth person or a restart (``decide_answered``) to notice it."""
    from tests.bot.test_undo_flows import click_undo

    seed(tmp_path / "hitl.db", [Item("a", "charged twice, app crashes"), Item("b", "hello")])
    settings = make_settings(fake_slack, tmp_path, max_open=1, votes=2)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        message = bot.posted()[0]
        first, second = buttons(message)[:2]
        for user, label in (("U0ANA", first), ("U0BEN", second)):
            assert (await bot.action(bot.button_payload(message, user, label))).status == 200
        await bot.settled()
        assert [r["reason"] for r in bot.store.reviews_of("a") if not r["decided_at"]] == ["split"]
        assert (await bot.action(bot.button_payload(message, "U0CY", first))).status == 200
        await bot.settled()
        assert bot.store.resolution("a")["label"] == first
        assert bot.store.pending_review_count() == 0

        said = await click_undo(bot, "U0CY", message)
        assert said.startswith("Undone:"), said
        assert bot.store.resolution("a") is None
        pending = [r for r in bot.store.reviews_of("a") if not r["decided_at"]]
        assert [r["reason"] for r in pending] == ["split"], bot.store.reviews_of("a")
        assert bot.store.open_post_counts().get(CHANNEL, 0) == 0
        # the place it freed is filled: the next item is asked
        await bot.dispatcher.fill()
        assert "b" in {m["metadata"]["event_payload"]["item_id"] for m in bot.posted()}


async def test_a_split_voter_who_changes_or_skips_leaves_review_as_the_votes_now_are(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_VOTES=2: Ana and Ben split. Ben picks a third label with "Other…": still a split,
    and its review shows the votes as they are now (it said Ben's first label). Ben then
    clicks Skip: one vote is left, fewer than HITL_VOTES, no split. The split review stayed
    pending, naming two votes, and the question held no channel place though it waits for a
    second vote; now the review is closed and the question counts as open again."""
    seed(tmp_path / "hitl.db", [Item("a", "charged twice, app crashes"), Item("b", "hello")])
    settings = make_settings(fake_slack, tmp_path, max_open=1, votes=2)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        message = bot.posted()[0]
        first, second, third = buttons(message)[:3]
        for user, label in (("U0ANA", first), ("U0BEN", second)):
            assert (await bot.action(bot.button_payload(message, user, label))).status == 200
        await bot.settled()
        assert await bot.dispatcher.fill() == 1  # the split frees its place: b is asked
        shown = bot.fake.message(CHANNEL, message["ts"])
        assert (await bot.action(bot.select_payload(shown, "U0BEN", third))).status == 200
        await bot.settled()
        [split] = bot.store.reviews_of("a")
        assert (split["decided_at"], split["detail"]) == (None, f"{first} 1, {third} 1")
        assert bot.store.open_post_counts() == {CHANNEL: 1}

        assert (await bot.action(bot.button_payload(shown, "U0BEN", None))).status == 200
        await bot.settled()
        assert bot.store.tally("a").votes == {first: ["U0ANA"]}
        assert bot.store.pending_review_count() == 0
        [split] = bot.store.reviews_of("a")
        assert (split["decided_by"], split["decision"]) == ("votes", "undone")
        assert bot.store.open_post_counts() == {CHANNEL: 2}
        queue = await (await bot.command("queue", "U0ADMIN")).text()
        assert f"<#{CHANNEL}>: 2 of 1 open" in queue
        redrawn = bot.fake.message(CHANNEL, message["ts"])
        assert "1 of 2 answers in" in json.dumps(redrawn["blocks"]) and buttons(redrawn)
        assert bot.store.split_posts() == []

        # Cy's vote makes a majority of two: decided, as any open question
        assert (await bot.action(bot.button_payload(redrawn, "U0CY", first))).status == 200
        await bot.settled()
        assert bot.store.resolution("a")["label"] == first
        assert bot.store.open_post_counts() == {CHANNEL: 1}
