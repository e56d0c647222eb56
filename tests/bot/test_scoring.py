"""Scoring: the strategy as an extension point, one owner of scoring, bounded work per step.

Through a real Store (a file, migrated as in production) and the real app on loopback. Items
are counted as scored by a temporary trigger on the test's own connection, which records
every write of a prediction: the product's code is not touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlite_utils import Database

from bot.api.intake import Intake
from bot.api.routes import ApiItem
from bot.config import Settings
from bot.learning.scoring import WRITE_BATCH, Scorer, score_items, score_pending, scorer_of
from bot.learning.scoring_worker import WALK_NICENESS, ScoringWorker
from bot.runtime import Champion
from bot.sandbox import FakeSlack
from bot.store import Store, migrations
from model import selection
from model.classifier import TextClassifier
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.query_plans import query_plans

TOKEN = "api-token-for-scoring-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRAINING = [
    ("I was charged twice for my subscription", "billing"),
    ("Refund the annual plan please", "billing"),
    ("My invoice shows the wrong amount", "billing"),
    ("The app crashes when I open settings", "bug"),
    ("Login page is blank on Safari", "bug"),
    ("Export button throws an error", "bug"),
    ("Please delete my account", "account"),
    ("Change the email on my account", "account"),
    ("Reset my account password", "account"),
]
WORDS = ["refund", "charged", "crash", "blank", "account", "email", "invoice", "login", "plan"]


def backlog(n: int, prefix: str = "b") -> list[Item]:
    """``n`` unlabeled items whose texts mix the training words differently."""
    return [
        Item(f"{prefix}{k}", f"{WORDS[k % 9]} {WORDS[(k * 4 + 1) % 9]} {WORDS[(k * 7) % 9]} {k}")
        for k in range(n)
    ]


@pytest.fixture(scope="module")
def classifier() -> TextClassifier:
    texts, labels = zip(*TRAINING, strict=True)
    return TextClassifier().fit(list(texts), list(labels))


def count_scorings(store: Store) -> None:
    """Record every prediction written (item, version, strategy) in a temporary table."""
    store.db.execute("CREATE TEMP TABLE scorings (item_id TEXT, version INTEGER, strategy TEXT)")
    store.db.execute(
        "CREATE TEMP TRIGGER count_scorings AFTER UPDATE OF confidence ON main.items"
        " BEGIN INSERT INTO scorings VALUES (new.id, new.model_version, new.strategy); END"
    )


def scorings(store: Store) -> dict[tuple[str, int], int]:
    rows = store.db.execute("SELECT item_id, version, count(*) FROM scorings GROUP BY 1, 2")
    return {(item_id, version): n for item_id, version, n in rows}


async def start(
    fake: FakeSlack, tmp_path: Path, items: list[Item], **changes
) -> AsyncIterator[Bot]:
    seed(tmp_path / "hitl.db", items)
    settings = make_settings(fake, tmp_path, **{"api_token": TOKEN, "max_open": 2, **changes})
    async for bot in start_bot(fake, settings):
        yield bot


@pytest.fixture
def most_confident_first() -> Iterator[str]:
    """A strategy registered in model.selection, as a new one would be: nothing else changes."""
    name = "most_confident_first"
    selection.register_strategy(name)(lambda proba: proba.max(axis=1))
    yield name
    selection.unregister_strategy(name)


# -- the strategy is an extension point --


async def test_a_strategy_registered_in_model_selection_orders_the_dispatchers_posts(
    fake_slack: FakeSlack, tmp_path: Path, classifier: TextClassifier, most_confident_first: str
):
    items = backlog(12)
    proba = classifier.predict_proba([it.text for it in items])
    by_hand = [items[i].id for i in np.argsort(-proba.max(axis=1), kind="stable")[:2]]
    by_margin = [items[i].id for i in np.argsort(-selection.priority(proba), kind="stable")[:2]]
    assert set(by_hand) != set(by_margin)  # the new strategy asks about other items
    async for bot in start(fake_slack, tmp_path, items, audit_rate=0.0, threshold=1.0,
                           strategy=most_confident_first):  # fmt: skip
        bot.rt.champion = Champion(version=1, classifier=classifier)
        assert await bot.dispatcher.fill() == 2
        posts = list(bot.store.db["posts"].rows_where(order_by="id"))
        assert [p["item_id"] for p in posts] == by_hand
        assert {p["reason"] for p in posts} == {"uncertain"}
        stored = bot.store.get_item(items[0].id)
        assert stored["strategy"] == most_confident_first
        assert stored["priority"] == pytest.approx(proba[0].max())


async def test_changing_the_strategy_scores_the_items_again_under_the_new_one(
    tmp_path: Path, classifier: TextClassifier
):
    items = backlog(30)
    seed(tmp_path / "hitl.db", items)
    with Store.open(tmp_path / "hitl.db") as store:
        champion = Champion(version=1, classifier=classifier)
        assert await score_items(store, champion, 1.0, "margin") == 30
        assert await score_items(store, champion, 1.0, "margin") == 0  # scored once
        assert store.unscored_count(1, "entropy") == 30
        assert await score_items(store, champion, 1.0, "entropy") == 30
        entropy = selection.entropy(classifier.predict_proba([it.text for it in items]))
        by_hand = [items[i].id for i in np.argsort(-entropy, kind="stable")]
        assert [it["id"] for it in store.most_uncertain(30)] == by_hand
        assert {it["strategy"] for it in map(store.get_item, by_hand)} == {"entropy"}


def test_a_database_scored_before_priorities_keeps_its_queue_order(tmp_path: Path):
    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m011_priority")
    margins = {"q0": 0.30, "q1": 0.05, "q2": 0.60, "q3": 0.05, "q4": 0.15}
    for n, (item_id, gap) in enumerate(margins.items()):
        ranked = [["billing", 0.6], ["bug", 0.6 - gap]]
        db["items"].insert(
            {"id": item_id, "text": f"old item {n}", "source": "import", "status": "queued",
             "created_at": "2026-11-01", "updated_at": "2026-11-01", "model_version": 1,
             "predicted_label": "billing", "confidence": 0.6, "ranked": json.dumps(ranked),
             "margin": 0.6 - (0.6 - gap)}
        )  # fmt: skip
    db["items"].insert({"id": "n0", "text": "never scored", "source": "import",
                        "status": "new", "created_at": "2026-11-02",
                        "updated_at": "2026-11-02"})  # fmt: skip
    old_order = [r[0] for r in db.execute("SELECT id FROM items WHERE status = 'queued'"
                                          " ORDER BY margin, rowid")]  # fmt: skip
    db.close()

    with Store.open(path) as store:
        assert [it["id"] for it in store.most_uncertain(10)] == old_order == [
            "q1", "q3", "q4", "q0", "q2"
        ]  # fmt: skip
        item = store.get_item("q4")
        assert (item["strategy"], item["priority"]) == ("margin", pytest.approx(0.85))
        # Under the default strategy only the item never scored waits; under another, all.
        assert store.unscored_count(1, "margin") == 1
        assert store.unscored_count(1, "entropy") == 6
        indexes = {index.name for index in store.db["items"].indexes}
        assert "items_status_margin" not in indexes and "items_status_priority" in indexes


# -- bounded work: the walk, the predict, the dispatcher round --


def test_the_walk_over_unscored_items_reads_an_index_in_bounded_chunks(tmp_path: Path):
    items = backlog(25)
    seed(tmp_path / "hitl.db", [*items, Item("done", "labeled already", label="billing")])
    with Store.open(tmp_path / "hitl.db") as store:
        walked, after, steps = [], 0, 0
        while True:
            rows, last = store.unscored_chunk(1, "margin", after, 10)
            if last is None:
                break
            walked += [item_id for item_id, _ in rows]
            after, steps = last, steps + 1
        assert walked == [it.id for it in items] and steps == 3
        plans = query_plans(store, lambda: store.unscored_chunk(1, "margin", 5, 10))
        [(sql, plan)] = plans
        assert "USING INDEX items_unlabeled" in " ".join(plan), plan
        assert "TEMP B-TREE" not in " ".join(plan) and "SCAN" not in " ".join(plan)


async def test_predict_scores_only_its_own_item_not_the_backlog(
    fake_slack: FakeSlack, tmp_path: Path, classifier: TextClassifier
):
    async for bot in start(fake_slack, tmp_path, backlog(40), threshold=1.0):
        bot.rt.champion = Champion(version=1, classifier=classifier)
        count_scorings(bot.store)
        response = await bot.http.post(
            "/api/predict", data=json.dumps({"text": "Refund me", "id": "p1"}), headers=AUTH
        )
        body = await response.json()
        assert (response.status, body["model_version"], body["status"]) == (200, 1, "needs_review")
        assert scorings(bot.store) == {("p1", 1): 1}  # the backlog waits for the scorer
        assert bot.store.unscored_count(1, "margin") == 40


async def test_a_dispatcher_round_scores_one_bounded_chunk_and_leaves_the_rest(
    fake_slack: FakeSlack, tmp_path: Path, classifier: TextClassifier
):
    async for bot in start(fake_slack, tmp_path, backlog(35), threshold=1.0, audit_rate=0.0):
        bot.rt.champion = Champion(version=1, classifier=classifier)
        bot.rt.scorer = Scorer.for_runtime(bot.rt)
        bot.rt.scorer.chunk = 10
        count_scorings(bot.store)
        assert await bot.dispatcher.fill() == 2  # from the chunk it scored
        assert len(scorings(bot.store)) == 10
        assert bot.rt.scorer.wake_event.is_set()  # the rest goes to the background run
        assert await score_pending(bot.rt) == 25
        assert await bot.dispatcher.fill() == 0  # the channel is full; nothing scanned again
        assert len(scorings(bot.store)) == 35 and set(scorings(bot.store).values()) == {1}


async def test_a_new_model_ranks_the_dispatchers_window_before_the_walk_gets_there(
    fake_slack: FakeSlack, tmp_path: Path, classifier: TextClassifier
):
    """After a refresh or a promotion the walk re-scores the waiting items oldest first (at a
    million items: minutes). The dispatcher's next round scores its window with the new model
    first, so the question it posts is the new model's closest call, with its guess."""
    items = backlog(35)
    texts, labels = zip(*TRAINING, strict=True)
    newer = TextClassifier().fit([*texts, "refund crash login", "invoice blank email"],
                                 [*labels, "bug", "account"])  # fmt: skip
    proba = newer.predict_proba([it.text for it in items])
    by_newer = [items[i].id for i in np.argsort(-selection.priority(proba), kind="stable")]
    async for bot in start(fake_slack, tmp_path, items, threshold=1.0, audit_rate=0.0):
        bot.rt.champion = Champion(version=1, classifier=classifier)
        bot.rt.scorer = Scorer.for_runtime(bot.rt)
        assert await score_pending(bot.rt) == 35  # the queue as v1 ranked it
        old_order = [it["id"] for it in bot.store.most_uncertain(35)]
        assert old_order[:2] != by_newer[:2]  # the two models disagree on what to ask
        bot.rt.champion = Champion(version=2, classifier=newer)
        bot.rt.scorer.chunk = 5  # a round's own step of the walk covers 5 items of 35
        count_scorings(bot.store)
        assert await bot.dispatcher.fill() == 2
        posts = list(bot.store.db["posts"].rows_where(order_by="id"))
        assert [p["item_id"] for p in posts] == by_newer[:2]
        assert {p["model_version"] for p in posts} == {2}
        assert len(scorings(bot.store)) == 35  # the window (all 35 here), each once


async def test_when_the_new_model_is_sure_of_the_window_the_next_windows_are_scored_a_few_a_round(
    fake_slack: FakeSlack, tmp_path: Path, classifier: TextClassifier, monkeypatch
):
    """Items the new model is sure of leave the queue: the round scores the next window, up to
    FRESH_PASSES of them, and chooses among the items the new model left in the queue."""
    from bot.learning import scoring

    monkeypatch.setattr(scoring, "UNCERTAIN_WINDOW", 4)  # 35 items: several windows
    items = backlog(35)
    texts, labels = zip(*TRAINING, strict=True)
    newer = TextClassifier().fit([*texts, *texts], [*labels, *labels])  # surer of the same
    async for bot in start(fake_slack, tmp_path, items, threshold=0.45, audit_rate=0.0,
                           max_open=1):  # fmt: skip
        bot.rt.champion = Champion(version=1, classifier=classifier)
        bot.rt.scorer = Scorer.for_runtime(bot.rt)
        await score_pending(bot.rt)
        bot.rt.champion = Champion(version=2, classifier=newer)
        bot.rt.scorer.chunk = 1  # the round's own step of the walk: one item
        count_scorings(bot.store)
        assert await bot.dispatcher.fill() == 1
        scored = {item_id for item_id, version in scorings(bot.store) if version == 2}
        assert 4 < len(scored) <= 1 + scoring.FRESH_PASSES * 4  # more than one window
        [post] = bot.store.db["posts"].rows
        assert post["model_version"] == 2 and post["item_id"] in scored


async def test_a_caller_that_stops_waiting_for_items_another_scores_does_not_break_that_scoring(
    tmp_path: Path, classifier: TextClassifier
):
    """A request (or the dispatcher) waiting for items the walk is scoring may be cancelled (a
    producer hung up; the server stops). Its wait cancelled the walk's own future, and the walk's
    step then failed setting it ("invalid state"), which also swallowed the walk's own
    cancellation at shutdown ("background task hitl-scorer did not stop")."""
    import concurrent.futures
    import threading

    items = backlog(10)
    seed(tmp_path / "hitl.db", items)
    release = threading.Event()
    loop = asyncio.get_running_loop()
    one_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(one_thread)
    with Store.open(tmp_path / "hitl.db") as store:
        settings = Settings(threshold=1.0)
        champion = Champion(version=1, classifier=classifier)
        scorer = Scorer(store, champion=lambda: champion, settings=lambda: settings)
        blocker = loop.run_in_executor(None, release.wait)  # the only thread is busy
        rows = [(it.id, it.text) for it in items]
        walk = asyncio.create_task(scorer._score(champion, "margin", rows, walking=True))
        await asyncio.sleep(0)  # the walk's step claims the items and waits for the thread
        waiter = asyncio.create_task(scorer.score_ids([it.id for it in items]))
        await asyncio.sleep(0)  # the caller finds them in flight and waits for the walk
        assert not waiter.done() and not walk.done()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await blocker
        assert await walk == 10  # written, not "invalid state"
        assert store.unscored_of([it.id for it in items], 1, "margin") == []


# -- one owner: each item scored once per model version --


@pytest.mark.parametrize("where", ["thread", "child process"])
async def test_concurrent_predicts_and_rounds_score_each_item_once_per_version(
    fake_slack: FakeSlack, tmp_path: Path, classifier: TextClassifier, where: str
):
    items = backlog(60)
    async for bot in start(fake_slack, tmp_path, items, threshold=1.0, max_open=50):
        count_scorings(bot.store)
        worker = scorer_of(bot.rt).worker = ScoringWorker() if where != "thread" else None

        async def predict(k: int, bot: Bot = bot) -> int:
            known = items[k % 20]  # the same items asked about by several producers at once
            body = {"text": known.text, "id": known.id} if k % 2 else {"text": f"new {k % 7}"}
            response = await bot.http.post("/api/predict", data=json.dumps(body), headers=AUTH)
            return response.status

        for version in (1, 2):
            bot.rt.champion = Champion(version=version, classifier=classifier)
            calls = [predict(k) for k in range(30)]
            rounds = [bot.dispatcher.fill() for _ in range(3)]
            results = await asyncio.gather(*calls, *rounds, score_pending(bot.rt))
            assert results[:30] == [200] * 30
            await score_pending(bot.rt)  # whatever is left: still once each
        counts = scorings(bot.store)
        assert set(counts.values()) == {1}, {k: n for k, n in counts.items() if n > 1}
        unlabeled = {r[0] for r in bot.store.db.execute("SELECT id FROM items")}
        assert {item_id for item_id, version in counts if version == 1} == unlabeled
        assert bot.store.unscored_count(2, "margin") == 0
        if worker is not None:
            assert worker.calls > 0 and worker.restarts == 0
            worker.close()


class CountingModel:
    """The real classifier, counting the texts of each ``predict_proba`` call (a double of the
    model only: every line of the product's code runs)."""

    def __init__(self, classifier: TextClassifier) -> None:
        self.classifier = classifier
        self.classes = classifier.classes
        self.calls: list[int] = []

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.classifier.predict_proba(texts)


async def test_requests_that_come_together_are_scored_in_one_model_call(
    tmp_path: Path, classifier: TextClassifier
):
    items = backlog(20)
    seed(tmp_path / "hitl.db", items)
    model = CountingModel(classifier)
    champion = Champion(version=1, classifier=model)
    with Store.open(tmp_path / "hitl.db") as store:
        settings = Settings(threshold=1.0)
        scorer = Scorer(store, champion=lambda: champion, settings=lambda: settings)
        counts = await asyncio.gather(*(scorer.score_ids([it.id, items[0].id]) for it in items))
        assert model.calls == [20]  # one batch: each item once, the repeated one too
        assert sum(counts) == 20 and scorer.n_scored == 20
        assert store.unscored_count(1, "margin") == 0
        assert await scorer.score_ids([it.id for it in items]) == 0 and model.calls == [20]


async def test_a_walk_over_items_scored_already_gives_the_loop_a_turn_after_each_chunk(
    tmp_path: Path, classifier: TextClassifier
):
    seed(tmp_path / "hitl.db", backlog(50))
    champion = Champion(version=1, classifier=classifier)
    with Store.open(tmp_path / "hitl.db") as store:
        settings = Settings(threshold=1.0)
        assert await score_items(store, champion, 1.0) == 50
        scorer = Scorer(store, champion=lambda: champion, settings=lambda: settings, chunk=10)
        turns = 0

        async def other_work() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(other_work())
        await asyncio.sleep(0)  # it has started
        assert await scorer.catch_up() == 0  # five chunks read, nothing to score
        other.cancel()
        assert turns >= 5  # a click waiting on the loop is served between chunks


def scored_in_order(store: Store, version: int) -> list[str]:
    rows = store.db.execute(
        "SELECT item_id FROM scorings WHERE version = ? ORDER BY rowid", [version]
    )
    return [item_id for (item_id,) in rows]


async def test_a_new_models_walk_goes_on_from_where_the_last_one_was_and_round(
    tmp_path: Path, classifier: TextClassifier
):
    """Refreshes come every few dozen answers, and at a million items a walk takes minutes. A
    walk that began again at the oldest item for each new model re-scored the oldest items all
    day and never reached the newest: each new model's walk goes on from where the last one
    was, to the end and round, and a walk that went round stops where it began."""
    items = backlog(30)
    seed(tmp_path / "hitl.db", items)
    ids = [it.id for it in items]
    models = [Champion(version=v, classifier=classifier) for v in (1, 2, 3)]
    serving = models[0]
    settings = Settings(threshold=1.0)
    with Store.open(tmp_path / "hitl.db") as store:
        count_scorings(store)
        scorer = Scorer(store, champion=lambda: serving, settings=lambda: settings, chunk=5)
        assert await scorer.catch_up(max_chunks=2) == 10  # v1 walks the first ten
        serving = models[1]  # a refresh
        assert await scorer.catch_up(max_chunks=3) == 15
        assert scored_in_order(store, 2) == ids[10:25]  # on from v1's place, not from b0
        serving = models[2]  # another, before v2's walk got round
        assert await scorer.catch_up() == 30
        assert scored_in_order(store, 3) == ids[25:] + ids[:25]  # to the end, then round
        assert await scorer.catch_up() == 0  # round: it stops where it began

        store.add_items([Item("late1", "refund login 1"), Item("late2", "crash plan 2")], "api")
        assert await scorer.catch_up() == 2  # items added after the round, from its end
        assert scored_in_order(store, 3)[30:] == ["late1", "late2"]
        serving = models[0]  # a rollback to v1: a new walk from there, once round
        assert await scorer.catch_up() == 32
        assert sorted(scored_in_order(store, 1)[10:]) == sorted([*ids, "late1", "late2"])


async def test_whatever_models_strategies_and_new_items_come_between_chunks_a_walk_scores_all(
    tmp_path: Path, classifier: TextClassifier
):
    """The walk's bookkeeping (where it is, where it began, whether it went round) under a
    seeded random mix of steps, new models, strategy changes and new items: a walk left to
    finish scores every waiting item with the model and strategy of the end, each once."""
    import random

    rng = random.Random(19)
    seed(tmp_path / "hitl.db", backlog(40))
    models = [Champion(version=v, classifier=classifier) for v in range(1, 6)]
    serving, settings = models[0], Settings(threshold=1.0)
    with Store.open(tmp_path / "hitl.db") as store:
        count_scorings(store)
        scorer = Scorer(store, champion=lambda: serving, settings=lambda: settings, chunk=4)
        added = 0
        for _ in range(120):
            step = rng.choice(["chunks", "chunks", "chunks", "model", "strategy", "items"])
            if step == "chunks":
                await scorer.catch_up(max_chunks=rng.randint(1, 3))
            elif step == "model":
                serving = rng.choice(models)
            elif step == "strategy":
                settings = Settings(threshold=1.0, strategy=rng.choice(["margin", "entropy"]))
            else:
                new = [Item(f"n{added + k}", f"refund crash {added + k}") for k in range(3)]
                store.add_items(new, "api")
                added += 3
            if rng.random() < 0.05:
                await scorer.catch_up()  # a walk that ends now and then
        store.db.execute("DELETE FROM scorings")
        await scorer.catch_up()
        rows = store.db.execute("SELECT model_version, strategy FROM items").fetchall()
        assert len(rows) == 40 + added and set(rows) == {(serving.version, settings.strategy)}
        counts = store.db.execute("SELECT item_id, count(*) FROM scorings GROUP BY 1").fetchall()
        assert all(n == 1 for _, n in counts)  # the last walk scored none twice
        assert await scorer.catch_up() == 0


async def test_a_chunks_predictions_are_written_in_batches_with_the_loops_turn_between(
    tmp_path: Path, classifier: TextClassifier
):
    """At a million items 500 predictions took 40-110 ms to write: in one transaction that
    held the event loop, and every click waiting on it, that long at each step of a walk. The
    loop's other work runs between batches of WRITE_BATCH, seeing some of the chunk written."""
    seed(tmp_path / "hitl.db", backlog(4 * WRITE_BATCH))
    champion = Champion(version=1, classifier=classifier)
    with Store.open(tmp_path / "hitl.db") as store:
        settings = Settings(threshold=1.0)
        count_scorings(store)
        scorer = Scorer(store, champion=lambda: champion, settings=lambda: settings)
        seen: set[int] = set()

        async def other_work() -> None:  # a click's handler, say: it reads what is written
            while True:
                seen.add(store.db.execute("SELECT count(*) FROM scorings").fetchone()[0])
                await asyncio.sleep(0)

        other = asyncio.create_task(other_work())
        await asyncio.sleep(0)  # it has started
        assert await scorer.catch_up() == 4 * WRITE_BATCH  # one chunk: one model call
        other.cancel()
        assert {WRITE_BATCH, 2 * WRITE_BATCH, 3 * WRITE_BATCH} <= seen, seen


async def test_predicts_that_come_together_are_stored_in_one_commit(tmp_path: Path):
    with Store.open(tmp_path / "hitl.db") as store:
        intake = Intake(lambda: store, "api")
        items = [ApiItem(f"p{n}", f"text {n}", {}, None) for n in range(10)]
        statements: list[str] = []
        store.db.conn.set_trace_callback(statements.append)
        try:
            created = await asyncio.gather(*(intake.add([it]) for it in [*items, items[0]]))
        finally:
            store.db.conn.set_trace_callback(None)
        assert created == [{it.id} for it in items] + [{"p0"}]
        assert sum(s.strip().upper() == "COMMIT" for s in statements) == 1  # one fsync
        assert store.count_items()["new"] == 10


# -- `hitl serve` scores in a child process --


async def test_serve_scores_in_child_processes_the_walks_niced_and_replaces_one_that_died(
    fake_slack: FakeSlack,
    tmp_path: Path,
    classifier: TextClassifier,
    caplog: pytest.LogCaptureFixture,
):
    """A new model re-scores every waiting item (100,000 of them take a core for a minute):
    in `hitl serve` that walk runs in a child of its own at a lower priority, so clicks and the
    producers' items, scored in the other child at the server's priority, come first."""
    seed(tmp_path / "hitl.db", backlog(40))
    settings = make_settings(fake_slack, tmp_path, api_token=TOKEN, max_open=1, threshold=1.0)
    async for bot in start_bot(fake_slack, settings, background=True):  # as `hitl serve`
        bot.rt.champion = Champion(version=1, classifier=classifier)
        scorer = scorer_of(bot.rt)
        worker, walk = scorer.worker, scorer.walk_worker
        assert isinstance(worker, ScoringWorker) and isinstance(walk, ScoringWorker)
        # its commits leave the write-ahead log to a checkpoint task (in a worker thread)
        assert bot.store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert "hitl-checkpoint" in {task.get_name() for task in asyncio.all_tasks()}
        await score_pending(bot.rt)  # what a promotion or a refresh does: a walk
        assert bot.store.unscored_count(1, bot.rt.settings.strategy) == 0
        assert walk.calls >= 1 and worker.calls == 0
        server = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, walk.pid) == min(server + WALK_NICENESS, 19)
        # forked by the fork server, which imported their code once (not spawned, each
        # importing scikit-learn anew)
        assert "multiprocessing.forkserver" in command_line(parent_of(walk.pid))

        async def predict(text: str, bot: Bot = bot) -> dict:
            response = await bot.http.post(
                "/api/predict", data=json.dumps({"text": text}), headers=AUTH
            )
            assert response.status == 200
            return await response.json()

        first = await predict("Refund my invoice")
        assert (first["model_version"], first["model_label"]) == (1, "billing")
        child = worker.pid
        assert child not in (None, os.getpid(), walk.pid) and worker.calls == 1
        assert parent_of(child) == parent_of(walk.pid) != os.getpid()
        assert os.getpriority(os.PRIO_PROCESS, child) == server
        os.kill(child, signal.SIGKILL)
        second = await predict("The app crashes on login")  # finds the child dead
        assert (second["model_version"], second["model_label"]) == (1, "bug")
        assert worker.restarts == 1 and worker.pid not in (None, child)
        died = [r.getMessage() for r in caplog.records if "scoring process" in r.getMessage()]
        assert died == [
            f"the scoring process (pid {child}) died while scoring with model v1; "
            "starting a new one"
        ]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def commits_by_sync_level(statements: list[str]) -> list[tuple[str, str]]:
    """(what was committed, the PRAGMA synchronous level in force) for each COMMIT traced:
    the level is FULL (2) from the start, and each ``PRAGMA synchronous = X`` changes it."""
    level, out, doing = "2", [], ""
    for sql in statements:
        words = sql.strip().split()
        if words[:2] == ["PRAGMA", "synchronous"] and "=" in sql:
            level = {"NORMAL": "1", "FULL": "2"}.get(words[-1], words[-1])
        elif sql.strip().upper() == "COMMIT":
            out.append((doing, level))
        elif sql.lstrip().upper().startswith(("INSERT", "UPDATE")) and not doing:
            doing = sql.split("(")[0].replace('"', "").strip()
        if sql.strip().upper() in ("COMMIT", "ROLLBACK"):
            doing = ""
    return out


async def test_no_commit_of_a_predict_or_an_answer_waits_for_the_disk_on_the_event_loop(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A predict's item is committed without an fsync (a producer can send it again); an
    answer too, and its ack waits for an fsync of the log in a worker thread (an acknowledged
    click is on disk)."""
    async for bot in start(fake_slack, tmp_path, backlog(3), max_open=1):
        assert await bot.dispatcher.fill() == 1
        message = bot.posted()[-1]
        statements: list[str] = []
        bot.store.db.conn.set_trace_callback(statements.append)
        try:
            response = await bot.http.post(
                "/api/predict", data=json.dumps({"text": "Refund me", "id": "p1"}), headers=AUTH
            )
            assert response.status == 200
            predicted = commits_by_sync_level(statements)
            statements.clear()
            label = bot.first_label(message)
            syncs = bot.store.wal_sync.n_syncs
            assert (await bot.action(bot.button_payload(message, "U0ANA", label))).status == 200
            answered = commits_by_sync_level(statements)
            synced = bot.store.wal_sync.n_syncs - syncs  # when the ack had come
        finally:
            bot.store.db.conn.set_trace_callback(None)
        assert predicted == [("INSERT OR IGNORE INTO items", "1")]  # NORMAL: no fsync, no wait
        # the answer: committed without an fsync on the loop, the log fsynced before the ack
        assert ("INSERT INTO answers", "1") in answered and synced == 1
        assert bot.store.get_item("p1") is not None


async def test_a_wake_while_no_channel_may_post_yet_reads_no_candidates(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Each click and predict wakes the dispatcher; while the post interval holds every
    channel back, a round reads nothing of the queue (it comes back when one may post)."""
    async for bot in start(fake_slack, tmp_path, backlog(5), max_open=3):
        bot.dispatcher.post_interval = 3600.0  # Slack's pace, stretched: no second post now
        assert await bot.dispatcher.fill() == 1
        statements: list[str] = []
        bot.store.db.conn.set_trace_callback(statements.append)
        try:
            assert await bot.dispatcher.fill() == 0
        finally:
            bot.store.db.conn.set_trace_callback(None)
        assert statements  # the trace works: the round looked at the open posts
        assert [sql for sql in statements if "FROM items" in sql] == []


async def test_a_routed_channel_gets_its_own_uncertain_items_under_another_channels_backlog(
    fake_slack: FakeSlack, tmp_path: Path
):
    """600 waiting items routed to the default channel rank more uncertain than #billing's
    100, which are under the threshold too: #billing, with all its places free, is asked about
    its own uncertain items (not only the odd audit) while the other backlog fills the window
    (reader5: 1 post in 10 rounds, an audit, against 50 in the default channel)."""
    from tests.bot.harness import margin_scored, seed_champion
    from tests.fake_slack import CHANNEL

    fake_slack.add_channel("C0BILLING", "billing")
    db = tmp_path / "hitl.db"
    items = [Item(f"b{n}", f"bug ticket {n}") for n in range(600)]
    items += [Item(f"m{n}", f"billing ticket {n}") for n in range(100)]
    seed(db, items)
    seed_champion(
        db,
        ["I was charged twice", "refund", "app crashes", "error 500"],
        ["billing", "billing", "bug", "bug"],
    )
    settings = make_settings(
        fake_slack,
        tmp_path,
        labels=("billing", "bug"),
        routes={"billing": "C0BILLING"},
        max_open=5,
        gold_rate=0.0,
        audit_rate=0.0,
    )
    async for bot in start_bot(fake_slack, settings):
        assert bot.rt.model is not None
        version = bot.rt.model.version
        rows = [
            (f"b{n}", version, "bug", 0.5, [["bug", 0.5], ["billing", 0.45]]) for n in range(600)
        ]
        rows += [
            (f"m{n}", version, "billing", 0.6, [["billing", 0.6], ["bug", 0.3]]) for n in range(100)
        ]
        bot.store.set_predictions(margin_scored(rows), threshold=0.8, strategy="margin")
        for _ in range(3):
            await bot.dispatcher.fill()
            # the default channel's people answer at once; #billing's places stay free
            bot.store.db.execute("UPDATE posts SET closed_at = 'x' WHERE channel = ?", [CHANNEL])
            bot.store.db.conn.commit()
        posted = bot.store.db.execute(
            "SELECT channel, reason, item_id FROM posts ORDER BY id"
        ).fetchall()
        billing = [(reason, item) for channel, reason, item in posted if channel == "C0BILLING"]
        assert len(billing) == 5, posted
        assert {reason for reason, _ in billing} == {"uncertain"}
        assert all(item.startswith("m") for _, item in billing)
        assert any(channel == CHANNEL for channel, _, _ in posted)


def test_a_channels_own_window_reads_no_deeper_than_its_depth(tmp_path: Path):
    """``Store.most_uncertain_routed`` looks for a channel's items among the ``depth`` most
    uncertain queued items only (its cost bound), highest priority first, and stops once it
    has ``limit``."""
    with Store.open(tmp_path / "hitl.db") as store:
        store.add_items([Item(f"t{n}", f"ticket {n}") for n in range(40)], "import")
        guesses = {
            "bug": [["bug", 0.6], ["billing", 0.4]],
            "billing": [["billing", 0.6], ["bug", 0.4]],
        }
        rows = [
            (f"t{n}", 1, label, 0.6, guesses[label], 1.0 - n / 100)
            for n in range(40)
            for label in ["bug" if n < 30 else "billing"]
        ]
        store.set_predictions(rows, 0.8, "margin")
        reads: list[str] = []
        store.db.conn.set_trace_callback(reads.append)
        assert (
            store.most_uncertain_routed(["billing"], among=True, limit=5, depth=20, step=10) == []
        )
        assert sum("LIMIT" in sql for sql in reads) == 2  # two steps of 10: the depth, no deeper
        store.db.conn.set_trace_callback(None)
        found = store.most_uncertain_routed(["billing"], among=True, limit=5, depth=40, step=10)
        assert [it["id"] for it in found] == ["t30", "t31", "t32", "t33", "t34"]
        others = store.most_uncertain_routed(["billing"], among=False, limit=3, depth=40, step=10)
        assert [it["id"] for it in others] == ["t0", "t1", "t2"]
        for sql, plan in query_plans(
            store,
            lambda: store.most_uncertain_routed(["billing"], among=True, limit=5, depth=40),
        ):
            assert not any(line.startswith("SCAN items") for line in plan), (sql, plan)
