"""HITL_TYPICAL_UNTIL: a young model asks TypiClust's typical picks, one per uncovered group."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import bot.learning.typical as typical_module
import bot.server as server_module
from bot.learning.scoring import choose, scorer_of
from bot.learning.scoring_worker import WALK_NICENESS, ScoringWorker
from bot.learning.typical import TypicalOrder, typical_candidates
from bot.runtime import Champion
from bot.sandbox import FakeSlack
from bot.slack.commands import queue_text
from bot.slack.questions import shown_reason
from bot.store import Store
from model.classifier import TextClassifier
from tests.bot.harness import Item, make_settings, seed, start_bot, threads_calling
from tests.bot.test_dispatch import scored_items

GROUPS = {
    "billing": "please refund the double charge on my credit card invoice",
    "crash": "the mobile app crashes on start after the latest update",
    "login": "cannot log in password reset email never arrives",
    "shipping": "parcel delivery is late tracking number shows nothing",
}
OUTLIERS = [Item("out-0", "zebra quantum violin"), Item("out-1", "xylophone nebula marmalade")]
# one billing text is labeled: its group is covered
ITEMS = [
    Item(
        f"{name}-{n}",
        f"{text} {'abcdefghij'[n]}",
        label="billing" if (name, n) == ("billing", 0) else None,
    )
    for name, text in GROUPS.items()
    for n in range(10)
] + OUTLIERS


def young(version: int = 1, n_train: int = 10) -> Champion:
    classifier = TextClassifier(random_state=0).fit(
        ["refund my money", "card charged twice", "app crashes", "screen is blank"],
        ["billing", "billing", "bug", "bug"],
    )
    return Champion(version=version, classifier=classifier, n_train=n_train)


async def typical_bot(fake: FakeSlack, tmp_path: Path, **changes):
    """Groups of near-identical tickets, their order's picks the questions of a round: two
    open questions (HITL_MAX_OPEN) and a refresh every label, so an order holds three picks
    (``bot.learning.typical.budget``) and k-means four clusters: the four groups."""
    seed(tmp_path / "hitl.db", ITEMS)
    changes = {"audit_rate": 0.0, **changes}
    settings = make_settings(fake, tmp_path, max_open=2, refresh_every=1, threshold=0.99, **changes)
    return start_bot(fake, settings)


def group(item_id: str) -> str:
    return item_id.split("-")[0]


async def ready(rt) -> TypicalOrder:  # noqa: ANN001
    """The order the dispatcher started for the model that asks, once computed."""
    order = TypicalOrder.of(rt)
    assert order.task is not None
    await asyncio.wait_for(order.task, 30)
    return order


async def test_a_young_model_asks_one_typical_item_per_uncovered_group_computed_off_the_loop(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """With HITL_TYPICAL_UNTIL=75 and a model on 10 labels, the questions are TypiClust's
    picks: one per group no label covers (never billing, whose ticket is labeled), never an
    outlier; the order is computed in a worker thread, once per model version."""
    threads = threads_calling(monkeypatch, typical_module, "typical_order")
    async for bot in await typical_bot(fake_slack, tmp_path, typical_until=75):
        bot.rt.champion = young()
        assert typical_candidates(bot.rt) is None  # started: not ready on the loop's turn
        order = await ready(bot.rt)
        assert sorted(map(group, order.ids)) == ["crash", "login", "shipping"]
        assert await bot.dispatcher.fill() == 2
        posts = list(bot.store.db["posts"].rows)
        assert [(p["item_id"], p["reason"]) for p in posts] == [
            (item_id, "typical") for item_id in order.ids[:2]
        ]
        text = json.dumps(bot.posted()[0]["blocks"])
        assert "typical of a group no label covers yet" in text
        # a gold question beside them shows their line; /hitl stats says how they are chosen
        assert shown_reason(bot.store, bot.rt.settings, "out-0", "gold", 1, bot.rt.model) == (
            "typical"
        )
        assert "typical items of the groups no label covers yet" in queue_text(bot.rt)
        # the first question answered: the next round asks the order's third pick
        first = bot.posted()[0]
        answered = await bot.action(bot.button_payload(first, "U0ANA", bot.first_label(first)))
        assert answered.status == 200
        assert await bot.dispatcher.fill() == 1
        assert [p["item_id"] for p in bot.store.db["posts"].rows][2:] == order.ids[2:]
        assert order.n_computed == 1 and threads and threading.main_thread().name not in threads
        # a refresh (a new version, still young) gets an order of its own
        bot.rt.champion = young(version=2, n_train=11)
        assert typical_candidates(bot.rt) is None and (await ready(bot.rt)).n_computed == 2
        assert len(threads) == 2


async def test_the_orders_pool_is_read_in_a_worker_thread_not_on_the_loops_connection(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The sample of the backlog and the covered texts grow with the data (at a million items
    a 500-row statement held the loop up to 25 ms): each of their reads runs in a worker
    thread, on a connection of its own (``Store.apart``), none on the loop's (``rt.store``)."""
    reads: list[tuple[str, str, bool]] = []

    def watched(name: str):  # noqa: ANN202
        real = getattr(Store, name)

        def read(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            reads.append((name, threading.current_thread().name, self is loops))
            return real(self, *args, **kwargs)

        return read

    for name in ("sample_unlabeled_steps", "unlabeled_at", "covered_texts"):
        monkeypatch.setattr(Store, name, watched(name))
    async for bot in await typical_bot(fake_slack, tmp_path, typical_until=75):
        loops = bot.rt.store
        bot.rt.champion = young()
        assert typical_candidates(bot.rt) is None
        order = await ready(bot.rt)
        assert sorted(map(group, order.ids)) == ["crash", "login", "shipping"]
    assert {name for name, _, _ in reads} == {
        "sample_unlabeled_steps",
        "unlabeled_at",
        "covered_texts",
    }
    main = threading.main_thread().name
    assert [
        (name, on_loops) for name, thread, on_loops in reads if thread == main or on_loops
    ] == []


async def test_without_the_setting_a_young_model_asks_its_closest_calls(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in await typical_bot(fake_slack, tmp_path, typical_until=0):
        bot.rt.champion = young()
        assert await bot.dispatcher.fill() == 2
        assert {p["reason"] for p in bot.store.db["posts"].rows} == {"uncertain"}
        assert bot.rt.typical is None  # no order computed


async def test_from_the_typical_labels_on_the_model_asks_its_closest_calls_again(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in await typical_bot(fake_slack, tmp_path, typical_until=75):
        bot.rt.champion = young(n_train=75)
        assert typical_candidates(bot.rt) is None and bot.rt.typical is None
        assert await bot.dispatcher.fill() == 2
        assert {p["reason"] for p in bot.store.db["posts"].rows} == {"uncertain"}
        assert shown_reason(bot.store, bot.rt.settings, "out-0", "gold", 1, bot.rt.model) == (
            "uncertain"
        )
        assert "closest calls" in queue_text(bot.rt)


async def test_typical_picks_keep_the_audit_share_and_come_after_the_warm_up(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The audit positions and picks are the ones the model's closest calls get (the same
    draws); only the other positions are TypiClust's, in its order. HITL_WARM_UP comes
    first: below it every pick is random."""
    async for bot in await typical_bot(
        fake_slack, tmp_path, typical_until=75, warm_up=50, audit_rate=0.5
    ):
        pool, sample, typical = scored_items("u", 20), scored_items("s", 20), scored_items("t", 20)
        bot.rt.champion = young(n_train=60)
        with_typical = choose(bot.rt, pool, 8, random.Random(3), sample, typical)
        without = choose(bot.rt, pool, 8, random.Random(3), sample)
        assert [r for _, r in with_typical] == [
            "audit" if r == "audit" else "typical" for _, r in without
        ]
        assert "audit" in {r for _, r in without} and "uncertain" in {r for _, r in without}
        assert [it["id"] for it, r in with_typical if r == "audit"] == [
            it["id"] for it, r in without if r == "audit"
        ]
        assert [it["id"] for it, r in with_typical if r == "typical"] == [
            f"t{n}" for n in range(sum(r == "typical" for _, r in with_typical))
        ]
        bot.rt.champion = young(n_train=49)  # warm-up first
        assert {r for _, r in choose(bot.rt, pool, 8, random.Random(3), sample, typical)} == {
            "warm_up"
        }
        bot.rt.champion = young(n_train=75)  # past it: the closest calls
        assert "typical" not in {
            r for _, r in choose(bot.rt, pool, 8, random.Random(3), sample, typical)
        }


@pytest.mark.parametrize("size", [100, 2_000])  # random rowids; drawn from the index
def test_the_order_reads_the_dispatchers_uniform_sample_a_step_at_a_time(memory_store, size):
    """``Store.sample_unlabeled_steps`` draws what ``sample_unlabeled`` draws (the same seed,
    the same items), one statement of at most ``step`` rowids between its yields, so the
    order's read lets the loop's other work run between them."""
    memory_store.add_items(
        [Item(f"i{n}", f"text {n}", label="billing" if n % 3 == 0 else None) for n in range(6000)],
        "import",
    )
    steps = memory_store.sample_unlabeled_steps(size, random.Random(5), 100)
    yields = 0
    while True:
        try:
            next(steps)
            yields += 1
        except StopIteration as done:
            rowids = done.value
            break
    rows = [
        row
        for n in range(0, len(rowids), 500)
        for row in memory_store.unlabeled_at(rowids[n : n + 500])
    ]
    expected = memory_store.sample_unlabeled(size, random.Random(5))
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in expected)
    # 200 random rowids drawn 100 at a time, then read 100 a statement: a yield between the
    # draws, before the reads and between them; 6,000 items hold under 4 × 2,000: the index
    assert len(rows) == size and yields == (3 if size == 100 else 0)


@pytest.mark.parametrize(
    ("labels", "n_train", "reason"),
    [
        (("billing", "bug", "crash", "shipping"), 31, "typical"),  # 4 labels: below 32
        (("billing", "bug", "crash", "shipping"), 32, "uncertain"),
        (("billing", "bug"), 15, "typical"),  # 2 labels: 16
        (("billing", "bug"), 16, "uncertain"),
        (
            ("billing", "bug", *(f"l{n}" for n in range(28))),
            149,
            "typical",
        ),  # 30 labels: 150 at most
        (("billing", "bug", *(f"l{n}" for n in range(28))), 150, "uncertain"),
    ],
)
async def test_auto_asks_typical_picks_below_eight_labels_a_label_of_the_set_at_most_150(
    fake_slack: FakeSlack, tmp_path: Path, labels: tuple[str, ...], n_train: int, reason: str
):
    """HITL_TYPICAL_UNTIL=auto: the benchmark's ``typicpc8`` rule, read from the label set in
    force."""
    async for bot in await typical_bot(fake_slack, tmp_path, typical_until="auto", labels=labels):
        until = min(8 * len(labels), 150)
        assert typical_module.typical_until(bot.rt.settings, bot.store) == until
        bot.rt.champion = young(n_train=n_train)
        if reason == "typical":
            assert typical_candidates(bot.rt) is None  # started
            await ready(bot.rt)
            assert f"it has {n_train:,} of the {until:,} labels" in queue_text(bot.rt)
        else:
            assert typical_candidates(bot.rt) is None and bot.rt.typical is None
            assert "closest calls" in queue_text(bot.rt)
        assert await bot.dispatcher.fill() == 2
        assert {p["reason"] for p in bot.store.db["posts"].rows} == {reason}


def test_the_setting_reads_a_whole_number_or_auto_and_says_both_when_refused():
    from bot.config import SPECS

    (spec,) = [s for s in SPECS if s.env == "HITL_TYPICAL_UNTIL"]
    assert [spec.parse(v) for v in ("auto", " AUTO ", "0", "75", 1_000)] == [
        "auto", "auto", 0, 75, 1_000,
    ]  # fmt: skip
    for bad, said in (("sometimes", "is not a whole number"), ("1001", "is out of range")):
        with pytest.raises(ValueError, match=f"{said}; use .* from 0 to 1000, or auto"):
            spec.parse(bad)


async def test_a_typical_question_taken_back_unanswered_does_not_take_its_freed_place_back(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A pick of the order asked and ignored (HITL_QUESTION_TTL) goes back to the queue, ahead
    of the order's other picks: the round that freed its place asked it again at once. It
    rests for one TTL, as the closest calls do (``dispatch.last``): the order's other picks
    come first, then the model's closest calls; it is asked again once it rests no more."""
    async for bot in await typical_bot(fake_slack, tmp_path, typical_until=75):
        bot.rt.champion = young()
        assert typical_candidates(bot.rt) is None
        order = await ready(bot.rt)
        assert await bot.dispatcher.fill() == 2
        first = [p["item_id"] for p in bot.store.db["posts"].rows]
        assert first == order.ids[:2]
        age_questions(bot, "posted_at", "closed_at IS NULL")
        # the order's pick nobody was asked (the round's list ends where its picks run out)
        assert await bot.dispatcher.fill() == 1
        # then a closest call, not a question taken back
        assert await bot.dispatcher.fill() == 1
        again = [
            (p["item_id"], p["reason"])
            for p in bot.store.db.query("SELECT * FROM posts WHERE closed_at IS NULL ORDER BY id")
        ]
        assert again[0] == (order.ids[2], "typical")
        assert again[1][1] == "uncertain" and again[1][0] not in first
        # a TTL on, the first two rest no more (and the two asked since are taken back too)
        age_questions(bot, "expired_at", "closed_at IS NOT NULL")
        age_questions(bot, "posted_at", "closed_at IS NULL")
        assert await bot.dispatcher.fill() == 2
        assert [
            (p["item_id"], p["reason"])
            for p in bot.store.db.query("SELECT * FROM posts WHERE closed_at IS NULL ORDER BY id")
        ] == [(item_id, "typical") for item_id in first]


def age_questions(bot, column: str, where: str) -> None:  # noqa: ANN001
    """The posts ``where`` selects had ``column`` set 73 hours ago (a TTL of 72 and one)."""
    then = datetime.fromisoformat(bot.store.now()) - timedelta(hours=73)
    with bot.store.db.conn:
        bot.store.db.execute(
            f"UPDATE posts SET {column} = ? WHERE {where}",
            [then.isoformat(timespec="milliseconds")],
        )


async def test_an_order_that_cannot_be_read_is_said_in_one_line_without_a_traceback(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A failure the bot knows (the database file moved away under the server, so the pool's
    connection of its own is refused; the scoring child out of memory or dead twice) is said
    in one line that says what to do, as everywhere else, not with a traceback; the model asks
    its closest calls, and the next version's order is computed."""
    caplog.set_level(logging.INFO)
    db = tmp_path / "hitl.db"
    async for bot in await typical_bot(fake_slack, tmp_path, typical_until=75):
        bot.rt.champion = young()
        db.rename(tmp_path / "moved.db")
        try:
            assert typical_candidates(bot.rt) is None
            order = await ready(bot.rt)
        finally:
            (tmp_path / "moved.db").rename(db)
        assert order.ids == [] and order.n_computed == 0
        [line] = [r for r in caplog.records if "TypiClust's order" in r.getMessage()]
        assert line.exc_info is None, line.getMessage()
        assert line.getMessage().startswith("TypiClust's order for model 1 failed: ")
        assert f"put the database back at {db}" in line.getMessage()
        assert line.getMessage().endswith("; its questions are its closest calls")
        assert typical_candidates(bot.rt) is None  # its closest calls from here on
        bot.rt.champion = young(version=2, n_train=11)
        assert typical_candidates(bot.rt) is None and (await ready(bot.rt)).n_computed == 1


async def test_a_stop_while_the_order_is_computed_cancels_it_without_waiting_for_it(
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    """The order is of no use to a server that stops: the stop cancels it at once, in the
    scoring child as `hitl serve` has it, not waited for among the acked listeners' work
    (``server.DRAIN_SECONDS``: the whole 5 s while the order took tens of seconds). Here the
    child is busy ahead of the order, and the drain would wait an hour."""
    monkeypatch.setattr(server_module, "DRAIN_SECONDS", 3600.0)
    worker = ScoringWorker(niceness=WALK_NICENESS)
    await asyncio.to_thread(worker.warm)
    busy = asyncio.ensure_future(worker.call(None, time.sleep, 3600))
    try:
        async with asyncio.timeout(60):  # only the old stop comes near it (the drain's hour)
            async for bot in await typical_bot(fake_slack, tmp_path, typical_until=75):
                scorer_of(bot.rt).walk_worker = worker
                bot.rt.champion = young()
                assert typical_candidates(bot.rt) is None
                order = TypicalOrder.of(bot.rt)  # waits behind the child's hour, wherever it is
        assert order.task.cancelled() and order.ids == [] and order.n_computed == 0
        assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    finally:
        busy.cancel()
        worker.close()


async def test_the_listeners_drain_neither_waits_for_the_order_nor_cancels_it(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The order is not the acked listeners' work: ``Background.drain`` (which the simulated
    teammates of `hitl demo --simulate` and refresh.py run before each dispatcher round, with
    a 10 s timeout) returns while it is computed, and leaves it computing. Here the scoring
    child is busy ahead of the order, as it is when the order takes longer than the drain."""
    worker = ScoringWorker(niceness=WALK_NICENESS)
    await asyncio.to_thread(worker.warm)
    busy = asyncio.ensure_future(worker.call(None, time.sleep, 3600))
    try:
        async for bot in await typical_bot(fake_slack, tmp_path, typical_until=75):
            scorer_of(bot.rt).walk_worker = worker
            bot.rt.champion = young()
            assert typical_candidates(bot.rt) is None
            order = TypicalOrder.of(bot.rt)
            await bot.rt.background.drain(0.5)  # the old order: TimeoutError, the order cancelled
            assert not order.task.done() and order.task not in bot.rt.background.tasks
    finally:
        busy.cancel()
        worker.close()
