"""A bad day at Slack: every fault the Web API can throw, while people keep answering.
After the faults stop, every queued item is posted exactly once, every decided message shows
its label, and no answer was lost."""

from __future__ import annotations

from pathlib import Path

from bot.redraw import redraw_pending
from bot.runtime import make_client
from bot.sandbox import FakeSlack
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL

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


def time_passes(bot: Bot) -> None:
    """The backoff, Retry-After or the broken-channel pause has run out."""
    state = bot.rt.channel_state(CHANNEL)
    state.next_attempt = 0
    state.last_post = float("-inf")


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
            await bot.rt.drain()
            time_passes(bot)

        # The faults stop. The dispatcher and the redrawer catch up.
        for _ in range(12):
            time_passes(bot)
            await bot.dispatcher.fill()
            await answer_open_questions(bot, answered)
            await bot.rt.drain()
            await redraw_pending(bot.rt)
        assert await redraw_pending(bot.rt) == 0
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
            assert f"✅ *{label}* by <@U0ANA>" in str(message["blocks"]), item_id
