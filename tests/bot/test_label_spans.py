"""Every Slack surface shows a label the same way: in a code span (``words.name_mrkdwn``),
escaped, with a backtick in the label written as "ˋ" (U+02CB) so the span closes where the
label ends. A label such as "*a`b*" used to show bare in `/hitl review`, `/hitl stats`' "By
label", the Saved/Undone notes and the guidelines window (formatting the line there), and to
cut its span short where one was put around it (questions, `/hitl labels`). Through the real
server on the fake Slack, with signed requests; no model (cold-start buttons show both labels).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bot.config import Guideline
from bot.sandbox import FakeSlack
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_guidelines import click_guidelines
from tests.bot.test_label_markup import mrkdwn_texts
from tests.bot.test_undo_flows import click_undo

HOSTILE = "*a`b*"  # bold marks around it, a backtick inside
OTHER = "x&<y>"
# How each is shown, written out by hand: one code span each, "ˋ" for the backtick, escaped
SHOWN = "`*aˋb*`"
SHOWN_OTHER = "`x&amp;&lt;y&gt;`"


def intact(text: str) -> bool:
    """``text`` shows HOSTILE in its own code span, and nowhere as written (bare, or in a span
    its backtick would end early); every backtick in ``text`` pairs up."""
    return SHOWN in text and "a`b" not in text and text.count("`") % 2 == 0


def reply_text(body: str) -> str:
    return json.loads(body)["text"] if body.startswith("{") else body


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path, request: pytest.FixtureRequest):
    """The bot on HOSTILE and OTHER (``request.param``, parametrized indirectly: more
    settings)."""
    items = [Item("q1", "refund the invoice"), Item("s", "imported one", HOSTILE)]
    items += [Item(f"i{n}", f"item {n}") for n in range(4)]
    seed(tmp_path / "hitl.db", items)
    changes = getattr(request, "param", {})
    settings = make_settings(fake_slack, tmp_path, labels=(HOSTILE, OTHER), max_open=1, **changes)
    async for running in start_bot(fake_slack, settings):
        yield running


async def test_a_click_shows_the_label_in_a_code_span_in_the_question_and_the_notes(bot: Bot):
    await bot.dispatcher.fill()
    [message] = bot.posted()
    assert (await bot.action(bot.button_payload(message, "U0ANA", HOSTILE))).status == 200
    await bot.settled()
    [saved] = [c.params for c in bot.fake.calls_to("chat.postEphemeral")]
    assert saved["text"].startswith(f"Saved {SHOWN}. Undo"), saved["text"]  # was "Saved *a`b*."
    drawn = saved["blocks"] if isinstance(saved["blocks"], list) else json.loads(saved["blocks"])
    assert mrkdwn_texts(drawn) == [f"Saved *{SHOWN}*. Changed your mind?"]  # was "*a`b*"
    [decided] = [m for m in bot.posted() if m["ts"] == message["ts"]]
    [line] = [t for t in mrkdwn_texts(decided["blocks"]) if t.startswith("✅")]
    assert line == f"✅ *{SHOWN}* by <@U0ANA>", line  # was "✅ **a`b** by …", bold then code
    assert intact(await click_undo(bot, "U0ANA", message))  # "Undone: `*aˋb*` is no longer …"


async def test_review_shows_the_votes_and_the_label_now_in_code_spans(bot: Bot):
    bot.store.record_answer("i0", "U0ANA", HOSTILE, source="button", dedupe_key="v", votes_needed=3)
    for item_id, wanted in (("s", f"*Label now:* {SHOWN}"), ("i0", f"*Votes:* {SHOWN}: <@U0ANA>")):
        opened = await bot.command(f"review {item_id}", "U0ADMIN", trigger_id=f"1.1.{item_id}")
        assert opened.status == 200
        view = (await bot.fake.next_call("views.open")).reply["view"]
        texts = mrkdwn_texts(view["blocks"])
        facts = "\n".join(t for t in texts if t.startswith(("*Why:*", "*Votes:*", "*Label now:*")))
        assert wanted in facts and intact(facts), facts  # was "*Label now:* *a`b*"
        assert all("a`b" not in t for t in texts), texts  # the menu's options: plain text


@pytest.mark.parametrize("bot", [{"votes": 2}], indirect=True)
async def test_stats_by_label_shows_each_label_in_a_code_span(bot: Bot):
    for n in range(4):  # two people, each item decided by both (HITL_VOTES=2)
        label = HOSTILE if n < 2 else OTHER
        for user in ("U0ANA", "U0RAJ"):
            bot.store.record_answer(
                f"i{n}", user, label, source="button", dedupe_key=f"{n}{user}", votes_needed=2
            )
    text = reply_text(await (await bot.command("stats", "U0RAJ")).text())
    [by_label] = [line for line in text.splitlines() if line.startswith("*By label*")]
    # was "*By label* (specific agreement): *a`b* 100% · x&amp;&lt;y&gt; 100%"
    assert re.search(rf"{re.escape(SHOWN)} \d+% · {re.escape(SHOWN_OTHER)} \d+%", by_label)
    assert intact(by_label), by_label


async def test_labels_lists_and_adds_a_label_with_a_backtick_in_an_intact_span(bot: Bot):
    listed = reply_text(await (await bot.command("labels", "U0ADMIN")).text())
    assert intact(listed) and SHOWN_OTHER in listed, listed  # was "`*a`b*`"
    added = reply_text(await (await bot.command('labels add "c`d"', "U0ADMIN")).text())
    assert "Added `cˋd`." in added and "c`d" not in added, added  # was "Added `c`d`."
    assert intact(added), added


GUIDED = {"guidelines": {OTHER: Guideline("Odd marks.", ())}}


@pytest.mark.parametrize("bot", [GUIDED], indirect=True)
async def test_the_guidelines_window_shows_labels_in_code_spans(bot: Bot):
    await click_guidelines(bot)
    view = (await bot.fake.next_call("views.open")).reply["view"]
    texts = mrkdwn_texts(view["blocks"])
    # was "*x&amp;&lt;y&gt;*\nOdd marks." and "**a`b**\n_no description yet_" (a stray backtick)
    assert f"*{SHOWN_OTHER}*\nOdd marks." in texts, texts
    assert f"*{SHOWN}*\n_no description yet_" in texts, texts
    assert all("a`b" not in t for t in texts), texts
