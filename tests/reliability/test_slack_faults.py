"""A bad day at Slack: every fault the Web API can throw, while people keep answering.
After the faults stop, every queued item is posted exactly once, every decided message shows
its label, and no answer was lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
from pathlib import Path

import pytest
import yaml

from bot.config import Settings
from bot.runtime import make_client
from bot.sandbox import FakeSlack
from bot.store import DatabaseError
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL, USERS

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = "G0PRIVATE"

ITEMS = [Item(f"i{n:02d}", f"ticket {n}: invoice, crash or password? case {n}") for n in range(12)]
POST_FAULTS = [  # (error, kwargs) in the order Slack throws them at the dispatcher
    ("ratelimited", {"status": 429, "retry_after": 7}),
    ("internal_error", {"status": 500}),
    ("timeout", {"mode": "timeout"}),
    ("reset", {"mode": "reset"}),
    ("invalid_blocks", {}),
    ("not_in_channel", {}),
    ("channel_not_found", {}),
]


async def answer_open_questions(bot: Bot, answered: set[str]) -> None:
    """Everyone answers what is open: ana clicks the first button of each open question."""
    for message in bot.posted():
        item_id = next(
            (b["block_id"][2:] for b in message["blocks"] if b["type"] == "actions"), None
        )
        if item_id is None or item_id in answered:
            continue
        response = await bot.action(bot.button_payload(message, "U0ANA", "billing"))
        assert response.status == 200  # acked even while Slack fails around it
        answered.add(item_id)


def time_passes(bot: Bot, channel: str = CHANNEL) -> None:
    """The backoff, Retry-After or the broken-channel pause has run out, and so has the wait
    for a lost post to show up in the channel's history."""
    state = bot.dispatcher.channel_state(channel)
    state.next_attempt = 0
    state.last_post = float("-inf")
    state.history_retry_at = 0
    bot.dispatcher.post_settle = 0.0


async def test_a_bad_day_at_slack_loses_nothing(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", ITEMS)
    settings = make_settings(fake_slack, tmp_path, max_open=3)
    async for bot in start_bot(fake_slack, settings):
        bot.rt.client = make_client(settings, retries=0, timeout=0.5)
        answered: set[str] = set()
        for error, kwargs in POST_FAULTS:
            bot.fake.fail("chat.postMessage", error, **kwargs)
            bot.fake.fail(
                "chat.update", "message_not_found" if len(answered) % 2 else "fatal_error"
            )
            await bot.dispatcher.fill()
            bot.fake.release_timeouts()
            await answer_open_questions(bot, answered)
            await bot.rt.background.drain()
            time_passes(bot)

        # The faults stop. The dispatcher and the redrawer catch up.
        for _ in range(12):
            time_passes(bot)
            await bot.dispatcher.fill()
            await answer_open_questions(bot, answered)
            await bot.rt.background.drain()
            await bot.rt.redrawer.pending()
        assert await bot.rt.redrawer.pending() == 0
        assert bot.store.posts_to_redraw() == []

        posts = [p["item_id"] for p in bot.store.db["posts"].rows]
        assert sorted(posts) == sorted({p for p in posts})  # no item posted twice
        shown = [m["metadata"]["event_payload"]["item_id"] for m in bot.fake.messages(CHANNEL)]
        assert sorted(shown) == sorted(posts)  # and no stray message in the channel
        assert set(posts) == {item.id for item in ITEMS}  # every queued item went out
        answers = {a["item_id"] for a in bot.store.iter_answers()}
        assert answers == answered  # every acked answer is stored
        for message in bot.fake.messages(CHANNEL):
            item_id = message["metadata"]["event_payload"]["item_id"]
            label = bot.store.resolution(item_id)["label"]
            assert f"✅ *`{label}`* by <@U0ANA>" in str(message["blocks"]), item_id


def one_item(fake_slack: FakeSlack, tmp_path: Path) -> Settings:
    """The settings of a bot whose queue holds one item (i00), room for three questions."""
    seed(tmp_path / "hitl.db", ITEMS[:1])
    return make_settings(fake_slack, tmp_path, max_open=3)


def each_once(bot: Bot, channel: str = CHANNEL) -> dict[str, str]:
    """item id -> ts of its one message in the channel, checked against the posts table."""
    shown = [
        (m["metadata"]["event_payload"]["item_id"], m["ts"]) for m in bot.fake.messages(channel)
    ]
    recorded = sorted((p["item_id"], p["ts"]) for p in bot.store.db["posts"].rows)
    assert sorted(shown) == recorded  # each message is recorded against its own item
    assert len({item for item, _ in shown}) == len(shown)  # and no item is in two messages
    return dict(shown)


@pytest.mark.parametrize("fault", [{"status": 500}, {"mode": "reset"}], ids=["500", "reset"])
async def test_a_post_that_fails_after_slack_stored_it_is_not_posted_again(
    fake_slack: FakeSlack, tmp_path: Path, fault: dict
):
    settings = one_item(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings):  # the client `hitl serve` makes
        bot.fake.fail("chat.postMessage", after=True, **fault)
        await bot.dispatcher.fill()  # Slack stored it, but the bot never heard so
        assert len(bot.fake.messages(CHANNEL)) == 1
        time_passes(bot)
        await bot.dispatcher.fill()

        assert each_once(bot) == {"i00": bot.fake.messages(CHANNEL)[0]["ts"]}
        assert len(bot.fake.calls_to("chat.postMessage")) == 1
        assert bot.store.get_item("i00")["status"] == "posted"


@pytest.mark.parametrize("error", ["fatal_error", "internal_error"])
async def test_a_post_slack_stored_before_answering_an_error_with_200_is_not_posted_again(
    fake_slack: FakeSlack, tmp_path: Path, error: str
):
    # Slack's fatal_error and internal_error may come with HTTP 200 after the message was
    # stored ("some aspect of the operation may have succeeded"): as after a 5xx, the history
    # is searched before the item goes again.
    settings = one_item(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings, retries=0):
        bot.fake.fail("chat.postMessage", error, after=True)
        await bot.dispatcher.fill()
        time_passes(bot)
        await bot.dispatcher.fill()

        assert each_once(bot) == {"i00": bot.fake.messages(CHANNEL)[0]["ts"]}
        assert len(bot.fake.calls_to("chat.postMessage")) == 1
        assert len(bot.fake.calls_to("conversations.history")) == 1


async def lose_a_post_while_the_history_is_down(bot: Bot) -> None:
    """Slack stores a question but its answer is lost (a 500), and the history that would
    show it is down too: the item waits, its message in the channel but not recorded."""
    bot.fake.fail("chat.postMessage", status=500, after=True)
    bot.fake.fail("conversations.history", status=503)
    await bot.dispatcher.fill()
    time_passes(bot)
    await bot.dispatcher.fill()  # cannot tell yet
    assert len(bot.fake.messages(CHANNEL)) == 1 and bot.store.db["posts"].count == 0


async def test_a_lost_post_is_looked_for_after_a_restart_before_it_is_posted_again(
    fake_slack: FakeSlack, tmp_path: Path
):
    settings = one_item(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings, retries=0):
        await lose_a_post_while_the_history_is_down(bot)
    async for bot in start_bot(fake_slack, settings, retries=0):  # restarted (SIGTERM)
        await bot.dispatcher.fill()
        time_passes(bot)
        await bot.dispatcher.fill()

        assert each_once(bot) == {"i00": bot.fake.messages(CHANNEL)[0]["ts"]}
        assert len(bot.fake.calls_to("chat.postMessage")) == 1
        assert bot.store.get_item("i00")["status"] == "posted"
        assert bot.store.post_attempts() == []


async def test_a_post_under_way_when_the_server_dies_is_found_after_the_restart(
    fake_slack: FakeSlack, tmp_path: Path
):
    settings = one_item(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings, retries=0):
        bot.fake.fail("chat.postMessage", mode="timeout")  # Slack holds the call...
        round_ = asyncio.create_task(bot.dispatcher.fill())
        await bot.fake.next_call("chat.postMessage")
        round_.cancel()  # ...and the server dies before any answer: nothing after the call runs
        with contextlib.suppress(asyncio.CancelledError):
            await round_
    fake_slack.release_timeouts()  # then Slack stores the message
    await fake_slack.wait_for(lambda: len(fake_slack.messages(CHANNEL)) == 1)
    async for bot in start_bot(fake_slack, settings, retries=0):
        await bot.dispatcher.fill()

        assert each_once(bot) == {"i00": bot.fake.messages(CHANNEL)[0]["ts"]}
        assert len(bot.fake.calls_to("chat.postMessage")) == 1
        assert len(bot.fake.calls_to("conversations.history")) == 1


async def test_a_post_under_way_is_still_looked_for_when_the_first_round_finds_the_db_locked(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The server died during a post Slack then stored, and restarted while another process
    (a `hitl import`, a sqlite3 shell) held the database's write lock: the start's one-time
    read of the unfinished posts failed on the lock, was never done again, and the question
    went out a second time."""
    settings = one_item(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings, retries=0):
        bot.fake.fail("chat.postMessage", mode="timeout")
        round_ = asyncio.create_task(bot.dispatcher.fill())
        await bot.fake.next_call("chat.postMessage")
        round_.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await round_
    fake_slack.release_timeouts()
    await fake_slack.wait_for(lambda: len(fake_slack.messages(CHANNEL)) == 1)
    async for bot in start_bot(fake_slack, settings, retries=0):
        bot.store.set_busy_timeout(0)  # refused at once, not after the server's 2 s
        other = sqlite3.connect(settings.db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's write lock
        try:
            with contextlib.suppress(DatabaseError):
                await bot.dispatcher.fill()
        finally:
            other.execute("ROLLBACK")
            other.close()
        await bot.dispatcher.fill()

        assert each_once(bot) == {"i00": bot.fake.messages(CHANNEL)[0]["ts"]}
        assert len(bot.fake.calls_to("chat.postMessage")) == 1


async def test_a_post_slack_stores_only_after_the_client_gave_up_is_not_posted_twice(
    fake_slack: FakeSlack, tmp_path: Path
):
    settings = one_item(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings, retries=0):
        bot.rt.client = make_client(settings, retries=0, timeout=0.5)
        bot.fake.fail("chat.postMessage", mode="timeout")
        assert await bot.dispatcher.fill() == 0  # the client gave up waiting
        state = bot.dispatcher.channel_state(CHANNEL)
        state.next_attempt = 0
        assert await bot.dispatcher.fill() == 0  # not in the history yet: it is looked for again
        assert len(bot.fake.calls_to("conversations.history")) == 1
        assert state.unsure == {"i00"} and state.history_retry_at > 0
        fake_slack.release_timeouts()  # Slack, slow, stores it now
        await fake_slack.wait_for(lambda: len(fake_slack.messages(CHANNEL)) == 1)
        state.history_retry_at = 0  # the next look
        await bot.dispatcher.fill()

        assert each_once(bot) == {"i00": bot.fake.messages(CHANNEL)[0]["ts"]}
        assert len(bot.fake.calls_to("chat.postMessage")) == 1
        assert bot.store.post_attempts() == []


async def test_a_lost_post_answered_before_it_is_found_stays_decided(
    fake_slack: FakeSlack, tmp_path: Path
):
    settings = one_item(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings, retries=0):
        await lose_a_post_while_the_history_is_down(bot)
        [message] = bot.posted()
        response = await bot.action(bot.button_payload(message, "U0ANA", "billing"))
        assert response.status == 200  # the visible message is answered meanwhile
        time_passes(bot)
        await bot.dispatcher.fill()  # and then found in the history
        await bot.settled()

        assert bot.store.get_item("i00")["status"] == "resolved"
        assert bot.store.resolution("i00")["label"] == "billing"
        assert bot.store.open_post_counts() == {}  # it holds no place in the channel
        assert "✅ *`billing`* by <@U0ANA>" in json.dumps(
            bot.posted()[0]["blocks"], ensure_ascii=False
        )
        assert not [b for b in bot.posted()[0]["blocks"] if b["type"] == "actions"]
        assert len(bot.fake.calls_to("chat.postMessage")) == 1


async def test_updates_and_rate_limited_posts_are_still_retried(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A 429 means Slack did not take the post: the channel waits its Retry-After (the
    dispatcher's clock, not a sleep in the call, 67eb7df) and posts it again; updates are
    retried by the client."""
    settings = one_item(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings):
        bot.fake.fail("chat.postMessage", status=429, retry_after=0)
        assert await bot.dispatcher.fill() == 0  # the channel waits its Retry-After (0 s)
        bot.dispatcher.channel_state(CHANNEL).next_attempt = 0
        assert await bot.dispatcher.fill() == 1
        assert [c.faulted for c in bot.fake.calls_to("chat.postMessage")] == [True, False]
        [message] = bot.posted()
        bot.fake.fail("chat.update", status=500, after=True)
        bot.fake.fail("chat.update", mode="reset")
        await bot.action(bot.button_payload(message, "U0ANA", "billing"))
        await bot.settled()
        assert "✅ *`billing`* by <@U0ANA>" in json.dumps(
            bot.posted()[0]["blocks"], ensure_ascii=False
        )
        assert len(bot.fake.calls_to("chat.update")) == 3


async def queue_text(bot: Bot) -> str:
    """What `/hitl queue` answers (the ack's body: the text, or JSON with it)."""
    body = await (await bot.command("queue", "U0ADMIN")).text()
    return json.loads(body)["text"] if body.startswith("{") else body


def manifest_scopes() -> tuple[str, ...]:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    return tuple(manifest["oauth_config"]["scopes"]["bot"])


def private_workspace(scopes: tuple[str, ...]) -> FakeSlack:
    """A workspace whose questions channel is private (the bot was invited with /invite)."""
    fake = FakeSlack(scopes=scopes)
    fake.add_channel(PRIVATE, "labeling-private", is_private=True)
    for user_id, name in USERS.items():
        fake.add_user(user_id, name, is_admin=user_id == "U0ADMIN")
    return fake


async def test_the_manifest_lets_a_private_channel_find_a_lost_post(tmp_path: Path):
    seed(tmp_path / "hitl.db", ITEMS[:3])
    async with private_workspace(manifest_scopes()) as fake:
        settings = make_settings(fake, tmp_path, channel=PRIVATE, max_open=3)
        async for bot in start_bot(fake, settings):
            fake.fail("chat.postMessage", status=500, after=True)
            assert await bot.dispatcher.fill() == 0
            time_passes(bot, PRIVATE)
            assert await bot.dispatcher.fill() == 2  # the lost one is found, two more go out

            assert len(each_once(bot, PRIVATE)) == 3


async def test_a_missing_history_scope_is_named_once_and_the_channel_keeps_posting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    seed(tmp_path / "hitl.db", ITEMS[:5])
    installed = ("chat:write", "commands", "channels:history", "channels:join", "files:write")
    async with private_workspace(installed) as fake:  # installed before groups:history
        settings = make_settings(fake, tmp_path, channel=PRIVATE, max_open=3)
        async for bot in start_bot(fake, settings):
            fake.fail("chat.postMessage", status=500, after=True)
            await bot.dispatcher.fill()
            [lost] = [m["metadata"]["event_payload"]["item_id"] for m in fake.messages(PRIVATE)]
            with caplog.at_level(logging.INFO):
                for _ in range(4):
                    time_passes(bot, PRIVATE)
                    await bot.dispatcher.fill()

            named = [r.getMessage() for r in caplog.records if "groups:history" in r.getMessage()]
            assert len(named) == 1 and "reinstall" in named[0], named
            assert "history unavailable" not in caplog.text
            queue = await queue_text(bot)
            assert "groups:history" in queue and "reinstall" in queue
            # The channel still gets questions; the lost one is held back, not posted twice.
            shown = [m["metadata"]["event_payload"]["item_id"] for m in fake.messages(PRIVATE)]
            assert len(shown) == 4 and shown.count(lost) == 1
            assert lost not in {p["item_id"] for p in bot.store.db["posts"].rows}

            fake.scopes = (*installed, "groups:history")  # the admin adds it and reinstalls
            time_passes(bot, PRIVATE)
            await bot.dispatcher.fill()
            assert len(each_once(bot, PRIVATE)) == 4  # the lost one is recorded, once
            queue = await queue_text(bot)
            assert "groups:history" not in queue


async def posted_and_answered(bot: Bot, n: int) -> list[dict]:
    """n questions posted; each gets an answer that changes it (its message must be redrawn)."""
    assert await bot.dispatcher.fill() == n
    await bot.settled()
    for k, message in enumerate(bot.posted()):
        item_id = message["metadata"]["event_payload"]["item_id"]
        bot.store.record_answer(
            item_id, "U0RAJ", None, source="button", dedupe_key=f"k{k}", votes_needed=3
        )
    return bot.store.posts_to_redraw()


async def test_permanent_update_errors_are_given_up_with_one_log_line(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    seed(tmp_path / "hitl.db", ITEMS[:3])
    settings = make_settings(fake_slack, tmp_path, max_open=3, votes=3)
    async for bot in start_bot(fake_slack, settings):
        assert len(await posted_and_answered(bot, 3)) == 3
        fake_slack.fail("chat.update", "invalid_blocks", times=100)
        with caplog.at_level(logging.INFO, logger="bot"):
            for _ in range(3):
                assert await bot.rt.redrawer.pending() == 0  # nothing left to retry

        assert bot.store.posts_to_redraw() == []
        said = [r for r in caplog.records if "invalid_blocks" in r.getMessage()]
        assert len(said) == 3 and all("gave up" in r.getMessage() for r in said), said
        assert len(fake_slack.calls_to("chat.update")) == 3


async def test_a_channel_that_refuses_the_bot_holds_its_redraws_with_one_call_a_pass(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """not_in_channel is the channel's, not the message's: its messages wait (said once, one
    call a pass for the whole channel) and are drawn once the channel takes them again."""
    seed(tmp_path / "hitl.db", ITEMS[:3])
    settings = make_settings(fake_slack, tmp_path, max_open=3, votes=3)
    async for bot in start_bot(fake_slack, settings):
        behind = await posted_and_answered(bot, 3)
        assert len(behind) == 3
        fake_slack.fail("chat.update", "not_in_channel", times=3)
        with caplog.at_level(logging.INFO, logger="bot"):
            for _ in range(3):
                assert await bot.rt.redrawer.pending() == 3  # waiting for the channel

        said = [r for r in caplog.records if "not_in_channel" in r.getMessage()]
        assert len(said) == 1 and "/invite @hitl" in said[0].getMessage(), said
        assert len(fake_slack.calls_to("chat.update")) == 3  # one a pass, not one a message
        assert await bot.rt.redrawer.pending() == 0  # the channel works again: all drawn
        assert bot.store.posts_to_redraw() == []


async def test_messages_wait_out_a_refused_token_and_are_drawn_once_it_works(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A token Slack refuses (revoked, or rotated by a reinstall) is said once; the messages
    stay pending and are drawn once the token works again. They were given up: left with
    buttons on decided questions for good, even after a restart."""
    seed(tmp_path / "hitl.db", ITEMS[:3])
    settings = make_settings(fake_slack, tmp_path, max_open=3, votes=3)
    async for bot in start_bot(fake_slack, settings):
        assert len(await posted_and_answered(bot, 3)) == 3
        fake_slack.fail("chat.update", "token_revoked", times=3)
        with caplog.at_level(logging.INFO, logger="bot"):
            for _ in range(3):
                assert await bot.rt.redrawer.pending() == 3  # left to retry, with backoff
            assert len(bot.store.posts_to_redraw()) == 3
            assert await bot.rt.redrawer.pending() == 0  # the token works again
        assert bot.store.posts_to_redraw() == []
        said = [r.getMessage() for r in caplog.records if "token" in r.getMessage()]
        assert len(said) == 2 and "token_revoked" in said[0] and "again" in said[1], said
        updates = fake_slack.calls_to("chat.update")
        assert [c.faulted for c in updates] == [True] * 3 + [False] * 3  # one call a pass


async def test_a_post_that_goes_through_again_says_so_and_wakes_the_waiting_redraws(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """After a long refusal the redraws' backoff had grown to minutes: answered questions kept
    their buttons that long after the token worked and new questions went out. The first post
    that goes through wakes them, and the log says posting resumed (only an INFO line did)."""
    seed(tmp_path / "hitl.db", ITEMS[:4])
    settings = make_settings(fake_slack, tmp_path, max_open=3, votes=3)
    async for bot in start_bot(fake_slack, settings):
        assert len(await posted_and_answered(bot, 3)) == 3
        fake_slack.fail("chat.update", "token_revoked", times=1)
        assert await bot.rt.redrawer.pending() == 3
        item_id = bot.posted()[0]["metadata"]["event_payload"]["item_id"]
        for user in ("U0ANA", "U0MEI"):  # decided (3 votes with posted_and_answered's): a slot
            bot.store.record_answer(
                item_id, user, "billing", source="button", dedupe_key=user, votes_needed=3
            )
        fake_slack.fail("chat.postMessage", "token_revoked", times=1)
        assert await bot.dispatcher.fill() == 0
        bot.rt.redrawer.woken.clear()
        bot.dispatcher.channel_state(CHANNEL).next_attempt = 0  # a minute on; the token works
        with caplog.at_level(logging.WARNING, logger="bot"):
            assert await bot.dispatcher.fill() == 1
        assert bot.rt.redrawer.woken.is_set()
        assert any(f"posting to {CHANNEL} again" in r.getMessage() for r in caplog.records)


async def test_a_tally_of_hundreds_of_skippers_still_fits_the_message(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", ITEMS[:1])
    settings = make_settings(fake_slack, tmp_path, max_open=1, votes=3)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        await bot.action(bot.button_payload(message, "U0ANA", "billing"))
        await bot.settled()
        for n in range(200):  # distinct people skip it (a vote keeps it open)
            bot.store.record_answer(
                "i00", f"U{n:010d}", None, source="button", dedupe_key=f"skip{n}", votes_needed=3
            )
        await bot.action(bot.button_payload(message, "U0RAJ", None))

        await bot.settled()  # the fake refuses any text over 3,000 characters
        context = next(b for b in bot.posted()[0]["blocks"] if b["type"] == "context")
        tally = context["elements"][-1]["text"]
        assert len(tally) <= 3000 and tally.startswith("1 of 3 answers in · skipped by <@U0")
        assert tally.count("<@") == tally.count(">")  # no mention cut in half
        more = int(re.search(r" and (\d+) more\. ", tally)[1])
        assert tally.count("<@U0") + more == 201 and "U0ANA" not in tally  # votes are hidden


async def test_an_app_home_with_overlong_names_is_published(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    seed(tmp_path / "hitl.db", ITEMS[:10])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        for n, item in enumerate(ITEMS[:10]):  # ids as long as a forged payload could make them
            bot.store.record_answer(
                item.id, f"U{n}" + "X" * 400, "bug", source="button", dedupe_key=f"a{n}"
            )
        with caplog.at_level(logging.INFO):
            response = await bot.event(signing.app_home_opened_event("U0ANA"))
            assert response.status == 200
            await bot.rt.background.drain()

        assert "U0ANA" in fake_slack.home
        assert "unreachable" not in caplog.text
