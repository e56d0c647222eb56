"""Three gaps left at a restart and at a retire:

- the threshold pass (``Scorer.restate``, ``Store.rethreshold_step``) read every waiting item at
  each start (0.6 s at a million) though HITL_THRESHOLD had not changed since the statuses were
  made: the threshold they were made under is recorded (m039), and a start with it runs no step;
  a changed one runs the pass, and a pass stopped midway is run again at the next start;
- ``decide_answered`` (at start) left out the items whose question was taken back
  (HITL_QUESTION_TTL) while they held answers: one waited for its next answer;
- a retired label's gold questions counted as waiting in the stats, and one open in Slack at
  the retire stayed open without its right button: it is taken back, and asked again once the
  label is added back.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.learning import scoring
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import (
    Bot,
    Item,
    has_buttons,
    item_of,
    make_settings,
    margin_scored,
    seed,
    seed_champion,
    start_bot,
)
from tests.bot.test_label_drift import gold_and_tickets, run_cli, said, stats_text
from tests.bot.test_slack_bot import buttons
from tests.bot.test_store import R
from tests.fake_slack import CHANNEL

ANA, RAJ, MEI = "U0ANA", "U0RAJ", "U0MEI"
ITEMS = [f"i{n}" for n in range(4)]


# -- HITL_THRESHOLD unchanged between two starts: no pass --


def count_steps(monkeypatch: pytest.MonkeyPatch, store: Store) -> list[int]:
    """Every ``rethreshold_step`` the server's store runs from now on (its ``after``)."""
    steps: list[int] = []
    step = store.rethreshold_step

    def counted(after: int, limit: int, threshold: float):
        steps.append(after)
        return step(after, limit, threshold)

    monkeypatch.setattr(store, "rethreshold_step", counted)
    return steps


def statuses(store: Store) -> list[str]:
    return [store.get_item(item)["status"] for item in ITEMS]


@pytest.fixture
def scored_db(fake_slack: FakeSlack, tmp_path: Path):
    db = tmp_path / "hitl.db"
    seed_champion(db, ["an invoice to pay", "a refund", "the app crashes", "an error"],
                  ["billing", "billing", "bug", "bug"])  # fmt: skip
    seed(db, [Item(item, f"ticket {item}: a refund and an error") for item in ITEMS])
    return make_settings(
        fake_slack, tmp_path, labels=("billing", "bug"), threshold=0.0, audit_rate=0.0
    )


async def background_start(
    fake: FakeSlack, settings, monkeypatch: pytest.MonkeyPatch, max_chunks: int | None = None
) -> tuple[list[int], list[str], float | None]:
    """A server started with ``settings`` and its background run's passes at start: the
    threshold steps run, the statuses after, and the threshold recorded."""
    found = None
    async for bot in start_bot(fake, settings):
        steps = count_steps(monkeypatch, bot.store)
        await bot.rt.scorer.catch_up(background=True, max_chunks=max_chunks)
        found = steps, statuses(bot.store), bot.store.statuses_threshold()
    assert found is not None, "the server did not start"
    return found


async def test_a_start_with_the_threshold_unchanged_runs_no_threshold_step(
    fake_slack: FakeSlack, scored_db, monkeypatch: pytest.MonkeyPatch
):
    settings = scored_db
    async for bot in start_bot(fake_slack, settings):
        assert await bot.rt.scorer.catch_up() == 4  # scored under HITL_THRESHOLD=0: the model's
        assert bot.store.statuses_threshold() is None  # nothing recorded yet: the pass runs once
        steps = count_steps(monkeypatch, bot.store)
        await bot.rt.scorer.catch_up(background=True)
        assert steps[:1] == [0] and bot.store.statuses_threshold() == 0.0
    steps, now, recorded = await background_start(fake_slack, settings, monkeypatch)
    assert steps == [] and now == ["auto"] * 4 and recorded == 0.0  # unchanged: no step
    # changed: the pass runs, and records the new one
    raised = settings.with_changes(threshold=0.999)
    steps, now, recorded = await background_start(fake_slack, raised, monkeypatch)
    assert steps[:1] == [0] and now == ["queued"] * 4 and recorded == 0.999
    steps, now, _ = await background_start(fake_slack, raised, monkeypatch)
    assert steps == [] and now == ["queued"] * 4


async def test_a_threshold_pass_stopped_midway_is_run_again_at_the_next_start(
    fake_slack: FakeSlack, scored_db, monkeypatch: pytest.MonkeyPatch
):
    settings = scored_db
    async for bot in start_bot(fake_slack, settings):
        await bot.rt.scorer.catch_up()
        await bot.rt.scorer.catch_up(background=True)
        assert bot.store.statuses_threshold() == 0.0
    monkeypatch.setattr(scoring, "RESTATE_CHUNK", 1)  # a step per item
    raised = settings.with_changes(threshold=0.999)
    # stopped after two of its steps: two items moved, the others not yet
    steps, now, recorded = await background_start(fake_slack, raised, monkeypatch, max_chunks=2)
    assert len(steps) == 2 and now == ["queued", "queued", "auto", "auto"]
    assert recorded is None
    # the next start, back at the threshold recorded before that pass: it runs again, so the
    # two items it moved go back to the model
    steps, now, recorded = await background_start(fake_slack, settings, monkeypatch)
    assert steps and now == ["auto"] * 4 and recorded == 0.0
    # stopped again, then a start at the same threshold: the pass goes on to the end
    steps, now, _ = await background_start(fake_slack, raised, monkeypatch, max_chunks=1)
    assert now == ["queued", "auto", "auto", "auto"]
    steps, now, recorded = await background_start(fake_slack, raised, monkeypatch)
    assert steps and now == ["queued"] * 4 and recorded == 0.999


async def test_statuses_made_under_another_threshold_bring_the_pass_back(
    fake_slack: FakeSlack, scored_db, monkeypatch: pytest.MonkeyPatch
):
    """Another process (`hitl retrain`'s rescoring, with its own HITL_THRESHOLD) scores an
    item under 0.5: the recorded threshold is forgotten, and the next start puts it right."""
    settings = scored_db.with_changes(threshold=0.999)
    async for bot in start_bot(fake_slack, settings):
        await bot.rt.scorer.catch_up()
        await bot.rt.scorer.catch_up(background=True)
        assert statuses(bot.store) == ["queued"] * 4
        assert bot.store.statuses_threshold() == 0.999
    with Store.open(settings.db) as store:
        store.set_predictions(  # the server's own threshold: the record stands
            margin_scored([("i0", 1, "billing", 0.6, [["billing", 0.6], ["bug", 0.4]])]),
            threshold=0.999,
            strategy="margin",
        )
        assert store.statuses_threshold() == 0.999
        store.set_predictions(
            margin_scored([("i0", 1, "billing", 0.6, [["billing", 0.6], ["bug", 0.4]])]),
            threshold=0.5,
            strategy="margin",
        )
        assert store.get_item("i0")["status"] == "auto" and store.statuses_threshold() is None
    steps, now, recorded = await background_start(fake_slack, settings, monkeypatch)
    assert steps and now == ["queued"] * 4 and recorded == 0.999


def test_a_question_taken_back_under_the_recorded_threshold_keeps_it(memory_store: Store):
    store = memory_store
    store.add_items([R("i1", "card charged twice"), R("i2", "app crashes")], "import")
    rows = [("i1", 1, "billing", 0.9, [["billing", 0.9], ["bug", 0.1]]),
            ("i2", 1, "bug", 0.6, [["bug", 0.6], ["billing", 0.4]])]  # fmt: skip
    store.set_predictions(margin_scored(rows), threshold=0.8, strategy="margin")
    store.begin_rethreshold(0.8)
    assert store.end_rethreshold(0.8) and store.statuses_threshold() == 0.8
    for item, ts in (("i1", "1.1"), ("i2", "1.2")):
        store.record_post(item, "C1", ts, "audit", 1, "billing", 0.9)
    assert store.requeue_posts_outside(["C2"], threshold=0.8)  # the dispatcher's: as recorded
    assert store.statuses_threshold() == 0.8
    store.record_post("i1", "C2", "2.1", "audit", 1, "billing", 0.9)
    with store._immediate():  # without a threshold (an undelete's): i1 waits for people
        store._take_back("i1", store.now())
    assert store.get_item("i1")["status"] == "queued" and store.statuses_threshold() is None


# -- HITL_VOTES lowered: the questions taken back with answers are decided too --


def age_open_posts(bot: Bot, hours: float) -> None:
    then = datetime.fromisoformat(bot.store.now()) - timedelta(hours=hours)
    with bot.store.db.conn:
        bot.store.db.execute(
            "UPDATE posts SET posted_at = ? WHERE closed_at IS NULL",
            [then.isoformat(timespec="milliseconds")],
        )


async def test_a_question_taken_back_with_an_answer_is_decided_at_a_start_with_fewer_votes(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("a", "refund and a crash"), Item("b", "login is broken")])
    settings = make_settings(fake_slack, tmp_path, votes=3, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        first, label = item_of(message), bot.first_label(message)
        assert (await bot.action(bot.button_payload(message, ANA, label))).status == 200
        await bot.settled()
        age_open_posts(bot, 4 * 24)  # past HITL_QUESTION_TTL (72 hours): taken back
        then = datetime.fromisoformat(bot.store.now()) - timedelta(hours=4 * 24)
        with bot.store.db.conn:  # the TTL counts from the last answer: it is as old
            bot.store.db.execute(
                "UPDATE answers SET created_at = ?", [then.isoformat(timespec="milliseconds")]
            )
        await bot.dispatcher.fill()
        await bot.settled()
        assert bot.store.get_item(first)["status"] == "new"  # waits to be asked again
        assert not has_buttons(bot.fake.message(CHANNEL, message["ts"]))
    lowered = settings.with_changes(votes=1)
    async for bot in start_bot(fake_slack, lowered):
        # its one answer decides it under HITL_VOTES=1: decided by the start itself
        assert bot.store.resolution(first)["label"] == label
        assert bot.store.get_item(first)["status"] == "resolved"
        assert bot.store.decide_answered(lowered.votes) == []  # a second run: nothing
        await bot.rt.redrawer.pending()
        shown = json.dumps(bot.fake.message(CHANNEL, message["ts"])["blocks"], ensure_ascii=False)
        assert "✅" in shown, shown  # its message says so


def test_taken_back_ties_and_skips_go_as_the_asked_ones_do(memory_store: Store):
    store = memory_store
    store.add_items([R("i1", "card charged twice"), R("i2", "app crashes")], "import")
    rows = [(i, 1, "billing", 0.6, [["billing", 0.6], ["bug", 0.4]]) for i in ("i1", "i2")]
    store.set_predictions(margin_scored(rows), threshold=0.8, strategy="margin")
    store.record_post("i1", "C1", "1.1", "uncertain", 1, "billing", 0.6)
    store.record_post("i2", "C1", "1.2", "uncertain", 1, "billing", 0.6)
    for user, label in ((ANA, "billing"), (RAJ, "bug")):  # a tie: open under HITL_VOTES=3
        store.record_answer("i1", user, label, source="button", dedupe_key=user, votes_needed=3)
    store.record_answer("i2", ANA, None, source="button", dedupe_key="s", votes_needed=3,
                        skips_to_discard=3)  # fmt: skip
    store.db.execute("UPDATE posts SET posted_at = '2000-01-01T00:00:00.000+00:00'")
    # the TTL counts from the last answer too: theirs are as old
    store.db.execute("UPDATE answers SET created_at = '2000-01-01T00:00:00.000+00:00'")
    store.db.conn.commit()
    assert len(store.expire_posts(12, 10, threshold=0.8)) == 2
    assert {store.get_item(i)["status"] for i in ("i1", "i2")} == {"queued"}
    # restarted under HITL_VOTES=2 and HITL_SKIPS_TO_DISCARD=1
    assert store.decide_answered(2, skips_to_discard=1) == ["i1", "i2"]
    pending = [r["reason"] for r in store.reviews_of("i1") if r["decided_at"] is None]
    assert pending == ["split"] and store.get_item("i1")["status"] == "queued"  # asked again
    assert store.get_item("i2")["status"] == "skipped"
    assert store.decide_answered(2, skips_to_discard=1) == []
    # asked again, a third vote makes a majority: decided, the split closed by the votes
    store.record_post("i1", "C1", "2.1", "uncertain", 1, "billing", 0.6)
    result = store.record_answer("i1", MEI, "bug", source="button", dedupe_key="m", votes_needed=2)
    assert result.status == "resolved" and result.label == "bug"


# -- a retired label's gold questions --


async def test_a_retired_labels_open_gold_question_is_taken_back_and_not_counted_waiting(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = tmp_path / "hitl.db"
    gold_and_tickets(
        db, [Item("i1", "the app crashes on start"), Item("i2", "where is my invoice")]
    )
    settings = make_settings(fake_slack, tmp_path, gold_rate=1.0, votes=2, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        assert item_of(message) == "g1" and "billing" in buttons(message)
        assert (await bot.action(bot.button_payload(message, RAJ, "bug"))).status == 200
        await bot.settled()

        reply = await said(bot, "labels retire billing")
        assert "1 gold question with the gold label `billing`: it is not asked" in reply, reply
        # taken back as an unanswered question is: no buttons, its place free, waiting as gold
        shown = bot.fake.message(CHANNEL, message["ts"])
        assert not has_buttons(shown), shown
        assert "put back in the queue" in json.dumps(shown["blocks"])
        assert bot.store.post_for_item("g1")["closed_at"] is not None
        assert bot.store.get_item("g1")["status"] == "gold"
        assert bot.store.open_post_counts() == {}
        await bot.dispatcher.fill()
        assert [item_of(m) for m in bot.posted()] == ["g1", "i1"]  # i1, not g1 again

        # not waiting while billing is retired, but held back, as the retire said
        line = "*Items:* 1 waiting · 1 gold question held back while its gold label is retired"
        assert line in await stats_text(bot)
        cli_stats = run_cli(
            "--db", str(db), "stats", env={"HITL_LABELS": ",".join(settings.labels)}
        )
        assert line.replace("*", "") in cli_stats.stdout, cli_stats.stdout
        assert bot.store.waiting_count() == 1

        # billing back: asked again, in a new message with its billing button, Raj's answer kept
        assert (await said(bot, "labels add billing")).startswith("Done.")
        assert "*Items:* 2 waiting (1 of them gold questions) · 1 posted" in await stats_text(bot)
        assert bot.store.waiting_count() == 2
        i1 = bot.posted()[1]
        for user in (ANA, MEI):  # i1 decided: its place free
            payload = bot.button_payload(i1, user, bot.first_label(i1))
            assert (await bot.action(payload)).status == 200
        await bot.settled()
        assert bot.store.get_item("i1")["status"] == "resolved"
        # asked again at once: nobody ignored it, so it does not rest as an expired one does
        await bot.dispatcher.fill()
        again = bot.fake.message(CHANNEL, bot.store.post_for_item("g1")["ts"])
        assert again["ts"] != message["ts"] and "billing" in buttons(again)
        assert bot.store.tally("g1").votes == {"bug": [RAJ]}
