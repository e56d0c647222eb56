"""Questions nobody answers expire (HITL_QUESTION_TTL hours, 72 by default; 0: never): the
dispatcher takes them back in its rounds, their items go back to the queue, their messages are
redrawn without buttons saying so, and their places in the channel are free at once. A month's
test found a channel whose HITL_MAX_OPEN questions were all ignored asking nothing for weeks.

Time is moved by setting the open posts' ``posted_at`` back, as if they had been posted days
ago; the store's clock is the one both read."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlite_utils import Database

from bot.config import describe, load_settings
from bot.errors import ConfigError
from bot.sandbox import FakeSlack
from bot.slack import dispatch
from bot.store import KNOWN_MIGRATIONS, Store, migrations
from tests.bot.harness import Bot, Item, make_settings, seed, seed_champion, start_bot
from tests.fake_slack import CHANNEL
from tests.query_plans import query_plans

TRAINED = ("billing", "billing", "bug", "bug")


async def started(fake: FakeSlack, tmp_path: Path, n_items: int, **changes):
    items = [Item(f"i{n}", f"ticket number {n} about something") for n in range(n_items)]
    seed(tmp_path / "hitl.db", items)
    settings = make_settings(fake, tmp_path, labels=("billing", "bug"), **changes)
    return start_bot(fake, settings)


def age_open_posts(bot: Bot, hours: float) -> None:
    """The open questions were posted ``hours`` ago (by the store's clock)."""
    then = datetime.fromisoformat(bot.store.now()) - timedelta(hours=hours)
    with bot.store.db.conn:
        bot.store.db.execute(
            "UPDATE posts SET posted_at = ? WHERE closed_at IS NULL",
            [then.isoformat(timespec="milliseconds")],
        )


def has_buttons(message: dict) -> bool:
    return any(
        element.get("type") == "button"
        for block in message["blocks"]
        for element in block.get("elements", [])
    )


def shown(message: dict) -> str:
    return json.dumps(message["blocks"], ensure_ascii=False)


def posts(bot: Bot) -> list[dict]:
    return list(bot.store.db.query("SELECT * FROM posts ORDER BY id"))


async def test_an_old_unanswered_question_is_taken_back_redrawn_and_asked_again(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in await started(fake_slack, tmp_path, 1, max_open=1):
        assert await bot.dispatcher.fill() == 1
        [first] = bot.posted()
        age_open_posts(bot, 4 * 24 + 1)  # over the default 72 hours
        await bot.dispatcher.fill()
        await bot.settled()
        old, new = posts(bot)
        assert old["expired_at"] is not None and old["closed_at"] is not None
        assert new["item_id"] == old["item_id"] == "i0" and new["closed_at"] is None
        assert bot.store.get_item("i0")["status"] == "posted"  # asked again, in a new message
        redrawn, again = bot.posted()
        assert redrawn["ts"] == first["ts"] and again["ts"] != first["ts"]
        assert not has_buttons(redrawn)
        assert "Unanswered for 4 days, so it was put back in the queue" in shown(redrawn)
        assert "ticket number 0" in shown(redrawn)
        assert has_buttons(again)
        assert bot.store.open_post_counts() == {CHANNEL: 1}


async def test_a_channel_whose_places_all_went_stale_asks_again(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(dispatch, "EXPIRE_BATCH", 2, raising=False)  # per round
    async for bot in await started(fake_slack, tmp_path, 10, max_open=3):
        assert await bot.dispatcher.fill() == 3
        first = {m["ts"] for m in bot.posted()}
        assert await bot.dispatcher.fill() == 0  # full: nothing more is asked
        age_open_posts(bot, 73)
        assert await bot.dispatcher.fill() == 2  # two taken back this round, two asked
        assert await bot.dispatcher.fill() == 1  # the third next round
        await bot.settled()
        assert sum(p["expired_at"] is not None for p in posts(bot)) == 3
        assert bot.store.open_post_counts() == {CHANNEL: 3}
        # /hitl queue says how many went unanswered (a month's test: nothing told the team)
        queue = await (await bot.command("queue", "U0ANA")).text()
        assert f"<#{CHANNEL}>: 3 of 3 open · 3 taken back unanswered in the last 7 days" in queue
        messages = bot.posted()
        assert len(messages) == 6
        for message in messages:
            if message["ts"] in first:
                assert not has_buttons(message)
                assert "Unanswered for 3 days, so it was put back" in shown(message)
            else:
                assert has_buttons(message)


async def test_a_place_an_ignored_question_freed_goes_to_another_item(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The questions taken back were the model's closest calls, and stay so in the queue: the
    round that freed their places asked the same items again (a month's test), so a channel of
    ignored questions kept them for good, only moved down. They wait now behind every other
    item for one HITL_QUESTION_TTL, and are asked when nothing else is left."""
    db = tmp_path / "hitl.db"
    seed_champion(db, ["an invoice to pay", "a refund", "the app crashes", "an error"], TRAINED)
    seed(db, [Item(f"i{n}", f"ticket {n}: a refund and an error") for n in range(4)])
    settings = make_settings(
        fake_slack, tmp_path, labels=("billing", "bug"), max_open=2, audit_rate=0.0
    )
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 2
        first = {p["item_id"] for p in posts(bot)}
        age_open_posts(bot, 73)
        assert await bot.dispatcher.fill() == 2
        second = {p["item_id"] for p in posts(bot) if p["closed_at"] is None}
        assert second == {"i0", "i1", "i2", "i3"} - first  # the other two, not the same again
        age_open_posts(bot, 73)
        assert await bot.dispatcher.fill() == 2  # all four rest: they are all there is
        third = {p["item_id"] for p in posts(bot) if p["closed_at"] is None}
        assert len(third) == 2 and third <= first | second


async def test_an_ignored_gold_question_does_not_take_its_freed_place_back(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The same for gold questions (an outside re-test): one ignored for a TTL waits while
    the other items are asked."""
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        store.add_gold(
            [Item(f"g{n}", f"gold ticket {n} about a refund", "billing") for n in range(3)]
        )
    seed(db, [Item(f"i{n}", f"ticket number {n} about something") for n in range(4)])
    settings = make_settings(
        fake_slack, tmp_path, labels=("billing", "bug"), max_open=1, gold_rate=1.0, audit_rate=0.0
    )
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 1
        [first] = [p["item_id"] for p in posts(bot)]
        assert first.startswith("g")
        age_open_posts(bot, 73)
        assert await bot.dispatcher.fill() == 1
        [second] = [p["item_id"] for p in posts(bot) if p["closed_at"] is None]
        assert second != first


async def test_a_click_racing_the_expiry_is_stored_once(fake_slack: FakeSlack, tmp_path: Path):
    """Both orders, with the rule chosen: a click stored before the round decides its item
    (nothing is taken back); a click on a message the round took back (sent before its redraw
    reached Slack) counts as the answer to the item, as an answer on a moved question does,
    and withdraws the item's new question (closed, redrawn with the decision)."""
    async for bot in await started(fake_slack, tmp_path, 2, max_open=2):
        assert await bot.dispatcher.fill() == 2
        m1, m2 = bot.posted()
        age_open_posts(bot, 100)
        label1, label2 = bot.first_label(m1), bot.first_label(m2)
        item1 = next(p["item_id"] for p in posts(bot) if p["ts"] == m1["ts"])
        item2 = next(p["item_id"] for p in posts(bot) if p["ts"] == m2["ts"])
        # the first click comes before the round: the click wins, nothing is taken back
        assert (await bot.action(bot.button_payload(m1, "U0ANA", label1))).status == 200
        await bot.dispatcher.fill()  # takes back m2 only, and asks its item again (m3)
        await bot.settled()
        p1, p2, p3 = posts(bot)
        assert p1["expired_at"] is None and bot.store.resolution(item1)["label"] == label1
        assert p2["expired_at"] is not None and p3["item_id"] == item2
        assert p3["closed_at"] is None
        # the second click was made on m2 as it was before its redraw: counted, once
        payload = bot.button_payload(m2, "U0RAJ", label2)
        assert (await bot.action(payload)).status == 200
        assert (await bot.action(payload)).status == 200  # Slack's retry: stored once
        await bot.settled()
        assert bot.store.resolution(item2)["label"] == label2
        answers = bot.store.db.execute(
            "SELECT item_id, count(*) FROM answers GROUP BY item_id ORDER BY item_id"
        ).fetchall()
        assert answers == sorted([(item1, 1), (item2, 1)])
        assert bot.store.open_post_counts() == {}  # the new question was withdrawn
        by_ts = {m["ts"]: m for m in bot.posted()}
        assert len(by_ts) == 3
        assert not any(has_buttons(message) for message in by_ts.values())
        m3 = next(ts for ts in by_ts if ts not in (m1["ts"], m2["ts"]))
        for ts in (m2["ts"], m3):  # the old message and the new both show the decision
            assert f"✅ *`{label2}`* by <@U0RAJ>" in shown(by_ts[ts])
        assert await bot.dispatcher.fill() == 0  # nothing left to ask: nothing asked twice


async def test_a_ttl_of_0_keeps_questions_open_for_ever(fake_slack: FakeSlack, tmp_path: Path):
    async for bot in await started(fake_slack, tmp_path, 5, max_open=2, question_ttl=0):
        assert await bot.dispatcher.fill() == 2
        age_open_posts(bot, 24 * 365)
        assert await bot.dispatcher.fill() == 0
        await bot.settled()
        assert [p["expired_at"] for p in posts(bot)] == [None, None]
        assert all(has_buttons(m) for m in bot.posted())


def test_hitl_question_ttl_is_read_checked_and_shown():
    assert load_settings({}, None).question_ttl == 72
    settings = load_settings({"HITL_QUESTION_TTL": "0"}, None)
    assert settings.question_ttl == 0
    shown = {row[0]: row[1:] for row in describe(settings)}
    assert shown["HITL_QUESTION_TTL"][:2] == ("0", "env")
    with pytest.raises(ConfigError) as caught:
        load_settings({"HITL_QUESTION_TTL": "2.5"}, None)
    assert caught.value.problems == [
        'HITL_QUESTION_TTL="2.5" is not a whole number; use one from 0 to 8760'
    ]


def test_an_older_database_gets_the_open_posts_age_index(tmp_path: Path):
    db_path = tmp_path / "hitl.db"
    old = Database(db_path)
    migrations.apply(old, stop_before="m026_posts_expired")
    old["items"].insert(
        {"id": "a", "text": "t", "source": "import", "status": "posted",
         "created_at": "t", "updated_at": "t"}
    )  # fmt: skip
    old["posts"].insert(
        {"item_id": "a", "channel": "C1", "ts": "1.0", "reason": "uncertain",
         "posted_at": "2026-11-01T09:00:00.000+00:00"}
    )  # fmt: skip
    old.conn.commit()
    old.conn.close()
    with Store.open(db_path, clock=lambda: "2026-11-05T09:00:00.000+00:00") as store:
        assert store.schema_version() == list(KNOWN_MIGRATIONS)
        assert "m026_posts_expired" in store.schema_version()
        plans = query_plans(store, lambda: store.expire_posts(72, 50))
        assert any("USING INDEX posts_open_age" in " ".join(plan) for _, plan in plans), plans
        plans = query_plans(store, lambda: store.expired_counts(7))  # m027's index
        assert any("USING INDEX posts_expired" in " ".join(plan) for _, plan in plans), plans
        assert store.post_for_item("a")["expired_at"] == "2026-11-05T09:00:00.000+00:00"
        assert store.get_item("a")["status"] == "new"  # never scored: waits as it did
        assert store.open_post_counts() == {}


def test_an_undo_of_a_late_answer_on_an_expired_question_puts_the_item_back_in_the_queue():
    """The late click decided the item from the expired message (no new one yet); its Undo
    does not reopen that message (it would be taken back again in the next round): the item
    waits in the queue, and the message is redrawn as expired again."""
    now = ["2026-11-05T09:00:00.000+00:00"]
    store = Store.memory(clock=lambda: now[0])
    store.add_items([Item("a", "late")], "import")
    store.record_post("a", "C1", "1.0", "uncertain", None, None, None)
    now[0] = "2026-11-09T09:00:00.000+00:00"
    [taken] = store.expire_posts(72, 50)
    assert taken["item_id"] == "a" and store.get_item("a")["status"] == "new"
    assert store.record_answer("a", "U1", "bug", source="button", dedupe_key="k1").status == (
        "resolved"
    )
    seq = store.post_for_item("a")["redraw_seq"]
    undone = store.undo_resolution("a", "U1", since=now[0])
    # told the truth: no question is open again, the item waits in the queue (a re-test)
    assert undone and not undone.reopened
    again = store.undo_resolution("a", "U1", since=now[0])  # a second click on the same Undo
    assert (again.refused, again.reopened) == ("undone", False)  # not "too late"
    post = store.post_for_item("a")
    assert post["closed_at"] is not None and post["expired_at"] is not None
    assert post["redraw_seq"] > seq  # drawn again: expired, no buttons
    assert store.get_item("a")["status"] == "new" and store.open_post_counts() == {}
    store.close()
