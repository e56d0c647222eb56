"""Webhook retries, and a lost post's wait, when the server's wall clock steps back (a clock that
ran ahead, set right by NTP): what was scheduled by the clock that ran ahead waits as long as
it was meant to, not until the clock catches up with it (an hour after a step of an hour).

Time is driven by passing ``now`` to ``deliver_due`` (and by the store's clock for the
dispatcher), as in test_webhooks; receivers listen on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.api.webhooks import MAX_DELAY, TIMEOUT, backoff, deliver_due
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.test_api import T0, start_api
from tests.bot.test_dispatch import bot_with
from tests.bot.test_webhooks import (
    BASE,
    LOOPBACK,
    at,
    freeze,
    resolved_item_with_callback,
    serve_receiver,
)
from tests.fake_slack import CHANNEL
from tests.query_plans import query_plans

AN_HOUR = 3600.0


def iso(seconds: float) -> str:
    return at(seconds).isoformat(timespec="milliseconds")


def schedule(store: Store, item_id: str, attempts: int, due: str) -> None:
    """The item's delivery as a failed attempt left it: ``attempts`` made, due at ``due``."""
    store.db.execute(
        "UPDATE deliveries SET attempts = ?, next_attempt_at = ? WHERE item_id = ?",
        [attempts, due, item_id],
    )
    store.db.conn.commit()


async def test_a_retry_due_in_10_s_goes_out_after_the_clock_steps_back_an_hour(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for receiver in serve_receiver(["fail", "ok"]):
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
            freeze(bot)
            await resolved_item_with_callback(bot, receiver.url)
            first = await deliver_due(bot.rt, now=at(0), base=BASE)
            assert len(first.retrying) == 1  # 500: due again at(10)
            # 5 s on, the clock is stepped back an hour: the retry is due in 5 s, not in 1 h 5 s
            stepped = -AN_HOUR + 5
            assert (await deliver_due(bot.rt, now=at(stepped), base=BASE)).delivered == [
                first.retrying[0]
            ]
            [row] = bot.store.deliveries("T-1")
            assert (row["status"], row["attempts"]) == ("delivered", 2)
            assert len(receiver.delivered) == 1


async def test_a_delivery_left_due_an_hour_ahead_goes_out_now_and_an_honest_one_waits(
    fake_slack: FakeSlack, tmp_path: Path
):
    # The store as a clock an hour ahead left it, read by a server started since with the
    # clock set right: T-1 was attempted once and is due again "in an hour" (its backoff was
    # 10 s); T-2 and T-3 are honestly due in 10 s and in 2,560 s (after their 1st and 9th
    # failures); T-4 is claimed, its lease running out in TIMEOUT + 60 s.
    async for receiver in serve_receiver(["ok"]):
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
            freeze(bot)
            for item_id in ("T-1", "T-2", "T-3", "T-4"):
                await resolved_item_with_callback(bot, receiver.url, item_id)
            schedule(bot.store, "T-1", 1, iso(AN_HOUR + BASE))
            schedule(bot.store, "T-2", 1, iso(BASE))
            schedule(bot.store, "T-3", 9, iso(backoff(9, BASE)))
            schedule(bot.store, "T-4", 2, iso(TIMEOUT + 60))
            assert backoff(9, BASE) < MAX_DELAY

            done = await deliver_due(bot.rt, now=at(0), base=BASE)
            ids = {d["item_id"]: d["id"] for d in bot.store.deliveries()}
            assert done.delivered == [ids["T-1"]] and done.attempted == 1
            assert (await deliver_due(bot.rt, now=at(BASE - 1), base=BASE)).attempted == 0
            later = await deliver_due(bot.rt, now=at(TIMEOUT + 60), base=BASE)
            assert sorted(later.delivered) == [ids["T-2"], ids["T-4"]]
            statuses = {d["item_id"]: d["status"] for d in bot.store.deliveries()}
            assert statuses == {
                "T-1": "delivered",
                "T-2": "delivered",
                "T-3": "pending",
                "T-4": "delivered",
            }


async def test_a_clock_stepped_back_less_than_a_wait_sends_nothing_early(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for receiver in serve_receiver(["fail"]):
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
            freeze(bot)
            await resolved_item_with_callback(bot, receiver.url)
            assert len((await deliver_due(bot.rt, now=at(0), base=BASE)).retrying) == 1
            assert (await deliver_due(bot.rt, now=at(5), base=BASE)).attempted == 0
            # stepped back 3 s: the retry is due 8 s later by this clock, as it was scheduled
            assert (await deliver_due(bot.rt, now=at(2), base=BASE)).attempted == 0
            assert (await deliver_due(bot.rt, now=at(BASE - 1), base=BASE)).attempted == 0
            assert (await deliver_due(bot.rt, now=at(BASE), base=BASE)).attempted == 1


def test_looking_for_deliveries_due_too_late_reads_the_due_index(store: Store):
    plans = query_plans(store, lambda: store.pull_forward_deliveries(iso(0), [iso(70)] * 13))
    assert plans
    for sql, plan in plans:
        steps = " ".join(plan)
        assert "USING INDEX deliveries_due" in steps and "SCAN deliveries" not in steps, (sql, plan)


async def test_a_lost_post_made_before_the_clock_stepped_back_settles_in_post_settle_seconds(
    fake_slack: FakeSlack, tmp_path: Path
):
    # Its answer lost, a post is looked for in the history until post_settle seconds have
    # passed since it was made; the clock then steps back an hour. It settled only when the
    # clock caught up with the post's time: an hour on, with the history read every 10 s.
    clock = [T0]
    async for bot in await bot_with(fake_slack, tmp_path):
        bot.store.now = lambda: clock[0].isoformat(timespec="milliseconds")
        bot.fake.fail("chat.postMessage", status=500, times=1)
        assert await bot.dispatcher.fill() == 0
        state = bot.dispatcher.channel_state(CHANNEL)
        [lost] = state.unsure
        clock[0] = T0 - timedelta(hours=1)
        state.next_attempt = 0
        await bot.dispatcher.fill()  # looked for, not found: held (a slow Slack may store it)
        assert state.unsure == {lost}
        assert lost in {a["item_id"] for a in bot.store.post_attempts()}
        state.next_attempt = state.history_retry_at = 0
        bot.dispatcher.post_settle = 0.0  # post_settle seconds have passed since it was seen
        await bot.dispatcher.fill()  # not found: counted as not posted, queued again
        assert state.unsure == set()
        assert lost not in {a["item_id"] for a in bot.store.post_attempts()}


def test_pulling_many_deliveries_forward_is_one_statement_however_many(store: Store):
    """Every waiting delivery due impossibly late is set due in one statement: they were read
    into Python and written back 500 ids at a time, each statement walking the due index's
    range again (226 s at a million waiting on a dead receiver, on the event loop)."""
    store.db.conn.execute("PRAGMA foreign_keys = OFF")  # deliveries alone, no items behind them
    with store.db.conn:
        store.db.conn.executemany(
            "INSERT INTO deliveries (item_id, url, status, attempts, next_attempt_at,"
            " created_at, receiver) VALUES (?, 'https://hooks.example/x', 'pending', 1, ?, ?,"
            " 'hooks.example')",
            [(f"i{n}", iso(AN_HOUR), iso(0)) for n in range(1_200)],
        )
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    try:
        pulled = store.pull_forward_deliveries(iso(0), [iso(70)] * 13)
    finally:
        store.db.conn.set_trace_callback(None)
    assert pulled == 1_200
    touching = [sql for sql in statements if "deliveries" in sql]
    assert len(touching) <= 2, touching  # a look, and one write
    assert store.db.execute(
        "SELECT count(*) FROM deliveries WHERE next_attempt_at = ?", [iso(0)]
    ).fetchone() == (1_200,)
