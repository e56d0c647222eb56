"""What the channel shows converges on the database: after a burst of clicks by many people
(answers, skips, an Undo, a label renamed in the middle) under an unlucky Slack (429s with
Retry-After on chat.update, 5xx, answers lost after Slack did the work), once the redrawer has
had its turn the last drawing of every question message is what the product's own builder
draws for its item now, and no message was updated more often than its item changed (plus a
settle draw per update whose outcome was unknown). A 429 on chat.update holds every redraw
until its Retry-After, on the redrawer's clock: the pass neither sleeps it out with its lock
held nor goes on calling chat.update for the other messages. A click is acked while its
redraw, or another's, is held by Slack.

The real server (signed requests), the fake Slack and its faults. Time is the redrawer's
clock (``Redrawer.clock``), moved by the test to the redrawer's own next due time; nothing
sleeps."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack import blocks
from bot.slack.questions import as_asked, build_question, label_set
from tests import signing
from tests.bot.harness import Bot, Item, has_buttons, item_of, posted_on_clock
from tests.fake_slack import CHANNEL

ITEMS = [Item(f"i{n}", f"ticket number {n} about an invoice or a crash") for n in range(12)]
PEOPLE = [f"U0P{n:02d}" for n in range(10)]  # ten people


def posted(fake: FakeSlack, tmp_path: Path, n: int, retries: int = 0, **changes):
    for user in PEOPLE:
        fake.add_user(user, user.lower())
        fake.join_channel(CHANNEL, user)
    return posted_on_clock(fake, tmp_path, ITEMS, n, retries, **changes)


def as_json(value: object) -> object:
    return json.loads(json.dumps(value, default=lambda b: b.to_dict()))


def expected(bot: Bot, item_id: str) -> tuple[str, object]:
    """What the product draws for ``item_id`` as the database has it now."""
    rt = bot.rt
    question = build_question(rt.store, rt.settings, item_id, label_set(rt.settings, rt.store))
    assert question is not None
    asking = as_asked(rt, question)
    return blocks.question_text(asking), as_json(blocks.question_blocks(asking))


def shown(message: dict) -> object:
    drawn = message["blocks"]
    return json.loads(drawn) if isinstance(drawn, str) else drawn


async def run_out(bot: Bot, redrawer, clock) -> None:
    """Let the redrawer have its turn: every background task done, then its passes at each
    time it says it is due, until nothing is."""
    await bot.rt.background.drain(30)
    for _ in range(100):
        due = redrawer.next_due()
        if due is None:
            return
        clock.now = max(clock.now, due)
        await redrawer.pending(due_only=True)
    raise AssertionError("the redrawer never came to rest")


def undo_offers(bot: Bot) -> list[tuple[str, str]]:
    """(person, the Undo button's value) of every "Saved …" note offering an Undo."""
    offers = []
    for call in bot.fake.calls_to("chat.postEphemeral"):
        drawn = call.params.get("blocks")
        for block in (drawn if isinstance(drawn, list) else json.loads(drawn or "[]")) or []:
            button = block.get("accessory") or {}
            if button.get("action_id") == blocks.UNDO_ACTION:
                offers.append((str(call.params["user"]), str(button["value"])))
    return offers


async def click_undo(bot: Bot, user: str, value: str, message: dict) -> None:
    url = bot.fake.response_url(CHANNEL)
    payload = signing.block_actions_payload(
        user, blocks.UNDO_ACTION, value, message_ts=message["ts"], response_url=url
    )
    assert (await bot.action(payload)).status == 200


@pytest.mark.parametrize("votes", [1, 3])
async def test_after_a_burst_under_an_unlucky_slack_every_message_shows_its_item(
    fake_slack: FakeSlack, tmp_path: Path, votes: int
):
    async for bot, redrawer, clock in posted(fake_slack, tmp_path, 8, votes=votes):
        await burst(bot, redrawer, clock)


async def burst(bot: Bot, redrawer, clock) -> None:
    """Ten people on eight open questions, under Slack's faults; then the checks."""
    fake_slack = bot.fake
    messages = {m["ts"]: m for m in bot.posted()}
    assert len(messages) == 8
    before = Counter(str(c.params["ts"]) for c in fake_slack.calls_to("chat.update"))
    start = len(fake_slack.calls)
    changes: Counter[str] = Counter()  # ts -> the changes its item went through
    when: dict[int, float] = {}  # call position -> the redrawer's clock when Slack had it
    fake_slack.observers.append(
        lambda: when.update({c.at: when.get(c.at, clock.now) for c in fake_slack.calls})
    )
    fake_slack.fail("chat.update", "ratelimited", status=429, retry_after=30, times=2)
    fake_slack.fail("chat.update", status=500, after=True)  # done, the answer lost
    fake_slack.fail("chat.update", mode="reset", after=True)
    fake_slack.fail("chat.update", "fatal_error")

    async def click(user: str, message: dict, label: str | None) -> None:
        payload = bot.button_payload(message, user, label)
        assert (await bot.action(payload)).status == 200  # acked, whatever Slack does
        changes[message["ts"]] += 1

    ordered = list(messages.values())
    # a first wave, everyone at once: three on the first question (it is decided, with
    # HITL_VOTES 1 or 3), the others one each on the rest, some of them skipping
    wave = [(PEOPLE[k], ordered[0]) for k in range(3)]
    wave += [(user, ordered[1 + k % 7]) for k, user in enumerate(PEOPLE[3:])]
    await asyncio.gather(
        *(
            click(user, message, None if k % 4 == 3 else bot.first_label(message))
            for k, (user, message) in enumerate(wave)
        )
    )
    await bot.rt.background.drain(30)  # the notes after the acks: the Undo offers
    # the Undo of the first question's decision, by the person whose click made it
    [(decider, value)] = [
        (user, value)
        for user, value in undo_offers(bot)
        if blocks.decode_value(value)[0] == item_of(ordered[0])
    ]
    await click_undo(bot, decider, value, ordered[0])
    changes[ordered[0]["ts"]] += 1
    # a rename in the middle of it
    renamed = await bot.command("labels rename billing invoices", "U0ADMIN")
    assert renamed.status == 200
    for message in messages.values():
        changes[message["ts"]] += 1
    # a second wave, on the drawings people have in front of them (renamed or not)
    second = []
    for k, user in enumerate(reversed(PEOPLE)):
        now = fake_slack.message(CHANNEL, ordered[(k + 3) % 8]["ts"])
        if has_buttons(now):
            second.append(click(user, now, None if k % 5 == 4 else bot.first_label(now)))
    await asyncio.gather(*second)

    await run_out(bot, redrawer, clock)

    assert bot.store.posts_to_redraw() == []
    assert not fake_slack._faults.get("chat.update")  # Slack threw every one of them
    assert [c["action"] for c in bot.store.label_set_changes()] == ["rename"]
    undone = bot.store.db["answers"].rows_where("item_id = ?", [item_of(ordered[0])])
    assert any(a["source"] == "undo" for a in undone), list(undone)
    for message_ts, message in messages.items():
        last = fake_slack.message(CHANNEL, message_ts)
        text, drawn = expected(bot, item_of(message))
        assert (last["text"], shown(last)) == (text, drawn), item_of(message)
        question = build_question(bot.store, bot.rt.settings, item_of(message), [])
        assert question is not None
        assert has_buttons(last) == (question.status == "open"), item_of(message)
    calls = [c for c in fake_slack.calls[start:] if c.method == "chat.update"]
    rate_limited = {c.at for c in calls if c.faulted}
    rate_limited = set(sorted(rate_limited)[:2])  # the faults are thrown in order
    # no chat.update before the Retry-After of a 429 has passed
    for n, call in enumerate(calls):
        if call.faulted and call.at in rate_limited:
            later = [when[c.at] for c in calls[n + 1 :]]
            assert all(at >= when[call.at] + 30 for at in later), (when[call.at], later)
    # coalescing: no message updated more often than its item changed, but for the
    # settle draw after each update whose outcome was unknown, and the 429s
    unsure = Counter(str(c.params["ts"]) for c in calls if c.faulted and c.at not in rate_limited)
    done = Counter(str(c.params["ts"]) for c in calls if not c.faulted)
    for message_ts in messages:
        assert done[message_ts] <= changes[message_ts] + unsure[message_ts], (
            message_ts,
            done[message_ts],
            changes[message_ts],
            before[message_ts],
        )


async def test_a_rate_limited_chat_update_holds_every_redraw_until_its_retry_after(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A 429 on a click's redraw (Retry-After 30): the pass slept it out twice inside the
    call (the client's own retries), its lock held, then went on to the next message at
    once, into the same 429, each of them; and each message's retry came after the
    redrawer's backoff (1 s, 2 s…), not the Retry-After: redraws stormed into 429s."""
    async for bot, redrawer, clock in posted(fake_slack, tmp_path, 8, retries=2, votes=9):
        messages = bot.posted()
        fake_slack.fail("chat.update", "ratelimited", status=429, retry_after=30, times=1000)
        for k, message in enumerate(messages):
            bot.store.record_answer(
                item_of(message), PEOPLE[k], None, source="button", dedupe_key=f"k{k}",
                votes_needed=9,
            )  # fmt: skip
        before = len(fake_slack.calls_to("chat.update"))
        async with asyncio.timeout(5):  # the old pass slept 2 x 30 s in the call
            await redrawer.pending(due_only=True)
        assert len(fake_slack.calls_to("chat.update")) == before + 1  # one 429, then it waits
        assert redrawer.next_due() == clock.now + 30  # its Retry-After, not the backoff's 1 s
        clock.now += 29.5
        click = bot.button_payload(messages[0], PEOPLE[9], bot.first_label(messages[0]))
        assert (await bot.action(click)).status == 200  # acked, its redraw held back
        await bot.rt.background.drain(5)
        await redrawer.pending(due_only=True)
        assert len(fake_slack.calls_to("chat.update")) == before + 1
        clock.now += 0.5
        await redrawer.pending(due_only=True)  # due: one try, another 429
        assert len(fake_slack.calls_to("chat.update")) == before + 2
        fake_slack._faults.pop("chat.update")  # Slack takes them again
        await run_out(bot, redrawer, clock)
        assert len(fake_slack.calls_to("chat.update")) == before + 2 + len(messages)
        assert bot.store.posts_to_redraw() == []


async def test_a_click_is_acked_while_slack_holds_a_redraw(fake_slack: FakeSlack, tmp_path: Path):
    """The redraw after a click waits on Slack (held: no answer yet); another click on
    another question is acked and stored meanwhile, and its redraw goes with the next pass."""
    async for bot, redrawer, clock in posted(fake_slack, tmp_path, 2, votes=1):
        await acked_while_held(bot, redrawer, clock)


async def acked_while_held(bot: Bot, redrawer, clock) -> None:
    fake_slack = bot.fake
    first, second = bot.posted()
    fake_slack.fail("chat.update", mode="timeout")
    before = len(fake_slack.calls_to("chat.update"))
    clicked = await bot.action(bot.button_payload(first, PEOPLE[0], bot.first_label(first)))
    assert clicked.status == 200
    await fake_slack.wait_for(lambda: len(fake_slack.calls_to("chat.update")) > before)
    held = fake_slack.calls_to("chat.update")[-1]
    assert held.reply is None and redrawer.lock.locked()  # Slack holds the redraw
    again = await bot.action(bot.button_payload(second, PEOPLE[1], bot.first_label(second)))
    assert again.status == 200 and held.reply is None  # acked while the redraw is held
    assert bot.store.resolution(item_of(second)) is not None
    fake_slack.release_timeouts()
    await run_out(bot, redrawer, clock)
    for message in (first, second):
        assert not has_buttons(fake_slack.message(CHANNEL, message["ts"]))


async def test_a_rate_limited_chat_delete_backs_the_erasures_off_without_sleeping_in_the_pass(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A deleted item's message whose chat.delete gets a 429 (Retry-After 30): the client's
    own retries slept it out twice inside the call, the redrawer's lock held (no redraw went
    meanwhile), and called chat.delete three times into the limit. One call now; the erasures
    wait for the Retry-After on the redrawer's clock, then the message goes."""
    async for bot, redrawer, clock in posted(fake_slack, tmp_path, 2, retries=2, votes=9):
        message = bot.posted()[0]
        bot.store.delete_items([item_of(message)], user_id="U0ADMIN", reason="test")
        fake_slack.fail("chat.delete", "ratelimited", status=429, retry_after=30, times=1000)
        async with asyncio.timeout(5):  # the old pass slept 2 x 30 s in the call
            await redrawer.pending(due_only=True)
        assert len(fake_slack.calls_to("chat.delete")) == 1
        assert redrawer.erase_due == clock.now + 30  # its Retry-After
        fake_slack._faults.pop("chat.delete")  # Slack takes them again
        await run_out(bot, redrawer, clock)
        assert len(fake_slack.calls_to("chat.delete")) == 2
        assert bot.store.erased_posts() == []
        assert message["ts"] not in {m["ts"] for m in fake_slack.messages(CHANNEL)}
