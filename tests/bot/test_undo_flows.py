"""Undo through signed requests: it takes back one's own decision only, within 10 minutes of
it, and a reopened question counts only the answers given while it was open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.blocks import UNDO_ACTION
from bot.slack.redraw import Redrawer
from bot.slack.review import DECISION_ACTION, DECISION_BLOCK, REVIEW_CALLBACK
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_slack_bot import buttons, context_text
from tests.fake_slack import CHANNEL

LONG_AGO = "2000-01-01T00:00:00.000+00:00"


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "charged twice, app crashes"), Item("b", "hello")])
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        yield running


async def decide(bot: Bot, user: str = "U0ANA", n: int = 0) -> tuple[str, dict, str]:
    """``user`` clicks the open question's ``n``-th label, which decides it (HITL_VOTES=1)."""
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    label = buttons(message)[n]
    assert (await bot.action(bot.button_payload(message, user, label))).status == 200
    await bot.settled()
    item_id = bot.store.db["posts"].get(1)["item_id"]
    assert bot.store.resolution(item_id)["label"] == label
    return item_id, message, label


async def click_undo(bot: Bot, user: str, message: dict) -> str:
    """``user`` clicks the Undo of their latest "Saved …" note; what the note says then."""
    note = [
        c.params
        for c in bot.fake.calls_to("chat.postEphemeral")
        if c.params["user"] == user and "Undo" in str(c.params.get("blocks"))
    ][-1]
    drawn = note["blocks"] if isinstance(note["blocks"], list) else json.loads(note["blocks"])
    button = drawn[0]["accessory"]
    assert button["action_id"] == UNDO_ACTION
    payload = signing.block_actions_payload(
        user,
        UNDO_ACTION,
        button["value"],
        message_ts=message["ts"],
        response_url=bot.fake.response_url(CHANNEL),
    )
    assert (await bot.action(payload)).status == 200
    await bot.settled()
    return bot.fake.responses[-1]["payload"]["text"]


async def test_a_late_answer_does_not_count_once_an_undo_reopens_the_question(bot: Bot):
    item_id, message, label = await decide(bot)
    late = buttons(message)[1]
    await bot.action(bot.button_payload(message, "U0RAJ", late))
    await bot.settled()
    assert bot.store.get_item(item_id)["status"] == "resolved"

    assert (await click_undo(bot, "U0ANA", message)).startswith(f"Undone: `{label}`")
    assert bot.store.tally(item_id).votes == {}  # Raj's late answer is history
    reopened = bot.fake.message(CHANNEL, message["ts"])
    assert label in buttons(reopened)

    await bot.action(bot.button_payload(reopened, "U0MEI", label))
    await bot.settled()
    decided = bot.store.resolution(item_id)
    assert (decided["label"], decided["votes"], decided["agreement"], decided["annotators"]) == (
        label,
        1,
        1.0,
        ["U0MEI"],
    )
    assert f"✅ *`{label}`* by <@U0MEI>" in context_text(bot.fake.message(CHANNEL, message["ts"]))
    # Every answer is still there, the late one too.
    assert [(a["user_id"], a["label"]) for a in bot.store.iter_answers()][:3] == [
        ("U0ANA", label),
        ("U0RAJ", late),
        ("U0RAJ", None),  # his counted answer back to none when the item reopened
    ]


async def test_the_late_answerer_may_answer_the_reopened_question_with_the_same_label(bot: Bot):
    item_id, message, label = await decide(bot)
    late = buttons(message)[1]
    await bot.action(bot.button_payload(message, "U0RAJ", late))
    await bot.settled()
    await click_undo(bot, "U0ANA", message)

    reopened = bot.fake.message(CHANNEL, message["ts"])
    await bot.action(bot.button_payload(reopened, "U0RAJ", late))  # now it counts
    await bot.settled()
    assert bot.store.resolution(item_id)["label"] == late
    assert bot.store.resolution(item_id)["annotators"] == ["U0RAJ"]


async def review_to(bot: Bot, item_id: str, label: str) -> None:
    """An admin gives ``item_id`` the label ``label`` in `/hitl review ITEM_ID`."""
    await bot.command(f"review {item_id}", "U0ADMIN")
    view = (await bot.fake.next_call("views.open")).reply["view"]
    option = {"text": {"type": "plain_text", "text": label}, "value": f"label:{label}"}
    values = {
        DECISION_BLOCK: {DECISION_ACTION: {"type": "static_select", "selected_option": option}}
    }
    payload = signing.view_submission_payload(
        REVIEW_CALLBACK, values, user_id="U0ADMIN", private_metadata=view["private_metadata"]
    )
    assert (await bot.action(payload)).status == 200
    await bot.settled()


async def test_undo_is_refused_once_an_admin_changed_the_label_and_says_who(bot: Bot):
    item_id, message, label = await decide(bot)
    other = buttons(message)[1]
    await review_to(bot, item_id, other)

    said = await click_undo(bot, "U0ANA", message)
    assert said == (
        f"Not undone: <@U0ADMIN> has since changed the label to `{other}`;"
        " ask them if it should change again."
    )
    assert bot.store.resolution(item_id)["label"] == other  # the admin's decision stands
    assert bot.store.get_item(item_id)["status"] == "resolved"


async def test_undo_refused_after_an_admin_confirmed_the_label_says_confirmed(bot: Bot):
    """The admin's review kept the label the votes gave: "has since changed the label to
    bug" was not what happened."""
    item_id, message, label = await decide(bot)
    await review_to(bot, item_id, label)
    said = await click_undo(bot, "U0ANA", message)
    assert said == (
        f"Not undone: <@U0ADMIN> has since confirmed the label `{label}`;"
        " ask them if it should change again."
    )
    assert bot.store.resolution(item_id)["label"] == label


async def test_undo_refused_after_a_change_from_the_cli_names_the_admin_as_the_message_does(
    bot: Bot,
):
    item_id, message, label = await decide(bot)
    other = buttons(message)[1]
    bot.store.set_label(item_id, other, user_id="cli:root")  # what `hitl labels set` does
    await Redrawer.of(bot.rt).soon()  # as the server does on seeing another process's change
    said = await click_undo(bot, "U0ANA", message)
    assert said == (  # "cli:root has since changed…", where the question says "set by root"
        f"Not undone: root has since changed the label to `{other}`;"
        " ask them if it should change again."
    )


async def test_undo_after_a_rename_names_the_label_now(bot: Bot):
    item_id, message, label = await decide(bot)
    await bot.command(f"labels rename {label} {label}_x", "U0ADMIN")
    await bot.settled()

    said = await click_undo(bot, "U0ANA", message)  # a rename is not someone else's decision
    assert said == f"Undone: `{label}_x` is no longer the label. The question is open again."
    assert bot.store.resolution(item_id) is None


async def test_a_rename_does_not_reopen_an_undo_window_that_has_passed(bot: Bot):
    item_id, message, label = await decide(bot)
    # The decision was made long ago: its answer and its label row both say so.
    db = bot.store.db
    db.execute("UPDATE answers SET created_at = ? WHERE item_id = ?", [LONG_AGO, item_id])
    db.execute("UPDATE labels SET resolved_at = ? WHERE item_id = ?", [LONG_AGO, item_id])
    db.conn.commit()
    await bot.command(f"labels rename {label} {label}_x", "U0ADMIN")  # moves resolved_at to now
    await bot.settled()

    said = await click_undo(bot, "U0ANA", message)
    assert said == "Too late to undo (10 minutes have passed, or someone else decided it)."
    assert bot.store.resolution(item_id)["label"] == f"{label}_x"


async def test_an_undo_closes_the_reviews_of_the_decision_it_takes_back(bot: Bot):
    # A low-agreement or contradicted review stayed open after an Undo reopened its item:
    # /hitl review asked an admin to judge a decision that no longer existed.
    item_id, message, _ = await decide(bot)
    for reason in ("low_agreement", "contradicted", "gold_miss"):
        assert bot.store.flag_review(item_id, reason)
    assert "Undone" in await click_undo(bot, "U0ANA", message)
    reviews = {r["reason"]: r for r in bot.store.db["reviews"].rows_where("item_id = ?", [item_id])}
    assert {reason: r["decision"] for reason, r in reviews.items()} == {
        "low_agreement": "undone",
        "contradicted": "undone",
        "gold_miss": None,  # not a gold item: no answer of it is scored (see test_gold.py)
    }
    assert reviews["contradicted"]["decided_by"] == "U0ANA"


async def test_an_answer_taken_back_with_undo_is_not_counted_on_the_app_home(bot: Bot):
    """ANA's only answer decided the question; she undid it. Her App Home said she had answered
    1 item, and a late click by RAJ (told "already decided … thanks anyway") counted too."""
    item_id, message, label = await decide(bot, "U0ANA")
    await bot.action(bot.button_payload(message, "U0RAJ", buttons(message)[1]))
    await bot.settled()
    assert (await click_undo(bot, "U0ANA", message)).startswith(f"Undone: `{label}`")

    def published(user: str) -> int:
        return sum(c.params["user_id"] == user for c in bot.fake.calls_to("views.publish"))

    for user in ("U0ANA", "U0RAJ"):
        before = published(user)
        assert (await bot.event(signing.app_home_opened_event(user))).status == 200
        await bot.fake.wait_for(
            lambda u=user, n=before: published(u) > n, 2.0, waiting_for="the home"
        )
        home = json.dumps(bot.fake.home[user], ensure_ascii=False)
        assert "This week you labeled *0 items*; *0 items* of all time" in home, home
        assert f"<@{user}> — " not in home  # nor on the leaderboard
