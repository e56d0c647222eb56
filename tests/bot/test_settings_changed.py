"""Settings changed between two starts of the server, with items partly decided under the old
ones: HITL_VOTES lowered while questions held answers. The answers an item already has decide
it under the votes in force (``Store.decide_answered`` at start, ``record_answer`` at the next
answer); a tie under HITL_VOTES=1 is a split, in review, not an item waiting for ever."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.blocks import decode_value
from bot.store import Store
from tests.bot.harness import (
    Bot,
    Item,
    LogLines,
    has_buttons,
    make_settings,
    margin_scored,
    seed,
    seed_champion,
    start_bot,
)
from tests.bot.test_store import R
from tests.fake_slack import CHANNEL
from tests.query_plans import query_plans

ANA, RAJ, MEI = "U0ANA", "U0RAJ", "U0MEI"


# -- the store --


@pytest.fixture
def posted(memory_store: Store) -> Store:
    memory_store.add_items([R("i1", "card charged twice"), R("i2", "app crashes")], "import")
    memory_store.record_post("i1", "C1", "1.0001", "uncertain", 1, "billing", 0.6)
    memory_store.record_post("i2", "C1", "1.0002", "uncertain", 1, "bug", 0.6)
    return memory_store


def answer(store: Store, item: str, user: str, label: str | None, votes: int):
    return store.record_answer(
        item, user, label, source="button", dedupe_key=f"{item}:{user}:{label}", votes_needed=votes
    )


def pending(store: Store, item: str) -> list[str]:
    return [r["reason"] for r in store.reviews_of(item) if r["decided_at"] is None]


def test_a_tie_under_one_vote_is_a_split(posted: Store):
    """Ana answered under HITL_VOTES=3; lowered to 1, Raj's different answer ties them."""
    assert answer(posted, "i1", ANA, "billing", votes=3).status == "recorded"
    result = answer(posted, "i1", RAJ, "bug", votes=1)
    assert result.status == "recorded"  # no majority: neither answer decides
    assert pending(posted, "i1") == ["split"]
    assert posted.open_post_counts() == {"C1": 1}  # i2's place only: the split frees its own
    assert answer(posted, "i1", MEI, "bug", votes=1).status == "resolved"  # a later vote decides
    assert pending(posted, "i1") == []


def test_lowered_votes_decide_what_the_answers_already_decide(posted: Store):
    answer(posted, "i1", ANA, "billing", votes=3)  # one answer: decides under HITL_VOTES=1
    answer(posted, "i2", ANA, "billing", votes=3)  # a tie: a split under HITL_VOTES=1
    answer(posted, "i2", RAJ, "bug", votes=3)
    drawn = {p["item_id"]: p["redraw_seq"] for p in posted.posts_to_redraw()}
    assert posted.decide_answered(1) == ["i1", "i2"]
    assert posted.resolution("i1")["label"] == "billing"
    assert posted.get_item("i1")["status"] == "resolved"
    assert posted.get_item("i2")["status"] == "posted" and pending(posted, "i2") == ["split"]
    assert posted.open_post_counts() == {}  # both places free
    redraw = {p["item_id"]: p["redraw_seq"] for p in posted.posts_to_redraw()}
    assert all(redraw[item] > drawn.get(item, 0) for item in ("i1", "i2"))  # both redrawn
    assert posted.decide_answered(1) == []  # nothing more: a second start changes nothing


def test_votes_lowered_from_five_to_three(posted: Store):
    answer(posted, "i1", ANA, "billing", votes=5)
    answer(posted, "i1", RAJ, "billing", votes=5)
    answer(posted, "i2", ANA, "billing", votes=5)
    assert posted.decide_answered(5) == []  # unchanged settings: nothing to decide
    assert posted.decide_answered(3) == ["i1"]  # two of three agree; i2's one answer is not
    assert posted.resolution("i1")["votes"] == 2
    assert posted.get_item("i2")["status"] == "posted" and pending(posted, "i2") == []


def test_a_decided_split_closes_its_review_by_the_votes(posted: Store):
    """Under HITL_VOTES=4 a 2-1-1 is a split; lowered to 3, its 2 are a majority."""
    for user, label in [(ANA, "billing"), (RAJ, "billing"), (MEI, "bug"), ("U0LEE", "account")]:
        answer(posted, "i1", user, label, votes=4)
    assert pending(posted, "i1") == ["split"]
    assert posted.decide_answered(3) == ["i1"]
    assert posted.resolution("i1")["label"] == "billing"
    assert pending(posted, "i1") == []


def test_lowered_skips_set_an_item_aside(posted: Store):
    answer(posted, "i1", ANA, None, votes=1)
    answer(posted, "i1", RAJ, None, votes=1)
    assert posted.decide_answered(1, skips_to_discard=3) == []
    assert posted.decide_answered(1, skips_to_discard=2) == []  # record_answer did it already
    assert posted.get_item("i1")["status"] == "skipped"


# -- the server, restarted with HITL_VOTES lowered --


@pytest.fixture
def db(tmp_path: Path) -> Path:
    seed(tmp_path / "hitl.db", [Item("a", "refund and a crash"), Item("b", "login is broken")])
    return tmp_path / "hitl.db"


def buttons(message: dict) -> list[str]:
    """The labels with a button in the question (with no model, five drawn per item)."""
    return [
        decode_value(element["value"])[1]
        for block in message["blocks"]
        for element in block.get("elements", [])
        if element.get("type") == "button" and ".label." in element["action_id"]
    ]


async def click(bot: Bot, ts: str, user: str, label: str) -> None:
    message = bot.fake.message(CHANNEL, ts)
    assert (await bot.action(bot.button_payload(message, user, label))).status == 200
    await bot.settled()


async def test_a_restart_with_fewer_votes_decides_the_questions(
    fake_slack: FakeSlack, tmp_path: Path, db: Path
):
    settings = make_settings(fake_slack, tmp_path, votes=3, max_open=2)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        ts = {item: bot.store.post_for_item(item)["ts"] for item in ("a", "b")}
        label = bot.first_label(bot.fake.message(CHANNEL, ts["a"]))
        b_label, other = buttons(bot.fake.message(CHANNEL, ts["b"]))[:2]
        await click(bot, ts["a"], ANA, label)
        await click(bot, ts["b"], ANA, b_label)
        assert "1 of 3 answers in" in json.dumps(bot.fake.message(CHANNEL, ts["a"])["blocks"])

    lowered = settings.with_changes(votes=1)
    async for bot in start_bot(fake_slack, lowered):
        # decided by the start itself (``bot.server.decide_under_settings``): a second run
        # finds nothing
        assert bot.store.decide_answered(lowered.votes, lowered.skips_to_discard) == []
        await bot.rt.redrawer.pending()
        assert bot.store.resolution("a")["label"] == label
        shown = bot.fake.message(CHANNEL, ts["a"])
        assert not has_buttons(shown) and "✅" in json.dumps(shown["blocks"], ensure_ascii=False)
        # b: decided at start too; a different answer after is history, not a vote
        assert bot.store.get_item("b")["status"] == "resolved"
        assert bot.store.open_post_counts() == {}
        assert bot.store.resolution("b")["label"] == b_label


async def test_a_tie_after_the_restart_is_a_split_and_frees_its_place(
    fake_slack: FakeSlack, tmp_path: Path, db: Path
):
    """Under HITL_VOTES=3 a 1-1 waits for a third answer; under 2 it is a split: in review,
    its place free for the next question."""
    settings = make_settings(fake_slack, tmp_path, votes=3, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        ts = bot.store.post_for_item("a")["ts"]
        label, other = buttons(bot.fake.message(CHANNEL, ts))[:2]
        await click(bot, ts, ANA, label)
        await click(bot, ts, RAJ, other)
        await bot.dispatcher.fill()
        assert bot.store.post_for_item("b") is None  # a holds the one place

    lowered = settings.with_changes(votes=2)
    async for bot in start_bot(fake_slack, lowered):  # the start decides it (a split)
        assert [r["reason"] for r in bot.store.reviews_of("a")] == ["split"]
        assert bot.store.open_post_counts() == {}
        await bot.dispatcher.fill()
        assert bot.store.post_for_item("b") is not None  # the next question went out
        await bot.rt.redrawer.pending()
        assert has_buttons(bot.fake.message(CHANNEL, ts))  # a later vote still decides it


# -- HITL_THRESHOLD changed between two starts --

SCORED = [  # (id, confidence): auto at the default 0.8 from 0.8 up
    ("t1", 0.95),
    ("t2", 0.86),
    ("t3", 0.5),
    ("t4", 0.3),
    ("t5", 0.9),
]


def scored(store: Store) -> Store:
    store.add_items([R(i, f"text {i}") for i, _ in SCORED], "import")
    rows = [(i, 1, "billing", p, [["billing", p], ["bug", 1 - p]]) for i, p in SCORED]
    store.set_predictions(margin_scored(rows), threshold=0.8, strategy="margin")
    return store


def statuses(store: Store) -> dict[str, str]:
    return {i: store.get_item(i)["status"] for i, _ in SCORED}


def run_pass(store: Store, threshold: float, limit: int = 500) -> int:
    changed, at = 0, 0
    while True:
        n, last = store.rethreshold_step(at, limit, threshold)
        changed += n
        if last is None:
            return changed
        at = last


def test_a_raised_threshold_sends_the_model_decided_items_to_people(memory_store: Store):
    store = scored(memory_store)
    assert statuses(store) == {"t1": "auto", "t2": "auto", "t3": "queued", "t4": "queued",
                               "t5": "auto"}  # fmt: skip
    store.record_post("t5", "C1", "1.1", "audit", 1, "billing", 0.9)  # asked: left as it is
    assert run_pass(store, 0.8) == 0  # unchanged threshold: nothing written
    assert run_pass(store, 0.999, limit=2) == 2  # in steps of 2 items
    assert statuses(store) == {"t1": "queued", "t2": "queued", "t3": "queued", "t4": "queued",
                               "t5": "posted"}  # fmt: skip
    assert run_pass(store, 0.999) == 0  # a second start changes nothing


def test_a_threshold_step_writes_its_items_by_rowid_not_every_waiting_item(memory_store: Store):
    # review: the UPDATE's status terms led SQLite to read every auto and queued item through
    # items_status_priority for each step: 259 s on the event loop for a pass over a million
    # items that moved 112 (3.6 s a step)
    store = scored(memory_store)
    plans = query_plans(store, lambda: store.rethreshold_step(0, 500, 0.999), kinds=("UPDATE",))
    assert plans, "the step wrote nothing"
    for sql, plan in plans:
        assert any("USING INTEGER PRIMARY KEY" in line for line in plan), (sql, plan)
        assert not any("items_status_priority" in line for line in plan), (sql, plan)


def test_a_lowered_threshold_leaves_the_sure_items_to_the_model(memory_store: Store):
    store = scored(memory_store)
    store.record_answer("t3", ANA, "bug", source="button", dedupe_key="k", votes_needed=3)
    store.db["items"].update("t3", {"status": "queued"})  # answered in the modal, waiting
    assert run_pass(store, 0.4) == 0  # t3 has an answer: it waits for the others
    assert run_pass(store, 0.25, limit=1) == 1
    assert statuses(store)["t4"] == "auto" and statuses(store)["t3"] == "queued"


async def test_a_server_started_with_a_higher_threshold_asks_people(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Scored under HITL_THRESHOLD=0 every item is the model's; the next start, at 0.999,
    sends them to people: the dispatcher asks them."""
    db = tmp_path / "hitl.db"
    seed_champion(db, ["an invoice to pay", "a refund", "the app crashes", "an error"],
                  ["billing", "billing", "bug", "bug"])  # fmt: skip
    seed(db, [Item(f"i{n}", f"ticket {n}: a refund and an error") for n in range(4)])
    settings = make_settings(
        fake_slack, tmp_path, labels=("billing", "bug"), threshold=0.0, audit_rate=0.0
    )
    async for bot in start_bot(fake_slack, settings):
        assert await bot.rt.scorer.catch_up() == 4
        assert {bot.store.get_item(f"i{n}")["status"] for n in range(4)} == {"auto"}
        assert await bot.dispatcher.fill() == 0  # the model decides them all
    async for bot in start_bot(fake_slack, settings.with_changes(threshold=0.999)):
        await bot.rt.scorer.catch_up(background=True)  # the server's background run, at start
        assert {bot.store.get_item(f"i{n}")["status"] for n in range(4)} == {"queued"}
        assert await bot.dispatcher.fill() == 4


def asked_spam(store: Store) -> None:
    """Two items, each asked in C1 with the guess spam."""
    store.add_items([R("i1", "card charged twice"), R("i2", "charged twice again")], "import")
    for item, ts in (("i1", "1.0001"), ("i2", "1.0002")):
        store.record_post(item, "C1", ts, "uncertain", 1, "spam", 0.6)


def retire_spam(store: Store) -> None:
    store.change_label_set("retire", "spam", current=["billing", "bug", "spam"], user_id="UADM")


def test_a_vote_for_a_retired_label_decides_nothing(memory_store: Store):
    # review: under HITL_VOTES=2 Ana answered spam; spam was retired and the server restarted
    # with HITL_VOTES=1: the start decided the item as spam, a label that left training and
    # export, reported undecided to producers and asked nowhere again. The same on the click
    # path: 2 of 4 for spam, spam retired, HITL_VOTES=3, a bug click decided it as spam. Such
    # votes still count as answers: once enough people answered it is a split for an admin.
    store = memory_store
    asked_spam(store)
    answer(store, "i1", ANA, "spam", 2)
    answer(store, "i2", ANA, "spam", 4)
    answer(store, "i2", RAJ, "spam", 4)
    retire_spam(store)
    # restarted under HITL_VOTES=1: i1's one answer is for a retired label (open, for the next
    # answer); i2's two spam answers decide nothing, and two people answered: a split
    assert store.decide_answered(1) == ["i2"]
    assert store.resolution("i1") is None and store.get_item("i1")["status"] == "posted"
    assert store.resolution("i2") is None and pending(store, "i2") == ["split"]
    answer(store, "i2", "U0MEI", "bug", 3)  # and under HITL_VOTES=3 spam's 2 of 3 decide nothing
    assert store.resolution("i2") is None
    answer(store, "i2", "U0LEE", "bug", 3)
    answer(store, "i2", "U0NED", "bug", 3)  # bug over spam, 3 to 2
    decided = store.resolution("i2")
    assert (decided["label"], decided["votes"]) == ("bug", 3)
    assert decided["agreement"] == 0.6  # 3 of the 5 answers: the spam ones count as answers


def test_votes_for_a_retired_label_still_count_as_answers(memory_store: Store):
    # review of 060150f, which dropped them from the tally: three people answered (spam, since
    # retired, bug, billing) and the item stayed open for good, "3 of 3 answers in", holding a
    # channel place; and one spam answer and two skips set the item aside
    store = memory_store
    asked_spam(store)
    answer(store, "i1", ANA, "spam", 3)
    answer(store, "i2", ANA, "spam", 3)
    retire_spam(store)
    answer(store, "i1", RAJ, "bug", 3)
    answer(store, "i1", "U0MEI", "billing", 3)
    assert pending(store, "i1") == ["split"] and store.resolution("i1") is None
    answer(store, "i2", RAJ, None, 3)  # skips
    answer(store, "i2", "U0MEI", None, 3)
    assert store.get_item("i2")["status"] == "posted"  # a vote keeps it open for more votes
    assert store.open_post_counts() == {"C1": 1}  # i2's place; i1's split freed its own


async def test_a_busy_database_pauses_the_scorers_pass_in_one_line(tmp_path: Path):
    # review: another process holding the write lock during the threshold pass (or the label
    # set's) logged "scoring with model vN failed" with a traceback
    import asyncio
    import contextlib
    import logging
    import sqlite3

    from bot.config import Settings
    from bot.learning.scoring import Scorer

    db = tmp_path / "hitl.db"
    lines = LogLines()
    logger = logging.getLogger("bot.learning.scoring")
    logger.addHandler(lines)
    with contextlib.ExitStack() as undo, Store.open(db) as store:
        undo.callback(logger.removeHandler, lines)
        scored(store)
        store.set_busy_timeout(0)  # refused at once, not after the server's 2 s
        scorer = Scorer(
            store, champion=lambda: None, settings=lambda: Settings(db=db, threshold=0.999)
        )
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # a `sqlite3` shell, say
        running = asyncio.create_task(scorer.run())  # the server's background scorer
        try:
            await lines.wait("scoring")
        finally:
            other.execute("ROLLBACK")
            other.close()
        said = [r for r in lines.records if r.levelno >= logging.WARNING]
        assert [(r.levelname, r.exc_info) for r in said] == [("WARNING", None)], lines.all()
        assert said[0].getMessage().startswith("scoring paused: ")
        assert "locked by another process" in said[0].getMessage()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await scorer.background_walk()  # the lock gone: the pass goes on
        assert statuses(store)["t1"] == "queued"
