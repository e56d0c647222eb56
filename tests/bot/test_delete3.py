"""`hitl delete` and `hitl find`, the cases a second review found: a deleted item's lost post
looked for while Slack rate-limits or fails (it was set aside until a restart) or after the
channel went on (it was not found, and nothing said so), the models named after a clock that
ran ahead was set right (none were), and an address found by its domain or its local part
(0 items)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.slack import redraw
from bot.store import Store
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_delete2 import SECRET_TEXT, add_model, bot, delete_in_cli, run  # noqa: F401
from tests.fake_slack import CHANNEL, slack_client

SETTLED = "2026-01-01T00:00:00.000+00:00"  # an attempt long settled when the delete comes


async def lost_post(bot: Bot, item_id: str = "a") -> None:  # noqa: F811
    """``item_id``'s question posted, but its post got no answer (``post_attempts``)."""
    assert bot.store.begin_post_attempt(item_id, CHANNEL, "cold_start", None, None, None)
    await slack_client(bot.fake).chat_postMessage(
        channel=CHANNEL,
        text=f"Which label? {SECRET_TEXT}",
        metadata={"event_type": "hitl_question", "event_payload": {"item_id": item_id}},
    )


def card_left(bot: Bot) -> bool:  # noqa: F811
    return "4111" in json.dumps(bot.fake.messages(CHANNEL))


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 429, "retry_after": 1},
        {"error": "ratelimited"},  # a 200 with ok: false
        {"error": "internal_error"},
        {"error": "fatal_error"},
    ],
    ids=["429", "ratelimited", "internal_error", "fatal_error"],
)
async def test_a_lost_post_is_looked_for_again_after_a_failure_a_retry_may_fix(
    bot: Bot,  # noqa: F811
    fault: dict,
    caplog: pytest.LogCaptureFixture,
):
    """One rate limit (or Slack's own failure) on conversations.history set the lost post
    aside until the server restarted: the message with the card number stayed in Slack."""
    await lost_post(bot)
    assert delete_in_cli(bot, "a").exit_code == 0
    bot.fake.fail("conversations.history", **fault)
    redrawer = bot.rt.redrawer
    start = redrawer.clock()
    redrawer.clock = lambda: start
    with caplog.at_level(logging.INFO, logger="bot"):
        await redrawer.pending()
    assert redrawer.erase_refused == {}
    assert card_left(bot) and redrawer.next_due() is not None  # backs off, as chat.delete does
    said = [
        r.getMessage() for r in caplog.records if "conversations.history said" in r.getMessage()
    ]
    assert len(said) == 1 and "tried again with backoff" in said[0], said
    redrawer.clock = lambda: start + 3600
    await redrawer.pending(due_only=True)
    assert not card_left(bot)
    assert bot.store.lost_posts() == [] and bot.store.erased_posts() == []


async def test_a_rate_limited_look_waits_the_retry_after(bot: Bot):  # noqa: F811
    await lost_post(bot)
    assert delete_in_cli(bot, "a").exit_code == 0
    bot.fake.fail("conversations.history", status=429, retry_after=120)
    redrawer = bot.rt.redrawer
    start = redrawer.clock()
    redrawer.clock = lambda: start
    await redrawer.pending()
    assert redrawer.next_due() == start + 120  # not the backoff's first 0.01 s
    calls = len(bot.fake.calls_to("conversations.history"))
    redrawer.clock = lambda: start + 119
    await redrawer.pending(due_only=True)
    assert len(bot.fake.calls_to("conversations.history")) == calls  # not before
    redrawer.clock = lambda: start + 120
    await redrawer.pending(due_only=True)
    assert not card_left(bot) and bot.store.lost_posts() == []


async def test_a_rate_limited_look_for_a_lost_post_does_not_sleep_in_the_redrawers_pass(
    fake_slack, tmp_path
):
    """With the client's own retries (the server's: 2), a 429 on the look's
    conversations.history was slept out twice inside the redraw pass, its lock held (no
    redraw went meanwhile), and the history called three times into the limit. One call
    now; the erasures wait for the Retry-After on the redrawer's clock, as for chat.delete."""
    seed(tmp_path / "hitl.db", [Item("a", SECRET_TEXT), Item("b", "the export button is gone")])
    settings = make_settings(fake_slack, tmp_path, max_open=2)
    async for served in start_bot(fake_slack, settings, retries=2):
        await lost_post(served)
        assert delete_in_cli(served, "a").exit_code == 0
        served.fake.fail("conversations.history", status=429, retry_after=30, times=1000)
        redrawer = served.rt.redrawer
        start = redrawer.clock()
        redrawer.clock = lambda t=start: t
        async with asyncio.timeout(5):  # the old pass slept 2 x 30 s in the call
            await redrawer.pending()
        assert len(served.fake.calls_to("conversations.history")) == 1
        assert redrawer.next_due() == start + 30 and card_left(served)
        served.fake._faults.pop("conversations.history")  # Slack takes it again
        redrawer.clock = lambda t=start + 30: t
        await redrawer.pending(due_only=True)
        assert not card_left(served) and served.store.lost_posts() == []


async def test_a_channel_it_may_not_read_still_sets_the_lost_post_aside_said_once(
    bot: Bot,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
):
    """A refusal no retry changes: said once, set aside, and no backoff for it. (With the
    rate limit beside it: the 429 is retried, the refusal is not.)"""
    await lost_post(bot)
    assert delete_in_cli(bot, "a").exit_code == 0
    bot.fake.fail("conversations.history", status=429)
    redrawer = bot.rt.redrawer
    start = redrawer.clock()
    redrawer.clock = lambda: start
    await redrawer.pending()
    assert redrawer.erase_refused == {}
    bot.fake.fail("conversations.history", "missing_scope")
    redrawer.clock = lambda: start + 3600
    with caplog.at_level(logging.INFO, logger="bot"):
        await redrawer.pending(due_only=True)
        await redrawer.pending()
    assert list(redrawer.erase_refused.values()) == ["missing_scope"]
    said = [r.getMessage() for r in caplog.records if "missing_scope" in r.getMessage()]
    assert len(said) == 1 and "delete it by hand" in said[0], said
    assert redrawer.next_due() is None


async def test_a_lost_post_is_found_past_4000_newer_messages(bot: Bot):  # noqa: F811
    """`hitl delete` a week later, the channel went on: the post was beyond the 20 pages read
    from the newest, counted as never posted, and its card number stayed in Slack."""
    await lost_post(bot)
    for n in range(4001):  # the channel goes on: other questions, replies
        bot.fake._store_message(CHANNEL, {"text": f"message {n}"})
    bot.store.db.execute("UPDATE post_attempts SET attempted_at = ?", [SETTLED])
    bot.store.db.conn.commit()
    assert delete_in_cli(bot, "a").exit_code == 0
    await bot.rt.redrawer.pending()
    assert not card_left(bot)
    assert bot.store.lost_posts() == [] and bot.store.erased_posts() == []


async def test_a_lost_post_is_looked_for_back_to_the_question_before_it(bot: Bot):  # noqa: F811
    """The read is bounded by Slack's own time of the newest question recorded before the
    attempt (``oldest``), not the whole history: a post never made costs one page here, not
    the channel's 500 older messages (3 pages)."""
    for n in range(500):  # the channel's past
        bot.fake._store_message(CHANNEL, {"text": f"message {n}"})
    client = slack_client(bot.fake)
    before = await client.chat_postMessage(channel=CHANNEL, text="Which label? text b")
    bot.store.record_post("b", CHANNEL, before["ts"], "cold_start", None, None, None)
    bot.store.db.execute("UPDATE posts SET posted_at = '2025-12-31T23:00:00.000+00:00'")
    assert bot.store.begin_post_attempt("a", CHANNEL, "cold_start", None, None, None)
    bot.store.db.execute("UPDATE post_attempts SET attempted_at = ?", [SETTLED])
    bot.store.db.conn.commit()
    assert delete_in_cli(bot, "a").exit_code == 0
    await bot.rt.redrawer.pending()
    assert bot.store.lost_posts() == []  # never posted: nothing to delete
    (read,) = bot.fake.calls_to("conversations.history")
    assert read.params["oldest"] == before["ts"]


async def test_a_lost_post_not_found_within_the_pages_read_is_said(
    bot: Bot,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    """It gave up without a word: the operator had no way to know a message was left."""
    monkeypatch.setattr(redraw, "LOST_PAGES", 2)
    await lost_post(bot)
    for n in range(400):
        bot.fake._store_message(CHANNEL, {"text": f"message {n}"})
    bot.store.db.execute("UPDATE post_attempts SET attempted_at = ?", [SETTLED])
    bot.store.db.conn.commit()
    assert delete_in_cli(bot, "a").exit_code == 0
    with caplog.at_level(logging.INFO, logger="bot"):
        await bot.rt.redrawer.pending()
        await bot.rt.redrawer.pending()
    said = [r for r in caplog.records if "gave up looking" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    line = said[0].getMessage()
    assert "item a" in line and CHANNEL in line and "400 messages" in line, line
    assert "delete it by hand" in line
    assert bot.store.lost_posts() == []


def write_meta(db: Path, version: int, label_seq: int) -> None:
    """A model's metadata as the registry writes it, with the count of label writes its
    training read saw."""
    folder = db.with_name(db.name + ".models")
    folder.mkdir(exist_ok=True)
    meta = {"version": version, "status": "champion", "extra": {"label_seq": label_seq}}
    (folder / f"v{version}.json").write_text(json.dumps(meta))


def test_a_model_trained_after_a_clock_ahead_was_set_right_is_named(tmp_path: Path):
    """The labels were written while the clock ran a day ahead; set right, a retrain trained
    v1 on them: its time is before the labels', and `hitl delete` named no model."""
    db = tmp_path / "hitl.db"
    now = ["2026-12-06T06:00:00.000+00:00"]  # a day ahead
    with Store.open(db, clock=lambda: now[0]) as store:
        store.add_items([Item("a", "card text a", "billing"), Item("b", "text b", "bug")], "import")
        (seen,) = store.db.execute("SELECT n FROM label_clock").fetchone()
        now[0] = "2026-12-05T06:00:00.000+00:00"  # set right
        add_model(store, 1, "2026-12-05T07:00:00+00:00")
        write_meta(db, 1, seen)
        now[0] = "2026-12-05T08:00:00.000+00:00"
        store.add_items([Item("c", "text c", "bug")], "import")  # after v1's read
        assert store.delete_items(["c"], user_id="dpo").models == []  # neither rule
        assert store.delete_items(["a"], user_id="dpo").models == [1]
    done = run(db, "delete", "b", "--yes")
    assert done.exit_code == 0, done.output
    assert "Models: v1 was trained while it had a label" in done.output


def test_a_model_is_named_by_its_label_seq_from_a_real_retrain(tmp_path: Path):
    """The reviewer's case end to end: a retrain after the clock was set right."""
    import asyncio

    from bot.learning import retrain
    from tests.bot.test_gate_gold import swapped_batch

    first, _gold, _batch, settings, registry = swapped_batch(tmp_path)
    ahead = [timedelta(days=1)]
    start = datetime.now(UTC)

    def clock() -> str:
        return (start + ahead[0]).isoformat(timespec="milliseconds")

    with Store.open(settings.db, clock=clock) as store:
        store.add_items(first, "import")  # labelled while the clock ran a day ahead
        ahead[0] = timedelta(seconds=1)  # set right
        v1 = asyncio.run(
            retrain.retrain(store, settings, registry, champion=None, triggered_by="cli")
        )
        assert v1.status == "promoted", v1.reason
        done = store.delete_items([first[0].id], user_id="cli:dpo", reason="erasure")
        assert done.models == [v1.version]


def test_find_finds_an_address_by_its_domain_or_its_local_part(tmp_path: Path):
    """Since the whole-address rule, a term with . - _ + and no @ found nothing inside an
    address: `hitl find acme-corp.com` and `hitl find jean-luc.picard` said 0 items."""
    db = tmp_path / "hitl.db"
    path = tmp_path / "people.jsonl"
    rows = [
        {"id": "M-1", "text": "please reply to marie@acme-corp.com"},
        {"id": "M-2", "text": "from paul@acme-corp.com.au"},  # another domain
        {"id": "M-3", "text": "from x@mail.acme-corp.com"},  # a longer one
        {"id": "M-4", "text": "see acme-corp.com/help"},
        {"id": "J-1", "text": "ticket from Jean-Luc.Picard@fleet.org"},
        {"id": "J-2", "text": "from jean-luc.picard.jr@fleet.org"},  # a longer local part
        {"id": "J-3", "text": "from old.jean-luc.picard@fleet.org"},
        {"id": "J-4", "text": "x", "meta": {"email": "jean-luc.picard@fleet.org"}},
        {"id": "D-1", "text": "mail jane.doe@example.com"},
        {"id": "A-1", "text": "write to <ann@example.com>"},
        {"id": "A-2", "text": "write to joann@example.com"},
        {"id": "A-3", "text": "write to ann@example.com.au"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(db, "import", str(path)).exit_code == 0
    assert run(db, "find", "acme-corp.com", "--ids").stdout == "M-1\nM-4\n"
    assert run(db, "find", "jean-luc.picard", "--ids").stdout == "J-1\nJ-4\n"
    assert run(db, "find", "example.com", "--ids").stdout == "D-1\nA-1\nA-2\n"
    # as today: a term with @ is a whole address; a plain word is a whole word
    assert run(db, "find", "ann@example.com", "--ids").stdout == "A-1\n"
    assert run(db, "find", "doe", "--ids").stdout == "D-1\n"


async def test_the_api_reads_the_models_metadata_off_the_event_loop(
    fake_slack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """DELETE /api/items/{id} names the models whose training read the item's label from their
    metadata files (a file per model version, one a night for a year): read on the event loop
    before, in the handler's transaction."""
    import threading

    from tests.bot.test_api import AUTH, start_api

    read_in: list[str] = []
    real = Path.read_text

    def watched(self: Path, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if self.parent.name.endswith(".models") and self.suffix == ".json":
            read_in.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    folder = tmp_path / "hitl.db.models"
    folder.mkdir()
    (folder / "v1.json").write_text(
        json.dumps({"version": 1, "extra": {"label_seq": 5}}), encoding="utf-8"
    )
    async for api in start_api(fake_slack, tmp_path):
        assert Path(api.rt.settings.models_dir) == folder
        sent = await api.http.post(
            "/api/items", json={"items": [{"id": "T-1", "text": "call me"}]}, headers=AUTH
        )
        assert sent.status == 200
        monkeypatch.setattr(Path, "read_text", watched)
        deleted = await api.http.delete("/api/items/T-1", headers=AUTH)
        assert deleted.status == 200
    assert read_in and threading.main_thread().name not in read_in, read_in
