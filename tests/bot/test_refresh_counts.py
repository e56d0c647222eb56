"""What a refresh of the working model counts. HITL_REFRESH_EVERY counts resolved items on both
sides: those now against those when the labels of the model that scores were read. Resolved
items that never train (gold questions people answered, items made gold after they were
decided, items under a retired label) kept the count of the labels a model trained on apart
from the resolved ones for good, and past a step every answer started a full refit. And each
refresh has a version of its own: the scorer tells stored predictions apart by version alone, so
a second refresh on as many labels (not the same ones) left the queue as the first scored it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.learning.jobs import Trainer, labels_now, run_retrain
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot, Item, seed, start_bot
from tests.bot.test_refresh import answer_next, refreshed_once, started, versions

# Decided items made gold afterwards (`hitl export`, then `hitl import --gold` of some rows, as
# the README describes): resolved, but never trained on.
MADE_GOLD = [Item(f"x{n}", f"refund invoice gold example {n}", "billing") for n in range(4)]


@pytest.fixture
async def fresh(fake_slack: FakeSlack, tmp_path: Path):
    """As ``test_refresh``'s bot: HITL_REFRESH_EVERY=3, 12 labels imported, 16 to ask."""
    async for running in await started(fake_slack, tmp_path, refresh_every=3):
        yield running


async def started_with_gold(fake_slack: FakeSlack, tmp_path: Path, **changes) -> Bot:
    db = tmp_path / "hitl.db"
    seed(db, MADE_GOLD)
    with_gold = await started(fake_slack, tmp_path, **changes)
    with Store.open(db) as store:
        store.add_gold(MADE_GOLD)
    return with_gold


async def test_resolved_items_that_never_train_do_not_start_a_refit_at_every_answer(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in await started_with_gold(fake_slack, tmp_path, refresh_every=3):
        await run_retrain(bot.rt, "cli")
        trainer = Trainer.of(bot.rt)
        await trainer.settled()
        assert bot.rt.champion.n_train == 12 and labels_now(bot.rt) == 12  # 4 gold: no rows
        refreshes = []
        for _ in range(6):
            await answer_next(bot)
            await trainer.settled()
            refreshes.append(trainer.refreshes)
        # HITL_REFRESH_EVERY=3: one refresh per 3 answers, not one per answer
        assert refreshes == [0, 0, 1, 1, 1, 2], refreshes
        assert bot.rt.working.version == -18  # 12 + 6 answered: the gold items are not read


async def test_a_restarted_server_does_not_refit_for_resolved_items_the_champion_lacks_too(
    fake_slack: FakeSlack, tmp_path: Path
):
    """At start the resolved items the champion was trained at are not stored: they are the
    resolved items less the labels given since its newest one. Gold items decided before it
    are neither: no refit (the labels given since do refit: ``test_refresh``'s restart test)."""
    async for bot in await started_with_gold(fake_slack, tmp_path, refresh_every=3):
        await run_retrain(bot.rt, "cli")
        await Trainer.of(bot.rt).settled()
        assert Trainer.of(bot.rt).refreshes == 0
    settings = bot.rt.settings
    async for again in start_bot(fake_slack, settings, background=True):  # as `hitl serve`
        trainer = Trainer.of(again.rt)
        await trainer.settled(timeout=120)
        assert again.store.count_items()["resolved"] - again.rt.champion.n_train == 4  # gold
        assert trainer.refreshes == 0 and again.rt.working is None
        assert trainer.fitted_at == 12  # read at the start's check: the next waits 3 answers
        for _ in range(2):
            await answer_next(again)
        await trainer.settled()
        assert trainer.refreshes == 0
        await answer_next(again)
        await trainer.settled()
        assert trainer.refreshes == 1 and again.rt.working.version == -15


async def test_a_second_refresh_on_as_many_labels_has_its_own_version_and_rescores_the_queue(
    fresh: Bot,
):
    bot = fresh
    await run_retrain(bot.rt, "cli")
    trainer = Trainer.of(bot.rt)
    for _ in range(3):
        await answer_next(bot)
    await trainer.settled()
    first = bot.rt.working
    assert trainer.refreshes == 1 and first.version == -15 and versions(bot) == {-15}
    # 15 labels again, not the same ones: a relabel, and three resolved items that do not train
    # (repeats of a gold question's text; answers to gold itself make no refresh due)
    bot.store.set_label("Lb0", "bug", user_id="U0ADMIN")
    bot.store.add_gold([Item("x", "refund invoice gold example", "billing")])
    repeats = [Item(f"x{n}", f"Refund  invoice gold example{'!' * n}", "billing") for n in range(3)]
    bot.store.add_items(repeats, "import")
    scored = bot.rt.scorer.n_scored
    trainer.wake()
    await trainer.settled()
    second = bot.rt.working
    assert trainer.refreshes == 2 and second is not first
    waiting = len(bot.store.pool())
    assert bot.rt.scorer.n_scored - scored == waiting  # every item scored again, by the new one
    assert second.version != first.version and versions(bot) == {second.version}
    assert second.version == -16  # the next one below that no refresh had
    assert trainer.last_refresh.n_read == 15 and second.n_train == 15
    newest = bot.store.stop_checks()[-1]  # when to stop counts the labels it read
    assert (newest["kind"], newest["model_version"], newest["n_train"]) == ("refresh", -16, 15)


def test_labels_of_the_second_a_champion_was_made_in_are_not_counted_as_given_since(
    tmp_path: Path,
):
    """With the models folder moved, the champion's time (to the second) stands in for its
    newest label; compared as text, "…:46+00:00" came before every label of that second
    ("…:46.500+00:00"), so the labels it trained on counted as given since it and the refresh
    came early (the full suite under load: a refresh on 16 labels where 18 were due)."""
    from bot.config import Settings
    from bot.learning import retrain
    from bot.runtime import Champion
    from model import TextClassifier

    db = tmp_path / "hitl.db"
    with Store.open(db, clock=lambda: "2026-12-05T07:40:46.500+00:00") as store:
        store.add_items(
            [Item(f"i{n}", f"text {n}", "bug" if n % 2 else "billing") for n in range(6)], "import"
        )
        settings = Settings(db=db)
        registry = retrain.registry_for(settings)
        registry.save(TextClassifier().fit(["a b", "c d", "a x", "c y"], list("pqpq")), n_train=4)
        settings.models_dir.rename(tmp_path / "aside")  # `mv hitl.db.models elsewhere`
        champion = Champion(1, None, created_at="2026-12-05T07:40:46+00:00", n_train=6)
        plan = retrain.begin_refresh(store, settings, registry, champion)
    assert plan.since_champion == 0


async def test_answers_to_gold_questions_make_no_refresh_due(fake_slack: FakeSlack, tmp_path: Path):
    """README: gold questions do not count toward HITL_REFRESH_EVERY. Three gold answers after
    a refresh (HITL_REFRESH_EVERY=3) refitted the same 15 labels: a fit that learned nothing."""
    starting = await started(fake_slack, tmp_path, refresh_every=3)
    with Store.open(tmp_path / "hitl.db") as store:  # gold questions to ask (not decided yet)
        store.add_gold([Item(f"g{n}", f"refund gold question {n}", "billing") for n in range(3)])
    async for bot in starting:
        trainer = await refreshed_once(bot)
        bot.rt.settings = dataclasses.replace(bot.rt.settings, gold_rate=1.0)  # gold is next
        kinds = []
        for _ in range(3):
            kinds.append((await answer_next(bot))[4])  # the post's kind
            await trainer.settled()
        assert kinds == ["gold"] * 3 and trainer.refreshes == 1
        bot.rt.settings = dataclasses.replace(bot.rt.settings, gold_rate=0.0)
        for _ in range(3):
            await answer_next(bot)
        await trainer.settled()
        assert trainer.refreshes == 2 and bot.rt.working.version == -18
