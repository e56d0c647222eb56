"""`/hitl review` with a label set too large to list in one window: about 1,080 labels of 75
characters (about 265 of 75 accented ones: slack_sdk sends them escaped) made the decision select
pass Slack's 250 kB for a view, and views.open answered ``view_too_large``. Past that size the
decision is a type-ahead whose options the bot serves, and every label in force can still be
picked. A window Slack refuses as too large is said to the person in one line that does not
tell them to try again."""

from __future__ import annotations

import json
from pathlib import Path

from bot.sandbox import FakeSlack
from bot.slack.review import (
    DECISION_ACTION,
    DECISION_BLOCK,
    DECISION_SEARCH_ACTION,
    REVIEW_CALLBACK,
)
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL

LONG = tuple(f"l{n:04d}_" + "x" * 69 for n in range(1100))  # 75 characters each
ACCENTED = tuple(f"é{n:03d}" + "é" * 71 for n in range(300))


def suggestion(view: dict, user: str, typed: str) -> dict:
    """What Slack sends while someone types in the review window's type-ahead."""
    return {
        "type": "block_suggestion",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0HITL"},
        "container": {"type": "view", "view_id": view["id"]},
        "api_app_id": "A0HITL",
        "token": signing.VERIFICATION_TOKEN,
        "action_id": DECISION_SEARCH_ACTION,
        "block_id": DECISION_BLOCK,
        "value": typed,
        "team": {"id": "T0HITL", "domain": "hitl-sandbox"},
        "view": view,
    }


async def opened_review(bot: Bot, text: str) -> dict:
    assert (await bot.command(text, "U0ADMIN")).status == 200
    call = await bot.fake.next_call("views.open")
    assert call.reply["ok"], call.reply  # old code: {'ok': False, 'error': 'view_too_large'}
    view = call.reply["view"]
    assert len(json.dumps(view).encode()) <= 250_000
    return view


async def test_a_thousand_long_labels_review_through_a_type_ahead_that_reaches_each_label(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("s", "refund after the crash", LONG[0])])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, labels=LONG)):
        view = await opened_review(bot, "review s")
        [decision] = [b for b in view["blocks"] if b.get("block_id") == DECISION_BLOCK]
        assert decision["element"]["type"] == "external_select"
        assert decision["element"]["action_id"] == DECISION_SEARCH_ACTION
        assert "1,100 labels" in decision["hint"]["text"]

        reply = await bot.action(suggestion(view, "U0ADMIN", ""))
        groups = json.loads(await reply.text())["option_groups"]
        assert [o["value"] for o in groups[0]["options"]] == ["skip", "remove"]
        assert [o["value"] for o in groups[1]["options"]] == [f"label:{x}" for x in LONG[:100]]
        assert groups[1]["label"]["text"] == "Labels: 100 of 1,100 found; type more"

        reply = await bot.action(suggestion(view, "U0ADMIN", "L1099"))
        [last] = json.loads(await reply.text())["option_groups"][1]["options"]
        assert last["value"] == f"label:{LONG[-1]}"
        # someone else than an admin is offered nothing
        reply = await bot.action(suggestion(view, "U0RAJ", "l1099"))
        assert json.loads(await reply.text())["options"] == []

        chosen = {"type": "external_select", "selected_option": last}
        submitted = signing.view_submission_payload(
            REVIEW_CALLBACK,
            {DECISION_BLOCK: {DECISION_SEARCH_ACTION: chosen}},
            user_id="U0ADMIN",
            private_metadata=view["private_metadata"],
        )
        answer = json.loads(await (await bot.action(submitted)).text())
        assert answer["response_action"] == "update", answer
        assert "Nothing to review. You decided 1" in json.dumps(answer["view"])
        assert bot.store.resolution("s")["label"] == LONG[-1]
        [change] = bot.store.label_history("s")[-1:]
        assert (change["new_label"], change["action"]) == (LONG[-1], "review")


async def test_three_hundred_accented_labels_open_the_review_and_skip_moves_on(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("a", "one"), Item("b", "two")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, labels=ACCENTED)):
        for item_id in ("a", "b"):
            bot.store.flag_review(item_id, "split", f"{ACCENTED[0]} 1, {ACCENTED[1]} 1")
        view = await opened_review(bot, "review")
        reply = await bot.action(suggestion(view, "U0ADMIN", "e299"))  # accents folded
        actions, found = json.loads(await reply.text())["option_groups"]
        assert [o["value"] for o in found["options"]] == [f"label:{ACCENTED[299]}"]
        skip = actions["options"][0]
        values = {DECISION_BLOCK: {DECISION_SEARCH_ACTION: {"selected_option": skip}}}
        submitted = signing.view_submission_payload(
            REVIEW_CALLBACK, values, user_id="U0ADMIN", private_metadata=view["private_metadata"]
        )
        answer = json.loads(await (await bot.action(submitted)).text())
        nxt = answer["view"]  # the next item, in a window Slack takes too
        assert len(json.dumps(nxt).encode()) <= 250_000
        first = json.loads(view["private_metadata"])["item"]
        assert json.loads(nxt["private_metadata"])["skipped"] == [first]


async def test_a_set_that_fits_keeps_its_list_of_every_label(fake_slack: FakeSlack, tmp_path: Path):
    few = tuple(f"l{n:04d}_" + "x" * 69 for n in range(500))  # ~115 kB of options: listed
    seed(tmp_path / "hitl.db", [Item("s", "text", few[0])])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, labels=few)):
        view = await opened_review(bot, "review s")
        [decision] = [b for b in view["blocks"] if b.get("block_id") == DECISION_BLOCK]
        assert decision["element"]["action_id"] == DECISION_ACTION
        assert len(decision["element"]["option_groups"]) == 6


async def test_a_window_slack_refuses_as_too_large_is_said_in_one_line_without_try_again(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("s", "text", "billing")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        bot.fake.fail("views.open", error="view_too_large")
        url = bot.fake.response_url(CHANNEL)
        assert (await bot.command("review s", "U0ADMIN", response_url=url)).status == 200
        await bot.fake.next_call("views.open")
        await bot.settled()
        [told] = [r["payload"]["text"] for r in bot.fake.responses]
        assert told.startswith("Slack did not let me open the review window (view_too_large)")
        assert "larger than the 250 kB" in told and "again will not help" in told
        assert "run `/hitl review` again" not in told and "\n" not in told
