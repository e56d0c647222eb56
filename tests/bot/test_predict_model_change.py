"""A producer's request whose items are being scored when the model that answers is replaced
(a refresh of the working model, a champion loaded from the CLI, a rollback): it answers with
a model's prediction, never as if there were no model.

The scorer wrote nothing of a request's batch scored by a model replaced meanwhile, so the
request answered ``{"label": null, "model_version": null, "status": "needs_review"}`` while
``/healthz`` named a model. Through the real app on loopback. The scoring child is a stand-in
that scores in a thread as the real one does and holds the request's call (the first one whose
texts have MARKER) until the test has replaced the model; the background walk, which would
score the item with the new model on its own, is held as a long walk holds it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.learning import scoring
from bot.learning.jobs import Trainer, follow_champion, run_retrain
from bot.learning.scoring import Scorer, scorer_of
from bot.learning.scoring_worker import predict_texts
from bot.runtime import Champion, Runtime
from bot.sandbox import FakeSlack
from bot.store import Store
from model.classifier import TextClassifier
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_learning import hitl_here, labeled_items

TOKEN = "api-token-for-model-change-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MARKER = "zebra"  # in the texts of the request whose scoring is held
WAITING = [Item(f"u{n}", f"{word} ticket {n}") for n, word in enumerate(
    ["refund", "crash", "invoice", "error", "card", "freeze", "payment", "login"]
)]  # fmt: skip
TIMEOUT = 60  # only bounds a test that would otherwise hang


class HeldScoring:
    """The scoring child's ``predict``: the model call in a thread (``predict_texts``, as the
    child runs it), and the first call whose texts have MARKER waits for ``release`` before
    its predictions go back, so the test replaces the model meanwhile. ``versions``: the
    models of the calls with MARKER, in order."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.versions: list[int] = []

    async def predict(
        self, version: int, classifier: Any, texts: Sequence[str], strategy: str
    ) -> list[Any]:
        predictions = await asyncio.to_thread(predict_texts, classifier, texts, strategy)
        if any(MARKER in text for text in texts):
            self.versions.append(version)
            if not self.entered.is_set():
                self.entered.set()
                await self.release.wait()
        return predictions

    def close(self) -> None:  # the server closes its scoring children as it stops
        pass


class Replacing(HeldScoring):
    """The scoring child's ``predict`` while the model is replaced during every call with
    MARKER (a refresh adopted as it ran): each such call ends under a new working model."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__()
        self.rt = rt

    async def predict(
        self, version: int, classifier: Any, texts: Sequence[str], strategy: str
    ) -> list[Any]:
        predictions = await asyncio.to_thread(predict_texts, classifier, texts, strategy)
        if any(MARKER in text for text in texts):
            self.versions.append(version)
            self.rt.working = Champion(version=-100 - len(self.versions), classifier=classifier)
        return predictions


@contextlib.asynccontextmanager
async def long_walk(scorer: Scorer) -> AsyncIterator[None]:
    """The background walk runs (as in `hitl serve`: a new model wakes it and is done) and is
    held, as a walk over a large backlog is for minutes: it scores nothing meanwhile."""
    walker = asyncio.create_task(scorer.run())
    await scorer.walking.acquire()
    try:
        yield
    finally:
        walker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await walker
        scorer.walking.release()


async def two_champions(fake: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    """A server serving v2, with v1 (promoted before it) to roll back to."""
    db = tmp_path / "hitl.db"
    seed(db, labeled_items() + WAITING)
    for args in (["retrain"], ["retrain", "--force"]):
        assert (await hitl_here(db, *args))[0] == 0
    settings = make_settings(fake, tmp_path, labels=("billing", "bug"), api_token=TOKEN)
    async for bot in start_bot(fake, settings):
        assert bot.rt.model is not None and bot.rt.model.version == 2
        yield bot


async def test_a_predict_scored_by_a_model_a_refresh_replaces_answers_with_the_new_one(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Every HITL_REFRESH_EVERY labels a refresh replaces the model that answers. The
    request's item, scored by v1 when the refresh r15 is adopted, is scored again with r15:
    the answer is the new model's, the one /healthz names."""
    seed(tmp_path / "hitl.db", labeled_items() + WAITING)
    settings = make_settings(
        fake_slack,
        tmp_path,
        labels=("billing", "bug"),
        max_open=1,
        audit_rate=0.0,
        threshold=1.0,  # every item waits for people: the queue is all questions
        api_token=TOKEN,
        refresh_every=3,
    )
    async for bot in start_bot(fake_slack, settings):
        await run_retrain(bot.rt, "cli")
        assert bot.rt.model.version == 1
        scorer, held = scorer_of(bot.rt), HeldScoring()
        scorer.worker = held  # type: ignore[assignment]
        trainer = Trainer.of(bot.rt)
        async with long_walk(scorer):
            for _ in range(2):  # two answers: a refresh is due at the third
                await bot.dispatcher.fill()
                click = bot.button_payload(bot.posted()[-1], "U0ANA", "billing")
                assert (await bot.action(click)).status == 200
                await bot.settled()
            await trainer.settled()
            await bot.dispatcher.fill()  # the third question, asked by v1
            assert trainer.refreshes == 0
            request = asyncio.create_task(
                bot.http.post(
                    "/api/predict", json={"id": "p1", "text": f"refund {MARKER} card"}, headers=AUTH
                )
            )
            async with asyncio.timeout(TIMEOUT):
                await held.entered.wait()  # v1 has scored it; its predictions are held
            third = bot.button_payload(bot.posted()[-1], "U0ANA", "billing")
            assert (await bot.action(third)).status == 200
            await bot.settled()
            await trainer.settled(timeout=TIMEOUT)
            assert trainer.refreshes == 1 and bot.rt.model.version == -15  # r15 answers now
            held.release.set()
            async with asyncio.timeout(TIMEOUT):
                response = await request
            answer = await response.json()
        assert response.status == 200, answer
        assert answer["model_version"] == -15 and answer["label"] in ("billing", "bug")
        assert held.versions == [1, -15]  # scored by v1, then again by r15
        assert answer["confidence"] is not None and answer["ranked"]
        health = await (await bot.http.get("/healthz")).json()
        assert health["answers"] == -15


async def test_a_predict_scored_by_a_champion_the_cli_replaces_answers_with_the_new_one(
    fake_slack: FakeSlack, tmp_path: Path
):
    """`hitl rollback 1` in another process; the server loads v1 (what its champion watch does
    within a second) while the request's item is scored by v2: scored again, it is v1's."""
    async for bot in two_champions(fake_slack, tmp_path):
        scorer, held = scorer_of(bot.rt), HeldScoring()
        scorer.worker = held  # type: ignore[assignment]
        async with long_walk(scorer):
            request = asyncio.create_task(
                bot.http.post(
                    "/api/predict", json={"id": "p1", "text": f"crash {MARKER} error"}, headers=AUTH
                )
            )
            async with asyncio.timeout(TIMEOUT):
                await held.entered.wait()
            code, out = await hitl_here(tmp_path / "hitl.db", "rollback", "1")
            assert (code, out) == (0, "v1 is the champion again.\n")
            assert await follow_champion(bot.rt)  # the champion watch's check
            assert bot.rt.model.version == 1
            held.release.set()
            async with asyncio.timeout(TIMEOUT):
                response = await request
            answer = await response.json()
        assert response.status == 200, answer
        assert answer["model_version"] == 1 and answer["label"] in ("billing", "bug")
        assert held.versions == [2, 1]  # scored by v2, then again by v1
        assert answer["status"] in ("auto", "needs_review") and answer["ranked"]


@pytest.mark.parametrize("rescores", [2, 0])
async def test_the_old_models_predictions_never_replace_the_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rescores: int
):
    """Items of a request are scored by v2 when v1 replaces it (a rollback); meanwhile the
    walk scores one of them ("a") with v1. v2's prediction of "a" is never written over v1's
    (stale after a newer one's: the walk would not score it again). "b", which nobody else
    scored: scored again with v1 (RESCORES 2, as shipped); a request that may not score again
    (RESCORES 0: as after its last try) writes v2's, the model that scored it, and the walk
    scores it with v1 later."""
    monkeypatch.setattr(scoring, "RESCORES", rescores, raising=False)
    db = tmp_path / "hitl.db"
    seed(db, labeled_items() + [Item("a", f"refund {MARKER}"), Item("b", "app crashes")])
    texts, labels = zip(*[(it.text, it.label) for it in labeled_items()], strict=True)
    classifier = TextClassifier().fit(list(texts), list(labels))
    v1, v2 = (Champion(version=v, classifier=classifier) for v in (1, 2))
    serving, settings = v2, Settings(threshold=1.0)
    with Store.open(db) as store:
        scorer = Scorer(store, champion=lambda: serving, settings=lambda: settings)
        scorer.worker = held = HeldScoring()  # type: ignore[assignment]
        store.db.execute("CREATE TEMP TABLE writes (item_id TEXT, version INTEGER)")
        store.db.execute(
            "CREATE TEMP TRIGGER record_writes AFTER UPDATE OF confidence ON main.items"
            " BEGIN INSERT INTO writes VALUES (new.id, new.model_version); END"
        )
        request = asyncio.create_task(scorer.score_ids(["a", "b"]))
        async with asyncio.timeout(TIMEOUT):
            await held.entered.wait()  # v2 has scored both; its predictions are held
        serving = v1
        scorer.chunk = 1  # the walk's first step: "a" (the oldest item v1 has not scored)
        assert await scorer.catch_up(max_chunks=1) == 1
        held.release.set()
        async with asyncio.timeout(TIMEOUT):
            await request
        b_by = 1 if rescores else 2
        for item_id, version in (("a", 1), ("b", b_by)):
            item = store.get_item(item_id)
            assert item["model_version"] == version and item["confidence"] is not None, item
        rows = store.db.execute("SELECT item_id, version FROM writes ORDER BY rowid")
        assert [tuple(row) for row in rows] == [("a", 1), ("b", b_by)]
        assert held.versions == [2, 1]  # the held call, then the walk's step
        scorer.chunk = 500
        assert await scorer.catch_up() == (0 if rescores else 1)  # the walk: "b" with v1
        assert store.get_item("b")["model_version"] == 1


async def test_under_a_model_replaced_at_every_call_a_predict_answers_after_a_few_calls(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A model replaced while every one of the request's model calls runs: the request
    does not score again and again; after at most three calls it answers with the last model
    that scored its item (one already replaced: never "no model")."""
    async for bot in two_champions(fake_slack, tmp_path):
        rt = bot.rt
        replacing = Replacing(rt)
        scorer_of(rt).worker = replacing  # type: ignore[assignment]
        async with long_walk(scorer_of(rt)), asyncio.timeout(TIMEOUT):
            response = await bot.http.post(
                "/api/predict", json={"id": "p1", "text": f"invoice {MARKER}"}, headers=AUTH
            )
            answer = await response.json()
        assert response.status == 200, answer
        calls = replacing.versions
        assert 1 <= len(calls) <= 3, calls
        assert answer["model_version"] == calls[-1] and answer["label"] in ("billing", "bug")
        assert rt.model.version not in calls  # replaced again while the last call ran


class Storm:
    """The scoring child's ``predict`` in a refresh storm: models v1.. replace one another
    while the calls run, as ``on_call(version)`` (awaited after the model call) does."""

    def __init__(self, on_call: Any) -> None:
        self.on_call = on_call
        self.versions: list[int] = []

    async def predict(
        self, version: int, classifier: Any, texts: Sequence[str], strategy: str
    ) -> list[Any]:
        predictions = await asyncio.to_thread(predict_texts, classifier, texts, strategy)
        self.versions.append(version)
        await self.on_call(version)
        return predictions

    def close(self) -> None:
        pass


def storm_scorer(
    tmp_path: Path, n: int
) -> tuple[Store, dict[int, Champion], dict[str, Champion], Scorer]:
    """A store with one waiting item "x" (never scored), models v1..vn, and a scorer whose
    serving model is ``serving["now"]`` (v1 first)."""
    db = tmp_path / "hitl.db"
    seed(db, labeled_items() + [Item("x", f"refund {MARKER} invoice")])
    texts, labels = zip(*[(it.text, it.label) for it in labeled_items()], strict=True)
    classifier = TextClassifier().fit(list(texts), list(labels))
    models = {v: Champion(version=v, classifier=classifier) for v in range(1, n + 1)}
    serving = {"now": models[1]}
    settings = Settings(threshold=0.9, labels=("billing", "bug"))
    store = Store.open(db)
    scorer = Scorer(store, champion=lambda: serving["now"], settings=lambda: settings)
    return store, models, serving, scorer


async def test_the_last_try_never_writes_an_older_models_prediction_over_a_newer_ones(
    tmp_path: Path,
):
    """v1 and v2 are replaced while the request's first two calls run. During its last one
    (v3, ``keep``) v4 is adopted and its walk scores "x", then v5 is adopted before v3's
    write: "x" keeps v4's prediction (v3's was written over it: a model two generations old),
    and the request answers with it; no fourth call of the request's."""
    store, models, serving, scorer = storm_scorer(tmp_path, 5)

    async def on_call(version: int) -> None:
        if version in (1, 2):
            serving["now"] = models[version + 1]  # a refresh adopted as the call ran
        elif version == 3:
            serving["now"] = models[4]
            assert await scorer.catch_up() == 1  # v4's walk scores "x"
            assert store.get_item("x")["model_version"] == 4
            serving["now"] = models[5]

    with store:
        scorer.worker = storm = Storm(on_call)  # type: ignore[assignment]
        async with asyncio.timeout(TIMEOUT):
            await scorer.score_ids(["x"])
        item = store.get_item("x")
        assert (item["model_version"], item["predicted_label"]) == (4, "billing"), item
        assert storm.versions == [1, 2, 3, 4]  # the request's three, the walk's one


async def test_the_last_try_waiting_on_a_walk_a_new_model_stops_still_answers_with_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """v1 and v2 are replaced while the request's first two calls run; v3's walk (woken by
    the adoption) claims "x" before the request's last try, which waits for the walk's step;
    v4 is adopted during that step, which writes nothing. The request scores "x" itself once
    more, with v4, and writes it: its answer names a model (it said none: label null,
    model_version null, while /healthz named v4)."""
    store, models, serving, scorer = storm_scorer(tmp_path, 4)
    walk_claimed, request_waits, walk_again, walk_v4 = (asyncio.Event() for _ in range(4))
    walk: dict[str, Any] = {}

    def walk_step() -> asyncio.Future[Any]:
        return scorer.in_flight[(3, scorer.settings().strategy, "x")]

    wait_for = scoring._wait_for

    async def spying(futures: Any) -> list[Any]:
        futures = list(futures)
        mine = asyncio.current_task() is walk.get("task")
        if walk_claimed.is_set() and not mine and walk_step() in futures:
            request_waits.set()  # the request's last try waits for the walk's step
        return await wait_for(futures)

    monkeypatch.setattr(scoring, "_wait_for", spying)

    async def on_call(version: int) -> None:
        if version == 1:
            serving["now"] = models[2]
        elif version == 2:  # v3 adopted: its walk reads "x" and claims it for v3
            serving["now"] = models[3]
            walk["task"] = asyncio.create_task(scorer.catch_up())
            await walk_claimed.wait()
        elif version == 3:  # the walk's call
            walk_claimed.set()
            await request_waits.wait()
            serving["now"] = models[4]  # v4 adopted while the walk's step runs
        elif version == 4 and asyncio.current_task() is walk["task"]:
            walk_v4.set()
            await walk_again.wait()  # v4's walk: held until the request has answered

    with store:
        scorer.worker = storm = Storm(on_call)  # type: ignore[assignment]
        try:
            async with asyncio.timeout(TIMEOUT):
                await scorer.score_ids(["x"])
            item = store.get_item("x")
            assert (item["model_version"], item["predicted_label"]) == (4, "billing"), item
            assert item["status"] in ("auto", "queued") and item["confidence"] is not None
            # the request's two, the walk's step it waited for, the walk's and its own v4
            # (the walk takes "x" again with v4 in its own time: waited for, not raced)
            async with asyncio.timeout(TIMEOUT):
                await walk_v4.wait()
            assert sorted(storm.versions) == [1, 2, 3, 4, 4]
        finally:
            walk_again.set()
            if "task" in walk:
                async with asyncio.timeout(TIMEOUT):
                    await walk["task"]
