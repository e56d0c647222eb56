"""Review 1 of c661526/51e76d0, and what the fixes met on the way:

- a take-back's threshold check read every auto and queued item through the status index
  (3 s per take-back at a million, on the event loop, the write lock held): by id now;
- retiring a label left its gold questions in a split live (their buttons still took votes,
  which decided the gold question while no button could be right), and one being posted at
  the retire was opened: both are taken back, and a click on such a question decides nothing
  while its gold label is retired;
- a question the retire took back says the label set changed, not "No new answer for 0 hours";
- a gold miss's detail escapes its labels when written: a label holding ", <@U…> " is no live
  mention on the review window's Why line;
- ``decide_answered`` decides an item taken back for any cause (moved out of a channel too)
  while it held answers;
- a rescoring leaves an item people have started answering with them, not to the model;
- the start-up check names a channel from hitl.toml by the file's key.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot import server
from bot.config import read_settings
from bot.errors import ConfigError
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import (
    Item,
    has_buttons,
    item_of,
    make_settings,
    margin_scored,
    seed,
    start_bot,
)
from tests.bot.test_label_drift import gold_and_tickets, said
from tests.bot.test_serve_process import free_port
from tests.bot.test_slack_bot import buttons
from tests.bot.test_store import R
from tests.bot.test_workspaces_review import facts, last_view
from tests.fake_slack import CHANNEL
from tests.query_plans import query_plans

ANA, RAJ, MEI = "U0ANA", "U0RAJ", "U0MEI"
LABELS = ["billing", "bug", "other"]
OLD = "2000-01-01T00:00:00.000+00:00"


def shown(message: dict) -> str:
    return json.dumps(message["blocks"], ensure_ascii=False) + message.get("text", "")


# -- F1: a take-back reads the items it takes back by id ------------------------------------


def test_a_take_back_and_an_expiry_round_read_no_status_index():
    with Store.memory() as store:
        store.add_items([R(f"i{n}", f"ticket {n}") for n in range(60)], "import")
        sure = [0.9 if n % 3 else 0.5 for n in range(60)]
        rows = [
            (f"i{n}", 1, "billing", c, [["billing", c], ["bug", 1 - c]]) for n, c in enumerate(sure)
        ]
        store.set_predictions(margin_scored(rows), threshold=0.8, strategy="margin")
        store.begin_rethreshold(0.8)
        assert store.end_rethreshold(0.8)  # a threshold recorded: the check runs
        for n in range(4):
            store.record_post(f"i{n}", "C1", f"1.{n}", "audit", 1, "billing", 0.9)
        with store.db.conn:
            store.db.execute("UPDATE posts SET posted_at = ?", [OLD])
        calls = [
            lambda: store.expire_posts(12, 2, threshold=0.8),
            lambda: store.requeue_posts_outside(["C2"], threshold=0.8),
        ]
        for call in calls:
            plans = query_plans(store, call, kinds=("SELECT", "UPDATE"))
            assert any("status_threshold" in sql for sql, _ in plans), plans
            for sql, plan in plans:
                assert not any("items_status_priority" in line for line in plan), (sql, plan)
        statuses = [store.get_item(f"i{n}")["status"] for n in range(4)]
        assert statuses == ["queued", "auto", "auto", "queued"]  # as the threshold puts them
        assert store.statuses_threshold() == 0.8


# -- F2, G2: a retired label's gold question in a split -------------------------------------


async def test_a_retired_labels_gold_question_in_a_split_is_taken_back_and_asked_again(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = tmp_path / "hitl.db"
    gold_and_tickets(
        db, [Item("i1", "the app crashes on start"), Item("i2", "where is my invoice")]
    )
    settings = make_settings(fake_slack, tmp_path, gold_rate=1.0, votes=2, max_open=1,
                             labels=tuple(LABELS))  # fmt: skip
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        assert item_of(message) == "g1"
        for user, label in ((ANA, "bug"), (RAJ, "other")):  # a split: its buttons still live
            assert (await bot.action(bot.button_payload(message, user, label))).status == 200
        await bot.settled()
        assert "split" in [r["reason"] for r in bot.store.reviews_of("g1")]
        assert has_buttons(bot.fake.message(CHANNEL, message["ts"]))

        assert (await said(bot, "labels retire billing")).startswith("Done.")
        await bot.settled()
        drawn = bot.fake.message(CHANNEL, message["ts"])
        assert not has_buttons(drawn), drawn
        assert "The label set changed, so it was put back in the queue" in shown(drawn)
        assert "hour" not in shown(drawn) and "billing" not in shown(drawn)
        assert bot.store.get_item("g1")["status"] == "gold"

        # a click on the split as Slack still showed it: kept, but it decides nothing
        assert (await bot.action(bot.button_payload(message, MEI, "bug"))).status == 200
        await bot.settled()
        assert bot.store.get_item("g1")["status"] == "gold"
        assert bot.store.resolution("g1") is None

        # billing back: asked again at once (nobody ignored it: it does not rest), in a new
        # message with its billing button, the split's votes kept, and Mei's click
        assert (await said(bot, "labels add billing")).startswith("Done.")
        await bot.dispatcher.fill()
        again = bot.fake.message(CHANNEL, bot.store.post_for_item("g1")["ts"])
        assert again["ts"] != message["ts"] and "billing" in buttons(again)
        assert bot.store.tally("g1").votes == {"bug": [ANA, MEI], "other": [RAJ]}


async def test_an_open_gold_question_the_retire_takes_back_says_the_label_set_changed(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = tmp_path / "hitl.db"
    gold_and_tickets(db, [Item("i1", "the app crashes on start")])
    settings = make_settings(fake_slack, tmp_path, gold_rate=1.0, votes=2, max_open=1,
                             labels=tuple(LABELS))  # fmt: skip
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        assert (await bot.action(bot.button_payload(message, RAJ, "bug"))).status == 200
        await bot.settled()
        assert (await said(bot, "labels retire billing")).startswith("Done.")
        await bot.settled()
        drawn = bot.fake.message(CHANNEL, message["ts"])
        assert not has_buttons(drawn)
        text = shown(drawn)
        assert "⌛ The label set changed, so it was put back in the queue" in text, text
        assert "No new answer" not in text and "hour" not in text and "billing" not in text


# -- F3: a retire while a gold question is being posted -------------------------------------


def test_a_gold_question_posted_across_the_retire_of_its_label_is_taken_back():
    with Store.memory() as store:
        store.add_gold([Item("g1", "please refund the double charge", "billing")])
        store.add_gold([Item("g2", "the app crashes", "bug")])
        under = store.label_set_change_count()
        [first, second] = store.next_gold(2, configured=LABELS)
        assert store.begin_post_attempt("g1", "C1", "gold", None, None, None)
        store.change_label_set("retire", "billing", current=LABELS, user_id="UADMIN")
        store.record_post("g1", "C1", "1.1", "gold", None, None, None, drawn_under=under)
        post = store.post_for_item("g1")
        assert post["closed_at"] is not None and post["expired_at"] is not None
        assert post["taken_back"] == "labels" and post["redraw_seq"] > post["drawn_seq"]
        assert store.get_item("g1")["status"] == "gold" and store.open_post_counts() == {}
        assert store.post_attempts() == []
        # a round that read it before the retire does not post it; another gold item it does
        assert not store.begin_post_attempt("g1", "C1", "gold", None, None, None)
        assert store.begin_post_attempt("g2", "C1", "gold", None, None, None)
        assert {first["id"], second["id"]} == {"g1", "g2"}


# -- F4: a gold miss's detail ---------------------------------------------------------------


async def test_a_label_holding_a_comma_and_a_mention_is_no_mention_on_the_why_line(
    fake_slack: FakeSlack, tmp_path: Path
):
    odd = "refund, <@U0BOSS> asked"
    gold_and_tickets(tmp_path / "hitl.db", [Item("i1", "the app crashes on start")])
    settings = make_settings(fake_slack, tmp_path, gold_rate=1.0, votes=3, max_open=1,
                             labels=(odd, "billing", "bug"))  # fmt: skip
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        await bot.action(bot.button_payload(message, ANA, odd))  # a miss
        await bot.settled()
        await bot.command("review", "U0ADMIN")
        await bot.settled()
        why, _ = facts(last_view(bot))
        assert why == (
            "*Why:* a gold answer missed (<@U0ANA> refund, &lt;@U0BOSS&gt; asked; gold: billing)"
        )


# -- F5: decide_answered, whatever took the question back ------------------------------------


def test_an_item_moved_out_of_a_channel_with_answers_is_decided_at_a_start_with_fewer_votes():
    with Store.memory() as store:
        store.add_items([R("i1", "card charged twice"), R("i2", "app crashes")], "import")
        rows = [(i, 1, "billing", 0.6, [["billing", 0.6], ["bug", 0.4]]) for i in ("i1", "i2")]
        store.set_predictions(margin_scored(rows), threshold=0.8, strategy="margin")
        store.record_post("i1", "C1", "1.1", "uncertain", 1, "billing", 0.6)
        store.record_post("i2", "C1", "1.2", "uncertain", 1, "billing", 0.6)
        for item in ("i1", "i2"):  # one answer each, open under HITL_VOTES=3
            store.record_answer(item, ANA, "billing", source="button", dedupe_key=item,
                                votes_needed=3)  # fmt: skip
        with store.db.conn:  # i1: left unanswered past the TTL
            store.db.execute("UPDATE posts SET posted_at = ? WHERE item_id = 'i1'", [OLD])
            store.db.execute("UPDATE answers SET created_at = ? WHERE item_id = 'i1'", [OLD])
        assert len(store.expire_posts(12, 10, threshold=0.8)) == 1
        assert store.requeue_posts_outside(["C2"], threshold=0.8)  # i2: its channel not asked
        assert store.get_item("i2")["status"] == "queued"
        assert store.decide_answered(1) == ["i1", "i2"]  # restarted under HITL_VOTES=1
        assert {store.get_item(i)["status"] for i in ("i1", "i2")} == {"resolved"}


# -- G1: a rescoring leaves an answered item with people --------------------------------------


def test_a_rescoring_leaves_an_item_people_have_started_answering_with_them():
    with Store.memory() as store:
        store.add_items([R(f"i{n}", f"ticket {n}") for n in range(30)], "import")
        low = [(f"i{n}", 1, "billing", 0.6, [["billing", 0.6], ["bug", 0.4]]) for n in range(30)]
        store.set_predictions(margin_scored(low), threshold=0.8, strategy="margin")
        # an audit asked, answered by one of three, taken back: it waits for people
        store.record_post("i0", "C1", "1.0", "audit", 1, "billing", 0.6)
        store.record_answer("i0", ANA, "bug", source="button", dedupe_key="a", votes_needed=3)
        assert store.requeue_posts_outside(["C2"], threshold=0.8)
        assert store.get_item("i0")["status"] == "queued"
        # a retrain's model is sure of every item now
        high = [
            (f"i{n}", 2, "billing", 0.95, [["billing", 0.95], ["bug", 0.05]]) for n in range(30)
        ]
        plans = query_plans(
            store,
            lambda: store.set_predictions(margin_scored(high), threshold=0.8, strategy="margin"),
            kinds=("UPDATE",),
        )
        assert store.get_item("i0")["status"] == "queued"  # its answer leads somewhere
        assert store.get_item("i1")["status"] == "auto"
        for sql, plan in plans:  # by id, each item's answers from their index
            if sql.lstrip().startswith("UPDATE items"):
                assert not any(line.startswith("SCAN") for line in plan), (sql, plan)
                assert not any("items_status_priority" in line for line in plan), (sql, plan)
        # the label-set restatement decides the same way
        store.change_label_set("retire", "billing", current=LABELS, user_id="UADMIN")
        after, changed = 0, 0
        while after is not None:
            n, after = store.restate_predictions(after, 100, threshold=0.0)
            changed += n
        assert changed and store.get_item("i0")["status"] == "queued"


# -- G3: the start-up check names a channel from hitl.toml by its key -------------------------


async def test_a_channel_the_bot_cannot_see_from_hitl_toml_is_named_by_its_key(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    toml = tmp_path / "hitl.toml"
    toml.write_text('[hitl]\nreport_channel = "G0NOSUCH"\n')
    reading = read_settings(environ={}, toml_path=toml)
    assert reading.settings.report_channel == "G0NOSUCH"
    base = make_settings(fake_slack, tmp_path, port=free_port())
    settings = reading.settings.with_changes(
        slack_bot_token=base.slack_bot_token,
        slack_signing_secret=base.slack_signing_secret,
        slack_api_url=base.slack_api_url,
        db=base.db,
        channel=base.channel,
        labels=base.labels,
        port=base.port,
    )
    with pytest.raises(ConfigError) as raised:
        await asyncio.wait_for(server.serve(settings), 30)
    assert str(raised.value) == (
        f"{toml} report_channel=G0NOSUCH: the bot cannot see this channel (channel_not_found);"
        " check the ID, and in a private channel /invite @hitl"
    )
