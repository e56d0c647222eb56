"""Labels of decided items outside the label set in force: imported before HITL_LABELS named a
narrower set (README's own order: import the history, then set the labels), they are treated
as a retired label is where it matters. Their items leave training (and the gate's gold), the
model never answers or auto-decides with one (stored predictions, `/api/predict`, `GET
/api/items`, Slack's guess), and `hitl serve` at start and `hitl labels show` name them with
the two ways to fix it. Case twins an older version kept in force are named the same way, with
the `hitl labels merge` to run."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from pathlib import Path

import pytest

from bot.learning.scoring import scorer_of
from bot.sandbox import FakeSlack
from bot.store import Store
from model import ModelRegistry
from tests.bot.harness import Item, make_settings, seed, start_bot
from tests.bot.test_cli_loop import run

# each retrain's learning curve remembered by its arguments (tests/bot/conftest.py)
pytestmark = pytest.mark.usefixtures("remembered_curves")


TOKEN = "api-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
IN_FORCE = ("billing", "bug")
WORDS = {
    "billing": ["charged", "refund", "invoice", "payment", "receipt"],
    "bug": ["crash", "error", "broken", "freezes", "glitch"],
    "account": ["password", "login", "email", "profile", "username"],
    "how_to": ["how", "where", "guide", "steps", "tutorial"],
    "feature_request": ["please", "add", "love", "support", "integration"],
}
HOW_TO = "how do I find the guide to the steps tutorial"


def history(tmp_path: Path, n: int = 8) -> Path:
    """A labeled history in five labels, ``n`` items each, plus three unlabeled how-to items
    (scored by a retrain: a model of five labels stores them as "how_to")."""
    rng = random.Random(1)
    rows = []
    for label, words in WORDS.items():
        for k in range(n):
            text = " ".join(rng.sample(words, 3)) + f" ticket {label} {k}"
            rows.append({"id": f"{label}-{k}", "text": text, "label": label})
    for k in range(3):
        rows.append({"id": f"open-{k}", "text": f"{HOW_TO} number {k}"})
    path = tmp_path / "hist.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def champion_classes(db: Path) -> list[str]:
    registry = ModelRegistry(db.with_name(db.name + ".models"))
    champion = registry.champion()
    assert champion is not None
    return sorted(registry.load(champion.version).classes)


OUTSIDE_LINE = (
    "3 labels of decided items are not in the label set in force (HITL_LABELS): account"
    " (8 items), feature_request (8 items), how_to (8 items); their items do not train and the"
    " model never answers with them. To use them, add them to HITL_LABELS (or `hitl labels add"
    " account`); to relabel them into a label in force, `hitl labels merge account INTO`"
)


def test_import_then_hitl_labels_the_first_retrain_trains_on_the_two_labels_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "hitl.db"
    monkeypatch.delenv("HITL_LABELS", raising=False)
    assert run(db, "import", str(history(tmp_path))).exit_code == 0
    monkeypatch.setenv("HITL_LABELS", ",".join(IN_FORCE))
    trained = run(db, "retrain")
    assert trained.stdout.splitlines()[1] == "Labels: 16 (16 new)", trained.output
    assert champion_classes(db) == list(IN_FORCE)
    shown = run(db, "labels", "show").stdout.splitlines()
    assert shown[1:] == [f"Warning: {OUTSIDE_LINE}"]


def test_after_hitl_labels_narrows_the_set_a_retrain_trains_on_its_labels_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "hitl.db"
    monkeypatch.delenv("HITL_LABELS", raising=False)
    assert run(db, "import", str(history(tmp_path))).exit_code == 0
    first = run(db, "retrain")  # before HITL_LABELS: every imported label is in force
    assert first.stdout.splitlines()[1] == "Labels: 40 (40 new)", first.output
    assert champion_classes(db) == sorted(WORDS)

    monkeypatch.setenv("HITL_LABELS", ",".join(IN_FORCE))
    again = run(db, "retrain")  # not "nothing new": the labels that train changed
    assert again.stdout.startswith("Retrain v2: "), again.output
    assert again.stdout.splitlines()[1].startswith("Labels: 16"), again.output
    assert champion_classes(db) == list(IN_FORCE)
    assert "account" not in again.stdout and "how_to" not in again.stdout

    shown = run(db, "labels", "show").stdout.splitlines()
    assert shown[0].startswith("Labels (HITL_LABELS, ") and shown[0].endswith(": billing, bug")
    assert shown[1:] == [f"Warning: {OUTSIDE_LINE}"]

    # Relabeling one into a label in force: `hitl labels merge` takes a label the set never
    # had (its items become billing and train as billing), and it is named no more.
    merged = run(db, "labels", "merge", "how_to", "billing")
    assert merged.exit_code == 0, merged.output
    assert merged.stdout.startswith("Label set now: billing, bug\n")
    shown = run(db, "labels", "show").stdout
    assert "how_to (8 items)" not in shown and "account (8 items)" in shown
    with Store.open(db) as store:
        assert store.resolution("how_to-0")["label"] == "billing"
    third = run(db, "retrain")
    assert third.stdout.splitlines()[1].startswith("Labels: 24"), third.output
    assert champion_classes(db) == list(IN_FORCE)


def guess_of(message: dict) -> str:
    text = json.dumps(message["blocks"])
    found = re.search(r"Model's guess: \*`([a-z_]+)`\* \(", text)
    assert found is not None, text[:400]
    return found.group(1)


async def test_the_server_never_answers_nor_asks_with_a_label_outside_hitl_labels(
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    db = tmp_path / "hitl.db"
    monkeypatch.delenv("HITL_LABELS", raising=False)
    assert run(db, "import", str(history(tmp_path))).exit_code == 0
    # A model of the five labels (trained before HITL_LABELS narrowed the set), which stored
    # "how_to", decided by the model, for the open how-to items (the CLI, off this test's loop).
    assert (await asyncio.to_thread(run, db, "retrain")).exit_code == 0
    with Store.open(db) as store:
        before = store.get_item("open-0")
        assert (before["predicted_label"], before["status"]) == ("how_to", "auto")

    caplog.set_level(logging.INFO)
    settings = make_settings(fake_slack, tmp_path, labels=IN_FORCE, api_token=TOKEN)
    async for bot in start_bot(fake_slack, settings):
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        await scorer_of(bot.rt).catch_up()  # at start: the stored predictions, put under the set
        for k in range(3):
            item = bot.store.get_item(f"open-{k}")
            assert item["predicted_label"] in IN_FORCE and item["status"] == "queued", item
            assert {g[0] for g in item["ranked"]} <= set(IN_FORCE)
            got = await (await bot.http.get(f"/api/items/open-{k}", headers=AUTH)).json()
            assert got["status"] == "needs_review" and got["prediction"]["label"] in IN_FORCE

        body = json.dumps({"text": f"{HOW_TO} please", "id": "new-1"})
        answer = await (await bot.http.post("/api/predict", data=body, headers=AUTH)).json()
        assert answer["label"] in IN_FORCE and answer["status"] == "needs_review", answer
        assert {g["label"] for g in answer["ranked"]} <= set(IN_FORCE), answer
        assert answer["confidence"] < settings.threshold

        assert await bot.dispatcher.fill() >= 1
        posted = bot.posted()
        assert posted
        for message in posted:
            guess = guess_of(message)
            assert guess in IN_FORCE, guess
            click = bot.button_payload(message, "U0ANA", guess)  # the guess has its button
            assert (await bot.action(click)).status == 200
        await bot.settled()
        answered = [a for a in bot.store.iter_answers() if a["user_id"] == "U0ANA"]
        assert len(answered) == len(posted)
        assert {a["label"] for a in answered} <= set(IN_FORCE)
        assert OUTSIDE_LINE in said  # at start, once


def test_case_twins_an_older_version_kept_in_force_are_named_with_the_merge_to_run(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "hitl.db"
    monkeypatch.delenv("HITL_LABELS", raising=False)
    # as an older version imported them: two labels that differ only in case
    seed(
        db,
        [
            Item("1", "Reset my password", "Account"),
            Item("2", "Cannot log in", "account"),
            Item("3", "Locked out again", "account"),
            Item("4", "Charged twice", "billing"),
        ],
    )
    line = (
        "labels in force that differ only in case, character form or white space:"
        " Account and account"
        " (buttons that look alike, one class split in two); make them one with"
        " `hitl labels merge Account account`"
    )
    shown = run(db, "labels", "show").stdout.splitlines()
    assert shown[0].endswith(": Account, account, billing")
    assert shown[1:] == [f"Warning: {line}"]
    assert run(db, "labels", "merge", "Account", "account").exit_code == 0
    after = run(db, "labels", "show").stdout
    assert after.splitlines()[0].endswith(": account, billing") and "Warning" not in after


async def test_serve_names_case_twins_in_force_at_start(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    seed(
        tmp_path / "hitl.db",
        [
            Item("1", "Reset my password", "Account"),
            Item("2", "Cannot log in", "account"),
            Item("3", "Charged twice", "billing"),
        ],
    )
    caplog.set_level(logging.INFO)
    settings = make_settings(fake_slack, tmp_path, labels=())
    async for _bot in start_bot(fake_slack, settings):
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert (
            "labels in force that differ only in case, character form or white space:"
            " Account and account"
            " (buttons that look alike, one class split in two); make them one with"
            " `hitl labels merge account Account`"
        ) in said


async def test_a_gold_question_never_shows_a_label_outside_the_set_as_the_guess(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A gold question gets the champion's guess in the dispatcher (``_gold_instead``), apart
    from the stored predictions: a champion that learned five labels guessed how_to there, a
    label no button offers, after HITL_LABELS named two (a review of this file's fix)."""
    db = tmp_path / "hitl.db"
    monkeypatch.delenv("HITL_LABELS", raising=False)
    assert run(db, "import", str(history(tmp_path))).exit_code == 0
    assert (await asyncio.to_thread(run, db, "retrain")).exit_code == 0  # knows 5 labels
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "g-1", "text": f"{HOW_TO} gold one", "label": "bug"}) + "\n")
    assert run(db, "import", "--gold", str(gold)).exit_code == 0
    settings = make_settings(fake_slack, tmp_path, labels=IN_FORCE, api_token=TOKEN, gold_rate=1.0)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [asked] = [m for m in bot.posted() if "gold one" in json.dumps(m["blocks"])]
        assert "Model's guess" in json.dumps(asked["blocks"])
        assert guess_of(asked) in IN_FORCE


def test_a_webhooks_model_label_is_never_a_label_outside_the_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A decided item's stored guess is never restated; the webhook's ``model_label`` is read
    under the labels not in force the webhook worker passes (``not_in_force``), as GET
    /api/items reads it: it named how_to after HITL_LABELS named two (a review of this fix)."""
    db = tmp_path / "hitl.db"
    monkeypatch.delenv("HITL_LABELS", raising=False)
    assert run(db, "import", str(history(tmp_path))).exit_code == 0
    assert run(db, "retrain").exit_code == 0  # knows 5 labels
    with Store.open(db) as store:
        assert store.get_item("open-0")["predicted_label"] == "how_to"
        store.set_label("open-0", "bug", user_id="U1")
        payload = store.webhook_payload("open-0", out=store.labels_not_in_force(IN_FORCE))
    assert payload is not None and payload["model_label"] in IN_FORCE
