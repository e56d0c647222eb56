"""What a decided or set-aside question's message says happened, through signed requests and the
fake Slack: an admin's label says who set it however people voted (a `/hitl review` decision,
`hitl labels set` from the terminal while the server runs), and a label taken away
(`hitl labels remove`, a review's "remove") says who removed it, not "Skipped by" nobody."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.slack.blocks import question_blocks
from bot.slack.questions import build_question
from tests.bot.harness import LABELS, Bot, Item, make_settings, seed, start_bot
from tests.bot.test_review import decision
from tests.bot.test_slack_bot import buttons
from tests.fake_slack import CHANNEL


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "refund and a crash"), Item("b", "hello")])
    settings = make_settings(fake_slack, tmp_path, max_open=1, votes=3)
    async for running in start_bot(fake_slack, settings):
        yield running


def outcome(bot: Bot, message: dict) -> str:
    """The line under the item's text in the message as Slack holds it now."""
    blocks = bot.fake.message(CHANNEL, message["ts"])["blocks"]
    return blocks[1]["text"]["text"]


async def answered(bot: Bot, votes: list[tuple[str, int | None]]) -> tuple[str, dict, list[str]]:
    """The open question answered: each (user, n) votes for the n-th label with a button
    (None: skips)."""
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    labels = buttons(message)[:3]
    for user, n in votes:
        label = labels[n] if n is not None else None
        assert (await bot.action(bot.button_payload(message, user, label))).status == 200
    await bot.settled()
    return bot.store.db["posts"].get(1)["item_id"], message, labels


async def in_the_cli(bot: Bot, *args: str) -> None:
    """A `hitl labels …` change from another connection, then the redrawer's pass over it (as
    its idle tick makes one while `hitl serve` runs)."""
    done = CliRunner().invoke(
        cli,
        ["--db", str(bot.rt.settings.db), "labels", *args],
        env={"HITL_LABELS": ",".join(LABELS)},
    )
    assert done.exit_code == 0, done.output
    assert await bot.rt.redrawer.pending() == 0


async def test_a_review_decision_for_a_label_someone_voted_says_the_admin_set_it(bot: Bot):
    # A split: one vote each. The admin picks the label Mei voted for; the message read
    # "✅ *c* by vote (*a* 1 · *b* 1 · *c* 1: <@U0MEI>)", as if Mei's one vote had decided it.
    item_id, message, (a, b, c) = await answered(bot, [("U0ANA", 0), ("U0RAJ", 1), ("U0MEI", 2)])
    assert bot.store.resolution(item_id) is None
    await bot.command("review", "U0ADMIN")
    view = (await bot.fake.next_call("views.open")).reply["view"]
    assert (await bot.action(decision(view, f"label:{c}"))).status == 200
    await bot.settled()
    assert bot.store.resolution(item_id)["label"] == c
    assert (
        outcome(bot, message)
        == f"✅ *`{c}`*, set by <@U0ADMIN> (votes: *`{a}`* 1 · *`{b}`* 1 · *`{c}`* 1)"
    )


async def test_a_label_set_in_the_cli_over_the_votes_says_who_set_it(bot: Bot):
    # Decided by two votes of three; then `hitl labels set` gives it the label one person
    # voted for, from the terminal while the server runs.
    item_id, message, (a, b, _) = await answered(bot, [("U0MEI", 1), ("U0ANA", 0), ("U0RAJ", 0)])
    assert (
        outcome(bot, message) == f"✅ *`{a}`* by vote (*`{b}`* 1 · *`{a}`* 2: <@U0ANA>, <@U0RAJ>)"
    )
    await in_the_cli(bot, "set", item_id, b, "--by", "cli:ana")
    assert outcome(bot, message) == f"✅ *`{b}`*, set by ana (votes: *`{b}`* 1 · *`{a}`* 2)"
    # The votes' label back, by another admin: set (from b), not confirmed.
    await in_the_cli(bot, "set", item_id, a, "--by", "cli:raj")
    assert outcome(bot, message) == f"✅ *`{a}`*, set by raj (votes: *`{b}`* 1 · *`{a}`* 2)"


async def test_a_label_confirmed_as_the_votes_gave_it_says_who_confirmed_it(bot: Bot):
    item_id, message, (a, b, _) = await answered(bot, [("U0MEI", 1), ("U0ANA", 0), ("U0RAJ", 0)])
    await in_the_cli(bot, "set", item_id, a, "--by", "cli:ana")
    assert outcome(bot, message) == f"✅ *`{a}`*, confirmed by ana (votes: *`{b}`* 1 · *`{a}`* 2)"


async def test_a_renamed_label_keeps_who_set_it(bot: Bot):
    # A rename carries the admin's decision over (it is no decision of its own). A decided
    # question is not redrawn by a rename, so the line is drawn here as a redraw would.
    item_id, _, (a, b, _) = await answered(bot, [("U0MEI", 1), ("U0ANA", 0), ("U0RAJ", 0)])
    await in_the_cli(bot, "set", item_id, b, "--by", "cli:ana")
    await in_the_cli(bot, "rename", b, "renamed", "--by", "cli:raj")
    question = build_question(bot.store, bot.rt.settings, item_id)
    assert question is not None
    drawn = question_blocks(question)[1].to_dict()["text"]["text"]
    assert drawn == f"✅ *`renamed`*, set by ana (votes: *`renamed`* 1 · *`{a}`* 2)"


async def test_a_label_removed_says_who_removed_it_and_why(bot: Bot):
    # `hitl labels remove` sets the decided item aside: it read "⏭ Skipped by " with nobody
    # after "by", though nobody skipped it.
    item_id, message, (a, _, _) = await answered(bot, [("U0ANA", 0), ("U0RAJ", 0)])
    assert bot.store.resolution(item_id)["label"] == a
    await in_the_cli(bot, "remove", item_id, "--by", "cli:ana", "--reason", "not <support>")
    assert bot.store.get_item(item_id)["status"] == "skipped"
    assert outcome(bot, message) == f"⏭ Label *`{a}`* removed by ana (not &lt;support&gt;)"
    shown = json.dumps(bot.fake.message(CHANNEL, message["ts"])["blocks"])
    assert "Skipped by" not in shown


async def test_a_split_the_review_removes_says_the_admin_set_it_aside(bot: Bot):
    item_id, message, _ = await answered(bot, [("U0ANA", 0), ("U0RAJ", 1), ("U0MEI", 2)])
    await bot.command("review", "U0ADMIN")
    view = (await bot.fake.next_call("views.open")).reply["view"]
    assert (await bot.action(decision(view, "remove"))).status == 200
    await bot.settled()
    assert bot.store.get_item(item_id)["status"] == "skipped"
    assert outcome(bot, message) == "⏭ Set aside by <@U0ADMIN> (review: split)"


async def test_people_who_skipped_are_still_named(bot: Bot):
    _, message, _ = await answered(bot, [("U0ANA", None), ("U0RAJ", None)])
    assert outcome(bot, message) == (
        "⏭ Set aside after skips by <@U0ANA>, <@U0RAJ>: no one will be asked again (an admin"
        " can still label it: `/hitl review a`)"
    )
