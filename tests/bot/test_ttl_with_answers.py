"""HITL_QUESTION_TTL and questions people are answering (an outside test, settings changed
between restarts): under HITL_VOTES > 1 a question with "2 of 3 answers in" was taken back
as "Unanswered" once older than the TTL, counted "taken back unanswered" by /hitl queue; an
audit pick so taken back went to the model (``auto``) and was never asked again; and an item
asked again showed no answers though they counted. A split's message kept the HITL_VOTES it
was drawn under after a restart that raised it; a bad channel in hitl.toml was named as an
environment variable.

The TTL counts from a question's posting or its item's latest answer (a vote in its tally),
whichever is later. Time is moved as ``test_question_ttl`` moves it: the posts' ``posted_at``
(and here the answers' ``created_at``) set back."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.slack.blocks import Question, tally_line
from bot.slack.redraw import Redrawer
from bot.store import Store
from tests.bot.harness import (
    Bot,
    Item,
    has_buttons,
    item_of,
    make_settings,
    seed,
    seed_champion,
    start_bot,
)
from tests.fake_slack import CHANNEL
from tests.query_plans import query_plans

ANA, RAJ, MEI = "U0ANA", "U0RAJ", "U0MEI"
TOKEN = "t" * 24
HALF_WAY = (
    "No new answer for 3 days (2 of 3 answers in), so it was put back in the queue; the"
    " answers still count"
)


def ago(bot: Bot, hours: float) -> str:
    then = datetime.fromisoformat(bot.store.now()) - timedelta(hours=hours)
    return then.isoformat(timespec="milliseconds")


def age_open_posts(bot: Bot, hours: float) -> None:
    with bot.store.db.conn:
        bot.store.db.execute(
            "UPDATE posts SET posted_at = ? WHERE closed_at IS NULL", [ago(bot, hours)]
        )


def age_answers(bot: Bot, item_id: str, hours: float) -> None:
    with bot.store.db.conn:
        bot.store.db.execute(
            "UPDATE answers SET created_at = ? WHERE item_id = ?", [ago(bot, hours), item_id]
        )


def shown(message: dict) -> str:
    return json.dumps(message["blocks"], ensure_ascii=False) + message.get("text", "")


def open_post(bot: Bot, item_id: str) -> dict | None:
    post = bot.store.post_for_item(item_id)
    return post if post is not None and post["closed_at"] is None else None


async def click(bot: Bot, message: dict, user: str, label: str) -> None:
    assert (await bot.action(bot.button_payload(message, user, label))).status == 200
    await bot.settled()


async def queue_line(bot: Bot) -> str:
    body = await (await bot.command("queue", ANA)).text()
    text = json.loads(body)["text"] if body.startswith("{") else body
    [line] = [line for line in text.splitlines() if f"<#{CHANNEL}>" in line]
    return line


async def test_a_question_with_answers_in_stays_open_and_goes_a_ttl_after_its_last_answer(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(
        tmp_path / "hitl.db",
        [Item(f"i{n}", f"ticket number {n} about something") for n in range(3)],
    )
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), votes=3, max_open=3)
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 3
        first = {item_of(m): m for m in bot.posted()}
        await click(bot, first["i0"], ANA, "billing")  # 1-1: waits for a third answer
        await click(bot, first["i0"], RAJ, "bug")
        await click(bot, first["i1"], ANA, "bug")
        age_open_posts(bot, 100)  # all asked 100 hours ago; the answers came just now
        await bot.dispatcher.fill()
        await bot.settled()
        # only the question nobody answered is taken back (and asked again: nothing else waits)
        for item_id in ("i0", "i1"):
            assert open_post(bot, item_id)["ts"] == first[item_id]["ts"], item_id
            assert has_buttons(fake_slack.message(CHANNEL, first[item_id]["ts"]))
        assert bot.store.post_for_item("i2")["ts"] != first["i2"]["ts"]
        taken = fake_slack.message(CHANNEL, first["i2"]["ts"])
        assert "⌛ Unanswered for 4 days, so it was put back in the queue" in shown(taken)

        # left half-way: a TTL after its last answer, not before
        age_answers(bot, "i0", 71)
        await bot.dispatcher.fill()
        assert open_post(bot, "i0")["ts"] == first["i0"]["ts"]
        age_answers(bot, "i0", 73)
        await bot.dispatcher.fill()
        await bot.settled()
        old = fake_slack.message(CHANNEL, first["i0"]["ts"])
        assert not has_buttons(old)
        assert HALF_WAY in shown(old), shown(old)
        assert "Unanswered" not in shown(old)
        assert "No new answer for 3 days (2 of 3 answers in), put back in the queue" in old["text"]
        # /hitl queue counts only the question nobody answered
        assert (await queue_line(bot)).endswith("· 1 taken back unanswered in the last 7 days")

        # asked again (nothing else waits): the new question shows the answers it holds
        again = open_post(bot, "i0")
        assert again is not None and again["ts"] != first["i0"]["ts"]
        new = fake_slack.message(CHANNEL, again["ts"])
        assert has_buttons(new)
        assert "2 of 3 answers in. 2 matching answers decide" in shown(new), shown(new)
        await click(bot, new, MEI, "billing")  # as the new question says: a second match decides
        assert bot.store.resolution("i0")["label"] == "billing"


async def test_a_taken_back_audit_with_answers_waits_for_people_and_is_asked_again(
    fake_slack: FakeSlack, tmp_path: Path
):
    """An item the model is sure of (``auto``), asked as an audit, with two answers in, is
    taken back a TTL after the last: it waits for people (not the model), is asked again
    showing its answers, and a third answer decides it (the API says the people's label)."""
    db = tmp_path / "hitl.db"
    seed_champion(db, ["an invoice to pay", "a refund", "the app crashes", "an error"],
                  ["billing", "billing", "bug", "bug"])  # fmt: skip
    seed(db, [Item("u1", "the app crashes on start")])
    settings = make_settings(
        fake_slack, tmp_path, labels=("billing", "bug"), votes=3, max_open=1, threshold=0.0,
        audit_rate=1.0, gold_rate=0.0, api_token=TOKEN,
    )  # fmt: skip
    async for bot in start_bot(fake_slack, settings):
        await bot.rt.scorer.catch_up()
        assert bot.store.get_item("u1")["status"] == "auto"
        assert await bot.dispatcher.fill() == 1
        [message] = bot.posted()
        assert bot.store.post_for_item("u1")["reason"] == "audit"
        await click(bot, message, ANA, "billing")
        await click(bot, message, RAJ, "bug")
        age_open_posts(bot, 80)
        age_answers(bot, "u1", 80)
        bot.store.add_items([Item("u2", "an invoice to pay twice")], "import")
        await bot.rt.scorer.catch_up()
        assert await bot.dispatcher.fill() == 1  # u1 taken back; its place to u2 (u1 rests)
        await bot.settled()
        assert bot.store.get_item("u1")["status"] == "queued"  # not left to the model
        old = fake_slack.message(CHANNEL, message["ts"])
        assert not has_buttons(old) and HALF_WAY in shown(old), shown(old)

        u2 = fake_slack.message(CHANNEL, open_post(bot, "u2")["ts"])
        for user in (ANA, RAJ):
            await click(bot, u2, user, "billing")
        assert bot.store.get_item("u2")["status"] == "resolved"
        assert await bot.dispatcher.fill() == 1
        again = open_post(bot, "u1")  # asked again
        assert again is not None and again["ts"] != message["ts"]
        new = fake_slack.message(CHANNEL, again["ts"])
        assert "2 of 3 answers in" in shown(new), shown(new)
        await click(bot, new, MEI, "billing")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = await (await bot.http.get("/api/items/u1", headers=auth)).json()
        assert body["status"] != "auto" and body["human"] is not None, body
        assert bot.store.resolution("u1")["label"] == "billing"


async def test_a_split_is_redrawn_at_start_for_the_hitl_votes_in_force(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("a", "refund and a crash")])
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), votes=2, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 1
        [message] = bot.posted()
        await click(bot, message, ANA, "billing")
        await click(bot, message, RAJ, "bug")  # a split: in review, its buttons still take votes
        split = fake_slack.message(CHANNEL, message["ts"])
        assert "2 answers in, no majority yet. 2 matching answers decide" in shown(split)
        assert bot.store.post_for_item("a")["closed_at"] is not None
    async for bot in start_bot(fake_slack, settings.with_changes(votes=4)):
        redrawer = Redrawer.of(bot.rt)
        redrawer.redraw_open()  # as the background loop does at start
        await redrawer.pending(due_only=True)
        drawn = fake_slack.message(CHANNEL, message["ts"])
        assert "2 of 4 answers in. 3 matching answers decide" in shown(drawn), shown(drawn)
        assert has_buttons(drawn)
        assert bot.store.post_for_item("a")["closed_at"] is not None  # still holds no place


async def test_a_split_a_skip_left_in_review_leaves_it_at_start(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_VOTES=2: Ana and Raj split, then Raj clicked Skip, under a hitl older than
    2026-12-06: one vote left, no split, yet the split review stayed pending and the question
    held no channel place. The start's repair left it so until the item's next answer; it now
    closes the review as flag_split does ('votes', 'undone') and the question counts again."""
    seed(tmp_path / "hitl.db", [Item("a", "refund and a crash"), Item("b", "hello")])
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), votes=2, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 1
        [message] = bot.posted()
        await click(bot, message, ANA, "billing")
        await click(bot, message, RAJ, "bug")  # a split: b takes its place
        assert await bot.dispatcher.fill() == 1
        split = fake_slack.message(CHANNEL, message["ts"])
        assert (await bot.action(bot.button_payload(split, RAJ, None))).status == 200
        await bot.settled()
        # the state the code before 2026-12-06 left: the split pending, its post closed
        with bot.store.db.conn:
            bot.store.db.execute(
                "UPDATE reviews SET decided_at = NULL, decided_by = NULL, decision = NULL"
                " WHERE item_id = 'a' AND reason = 'split'"
            )
            bot.store.db.execute(
                "UPDATE posts SET closed_at = ? WHERE item_id = 'a'", [bot.store.now()]
            )
        assert bot.store.pending_review_count() == 1
        assert bot.store.open_post_counts() == {CHANNEL: 1}
    async for bot in start_bot(fake_slack, settings):
        assert bot.store.tally("a").votes == {"billing": [ANA]}
        assert bot.store.pending_review_count() == 0
        [review] = bot.store.reviews_of("a")
        assert (review["decided_by"], review["decision"]) == ("votes", "undone")
        assert bot.store.post_for_item("a")["closed_at"] is None
        assert bot.store.open_post_counts() == {CHANNEL: 2}
        assert bot.store.split_posts() == []
        assert bot.store.decide_answered(2) == []  # a second run changes nothing
        # Mei's vote makes a majority of two: decided, as any open question
        await click(bot, fake_slack.message(CHANNEL, message["ts"]), MEI, "billing")
        assert bot.store.resolution("a")["label"] == "billing"


def test_a_bad_channel_in_hitl_toml_is_named_as_the_files_key(tmp_path: Path):
    (tmp_path / "hitl.toml").write_text(
        '[hitl]\nchannel = "general"\nreport_channel = "#reports"\nmax_open = 0\n'
    )
    result = CliRunner().invoke(cli, ["config"], env={}, prog_name="hitl")
    assert result.exit_code == 1
    lines = result.stderr.removeprefix("Error: ").splitlines()
    tail = " is not a channel ID; copy the ID from the channel's details (at the bottom), e.g."
    assert lines[0].startswith('hitl.toml max_open="0" ')
    assert lines[1:] == [
        f'hitl.toml channel="general"{tail} C0123ABCD',
        f'hitl.toml report_channel="#reports"{tail} C0123ABCD',
    ]
    # the environment's value is named as its variable, over the file's
    result = CliRunner().invoke(cli, ["config"], env={"HITL_CHANNEL": "#q"}, prog_name="hitl")
    assert f'HITL_CHANNEL="#q"{tail} C0123ABCD' in result.stderr.splitlines()[1:]


def test_the_ttl_reads_each_open_questions_answers_by_its_item():
    """Every dispatcher round runs it: the open posts from their age index, each one's
    answers by its item id, never every answer; /hitl queue's count likewise."""
    now = ["2026-11-05T09:00:00.000+00:00"]
    with Store.memory(clock=lambda: now[0]) as store:
        store.add_items([Item(f"i{n}", f"ticket {n}") for n in range(40)], "import")
        for n in [n for n in range(40) if n != 3]:
            store.record_answer(f"i{n}", "U1", "bug", source="button", dedupe_key=f"k{n}",
                                votes_needed=3)  # fmt: skip
        for n in range(3):
            store.record_post(f"i{n}", "C1", f"1.{n}", "uncertain", None, None, None)
        store.record_post("i3", "C1", "1.3", "uncertain", None, None, None)
        store.record_answer("i3", "U2", None, source="button", dedupe_key="skip", votes_needed=3)
        now[0] = "2026-11-09T09:00:00.000+00:00"
        for call in (lambda: store.expire_posts(72, 50), lambda: store.expired_counts(7)):
            plans = query_plans(store, call)
            text = [" ".join(plan) for _, plan in plans]
            assert not any("SCAN a" in p or "SCAN answers" in p for p in text), plans
            assert any("SEARCH a USING INDEX answers_counted (item_id=?)" in p for p in text)
        # the answers of i0..i2 are 4 days old: taken back; i3's skip is no answer
        assert store.expired_counts(7) == {"C1": 1}  # i3: nobody answered it
        assert store.answers_when_taken_back("i0", now[0])[0] == 1
        assert store.get_item("i0")["status"] == "new"


def test_a_question_with_every_answer_in_and_no_majority_asks_for_more():
    """Three different answers under HITL_VOTES=3 leave the question open (a split): it said
    "3 of 3 answers in", and a fourth "4 of 3 answers in"."""

    def line(votes: dict[str, list[str]]) -> str | None:
        return tally_line(Question("i1", "t", ["a", "b", "c", "d"], votes=votes, votes_needed=3))

    assert line({"a": ["U1"], "b": ["U2"]}) == (
        "2 of 3 answers in. 2 matching answers decide; answers show once it is decided."
    )
    assert line({"a": ["U1"], "b": ["U2"], "c": ["U3"]}) == (
        "3 answers in, no majority yet. 2 matching answers decide; answers show once it is decided."
    )
    four = line({"a": ["U1"], "b": ["U2"], "c": ["U3"], "d": ["U4"]})
    assert four is not None and four.startswith("4 answers in, no majority yet.")


async def test_agreement_on_one_item_counts_it_in_the_singular(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Two people disagree on one item under HITL_VOTES=3: `/hitl stats` said "1 items" and
    "(1 answers)"."""
    seed(tmp_path / "hitl.db", [Item("i0", "refund and a crash")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, votes=3)):
        for user, label in (("U0ANA", "billing"), ("U0RAJ", "bug")):
            bot.store.record_answer(
                "i0", user, label, source="button", dedupe_key=user, votes_needed=3
            )
        response = await bot.command("stats", "U0ADMIN")
        text = json.loads(await response.text())["text"]
        assert "(1 item with two or more answers, 2 people)" in text, text
        assert "1 items" not in text and "(1 answers)" not in text, text
