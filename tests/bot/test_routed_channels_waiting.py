"""Routed channels (``[hitl.routes]``) and what waits for them (an outside test of routes):
a question taken back unanswered in a routed channel waits behind that channel's other items
even when another channel's backlog fills the window (MEDIUM 1); a retired label's route to an
archived channel does not stop `hitl serve` (MEDIUM 2); a routed channel gets its gold
questions while the oldest gold items are another channel's (LOW 3)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.learning.scoring import CHANNEL_DEPTH, UNCERTAIN_WINDOW, window
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import (
    LABELS,
    Bot,
    Item,
    make_settings,
    margin_scored,
    seed,
    seed_champion,
    start_bot,
)
from tests.fake_slack import CHANNEL
from tests.query_plans import query_plans

BILLING = "C0BILLING"
TRAIN = (
    ["refund my charge", "invoice wrong", "app crashes", "error 500", "reset password"]
    + ["delete account", "how do I export", "how to invite", "add dark mode", "add api"]
    + ["great app", "love it"],
    ["billing", "billing", "bug", "bug", "account", "account", "how_to", "how_to"]
    + ["feature_request", "feature_request", "praise", "praise"],
)
BACKLOG = UNCERTAIN_WINDOW + 20  # the default channel's items: more than the window holds


def open_in(bot: Bot, channel: str) -> list[str]:
    return [
        row["item_id"]
        for row in bot.store.db.query(
            "SELECT item_id FROM posts WHERE closed_at IS NULL AND channel = ? ORDER BY id",
            [channel],
        )
    ]


def age_open_posts(bot: Bot, hours: float) -> None:
    """The open questions were posted ``hours`` ago (by the store's clock)."""
    then = datetime.fromisoformat(bot.store.now()) - timedelta(hours=hours)
    with bot.store.db.conn:
        bot.store.db.execute(
            "UPDATE posts SET posted_at = ? WHERE closed_at IS NULL",
            [then.isoformat(timespec="milliseconds")],
        )


async def backlogged(fake: FakeSlack, tmp_path: Path, billing: int):
    """#billing routed, with ``bill-hot`` (the closest call of all) and ``billing`` more
    billing items; the default channel's backlog of BACKLOG items, all more uncertain than
    those, fills the window. One open question per channel, taken back after an hour."""
    db = tmp_path / "hitl.db"
    items = [Item("bill-hot", "billing hot")]
    items += [Item(f"bill{n:02d}", f"billing {n}") for n in range(billing)]
    items += [Item(f"bug{n:04d}", f"bug question {n}") for n in range(BACKLOG)]
    seed(db, items)
    seed_champion(db, *TRAIN)
    fake.add_channel(BILLING, "billing")
    settings = make_settings(
        fake,
        tmp_path,
        max_open=1,
        routes={"billing": BILLING},
        audit_rate=0.0,
        gold_rate=0.0,
        question_ttl=1,
    )
    async for bot in start_bot(fake, settings, retries=0):
        version = bot.rt.model.version
        rows = [("bill-hot", version, "billing", 0.40, [["billing", 0.40], ["bug", 0.399]])]
        rows += [
            (f"bill{n:02d}", version, "billing", 0.7, [["billing", 0.7], ["bug", 0.1]])
            for n in range(billing)
        ]
        rows += [
            (f"bug{n:04d}", version, "bug", 0.45, [["bug", 0.45], ["billing", 0.40]])
            for n in range(BACKLOG)
        ]
        bot.store.set_predictions(margin_scored(rows), threshold=0.8, strategy="margin")
        yield bot


async def test_a_routed_channel_asks_its_other_items_before_a_question_taken_back(
    fake_slack: FakeSlack, tmp_path: Path
):
    """README `hitl serve`: for one HITL_QUESTION_TTL a taken-back item "waits behind every
    other item". With the default channel's backlog filling the window, #billing's resting
    ``bill-hot`` counted as the channel's share of it, the channel's own window was not read,
    and ``bill-hot`` was asked again at once, every TTL, and no other billing item ever."""
    async for bot in backlogged(fake_slack, tmp_path, billing=3):
        await bot.dispatcher.fill()
        assert open_in(bot, BILLING) == ["bill-hot"]
        age_open_posts(bot, 2)  # nobody answered for over one TTL
        await bot.dispatcher.fill()
        await bot.settled()
        assert bot.store.resting(1) >= {"bill-hot"}
        [asked] = open_in(bot, BILLING)
        assert asked.startswith("bill") and asked != "bill-hot", asked
        assert bot.store.get_item("bill-hot")["status"] == "queued"  # waits, behind the others


async def test_a_question_taken_back_is_asked_again_when_its_channel_has_nothing_else(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The other half of the rule: with no other billing item, ``bill-hot`` is asked again
    (the channel's own window finds only it)."""
    async for bot in backlogged(fake_slack, tmp_path, billing=0):
        await bot.dispatcher.fill()
        assert open_in(bot, BILLING) == ["bill-hot"]
        age_open_posts(bot, 2)
        await bot.dispatcher.fill()
        await bot.settled()
        assert open_in(bot, BILLING) == ["bill-hot"]


async def test_the_window_of_a_channel_whose_items_rest_reads_indexes_only(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The window of a channel whose only items in the top window rest: the resting items from
    the expired posts' index, the channel's own window from the priority index and by rowid,
    at most CHANNEL_DEPTH rows (it runs each dispatcher round, on the event loop)."""
    async for bot in backlogged(fake_slack, tmp_path, billing=3):
        await bot.dispatcher.fill()
        age_open_posts(bot, 2)
        await bot.dispatcher.fill()  # takes bill-hot back (and asks bill00)
        await bot.settled()
        store = bot.store
        with store.db.conn:  # bill00 answered meanwhile: bill-hot rests, bill01, bill02 wait
            store.db.execute("UPDATE posts SET closed_at = posted_at WHERE item_id = 'bill00'")
            store.db.execute("UPDATE items SET status = 'resolved' WHERE id = 'bill00'")
        pool: list[dict] = []
        rt = bot.rt
        plans = query_plans(store, lambda rt=rt, pool=pool: pool.extend(window(rt, [BILLING])))
        ids = {it["id"] for it in pool}
        assert {"bill-hot", "bill01", "bill02"} <= ids
        assert len(pool) <= UNCERTAIN_WINDOW + CHANNEL_DEPTH
        steps = [step for _, plan in plans for step in plan]
        assert any("posts USING INDEX posts_expired" in step for step in steps), plans
        for sql, plan in plans:
            for step in plan:
                if step.startswith("SCAN") and ("items" in step or "posts" in step):
                    raise AssertionError((sql, plan))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_a_retired_labels_route_to_an_archived_channel_does_not_stop_the_start(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """`/hitl labels retire billing` says the route left in hitl.toml is unused while the label
    is retired and only warned of at each start. The team archived the unused #billing, and
    the next start refused: "routes.billing=C0BILLING: the channel is archived"."""
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"ticket {n}") for n in range(4)])
    fake_slack.add_channel(BILLING, "billing")
    settings = make_settings(fake_slack, tmp_path, max_open=2, routes={"billing": BILLING})
    async for bot in start_bot(fake_slack, settings, retries=0):
        reply = await (await bot.command("labels retire billing", user="U0ADMIN")).text()
        assert "unused while retired" in reply, reply
    fake_slack.archive_channel(BILLING)
    caplog.set_level(logging.WARNING)
    async for bot in start_bot(fake_slack, settings, retries=0):
        assert await bot.dispatcher.fill() == 2
        assert set(open_in(bot, CHANNEL)) and not open_in(bot, BILLING)
    assert any("names 'billing' in [hitl.routes]" in line for line in warnings(caplog))


async def test_a_route_in_force_to_an_archived_channel_still_stops_the_start(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The check stays for a label in force, and for a retired label's channel that another
    setting names (here the route of a label in force)."""
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"ticket {n}") for n in range(4)])
    with Store.open(tmp_path / "hitl.db") as store:
        store.change_label_set("retire", "billing", current=list(LABELS), user_id="U0ADMIN")
    fake_slack.add_channel(BILLING, "billing")
    fake_slack.archive_channel(BILLING)
    settings = make_settings(fake_slack, tmp_path, routes={"billing": BILLING, "praise": BILLING})
    with pytest.raises(ConfigError) as refused:
        async for _bot in start_bot(fake_slack, settings, retries=0):
            pass
    assert refused.value.problems == [
        "routes.praise=C0BILLING: the channel is archived; unarchive it in Slack or name"
        " another channel"
    ]


async def gold_behind_another_channels(fake: FakeSlack, tmp_path: Path, first: int):
    """``first`` account gold items (the default channel's) imported before 3 billing ones
    (#billing's), and items waiting for both channels; HITL_GOLD_RATE=1."""
    db = tmp_path / "hitl.db"
    spec = [(f"b{n}", "billing") for n in range(4)] + [(f"a{n}", "account") for n in range(4)]
    seed(db, [Item(i, f"text of {i}") for i, _ in spec])
    seed_champion(db, *TRAIN)
    with Store.open(db) as store:  # a gold file sorted by label: account first
        store.add_gold(
            [Item(f"gold-acc{n:03d}", f"reset password delete account {n}", "account")
             for n in range(first)]
        )  # fmt: skip
        store.add_gold(
            [Item(f"gold-bill{n}", f"refund my charge invoice wrong {n}", "billing")
             for n in range(3)]
        )  # fmt: skip
    fake.add_channel(BILLING, "billing")
    # threshold 0.999: the gold guesses (0.96) are ones a question the model is unsure of
    # shows, so with no audit share they are asked (``gold_passed_over``)
    settings = make_settings(
        fake, tmp_path, max_open=1, routes={"billing": BILLING}, audit_rate=0.0, gold_rate=1.0,
        threshold=0.999,
    )  # fmt: skip
    async for bot in start_bot(fake, settings, retries=0):
        version = bot.rt.model.version
        bot.store.set_predictions(
            margin_scored(
                [(i, version, lab, 0.5, [[lab, 0.5], ["how_to", 0.3]]) for i, lab in spec]
            ),
            threshold=0.8,
            strategy="margin",
        )
        yield bot


def posted_in(bot: Bot, channel: str) -> list[tuple[str, str]]:
    return [
        (row["item_id"], row["reason"])
        for row in bot.store.db.query(
            "SELECT item_id, reason FROM posts WHERE channel = ? ORDER BY id", [channel]
        )
    ]


@pytest.mark.parametrize("first", [10, 150])
async def test_a_routed_channel_gets_its_gold_while_older_gold_waits_for_another(
    fake_slack: FakeSlack, tmp_path: Path, first: int
):
    """README, HITL_GOLD_RATE: "share of posts that are gold questions while any wait". Only the
    5 oldest gold items were read, and #billing got none while they waited for the default
    channel (full of ignored questions); 150: past the first page of more."""
    async for bot in gold_behind_another_channels(fake_slack, tmp_path, first):
        await bot.dispatcher.fill()
        assert posted_in(bot, CHANNEL) == [("gold-acc000", "gold")]
        assert posted_in(bot, BILLING) == [("gold-bill0", "gold")]
        message = bot.fake.messages(BILLING)[-1]
        assert "refund my charge invoice wrong 0" in str(message["blocks"])


def test_gold_pages_follow_each_other_from_the_index(tmp_path: Path):
    """``Store.gold_page``: pages in ``next_gold``'s order, none read twice, each a seek in
    the index (imported gold has no priority; one marked while it waited has one)."""
    with Store.open(tmp_path / "hitl.db") as store:
        store.add_items([Item(f"q{k}", f"waiting {k}") for k in range(3)], "import")
        store.set_predictions(
            margin_scored([(f"q{k}", 1, "bug", 0.5, [["bug", 0.5], ["praise", 0.1 * k]])
                           for k in range(3)]),
            threshold=0.8,
            strategy="margin",
        )  # fmt: skip
        store.add_gold([Item(f"q{k}", f"waiting {k}", "bug") for k in range(3)])  # marked
        store.add_gold([Item(f"g{k:03d}", f"gold {k}", "bug") for k in range(250)])
        everything = [row["id"] for row in store.next_gold(1_000)]
        read: list[str] = []
        plans: list[tuple[str, list[str]]] = []
        pages: list[tuple[list[dict], Any]] = [([], None)]
        while True:
            after = pages[-1][1]
            plans += query_plans(
                store, lambda after=after: pages.append(store.gold_page(7, ["g005"], after=after))
            )
            read += [row["id"] for row in pages[-1][0]]
            if pages[-1][1] is None:
                break
        assert read == [i for i in everything if i != "g005"]
        assert read[:3] == ["q2", "q1", "q0"]  # the marked ones first, by priority
        assert all(len(page) == 7 for page, _ in pages[1:-1])  # full pages but the last
        for sql, plan in plans:
            if "FROM items" in sql:
                assert plan[0].startswith("SEARCH items USING INDEX items_status_priority"), (
                    sql,
                    plan,
                )
