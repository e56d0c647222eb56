"""A label retired, merged or added back under a champion trained with it: the producer API,
the stored statuses and the questions say the same, and a retired label's probability never
becomes another label's confidence.

After `hitl labels retire billing` (the CLI, while the server ran), /api/predict answered a
billing text ``{"label": "account", "confidence": 0.99999, "status": "auto"}``: account with
billing's confidence, decided by the model with a label it gave 0.000006, and never asked; the
items stored ``auto`` before the retire stayed so until the next retrain.

A change touches no item row (it held SQLite's write lock ~2 s at 200,000 items when it put
them under the new set itself): the server's scorer does it after, a short transaction a step,
when it sees the change count move (and at start, for a change no pass has marked), and
`hitl labels` after its change.
The tests drive the scorer's step (``catch_up``, as the dispatcher's round does) instead of
waiting for its background run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from bot.config import Settings
from bot.learning import scoring
from bot.learning.scoring import Scorer, scorer_of
from bot.runtime import Champion
from bot.sandbox import FakeSlack
from bot.slack.questions import build_question
from bot.store import Store
from tests.bot.harness import LABELS, Item
from tests.bot.test_api import AUTH, post_json, start_api
from tests.bot.test_cli_loop import run

THRESHOLD = 0.8


class Keywords:
    """A model whose probabilities are fixed by a word of the text: deterministic numbers to
    compare (a fitted model's are whatever its fit gives)."""

    classes = ["account", "billing", "bug"]
    PROBA = {
        "refund": [0.06, 0.9, 0.04],  # billing, confidently
        "charged": [0.000006, 0.99999, 0.000004],  # the tester's numbers
        "close": [0.45, 0.5, 0.05],  # billing, unsure
        "crash": [0.05, 0.1, 0.85],  # bug: a change of billing does not move it
    }

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            word = next((w for w in self.PROBA if w in text), "close")
            rows.append(self.PROBA[word])
        return np.array(rows, dtype=np.float64)


def champion() -> Champion:
    return Champion(version=1, classifier=Keywords(), n_train=100)  # type: ignore[arg-type]


def change(db: Path, action: str, label: str, new: str | None = None) -> None:
    """A change of the label set made on another connection (as `hitl labels` makes it, before
    its own pass over the items)."""
    with Store.open(db) as cli:
        current = cli.stored_labels() or list(LABELS)
        cli.change_label_set(action, label, new, current=current, user_id="cli:ana")


async def test_after_a_retire_predict_answers_the_label_in_force_with_its_own_confidence(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for api in start_api(fake_slack, tmp_path, champion=champion(), threshold=THRESHOLD):
        before = await (await post_json(api, "/api/predict", {"id": "p1", "text": "refund"})).json()
        assert (before["label"], before["confidence"], before["status"]) == ("billing", 0.9, "auto")
        assert api.store.count_items()["auto"] == 1

        change(api.rt.settings.db, "retire", "billing")

        after = await post_json(api, "/api/predict", {"id": "p2", "text": "charged twice"})
        body = await after.json()
        assert body["ranked"] == [
            {"label": "account", "probability": 0.000006},
            {"label": "bug", "probability": 0.000004},
        ]
        # account at its own probability, not billing's 0.99999; so it waits for people
        assert (body["label"], body["confidence"], body["status"]) == (
            "account",
            0.000006,
            "needs_review",
        )
        stored = api.store.get_item("p2")
        assert (stored["status"], stored["predicted_label"], stored["confidence"]) == (
            "queued",
            "account",
            0.000006,
        )
        # the item the model decided before the retire goes back to people
        await scorer_of(api.rt).catch_up()  # the server's pass, once it sees the change
        assert api.store.get_item("p1")["status"] == "queued"
        shown = await (await api.http.get("/api/items/p1", headers=AUTH)).json()
        assert shown["status"] == "needs_review" and shown["queue_status"] == "queued"
        assert (shown["prediction"]["label"], shown["prediction"]["confidence"]) == (
            "account",
            0.06,
        )
        assert api.store.count_items()["auto"] == 0
        metrics = await (await api.http.get("/metrics")).text()
        assert 'hitl_items{status="auto"} 0.0' in metrics
        # what the question in Slack shows: the same label at the same confidence
        question = build_question(api.store, api.rt.settings, "p1")
        assert question is not None and question.guesses[0] == ("account", 0.06)
        assert api.store.webhook_payload("p1") is None  # nothing to tell: not resolved


async def test_a_label_added_back_gives_its_items_back_to_the_model(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for api in start_api(fake_slack, tmp_path, champion=champion(), threshold=THRESHOLD):
        await post_json(api, "/api/predict", {"id": "p1", "text": "refund"})
        change(api.rt.settings.db, "retire", "billing")
        await scorer_of(api.rt).catch_up()
        assert api.store.get_item("p1")["status"] == "queued"
        change(api.rt.settings.db, "add", "billing")
        await scorer_of(api.rt).catch_up()
        item = api.store.get_item("p1")
        assert (item["predicted_label"], item["confidence"], item["status"]) == (
            "billing",
            0.9,
            "auto",
        )
        again = await (await post_json(api, "/api/predict", {"id": "p1", "text": "refund"})).json()
        assert (again["label"], again["confidence"], again["status"]) == ("billing", 0.9, "auto")


async def test_a_merged_labels_probability_counts_for_its_successor_as_the_question_shows_it(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for api in start_api(fake_slack, tmp_path, champion=champion(), threshold=THRESHOLD):
        first = await (await post_json(api, "/api/predict", {"id": "m1", "text": "close"})).json()
        assert (first["label"], first["confidence"], first["status"]) == (
            "billing",
            0.5,
            "needs_review",
        )
        change(api.rt.settings.db, "merge", "billing", "account")
        for body in (
            await (await post_json(api, "/api/predict", {"id": "m1", "text": "close"})).json(),
            await (await post_json(api, "/api/predict", {"id": "m2", "text": "close"})).json(),
        ):
            # the successor at the best guess of the two (0.5), not billing's under another
            # name and not renormalised: as the question in Slack shows it
            assert (body["label"], body["confidence"], body["model_label"]) == (
                "account",
                0.5,
                "account",
            )
            assert body["ranked"][0] == {"label": "account", "probability": 0.5}
            assert [r["label"] for r in body["ranked"]] == ["account", "bug"]
            question = build_question(api.store, api.rt.settings, body["id"])
            assert question is not None and question.guesses[0] == ("account", 0.5)
        await scorer_of(api.rt).catch_up()
        assert api.store.get_item("m1")["predicted_label"] == "account"
        change(api.rt.settings.db, "rename", "account", "customer")
        await scorer_of(api.rt).catch_up()
        renamed = await (await api.http.get("/api/items/m1", headers=AUTH)).json()
        assert (renamed["prediction"]["label"], renamed["prediction"]["confidence"]) == (
            "customer",
            0.5,
        )
        assert api.store.get_item("m1")["predicted_label"] == "customer"


async def test_a_change_touches_no_item_row_and_the_scorers_pass_puts_them_under_the_new_set(
    tmp_path: Path,
):
    """A running server's scorer had scored every item; a retire then an add from elsewhere
    (the change alone: no item row written, whatever their number) are put under the label set
    at the scorer's next step: the retired label's item waits for people, then is the model's
    again; the other item is left alone."""
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        store.add_items([Item("w1", "refund please"), Item("w2", "a crash")], "import")
        settings = Settings(threshold=THRESHOLD)
        model = champion()
        scorer = Scorer(store, champion=lambda: model, settings=lambda: settings)
        assert await scorer.catch_up() == 2
        assert store.get_item("w1")["status"] == "auto"
        priority = store.get_item("w1")["priority"]
        items = "SELECT * FROM items ORDER BY rowid"
        before = store.db.execute(items).fetchall()
        change(db, "retire", "billing")
        assert store.db.execute(items).fetchall() == before  # the change wrote no item row
        assert await scorer.catch_up() == 0  # nothing to score again: the priority stays
        w1, w2 = store.get_item("w1"), store.get_item("w2")
        assert (w1["status"], w1["predicted_label"], w1["confidence"]) == (
            "queued",
            "account",
            0.06,
        )
        assert w1["priority"] == priority  # the model's, from all its probabilities
        assert (w2["status"], w2["predicted_label"], w2["confidence"]) == ("auto", "bug", 0.85)
        assert scorer.restated_at == store.label_set_change_count() == 1
        change(db, "add", "billing")
        assert store.get_item("w1")["status"] == "queued"  # until the next step
        await scorer.catch_up()
        w1 = store.get_item("w1")
        assert (w1["status"], w1["predicted_label"], w1["confidence"]) == ("auto", "billing", 0.9)


def test_hitl_labels_puts_the_predictions_under_the_new_set_after_its_change(tmp_path: Path):
    """A database used without a server: `hitl labels retire` then `add` leave the stored
    predictions right (a retired label's model-decided item waits for people)."""
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        store.add_items([Item("c1", "refund please"), Item("c2", "a crash")], "import")
        store.set_predictions(
            [
                ("c1", 1, "billing", 0.9, [["billing", 0.9], ["account", 0.06]], 0.2),
                ("c2", 1, "bug", 0.85, [["bug", 0.85], ["billing", 0.1]], 0.3),
            ],
            THRESHOLD,
            "margin",
        )
    for label in LABELS:  # the stored label set: every label a person gave
        assert run(db, "labels", "add", label).exit_code in (0, 1)
    retired = run(db, "labels", "retire", "billing", "--by", "cli:ana")
    assert retired.exit_code == 0, retired.output
    with Store.open(db) as store:
        c1, c2 = store.get_item("c1"), store.get_item("c2")
        assert (c1["status"], c1["predicted_label"], c1["confidence"]) == (
            "queued",
            "account",
            0.06,
        )
        assert (c2["status"], c2["predicted_label"], c2["confidence"]) == ("auto", "bug", 0.85)
    assert run(db, "labels", "add", "billing").exit_code == 0
    with Store.open(db) as store:
        c1 = store.get_item("c1")
        assert (c1["status"], c1["predicted_label"], c1["confidence"]) == ("auto", "billing", 0.9)


def test_the_pass_goes_a_bounded_step_at_a_time(tmp_path: Path):
    """``Store.restate_predictions``: at most ``limit`` items read and ``max_changes`` written
    a step, each step saying where the next begins; None once past the last item."""
    with Store.open(tmp_path / "hitl.db") as store:
        ids = [f"s{n}" for n in range(5)]
        store.add_items([Item(i, "refund") for i in ids], "import")
        guesses = [["billing", 0.9], ["account", 0.06]]
        store.set_predictions([(i, 1, "billing", 0.9, guesses, 0.2) for i in ids], 0.8, "m")
        store.change_label_set("retire", "billing", current=list(LABELS), user_id="cli:ana")
        rowid = dict(store.db.execute("SELECT id, rowid FROM items").fetchall())
        steps, at = [], 0
        while True:
            changed, last = store.restate_predictions(at, 3, 0.8, max_changes=2)
            steps.append((changed, last))
            if last is None:
                break
            at = last
        assert steps == [(2, rowid["s1"]), (2, rowid["s3"]), (1, rowid["s4"]), (0, None)]
        assert {store.get_item(i)["status"] for i in ids} == {"queued"}


async def test_the_idle_scorer_sees_a_change_made_in_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Nothing wakes the server's scorer when `hitl labels` changes the set: its idle
    background run reads the change count every LABEL_SET_TICK seconds and walks again."""
    monkeypatch.setattr(scoring, "LABEL_SET_TICK", 0.0)
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        settings = Settings(threshold=THRESHOLD)
        scorer = Scorer(store, champion=lambda: None, settings=lambda: settings)
        await scorer.catch_up()
        idle = asyncio.ensure_future(scorer._idle())
        for _ in range(5):
            await asyncio.sleep(0)  # turns of the loop (no wait): it goes on idling
        assert not idle.done()
        change(db, "retire", "billing")
        await asyncio.wait_for(idle, 10)  # it returns: a walk, with the pass, is due
        assert scorer.restate_due()


async def test_a_change_made_with_hitl_labels_in_slack_wakes_the_scorer(
    fake_slack: FakeSlack, tmp_path: Path
):
    """`/hitl labels retire` runs in the server: it wakes the scorer for its pass at once,
    rather than leaving it to the idle scorer's next look at the change count."""
    async for api in start_api(fake_slack, tmp_path, champion=champion(), threshold=THRESHOLD):
        scorer = scorer_of(api.rt)
        scorer.wake_event.clear()
        response = await api.command("labels retire billing", "U0ADMIN")
        body = await response.text()
        assert "Done." in body, body
        assert scorer.wake_event.is_set()


async def test_predictions_stored_before_the_upgrade_are_put_under_the_set_at_start(
    tmp_path: Path,
):
    """A database whose champion decided items with a label retired since (stored as the
    model made them, by the code before): the server's first step puts them under the set."""
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        store.add_items([Item("o1", "refund please")], "import")
        store.change_label_set("retire", "billing", current=list(LABELS), user_id="cli:ana")
        # as the old code stored it: billing's label and confidence, auto
        store.db.execute(
            "UPDATE items SET status = 'auto', model_version = 1, predicted_label = 'billing',"
            " confidence = 0.9, priority = 0.2, strategy = 'margin',"
            """ ranked = '[["billing", 0.9], ["account", 0.06], ["bug", 0.04]]' WHERE id = 'o1'"""
        )
    with Store.open(db) as store:
        assert store.get_item("o1")["status"] == "auto"  # opening changes nothing
        settings = Settings(threshold=THRESHOLD)
        model = champion()
        scorer = Scorer(store, champion=lambda: model, settings=lambda: settings)
        await scorer.catch_up()
        item = store.get_item("o1")
        assert (item["status"], item["predicted_label"], item["confidence"]) == (
            "queued",
            "account",
            0.06,
        )


async def test_a_server_restarted_after_the_pass_does_not_pass_again(tmp_path: Path):
    """The changes a pass put the predictions under are marked in the database: a server
    started again (a new scorer) needs no pass over every item (4.6 s of steps at a million
    items, at every start once the label set had ever changed); a change made since still
    needs one, and `hitl labels`' own pass marks its change too."""
    db = tmp_path / "hitl.db"
    settings = Settings(threshold=THRESHOLD)
    with Store.open(db) as store:
        store.add_items([Item("r1", "refund please")], "import")
        model = champion()
        scorer = Scorer(store, champion=lambda: model, settings=lambda: settings)
        await scorer.catch_up()
        change(db, "retire", "billing")
        assert scorer.restate_due()
        await scorer.catch_up()
        assert not scorer.restate_due()
    with Store.open(db) as store:
        again = Scorer(store, champion=lambda: None, settings=lambda: settings)
        assert not again.restate_due()  # the old code: a pass at every start
        assert store.get_item("r1")["status"] == "queued"
    change(db, "add", "billing")  # made on another connection: not put under the set yet
    with Store.open(db) as store:
        assert Scorer(store, champion=lambda: None, settings=lambda: settings).restate_due()
    assert run(db, "labels", "retire", "billing", "--by", "cli:ana").exit_code == 0
    with Store.open(db) as store:
        # `hitl labels retire` put the items under its change and the one before it
        assert store.restated_change_count() == store.label_set_change_count() == 3
        assert not Scorer(store, champion=lambda: None, settings=lambda: settings).restate_due()
