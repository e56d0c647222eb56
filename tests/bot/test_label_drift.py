"""A label set that changes under what was stored with it (outside test "drift", review 3):

- a gold question whose gold label is retired is not asked (no button could be right), and
  the answers given to it do not count against anyone while the label is retired; they count
  again once it is added back (drift HIGH 1);
- a label may not take the name of one renamed or merged away: the old name's answers count for
  its successor, and reusing the name would make them count for the new label (drift MEDIUM 5);
- `/hitl labels` and `hitl labels` word their answer from the change they made, not from the
  newest change stored, which another admin's may be by then (review 3, R3-3).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.store import Store
from tests import signing
from tests.bot.harness import LABELS, Bot, Item, item_of, make_settings, seed, start_bot
from tests.bot.test_slack_bot import buttons
from tests.fake_slack import CHANNEL

WORKING = "Working on it"


def run_cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False, prog_name="hitl")


async def said(bot: Bot, text: str, user: str = "U0ADMIN") -> str:
    """What `/hitl TEXT` answers: in its ack, or by the response_url after it when the work
    took longer than the ack waits."""
    told = len(bot.fake.responses)
    response = await bot.command(text, user, response_url=bot.fake.response_url(CHANNEL))
    assert response.status == 200
    body = await response.text()
    if response.content_type == "application/json":
        body = json.loads(body)["text"]
    if body.startswith(WORKING):
        await bot.rt.background.drain(timeout=30)
        body = bot.fake.responses[told:][-1]["payload"]["text"]
    await bot.settled()
    return body


async def stats_text(bot: Bot) -> str:
    return json.loads(await (await bot.command("stats", "U0ADMIN")).text())["text"]


async def home_text(bot: Bot, user: str) -> str:
    assert (await bot.event(signing.app_home_opened_event(user))).status == 200
    await bot.settled()
    return json.dumps(bot.fake.home[user], ensure_ascii=False)


# --- drift HIGH 1: gold of a retired label ------------------------------------------------


def gold_and_tickets(db: Path, tickets: list[Item]) -> None:
    """``g1``, a gold question whose gold label is billing (the oldest: asked first when gold
    is due), and ``tickets`` to ask, in the database at ``db``."""
    with Store.open(db) as store:
        store.add_gold([Item("g1", "please refund the double charge", "billing")])
    seed(db, tickets)


async def test_a_gold_question_whose_gold_label_is_retired_is_not_asked(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:  # g1 is the oldest gold question: asked first
        store.add_gold([Item("g1", "please refund the double charge", "billing")])
        store.add_gold([Item("g2", "the app crashes on start", "bug")])
    seed(db, [Item("i1", "where do I change my email")])
    settings = make_settings(fake_slack, tmp_path, gold_rate=1.0, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        reply = await said(bot, "labels retire billing")
        await bot.dispatcher.fill()
        [message] = bot.posted()
        assert item_of(message) == "g2"  # g1 would have no right button
        assert bot.store.post_for_item("g1") is None
        assert "1 gold question with the gold label `billing`: it is not asked" in reply, reply
        # added back, it is asked again
        assert (await said(bot, "labels add billing")).startswith("Done.")
        assert bot.store.next_gold(5) == [
            {"id": "g1", "text": "please refund the double charge", "model_version": None,
             "predicted_label": None, "ranked": None}
        ]  # fmt: skip


async def test_answers_to_a_gold_question_do_not_count_while_its_gold_label_is_retired(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = tmp_path / "hitl.db"
    gold_and_tickets(
        db, [Item("i1", "the app crashes on start")]
    )  # a gold question goes in a pick's place
    settings = make_settings(fake_slack, tmp_path, gold_rate=1.0, votes=3, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        assert item_of(message) == "g1"
        # Raj answers before the retire (wrong); Ana after it, on the message as her Slack
        # still showed it (the retire took the question back: redrawn without buttons)
        assert (await bot.action(bot.button_payload(message, "U0RAJ", "bug"))).status == 200
        assert (await said(bot, "labels retire billing")).startswith("Done.")
        [redrawn] = bot.posted()
        assert buttons(redrawn) == []
        assert (await bot.action(bot.button_payload(message, "U0ANA", "account"))).status == 200
        await bot.settled()

        # not scored while billing is retired: /hitl stats, hitl stats, App Home
        stats = await stats_text(bot)
        assert "Accuracy on gold" not in stats, stats
        cli_stats = run_cli("--db", str(db), "stats", env={"HITL_LABELS": ",".join(LABELS)})
        assert "Accuracy on gold" not in cli_stats.stdout, cli_stats.stdout
        assert "accuracy on gold" not in await home_text(bot, "U0ANA")

        # billing back: the answers count again
        assert (await said(bot, "labels add billing")).startswith("Done.")
        stats = await stats_text(bot)
        assert "<@U0RAJ> 0% (0 of 1" in stats and "<@U0ANA> 0% (0 of 1" in stats, stats
        assert "*Your accuracy on gold questions:* 0% (0 of 1" in await home_text(bot, "U0ANA")


# --- drift MEDIUM 5: a name renamed or merged away is not reused --------------------------


async def test_a_label_cannot_take_the_name_of_one_renamed_away(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("i1", "the app crashes on start")])
    settings = make_settings(fake_slack, tmp_path, votes=3, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        assert (await bot.action(bot.button_payload(message, "U0ANA", "bug"))).status == 200
        assert (await said(bot, "labels rename bug defect")).startswith("Done.")
        labels = bot.store.stored_labels()
        reply = await said(bot, "labels rename how_to bug")
        assert reply.startswith(
            'Cannot rename: "bug" was renamed to "defect" on '
        ), reply  # fmt: skip
        assert "answers and labels given as bug count for defect: choose another name" in reply
        assert bot.store.stored_labels() == labels
        assert bot.store.tally("i1").votes == {"defect": ["U0ANA"]}  # Ana meant the old bug
        # renaming defect back to bug is fine: the old bug answers meant it
        assert (await said(bot, "labels rename defect bug")).startswith("Done.")
        assert bot.store.tally("i1").votes == {"bug": ["U0ANA"]}


def test_hitl_labels_add_refuses_a_name_merged_away_and_rename_a_retired_name(tmp_path: Path):
    db = tmp_path / "hitl.db"
    seed(db, [Item("i1", "the app crashes on start", "bug"), Item("i2", "refund", "billing")])
    env = {"HITL_LABELS": ",".join(LABELS)}
    assert run_cli("--db", str(db), "labels", "merge", "bug", "how_to", env=env).exit_code == 0
    added = run_cli("--db", str(db), "labels", "add", "bug", env=env)
    assert added.exit_code == 1
    assert '"bug" was merged into "how_to" on ' in added.output, added.output
    assert 'choose another name (or use "how_to")' in added.output
    assert run_cli("--db", str(db), "labels", "retire", "billing", env=env).exit_code == 0
    renamed = run_cli("--db", str(db), "labels", "rename", "praise", "billing", env=env)
    assert renamed.exit_code == 1
    assert '"billing" is a retired label' in renamed.output, renamed.output
    with Store.open(db) as store:
        assert store.labels_of(["i1", "i2"]) == {"i1": "how_to", "i2": "billing"}
        assert "bug" not in (store.stored_labels() or [])
        assert "praise" in (store.stored_labels() or [])


# --- review 3, R3-3: the answer words the change made -------------------------------------


def _another_admin_changes_after(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    """Each label change is followed, before its caller words the answer, by another admin's
    `add urgent` (committed on a connection of its own), as two `/hitl labels` at once can."""
    real = Store.change_label_set
    done: list[bool] = []

    def change(self: Store, *args, **kwargs):
        after = real(self, *args, **kwargs)
        if not done:
            done.append(True)
            with Store.open(db) as other:
                real(other, "add", "urgent", current=[], user_id="U0RAJ")
        return after

    monkeypatch.setattr(Store, "change_label_set", change)


async def test_the_labels_reply_words_its_own_change_not_another_admins(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    seed(tmp_path / "hitl.db", [Item("i1", "the app crashes on start")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        _another_admin_changes_after(monkeypatch, tmp_path / "hitl.db")
        reply = await said(bot, "labels rename bug defect")
        assert reply.endswith("Renamed to `defect`. Open questions are redrawn."), reply
        changes = [(c["action"], c["label"]) for c in bot.store.label_set_changes()]
        assert changes == [("rename", "bug"), ("add", "urgent")]


def test_hitl_labels_retire_words_the_label_it_retired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "hitl.db"
    seed(db, [Item("i1", "refund", "billing")])
    _another_admin_changes_after(monkeypatch, db)
    result = run_cli(
        "--db", str(db), "labels", "retire", "billing", env={"HITL_LABELS": ",".join(LABELS)}
    )
    assert result.exit_code == 0, result.output
    assert "1 item labeled billing left training and export" in result.output, result.output
