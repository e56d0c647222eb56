"""Labeling windows open at once share the work: an item shown in one window is held for that
person (``bot.slack.holds``), and other windows are shown other items while it needs no more
people than it is held for, until the hold ends (an answer or skip moves the window on, the
window closes, two minutes pass). Through signed requests to the real server and the fake
Slack's views."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.holds import HOLD
from bot.store import Store
from tests import signing
from tests.bot.harness import Bot, one_posted, open_window
from tests.bot.harness import click_in_window as click
from tests.bot.harness import window_item as shown
from tests.bot.harness import window_labels as labels_shown
from tests.bot.test_store import R
from tests.query_plans import query_plans

ITEMS = ("i1", "i2", "i3", "i4", "i5")


def started(fake_slack: FakeSlack, tmp_path: Path, n: int = len(ITEMS), **changes):
    """A bot with ``n`` items: one posted (HITL_MAX_OPEN=1), the others waiting."""
    return one_posted(fake_slack, tmp_path, ITEMS[:n], **changes)


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    async for running in started(fake_slack, tmp_path):
        yield running


@pytest.fixture
async def bot2(fake_slack: FakeSlack, tmp_path: Path):
    async for running in started(fake_slack, tmp_path, votes=2):
        yield running


async def opened(bot: Bot, *users: str) -> list[str]:
    """Each of ``users`` opens a window, one after the other; the items they are shown."""
    return [shown(bot, await open_window(bot, user)) for user in users]


async def skip(bot: Bot, user: str, view_id: str) -> None:
    view = bot.fake.views[view_id]
    [button] = [
        e
        for b in view["blocks"]
        for e in b.get("elements", [])
        if e.get("type") == "button" and e.get("action_id", "").endswith(".skip")
    ]
    payload = signing.block_actions_payload(user, button["action_id"], button["value"], view=view)
    payload["actions"][0]["action_ts"] = bot.next_action_ts()
    assert (await bot.action(payload)).status == 200
    await bot.settled()


async def close(bot: Bot, user: str, view_id: str) -> None:
    """``user`` closes the window (*Done*): the view_closed Slack sends when it asked for it."""
    view = bot.fake.views[view_id]
    assert view["notify_on_close"] is True  # every window asks for it (the old code: Home's)
    assert (await bot.action(signing.view_closed_payload(user, view))).status == 200
    await bot.settled()


async def test_people_opening_windows_at_once_are_shown_different_items(bot: Bot):
    """HITL_VOTES=1: one answer decides an item, so two and three windows opened at once
    each get an item of their own (the open question first, then the queue)."""
    [posted] = [m["metadata"]["event_payload"]["item_id"] for m in bot.posted()]
    two = await opened(bot, "U0ANA", "U0RAJ")
    assert two[0] == posted and None not in two
    assert len(set(two)) == 2  # the old code: both shown the open question
    three = two + await opened(bot, "U0LEE")
    assert None not in three and len(set(three)) == 3


async def test_with_two_votes_needed_two_people_share_an_item_and_a_third_gets_another(
    bot2: Bot,
):
    bot = bot2
    first, second, third = await opened(bot, "U0ANA", "U0RAJ", "U0LEE")
    assert first == second and third not in (None, first)


async def test_an_answer_moves_the_hold_on_and_counts_toward_what_the_item_still_needs(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_VOTES=3: Ana and Raj are shown the open question (it needs three). Ana's answer
    moves her window on, and the question now needs two more answers with Raj's window on
    it: Lee is shown it too, and Kim, after him, another item."""
    async for bot in started(fake_slack, tmp_path, votes=3):
        ana = await open_window(bot, "U0ANA")
        [item, also] = [shown(bot, ana), *await opened(bot, "U0RAJ")]
        assert also == item
        await click(bot, "U0ANA", ana, labels_shown(bot, ana)[0])
        assert shown(bot, ana) not in (None, item)
        assert bot.store.votes_in([item, "nothing"]) == {item: 1}
        lee, kim = await opened(bot, "U0LEE", "U0KIM")
        assert lee == item and kim not in (None, item)


async def test_a_skip_releases_the_item_for_the_next_window(bot: Bot):
    ana = await open_window(bot, "U0ANA")
    item = shown(bot, ana)
    await skip(bot, "U0ANA", ana)
    assert shown(bot, ana) not in (None, item)
    assert await opened(bot, "U0RAJ") == [item]


async def test_closing_the_window_releases_its_item(bot: Bot):
    """A `/hitl label` window too asks for view_closed (the old code: only Home's did), and
    its close ends the hold; no Home is published for it."""
    ana = await open_window(bot, "U0ANA")
    item = shown(bot, ana)
    assert await opened(bot, "U0RAJ") != [item]  # held while the window is open
    await close(bot, "U0ANA", ana)
    assert await opened(bot, "U0LEE") == [item]
    assert "U0ANA" not in bot.fake.home


async def test_a_hold_ends_after_two_minutes(bot: Bot):
    """A window left open on an item keeps it from the others ``HOLD`` at most."""
    first, second = await opened(bot, "U0ANA", "U0RAJ")
    assert first != second
    start = bot.rt.clock()
    bot.rt.clock = lambda: start + HOLD - HOLD / 8  # not yet
    assert await opened(bot, "U0LEE") not in ([first], [second])
    bot.rt.clock = lambda: start + HOLD + HOLD / 8
    assert await opened(bot, "U0KIM") == [first]  # Ana's and Raj's holds have ended
    assert HOLD.total_seconds() == 120


async def test_when_only_held_items_are_left_a_window_shows_one_rather_than_nothing(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Two items, three windows: the third is shown a held item (not "Nothing left"), and
    whoever answers second is told it was already decided."""
    async for bot in started(fake_slack, tmp_path, n=2):
        ana = await open_window(bot, "U0ANA")
        raj = await open_window(bot, "U0RAJ")
        lee = await open_window(bot, "U0LEE")
        assert shown(bot, ana) != shown(bot, raj)
        assert shown(bot, lee) in (shown(bot, ana), shown(bot, raj))
        assert "Nothing left to label" not in json.dumps(bot.fake.views[lee]["blocks"])
        same = ana if shown(bot, ana) == shown(bot, lee) else raj
        same_user = "U0ANA" if same == ana else "U0RAJ"
        await click(bot, "U0LEE", lee, labels_shown(bot, lee)[0])
        await click(bot, same_user, same, labels_shown(bot, same)[0])
        assert "This one was already decided" in json.dumps(bot.fake.views[same]["blocks"])


def test_held_items_are_left_out_along_the_same_index(memory_store: Store):
    """At a million items the next-item lookup stays one walk along the status index with
    the held items left out by id, and the votes of held items are read by id."""
    store = memory_store
    store.add_items([R(f"i{n}", f"text of i{n}") for n in range(6)], "import")
    plans = query_plans(
        store, lambda: store.next_in_channels("U1", ["CMAIN"], {}, "CMAIN", exclude=["i0", "i1"])
    )
    queue = [" | ".join(lines) for sql, lines in plans if "FROM items INDEXED BY" in sql]
    assert queue and all("items_status_priority" in p and "TEMP B-TREE" not in p for p in queue)
    assert store.next_in_channels("U1", ["CMAIN"], {}, "CMAIN", exclude=["i0", "i1"]) == "i2"
    # ``first`` is shown even if held by others (an Undo's reopened item, a refused click's)
    assert store.next_in_channels("U1", ["CMAIN"], {}, "CMAIN", exclude=["i3"], first="i3") == "i3"
    [(sql, plan)] = query_plans(store, lambda: store.votes_in(["i0", "i1"]))
    assert not any(line.startswith("SCAN") for line in plan), plan


def rows_read(store: Store, call) -> int:
    """The SQLite VM steps ``call`` takes, in hundreds: what a lookup reads, without a clock."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    store.db.conn.set_progress_handler(count, 100)
    try:
        call()
    finally:
        store.db.conn.set_progress_handler(None, 100)
    return steps[0]


def test_a_routed_channels_window_reads_its_own_labels_items_not_every_waiting_one(
    memory_store: Store,
):
    """The window of a channel that only routes send items to reads the head of each label
    routed there (m049's index): the items routed elsewhere are not read, so a channel with
    nothing waiting costs the same at 300 waiting items as at 30. It draws what the status
    index's order gives: the highest priority first, held items and the person's answers
    left out, queued before not scored."""
    store = memory_store
    routes = {"bill": "CBILL", "refund": "CBILL", "bug": "CBUG"}
    args = (["CBILL"], routes, "CMAIN")

    def waiting(n: int, label: str, first: int = 0) -> None:
        store.add_items([R(f"{label}{k}", f"text {label}{k}") for k in range(first, n)], "import")
        store.set_predictions(
            [(f"{label}{k}", 1, label, 0.5, [[label, 0.5]], 0.1 + k / 1000)
             for k in range(first, n)],
            0.8,
            "margin",
        )  # fmt: skip

    waiting(30, "bug")
    few = rows_read(store, lambda: store.next_in_channels("U1", *args))
    waiting(300, "bug", first=30)
    many = rows_read(store, lambda: store.next_in_channels("U1", *args))
    assert store.next_in_channels("U1", *args) is None
    assert many <= few + 1, (few, many)  # along the status index, every bug item: 2 → 18
    plans = query_plans(store, lambda: store.next_in_channels("U1", *args))
    steps = [step for sql, plan in plans if "FROM items" in sql for step in plan]
    assert steps and not any("items_status_priority" in s or "TEMP B-TREE" in s for s in steps)
    waiting(3, "bill")
    waiting(2, "refund")  # priorities: bill2 0.102, bill1 and refund1 0.101 (bill1 older)
    store.add_items([R("new0", "not scored")], "import")
    assert store.next_in_channels("U1", *args) == "bill2"
    assert store.next_in_channels("U1", *args, exclude=["bill2"]) == "bill1"
    store.record_answer("bill2", "U1", "bill", source="button", dedupe_key="k", votes_needed=3)
    assert store.next_in_channels("U1", *args, exclude=["bill1"]) == "refund1"
    assert store.next_in_channels("U2", *args, exclude=["bill1"]) == "bill2"
    assert store.next_in_channels("U1", ["CBUG"], routes, "CMAIN") == "bug299"
    assert store.next_in_channels("U1", ["CMAIN"], routes, "CMAIN") == "new0"
