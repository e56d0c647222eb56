"""A private question channel's items reach only its current members, through signed requests.

App Home's "Start labeling" and `/hitl label` outside the question channels (a direct message)
serve HITL_CHANNEL and the routed channels the person answered in; a private one only to whom
Slack lists in it (``conversations.members``, paginated), kept a while per channel
(``bot.slack.modal.ChannelMembers``) and changed by ``member_joined_channel`` /
``member_left_channel``. When Slack cannot say, nobody is served it and the window says what
an admin must fix. A public channel stays open to everyone.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from bot.runtime import Background
from bot.sandbox import FakeSlack
from bot.slack import modal
from tests import signing
from tests.bot.harness import Bot, Item, ManualClock, make_settings, margin_scored, seed, start_bot
from tests.fake_slack import CHANNEL

SECRET_CHANNEL = "G0HRSECRET"  # HITL_CHANNEL, a private channel
ROUTED = "C0PAYROLL"  # where billing questions go: a private channel (a C id, as Slack's now)
CASES = [Item("case-1", "CONFIDENTIAL case one"), Item("case-2", "CONFIDENTIAL case two")]


def start_labeling(user: str, trigger_id: str) -> dict:
    return signing.block_actions_payload(
        user,
        "hitl.home.start",
        "start",
        view={"id": "VHOME", "type": "home"},
        trigger_id=trigger_id,
    )


async def opened_view(bot: Bot) -> dict:
    """The view of the next views.open, as the fake keeps it."""
    opened = await bot.fake.next_call("views.open")
    assert opened.reply and opened.reply["ok"], opened.reply
    return bot.fake.views[opened.reply["view"]["id"]]


def item_of(view: dict) -> str | None:
    return json.loads(view["private_metadata"])["item"]


def text_of(view: dict) -> str:
    return json.dumps(view["blocks"], ensure_ascii=False)


async def home_view(bot: Bot, user: str, trigger_id: str) -> dict:
    assert (await bot.action(start_labeling(user, trigger_id))).status == 200
    return await opened_view(bot)


def member_event(kind: str, user: str, channel: str) -> dict:
    return signing.event_envelope(
        {"type": kind, "user": user, "channel": channel, "channel_type": "G", "team": "T0HITL"}
    )


@pytest.fixture
async def secret(fake_slack: FakeSlack, tmp_path: Path):
    """HITL_CHANNEL is private: ana, raj and admin are in it (the workspace when it was made);
    U0GUEST, in the workspace, is not."""
    fake_slack.add_channel(SECRET_CHANNEL, "hr-private", is_private=True)
    fake_slack.add_user("U0GUEST", "guest")
    seed(tmp_path / "hitl.db", CASES)
    settings = make_settings(fake_slack, tmp_path, channel=SECRET_CHANNEL, max_open=1)
    async for running in start_bot(fake_slack, settings):
        await running.dispatcher.fill()
        await running.settled()
        yield running


async def test_a_private_question_channel_is_not_served_to_someone_outside_it(secret: Bot):
    view = await home_view(secret, "U0GUEST", "1.1.a")
    assert item_of(view) is None and "CONFIDENTIAL" not in text_of(view)

    # /hitl label in their direct message with the bot: the same
    response = await secret.command("label", "U0GUEST", channel_id="D0GUEST", trigger_id="1.1.b")
    assert response.status == 200
    view = await opened_view(secret)
    assert item_of(view) is None and "CONFIDENTIAL" not in text_of(view)
    assert secret.fake.calls_to("conversations.members"), "Slack was never asked"


async def test_a_private_question_channel_is_served_to_its_members(secret: Bot):
    view = await home_view(secret, "U0ANA", "1.1.a")
    assert item_of(view) in {"case-1", "case-2"} and "CONFIDENTIAL" in text_of(view)
    # asked once, then kept: a second window asks nothing
    await secret.settled()
    asked = len(secret.fake.calls_to("conversations.members"))
    view = await home_view(secret, "U0RAJ", "1.1.b")
    assert item_of(view) is not None
    assert len(secret.fake.calls_to("conversations.members")) == asked == 1


async def test_joining_and_leaving_change_who_is_served_at_once(secret: Bot):
    assert item_of(await home_view(secret, "U0ANA", "1.1.a")) is not None  # the list is known
    await secret.settled()
    secret.fake.join_channel(SECRET_CHANNEL, "U0GUEST")
    assert (
        await secret.event(member_event("member_joined_channel", "U0GUEST", SECRET_CHANNEL))
    ).status == 200
    secret.fake.leave_channel(SECRET_CHANNEL, "U0ANA")
    assert (
        await secret.event(member_event("member_left_channel", "U0ANA", SECRET_CHANNEL))
    ).status == 200
    await secret.settled()

    assert item_of(await home_view(secret, "U0GUEST", "1.1.b")) is not None
    assert item_of(await home_view(secret, "U0ANA", "1.1.c")) is None
    assert len(secret.fake.calls_to("conversations.members")) == 1  # the events said it


async def test_someone_who_left_while_the_window_was_open_is_served_no_next_item(secret: Bot):
    view = await home_view(secret, "U0ANA", "1.1.a")
    assert item_of(view) is not None
    await secret.settled()
    secret.fake.leave_channel(SECRET_CHANNEL, "U0ANA")
    await secret.event(member_event("member_left_channel", "U0ANA", SECRET_CHANNEL))
    await send_click(secret, "U0ANA", view)
    updated = await secret.fake.next_call("views.update")
    assert item_of(updated.params["view"]) is None
    assert "CONFIDENTIAL" not in text_of(updated.params["view"])


async def test_a_list_getting_old_is_asked_again_off_the_windows_path(secret: Bot):
    clock = ManualClock()
    modal.ChannelMembers.of(secret.rt).clock = clock
    assert item_of(await home_view(secret, "U0ANA", "1.1.a")) is not None
    await secret.settled()
    secret.fake.leave_channel(SECRET_CHANNEL, "U0ANA")  # no event: the app is not subscribed

    clock.now += modal.MEMBERS_FRESH + 1  # old, still in use: served, and asked again
    assert item_of(await home_view(secret, "U0ANA", "1.1.b")) is not None
    await secret.settled()
    assert len(secret.fake.calls_to("conversations.members")) == 2
    assert item_of(await home_view(secret, "U0ANA", "1.1.c")) is None

    # too old to be trusted (nobody opened a window for a while): asked before serving
    secret.fake.join_channel(SECRET_CHANNEL, "U0ANA")
    clock.now += modal.MEMBERS_MAX_AGE + 1
    assert item_of(await home_view(secret, "U0ANA", "1.1.d")) is not None
    assert len(secret.fake.calls_to("conversations.members")) == 3


async def test_without_groups_read_nobody_is_served_and_the_person_is_told_what_to_fix(
    secret: Bot, caplog: pytest.LogCaptureFixture
):
    clock = ManualClock()
    modal.ChannelMembers.of(secret.rt).clock = clock
    secret.fake.scopes = tuple(s for s in secret.fake.scopes if s != "groups:read")
    caplog.set_level(logging.WARNING, logger="bot.slack.modal")
    for n in range(2):
        view = await home_view(secret, "U0ANA", f"1.2.{n}")
        assert item_of(view) is None and "CONFIDENTIAL" not in text_of(view)
        [note] = [b["text"]["text"] for b in view["blocks"] if "groups:read" in json.dumps(b)]
        assert "admin" in note and "\n" not in note and "Traceback" not in note
        await secret.settled()
        clock.now += modal.MEMBERS_RETRY + 1  # asked again next time, refused again
    assert len(secret.fake.calls_to("conversations.members")) == 2
    logged = [r for r in caplog.records if "who is in" in r.getMessage()]
    assert len(logged) == 1 and "groups:read" in logged[0].getMessage()
    assert not logged[0].exc_info

    secret.fake.scopes = (*secret.fake.scopes, "groups:read")  # the admin fixed it
    assert item_of(await home_view(secret, "U0ANA", "1.2.c")) is not None


async def test_an_error_from_slack_fails_closed_with_a_line_to_try_again(secret: Bot):
    secret.fake.fail("conversations.members", "fatal_error")  # HTTP 200, ok: false
    view = await home_view(secret, "U0ANA", "1.3.a")
    assert item_of(view) is None and "CONFIDENTIAL" not in text_of(view)
    assert "fatal_error" in text_of(view) and "try again" in text_of(view)


async def test_a_slow_slack_does_not_hold_the_window_past_its_trigger(
    secret: Bot, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(modal, "MEMBERS_WAIT", 0.05)
    secret.fake.fail("conversations.members", mode="timeout")
    view = await home_view(secret, "U0ANA", "1.4.a")  # opened while Slack is still asked
    assert item_of(view) is None and "try again in a few seconds" in text_of(view)
    secret.fake.release_timeouts()
    await secret.settled()
    assert item_of(await home_view(secret, "U0ANA", "1.4.b")) is not None


async def test_a_large_private_channel_is_read_page_by_page(fake_slack: FakeSlack, tmp_path: Path):
    people = [f"U{n:07d}" for n in range(2500)] + ["U0ANA"]
    fake_slack.add_channel(SECRET_CHANNEL, "all-hands-private", is_private=True, members=people)
    seed(tmp_path / "hitl.db", CASES)
    settings = make_settings(fake_slack, tmp_path, channel=SECRET_CHANNEL, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        assert item_of(await home_view(bot, "U0ANA", "1.5.a")) is not None  # on the last page
        pages = bot.fake.calls_to("conversations.members")
        assert len(pages) == 3 and [bool(p.params.get("cursor")) for p in pages] == [0, 1, 1]
        assert item_of(await home_view(bot, "U0RAJ", "1.5.b")) is None


async def test_a_public_question_channel_stays_open_to_everyone(
    fake_slack: FakeSlack, tmp_path: Path
):
    fake_slack.add_user("U0GUEST", "guest")  # not in #labeling
    seed(tmp_path / "hitl.db", CASES)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        view = await home_view(bot, "U0GUEST", "1.6.a")
        assert item_of(view) is not None and "CONFIDENTIAL" in text_of(view)
        assert not bot.fake.calls_to("conversations.members")
        # Slack failing later: a channel known public stays open
        bot.fake.fail("conversations.info", "fatal_error", times=5)
        clock = ManualClock()
        modal.ChannelMembers.of(bot.rt).clock = clock
        clock.now += modal.MEMBERS_MAX_AGE + 1
        assert item_of(await home_view(bot, "U0GUEST", "1.6.b")) is not None


@pytest.fixture
async def routed(fake_slack: FakeSlack, tmp_path: Path):
    """billing goes to ROUTED, private; ana, raj and admin are in it; one question open in
    each channel."""
    fake_slack.add_channel(ROUTED, "payroll-private", is_private=True)
    main, paid = ["a1", "a2"], ["b1", "b2"]
    seed(tmp_path / "hitl.db", [Item(i, f"PAYROLL text of {i}") for i in main + paid])
    settings = make_settings(fake_slack, tmp_path, max_open=1, routes={"billing": ROUTED})
    async for running in start_bot(fake_slack, settings):
        ranked = {
            "billing": [["billing", 0.5], ["bug", 0.3]],
            "bug": [["bug", 0.5], ["billing", 0.3]],
        }
        running.store.set_predictions(
            margin_scored(
                [(i, 1, "bug", 0.5, ranked["bug"]) for i in main]
                + [(i, 1, "billing", 0.5, ranked["billing"]) for i in paid]
            ),
            threshold=0.8,
            strategy="margin",
        )
        assert await running.dispatcher.fill() == 2
        yield running


def served_channels(view: dict) -> list[str]:
    return json.loads(view["private_metadata"])["channels"]


async def test_someone_who_left_a_private_routed_channel_is_no_longer_served_it(routed: Bot):
    [question] = routed.fake.messages(ROUTED)
    click = routed.button_payload(question, "U0RAJ", "billing", channel=ROUTED)
    assert (await routed.action(click)).status == 200
    await routed.settled()
    assert served_channels(await home_view(routed, "U0RAJ", "1.7.a")) == [CHANNEL, ROUTED]
    await routed.settled()

    routed.fake.leave_channel(ROUTED, "U0RAJ")
    assert (await routed.event(member_event("member_left_channel", "U0RAJ", ROUTED))).status == 200
    await routed.settled()
    view = await home_view(routed, "U0RAJ", "1.7.b")
    assert served_channels(view) == [CHANNEL] and "b1" not in text_of(view)
    assert item_of(view) in {"a1", "a2"}


async def test_leaving_a_private_routed_channel_counts_when_slack_is_asked_afterwards(
    routed: Bot,
):
    """The leave the app heard of from no event: Slack, asked when the window opens, says."""
    [question] = routed.fake.messages(ROUTED)
    click = routed.button_payload(question, "U0RAJ", "billing", channel=ROUTED)
    assert (await routed.action(click)).status == 200
    await routed.settled()
    routed.fake.leave_channel(ROUTED, "U0RAJ")
    view = await home_view(routed, "U0RAJ", "1.8.a")
    assert served_channels(view) == [CHANNEL]


async def test_the_fake_lists_members_by_page_and_needs_the_scope_of_the_channel(
    fake_slack: FakeSlack,
):
    from slack_sdk.errors import SlackApiError

    from tests.fake_slack import slack_client

    fake_slack.add_channel("G0A", "a", is_private=True, members=["U0ANA", "U0RAJ", "U0X"])
    fake_slack.add_channel("G0OUT", "out", is_private=True, is_member=False)
    client = slack_client(fake_slack)
    first = await client.conversations_members(channel="G0A", limit=2)
    cursor = first["response_metadata"]["next_cursor"]
    second = await client.conversations_members(channel="G0A", limit=2, cursor=cursor)
    assert first["members"] + second["members"] == ["U0ANA", "U0RAJ", "U0X", "UBOT"]
    assert second["response_metadata"]["next_cursor"] == ""
    with pytest.raises(SlackApiError) as refused:
        await client.conversations_members(channel="G0OUT")
    assert refused.value.response["error"] == "channel_not_found"
    fake_slack.scopes = tuple(s for s in fake_slack.scopes if s != "groups:read")
    with pytest.raises(SlackApiError) as refused:
        await client.conversations_members(channel="G0A")
    assert refused.value.response["error"] == "missing_scope"
    assert refused.value.response["needed"] == "groups:read"
    assert [c.method for c in fake_slack.calls].count("conversations.members") == 4


# -- every next item of an open window is checked, however the window was opened ----------


async def send_click(bot: Bot, user: str, view: dict) -> None:
    """``user`` clicks the first label of the labeling window ``view``, acknowledged."""
    button = next(
        e
        for b in view["blocks"]
        for e in b.get("elements", [])
        if e.get("type") == "button" and '"l":"' in e.get("value", "")
    )
    payload = signing.block_actions_payload(user, button["action_id"], button["value"], view=view)
    payload["actions"][0]["action_ts"] = bot.next_action_ts()
    assert (await bot.action(payload)).status == 200


async def click_in(bot: Bot, user: str, view: dict) -> dict:
    """``user`` clicks the first label of the labeling window ``view``: the view redrawn."""
    await send_click(bot, user, view)
    updated = await bot.fake.next_call("views.update")
    assert updated.reply and updated.reply["ok"], updated.reply
    return bot.fake.views[updated.reply["view"]["id"]]


async def test_a_window_opened_in_the_private_channel_serves_nothing_after_leaving_it(
    secret: Bot,
):
    response = await secret.command("label", "U0RAJ", channel_id=SECRET_CHANNEL, trigger_id="2.1")
    assert response.status == 200
    view = await opened_view(secret)
    assert item_of(view) is not None and "CONFIDENTIAL" in text_of(view)
    await secret.settled()
    secret.fake.leave_channel(SECRET_CHANNEL, "U0RAJ")
    assert (
        await secret.event(member_event("member_left_channel", "U0RAJ", SECRET_CHANNEL))
    ).status == 200
    await secret.settled()
    view = await click_in(secret, "U0RAJ", view)
    assert item_of(view) is None and "CONFIDENTIAL" not in text_of(view)


async def test_an_open_window_whose_list_is_too_old_asks_slack_before_its_next_item(
    secret: Bot,
):
    clock = ManualClock()
    modal.ChannelMembers.of(secret.rt).clock = clock
    view = await home_view(secret, "U0RAJ", "2.2.a")
    assert item_of(view) is not None
    await secret.settled()
    clock.now += modal.MEMBERS_MAX_AGE + 1  # labeling on, nobody opening a window
    secret.fake.leave_channel(SECRET_CHANNEL, "U0RAJ")
    await secret.event(member_event("member_left_channel", "U0RAJ", SECRET_CHANNEL))
    await secret.settled()
    view = await click_in(secret, "U0RAJ", view)
    assert item_of(view) is None and "CONFIDENTIAL" not in text_of(view)


async def test_an_open_window_fails_closed_while_slack_cannot_say_who_is_in_the_channel(
    secret: Bot,
):
    clock = ManualClock()
    modal.ChannelMembers.of(secret.rt).clock = clock
    view = await home_view(secret, "U0ANA", "2.3.a")
    assert item_of(view) is not None
    await secret.settled()
    clock.now += modal.MEMBERS_MAX_AGE + 1
    secret.fake.fail("conversations.members", "fatal_error")
    view = await click_in(secret, "U0ANA", view)
    assert item_of(view) is None and "CONFIDENTIAL" not in text_of(view)
    assert "who is in their channel (fatal_error)" in text_of(view)


async def test_an_open_window_stops_serving_a_channel_made_private_to_a_non_member(
    fake_slack: FakeSlack, tmp_path: Path
):
    fake_slack.add_user("U0GUEST", "guest")  # not in #labeling
    seed(tmp_path / "hitl.db", [*CASES, Item("case-3", "CONFIDENTIAL case three")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        clock = ManualClock()
        modal.ChannelMembers.of(bot.rt).clock = clock
        view = await home_view(bot, "U0GUEST", "2.4.a")
        assert item_of(view) is not None  # public: anyone
        await bot.settled()
        bot.fake._channels[CHANNEL]["is_private"] = True  # converted to a private channel
        clock.now += 10 * 60
        # public when last asked: this click is not held for Slack, which is asked meanwhile
        view = await click_in(bot, "U0GUEST", view)
        await bot.settled()
        assert bot.fake.calls_to("conversations.members")
        view = await click_in(bot, "U0GUEST", view)
        assert item_of(view) is None and "CONFIDENTIAL" not in text_of(view)


# -- a public channel: what the start-up check saw ---------------------------------------


async def test_a_public_channel_stays_open_when_a_look_at_it_fails(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="bot.slack.modal")
    seed(tmp_path / "hitl.db", CASES)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        bot.fake.fail("conversations.info", "internal_error")  # one blip, after the start
        view = await home_view(bot, "U0ANA", "2.5.a")
        assert item_of(view) is not None and "who is in" not in text_of(view)
        await bot.settled()
        assert item_of(await home_view(bot, "U0RAJ", "2.5.b")) is not None

        clock = ManualClock()  # later: the look fails, the channel was public
        modal.ChannelMembers.of(bot.rt).clock = clock
        bot.fake.fail("conversations.info", "internal_error", times=3)
        view = await home_view(bot, "U0ANA", "2.5.c")
        assert item_of(view) is not None and "who is in" not in text_of(view)
        assert not [r for r in caplog.records if "to nobody" in r.getMessage()]
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_slow_slack_does_not_hold_a_public_channels_first_window(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(modal, "MEMBERS_WAIT", 0.05)
    seed(tmp_path / "hitl.db", CASES)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        bot.fake.fail("conversations.info", mode="timeout")
        view = await home_view(bot, "U0ANA", "2.6.a")
        bot.fake.release_timeouts()
        assert item_of(view) is not None and "not said yet" not in text_of(view)


async def test_a_channel_slack_never_said_the_kind_of_is_closed_with_a_line_that_says_so(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The start-up check refused (a missing scope only warns) and the window's look too:
    public or private, not known; served to nobody, and the line does not claim it private."""
    fake_slack.fail("conversations.info", "missing_scope", times=2)
    seed(tmp_path / "hitl.db", CASES)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        view = await home_view(bot, "U0ANA", "2.7.a")
        assert item_of(view) is None and "CONFIDENTIAL" not in text_of(view)
        assert "whether their channel is private" in text_of(view)
        assert "who is in" not in text_of(view)


# -- the bot removed and invited back; a slow Slack; a private channel of many pages --------


def invite_bot_back(bot: Bot, channel: str) -> None:
    bot.fake._channels[channel]["is_member"] = True
    bot.fake.join_channel(channel, bot.fake.bot_user_id)


async def test_the_bot_invited_back_serves_the_channel_at_once(secret: Bot):
    clock = ManualClock()  # no time passes: what Slack refused before must not be kept
    modal.ChannelMembers.of(secret.rt).clock = clock
    bot_id = secret.fake.bot_user_id
    assert item_of(await home_view(secret, "U0ANA", "3.1.a")) is not None
    await secret.settled()
    secret.fake.remove_bot(SECRET_CHANNEL)
    assert (
        await secret.event(member_event("member_left_channel", bot_id, SECRET_CHANNEL))
    ).status == 200
    view = await home_view(secret, "U0ANA", "3.1.b")
    assert item_of(view) is None and "/invite @hitl" in text_of(view)
    await secret.settled()

    invite_bot_back(secret, SECRET_CHANNEL)  # an admin did what the window said
    assert (
        await secret.event(member_event("member_joined_channel", bot_id, SECRET_CHANNEL))
    ).status == 200
    await secret.settled()
    view = await home_view(secret, "U0ANA", "3.1.c")
    assert item_of(view) is not None and "/invite" not in text_of(view)


async def test_the_bot_removed_while_the_list_is_read_is_not_undone_by_the_answer(secret: Bot):
    clock = ManualClock()
    modal.ChannelMembers.of(secret.rt).clock = clock
    bot_id = secret.fake.bot_user_id
    assert item_of(await home_view(secret, "U0ANA", "3.2.a")) is not None
    await secret.settled()
    clock.now += modal.MEMBERS_FRESH + 1  # getting old: asked again while in use
    secret.fake.fail("conversations.members", mode="timeout")
    assert item_of(await home_view(secret, "U0RAJ", "3.2.b")) is not None
    await secret.fake.wait_for(lambda: len(secret.fake.calls_to("conversations.members")) == 2)
    # the bot is removed while Slack reads the list; the app hears of it first
    assert (
        await secret.event(member_event("member_left_channel", bot_id, SECRET_CHANNEL))
    ).status == 200
    secret.fake.release_timeouts()  # the answer, read before the removal, comes after it
    held = secret.fake.calls_to("conversations.members")[1]
    await secret.fake.wait_for(lambda: held.reply is not None)
    assert held.reply and "U0ANA" in held.reply["members"]
    secret.fake.remove_bot(SECRET_CHANNEL)
    await secret.settled()
    view = await home_view(secret, "U0ANA", "3.2.c")
    assert item_of(view) is None and "CONFIDENTIAL" not in text_of(view)
    assert "/invite @hitl" in text_of(view)


async def test_a_public_channels_window_is_not_held_while_slack_is_slow(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(modal, "MEMBERS_WAIT", 60.0)  # a wait would outlast the test
    seed(tmp_path / "hitl.db", [*CASES, Item("case-3", "CONFIDENTIAL case three")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        clock = ManualClock()
        modal.ChannelMembers.of(bot.rt).clock = clock
        view = await home_view(bot, "U0ANA", "3.3.a")
        assert item_of(view) is not None
        await bot.settled()
        clock.now += modal.MEMBERS_MAX_AGE + 1  # a quiet while: public when last asked
        bot.fake.fail("conversations.info", mode="timeout")  # Slack slow to answer
        for _ in range(2):  # drawn while the look at the channel is still unanswered
            view = await click_in(bot, "U0ANA", view)
            assert item_of(view) is not None
        assert not bot.fake.calls_to("conversations.info")[-1].reply
        bot.fake.release_timeouts()
        await bot.settled()


@pytest.fixture
async def many(fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """HITL_CHANNEL is private, of 2,502 members (3 pages): ana on the first, raj on the
    last. A window waits for Slack longer than the test runs, unless told otherwise."""
    monkeypatch.setattr(modal, "MEMBERS_WAIT", 60.0)
    people = ["U0ANA", *(f"U{n:07d}" for n in range(2500)), "U0RAJ"]
    fake_slack.add_channel(SECRET_CHANNEL, "all-hands-private", is_private=True, members=people)
    seed(tmp_path / "hitl.db", CASES)
    settings = make_settings(fake_slack, tmp_path, channel=SECRET_CHANNEL, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        await bot.settled()
        yield bot


async def test_a_member_on_a_page_read_is_served_before_the_rest_is_read(many: Bot):
    many.fake.fail("conversations.members", mode="timeout", times=2)  # pages 1, 2 held
    assert (await many.action(start_labeling("U0ANA", "3.4.a"))).status == 200
    await many.fake.wait_for(lambda: len(many.fake.calls_to("conversations.members")) == 1)
    many.fake.release_timeouts()  # page 1 (ana on it) read; page 2 held
    view = await opened_view(many)
    assert item_of(view) is not None and "CONFIDENTIAL" in text_of(view)
    assert many.fake.calls_to("conversations.members")[-1].reply is None  # still reading
    many.fake.release_timeouts()
    await many.settled()


async def test_a_window_opened_before_slack_listed_the_members_is_drawn_again_when_it_has(
    many: Bot, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(modal, "MEMBERS_WAIT", 0.05)  # the window opens while still asked
    many.fake.fail("conversations.members", mode="timeout")
    view = await home_view(many, "U0RAJ", "3.5.a")  # raj: on the last page
    assert item_of(view) is None and "not said yet" in text_of(view)
    many.fake.release_timeouts()
    await many.settled()
    redrawn = many.fake.views[view["id"]]
    assert item_of(redrawn) is not None and "CONFIDENTIAL" in text_of(redrawn)
    assert "not said yet" not in text_of(redrawn)
    assert "shows their items when it has" in text_of(view)  # what the line said

    # someone not in it: drawn again too, on nothing of the channel, without the line
    many.fake.add_user("U0GUEST", "guest")
    modal.ChannelMembers.of(many.rt).known.clear()
    many.fake.fail("conversations.members", mode="timeout")
    view = await home_view(many, "U0GUEST", "3.5.b")
    assert item_of(view) is None
    many.fake.release_timeouts()
    await many.settled()
    redrawn = many.fake.views[view["id"]]
    assert item_of(redrawn) is None and "CONFIDENTIAL" not in text_of(redrawn)
    assert "not said yet" not in text_of(redrawn)


async def test_a_window_redrawn_before_its_answer_was_lost_is_still_drawn_again_when_slack_has(
    secret: Bot, monkeypatch: pytest.MonkeyPatch
):
    """The click's views.update took effect and its answer was lost (a 500): the retry heard
    hash_conflict, and the window, drawn while Slack was still asked who is in the channel,
    kept "not said yet" for good: its redraw once Slack had said was dropped with the answer."""
    clock = ManualClock()
    modal.ChannelMembers.of(secret.rt).clock = clock
    view = await home_view(secret, "U0RAJ", "2.9.a")
    assert item_of(view) is not None
    await secret.settled()
    clock.now += modal.MEMBERS_MAX_AGE + 1  # the list is too old: asked again at the click
    monkeypatch.setattr(modal, "MEMBERS_WAIT", 0.05)  # the window is drawn while still asked
    secret.fake.fail("conversations.members", mode="timeout")
    secret.fake.fail("views.update", status=500, after=True)
    await send_click(secret, "U0RAJ", view)
    await secret.fake.wait_for(lambda: len(secret.fake.calls_to("views.update")) == 2)
    drawn = secret.fake.views[view["id"]]
    assert item_of(drawn) is None and "not said yet" in text_of(drawn)
    secret.fake.release_timeouts()  # Slack says: raj is in the channel
    await secret.settled()
    redrawn = secret.fake.views[view["id"]]
    assert item_of(redrawn) is not None and "CONFIDENTIAL" in text_of(redrawn)
    assert "not said yet" not in text_of(redrawn)


# -- a channel made private while Slack cannot list it; a read begun anew; a stop ----------


async def test_a_channel_made_private_is_closed_to_others_while_slack_cannot_list_it(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="bot.slack.modal")
    fake_slack.add_user("U0GUEST", "guest")  # not in #labeling
    seed(tmp_path / "hitl.db", [*CASES, Item("case-3", "CONFIDENTIAL case three")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        clock = ManualClock()
        modal.ChannelMembers.of(bot.rt).clock = clock
        view = await home_view(bot, "U0GUEST", "4.1.a")
        assert item_of(view) is not None  # public: anyone
        await bot.settled()
        bot.fake._channels[CHANNEL]["is_private"] = True  # converted to a private channel
        clock.now += 10 * 60
        bot.fake.fail("conversations.members", "internal_error", times=100)
        view = await click_in(bot, "U0GUEST", view)  # not held: the look starts meanwhile
        await bot.settled()
        assert bot.fake.calls_to("conversations.info")[-1].reply["channel"]["is_private"]
        assert bot.fake.calls_to("conversations.members")  # Slack said private, then failed

        view = await click_in(bot, "U0GUEST", view)  # the item after the look that saw it
        assert item_of(view) is None and "CONFIDENTIAL" not in text_of(view)
        assert "who is in their channel (internal_error)" in text_of(view)
        view = await home_view(bot, "U0GUEST", "4.1.b")
        assert item_of(view) is None and "CONFIDENTIAL" not in text_of(view)
        said = [r.getMessage() for r in caplog.records if CHANNEL in r.getMessage()]
        assert said and not [m for m in said if "still public" in m or "to everyone" in m]
        assert [m for m in said if f"who is in {CHANNEL}" in m and "to nobody" in m]


async def test_a_channel_made_private_is_closed_to_others_while_its_members_are_read(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(modal, "MEMBERS_WAIT", 0.05)  # a window opens while Slack reads
    fake_slack.add_user("U0GUEST", "guest")  # not in #labeling
    seed(tmp_path / "hitl.db", [*CASES, Item("case-3", "CONFIDENTIAL case three")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        clock = ManualClock()
        modal.ChannelMembers.of(bot.rt).clock = clock
        assert item_of(await home_view(bot, "U0GUEST", "4.2.a")) is not None  # public
        await bot.settled()
        bot.fake._channels[CHANNEL]["is_private"] = True
        bot.fake._members[CHANNEL] = ["U0ANA", "U0RAJ", bot.fake.bot_user_id]
        clock.now += modal.MEMBERS_FRESH + 1  # getting old: looked at again in the background
        bot.fake.fail("conversations.members", mode="timeout")  # Slack slow to list it
        assert item_of(await home_view(bot, "U0GUEST", "4.2.b")) is not None  # not held
        await fake_slack.wait_for(lambda: bool(fake_slack.calls_to("conversations.members")))
        # conversations.info said private; its members are not read yet
        view = await home_view(bot, "U0GUEST", "4.2.c")
        assert item_of(view) is None and "CONFIDENTIAL" not in text_of(view)
        bot.fake.release_timeouts()
        await bot.settled()
        redrawn = bot.fake.views[view["id"]]  # drawn again once Slack listed the members
        assert item_of(redrawn) is None and "not said yet" not in text_of(redrawn)
        known = modal.ChannelMembers.of(bot.rt).known[CHANNEL]
        assert known.private and "U0ANA" in known.members and "U0GUEST" not in known.members


async def test_a_window_waits_for_the_read_begun_when_the_bot_was_invited_back(
    many: Bot, monkeypatch: pytest.MonkeyPatch
):
    """The bot is removed and invited back while the members are read: that read's answer
    is dropped and a new one begins. A window drawn before Slack answered waits for the new
    one, and is drawn on an item then."""
    monkeypatch.setattr(modal, "MEMBERS_WAIT", 0.05)  # the window opens while still asked
    members = modal.ChannelMembers.of(many.rt)
    looked = 0
    redraw_looked = asyncio.Event()
    served = modal.ChannelMembers.served

    async def counted(self: modal.ChannelMembers, channels, user_id):  # noqa: ANN001
        nonlocal looked
        kept = await served(self, channels, user_id)
        looked += 1
        if looked == 2:  # the window's, then its redraw's (after the first read ended)
            redraw_looked.set()
        return kept

    monkeypatch.setattr(modal.ChannelMembers, "served", counted)
    bot_id = many.fake.bot_user_id
    many.fake.fail("conversations.members", mode="timeout")  # the first read's page 1
    view = await home_view(many, "U0RAJ", "4.3.a")  # raj: on the last page
    assert item_of(view) is None and "not said yet" in text_of(view)
    first = many.fake._release
    many.fake._release = asyncio.Event()  # the next read's page 1 is held on its own
    many.fake.fail("conversations.members", mode="timeout")
    many.fake.remove_bot(SECRET_CHANNEL)
    assert (
        await many.event(member_event("member_left_channel", bot_id, SECRET_CHANNEL))
    ).status == 200
    invite_bot_back(many, SECRET_CHANNEL)
    assert (
        await many.event(member_event("member_joined_channel", bot_id, SECRET_CHANNEL))
    ).status == 200
    await many.fake.wait_for(lambda: len(many.fake.calls_to("conversations.members")) == 2)
    first.set()  # the first read ends (dropped: read before the bot left)
    await asyncio.wait_for(redraw_looked.wait(), 30)  # the redraw looked: the new read held
    assert SECRET_CHANNEL not in members.known
    many.fake.release_timeouts()  # the new read lists raj
    await many.settled()
    assert "U0RAJ" in members.known[SECRET_CHANNEL].members
    redrawn = many.fake.views[view["id"]]
    assert item_of(redrawn) is not None and "not said yet" not in text_of(redrawn)
    updates = [c for c in many.fake.calls_to("views.update") if c.params["view_id"] == view["id"]]
    assert len(updates) == 1  # drawn again once, when Slack had answered


async def test_a_stop_past_its_time_cancels_the_tasks_begun_while_it_waited():
    """A listener the stop waits for begins a task (a window's redraw) and ends; what the
    stop waited on is held. Past the stop's time that task is cancelled too, not left to
    run once the database is closed."""
    background = Background()
    go = asyncio.Event()
    begun: list[asyncio.Task] = []

    async def held() -> None:
        await asyncio.Event().wait()  # a Slack call that does not answer

    async def listener() -> None:
        await go.wait()
        task = asyncio.create_task(held(), name="hitl-window-U0RAJ")
        background.keep(task)
        begun.append(task)

    for work in (listener(), held()):
        background.keep(asyncio.create_task(work))
    drain = asyncio.create_task(background.drain(0.5))
    await asyncio.sleep(0)  # the stop waits on the listener and the held call
    go.set()  # the listener begins its task meanwhile
    with pytest.raises(TimeoutError):
        await drain
    assert begun and begun[0].cancelled()
    assert not background.tasks


class Watched(set):
    """Background's task set, which fails a loop over it that never yields to the event loop
    (where the old drain span for ever, the test with it)."""

    looks = 0

    def look(self) -> None:
        self.looks += 1
        if self.looks >= 1000:
            pytest.fail("drain looped over its tasks without the loop turning")

    def __len__(self) -> int:
        self.look()
        return super().__len__()

    def __iter__(self):
        self.look()
        return super().__iter__()


async def test_a_stop_right_after_a_listener_ended_returns():
    """The stop begins in the loop's turn in which a kept task ended: the task is done, its
    ``done`` callback not yet run. Old: drain gathered it again and again, and from Python 3.12
    gather of done tasks returns without yielding, so ``hitl serve`` span at full CPU at its
    stop, past its timeout (seen as a hang of tests/bot/test_serve.py on 3.13)."""
    background = Background(tasks=Watched())

    async def listener() -> None:
        return None

    task = asyncio.create_task(listener())
    background.keep(task)
    await asyncio.sleep(0)  # the listener runs and ends; its `done` waits for the next turn
    assert task.done() and task in background.tasks
    await background.drain(0.5)
    assert not background.tasks
