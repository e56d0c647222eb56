"""Webhooks on resolution: signed, retried with backoff from the outbox, surviving a restart.

The receiver is a small aiohttp app on 127.0.0.1 that follows a script (fail, hang, ok).
Time is driven by passing ``now`` to ``deliver_due``; the receiver's hang is released at the
end, and the sender's own timeout is what ends that attempt.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.config import Settings
from bot.runtime import Runtime, make_client
from bot.sandbox import FakeSlack
from bot.store import Store
from bot.webhooks import (
    BASE_DELAY,
    DELIVERY_HEADER,
    MAX_ATTEMPTS,
    SIGNATURE_HEADER,
    TIMEOUT,
    backoff,
    deliver_due,
    run_deliveries,
    sign,
    verify,
)
from tests.bot.harness import Bot
from tests.bot.test_api import T0, WEBHOOK_SECRET, post_json, start_api

BASE = 10.0


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int | None  # None: the receiver never answered in time


@dataclass
class Receiver:
    """A producer's webhook endpoint: answers each request as ``script`` says, in order
    (the last step repeats)."""

    script: list[str]
    url: str = ""
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Queue = field(default_factory=asyncio.Queue)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        step = self.script[min(len(self.received), len(self.script) - 1)]
        status = {"fail": 500, "hang": None, "ok": 204}[step]
        self.received.append(Received(dict(request.headers), body, status))
        self.arrived.put_nowait(len(self.received))
        if step == "hang":
            await self.release.wait()
        return web.Response(status=status or 200)

    @property
    def delivered(self) -> list[Received]:
        return [r for r in self.received if r.answered is not None and 200 <= r.answered < 300]


async def serve_receiver(script: list[str]) -> AsyncIterator[Receiver]:
    receiver = Receiver(script)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        receiver.url = str(server.make_url("/hook"))
        try:
            yield receiver
        finally:
            receiver.release.set()


@pytest.fixture
async def flaky_receiver() -> AsyncIterator[Receiver]:
    async for receiver in serve_receiver(["fail", "hang", "ok"]):
        yield receiver


@pytest.fixture
async def failing_receiver() -> AsyncIterator[Receiver]:
    async for receiver in serve_receiver(["fail"]):
        yield receiver


@pytest.fixture
async def good_receiver() -> AsyncIterator[Receiver]:
    async for receiver in serve_receiver(["ok"]):
        yield receiver


def at(seconds: float):
    return T0 + timedelta(seconds=seconds)


def freeze(bot: Bot) -> None:
    """The store and the runtime both read T0 as the time."""
    bot.store.now = lambda: T0.isoformat(timespec="milliseconds")
    bot.rt.clock = lambda: T0


async def resolved_item_with_callback(bot: Bot, url: str, item_id: str = "T-1") -> None:
    response = await post_json(
        bot, "/api/predict", {"text": "Refund me", "id": item_id, "callback_url": url}
    )
    assert response.status == 200
    result = bot.store.record_answer(item_id, "U1", "billing", source="button", dedupe_key="k1")
    assert result.status == "resolved"


# -- the signature --


def test_signature_verifies_and_rejects_tampering_other_secrets_and_stale_times():
    body = b'{"id":"T-1","label":"billing"}'
    header = sign("s3cret", body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify("s3cret", header, body, now=1_700_000_060)
    assert not verify("s3cret", header, body + b" ", now=1_700_000_060)
    assert not verify("other", header, body, now=1_700_000_060)
    assert not verify("s3cret", header, body, now=1_700_000_000 + 301)
    assert not verify("s3cret", "v1=abc", body, now=1_700_000_000)


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_webhooks_section() -> str:
    return README.read_text(encoding="utf-8").split("### Webhooks", 1)[1].split("\n## ", 1)[0]


def test_the_readme_verification_snippet_accepts_our_signature():
    webhooks = readme_webhooks_section()
    snippet = webhooks.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102 - our own README
    body = b'{"id":"T-1","label":"billing"}'
    header = sign("s3cret", body, int(time.time()))
    assert namespace["verify"]("s3cret", header, body)
    assert not namespace["verify"]("s3cret", header, body.replace(b"billing", b"bug"))
    assert not namespace["verify"]("s3cret", sign("s3cret", body, 1_000_000_000), body)


def test_the_readme_states_the_retry_schedule():
    text = " ".join(readme_webhooks_section().split())
    hours = sum(backoff(n) for n in range(1, MAX_ATTEMPTS)) / 3600
    assert f"{MAX_ATTEMPTS} attempts over about three and a half hours" in text
    assert 3.25 <= hours < 3.75
    assert f"within {TIMEOUT:g} seconds" in text
    assert f"after {BASE_DELAY:g} s, {2 * BASE_DELAY:g} s" in text


def test_backoff_doubles_up_to_a_cap():
    assert [backoff(n, 10.0, 60.0) for n in (1, 2, 3, 4, 5)] == [10.0, 20.0, 40.0, 60.0, 60.0]


# -- delivery --


async def test_receiver_that_fails_twice_gets_one_signed_delivery_with_backoff(
    fake_slack: FakeSlack, tmp_path: Path, flaky_receiver: Receiver
):
    async for bot in start_api(fake_slack, tmp_path):
        freeze(bot)
        await resolved_item_with_callback(bot, flaky_receiver.url)

        first = await deliver_due(bot.rt, now=at(0), base=BASE)
        assert first.attempted == 1 and len(first.retrying) == 1  # 500
        assert (await deliver_due(bot.rt, now=at(BASE - 1), base=BASE)).attempted == 0

        second = await deliver_due(bot.rt, now=at(BASE), base=BASE, answer_within=0.2)
        assert len(second.retrying) == 1  # no answer in time
        [row] = bot.store.deliveries("T-1")
        assert row["last_error"] == "no answer within 0.2 s"
        assert row["next_attempt_at"] == at(BASE + 2 * BASE).isoformat(timespec="milliseconds")
        early = await deliver_due(bot.rt, now=at(BASE + 2 * BASE - 1), base=BASE)
        assert early.attempted == 0

        third = await deliver_due(bot.rt, now=at(3 * BASE), base=BASE)
        assert third.delivered == [row["id"]]
        assert (await deliver_due(bot.rt, now=at(86_400), base=BASE)).attempted == 0

        [row] = bot.store.deliveries("T-1")
        assert (row["status"], row["attempts"]) == ("delivered", 3)
        assert [r.answered for r in flaky_receiver.received] == [500, None, 204]
        [delivered] = flaky_receiver.delivered
        assert json.loads(delivered.body) == {
            "id": "T-1",
            "label": "billing",
            "votes": 1,
            "resolved_at": T0.isoformat(timespec="milliseconds"),
            "model_label": None,
        }
        signed_at = int(at(3 * BASE).timestamp())
        assert delivered.headers[SIGNATURE_HEADER].startswith(f"t={signed_at},v1=")
        assert verify(
            WEBHOOK_SECRET, delivered.headers[SIGNATURE_HEADER], delivered.body, now=signed_at
        )
        assert delivered.headers["Content-Type"] == "application/json"
        assert {r.headers[DELIVERY_HEADER] for r in flaky_receiver.received} == {str(row["id"])}


async def test_a_pending_delivery_survives_a_restart(
    fake_slack: FakeSlack, tmp_path: Path, failing_receiver: Receiver
):
    async for bot in start_api(fake_slack, tmp_path):
        freeze(bot)
        await resolved_item_with_callback(bot, failing_receiver.url)
        assert len((await deliver_due(bot.rt, now=at(0), base=BASE)).retrying) == 1
    # The app and its store are closed; the next one opens the same database file.
    failing_receiver.script[:] = ["fail", "ok"]
    async for bot in start_api(fake_slack, tmp_path):
        done = await deliver_due(bot.rt, now=at(BASE), base=BASE)
        assert len(done.delivered) == 1
        [row] = bot.store.deliveries("T-1")
        assert (row["status"], row["attempts"]) == ("delivered", 2)
    assert [r.answered for r in failing_receiver.received] == [500, 204]


async def test_delivery_gives_up_after_max_attempts(
    fake_slack: FakeSlack, tmp_path: Path, failing_receiver: Receiver
):
    async for bot in start_api(fake_slack, tmp_path):
        freeze(bot)
        await resolved_item_with_callback(bot, failing_receiver.url)
        rounds = [
            await deliver_due(bot.rt, now=at(t), base=BASE, max_attempts=3)
            for t in (0, BASE, 3 * BASE, 86_400)
        ]
        assert [(len(r.retrying), len(r.failed)) for r in rounds] == [
            (1, 0),
            (1, 0),
            (0, 1),
            (0, 0),
        ]
        [row] = bot.store.deliveries("T-1")
        assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 3, "HTTP 500")
        assert len(failing_receiver.received) == 3


async def test_unreachable_receiver_is_retried(fake_slack: FakeSlack, tmp_path: Path):
    closed = TestServer(web.Application(), host="127.0.0.1")
    await closed.start_server()
    url = str(closed.make_url("/hook"))
    await closed.close()  # nothing listens there now
    async for bot in start_api(fake_slack, tmp_path):
        freeze(bot)
        await resolved_item_with_callback(bot, url)
        done = await deliver_due(bot.rt, now=at(0), base=BASE)
        assert len(done.retrying) == 1
        [row] = bot.store.deliveries("T-1")
        assert row["status"] == "pending" and row["last_error"].startswith("ClientConnectorError")


async def test_an_item_reopened_before_delivery_sends_nothing(
    fake_slack: FakeSlack, tmp_path: Path, good_receiver: Receiver
):
    async for bot in start_api(fake_slack, tmp_path):
        freeze(bot)
        await resolved_item_with_callback(bot, good_receiver.url)
        assert bot.store.undo_resolution("T-1", "U1", since=T0.isoformat())
        done = await deliver_due(bot.rt, now=at(0), base=BASE)
        assert len(done.cancelled) == 1 and done.attempted == 0
        assert bot.store.deliveries("T-1")[0]["status"] == "cancelled"
        assert good_receiver.received == []


async def test_items_without_callback_url_queue_no_delivery(fake_slack: FakeSlack, tmp_path: Path):
    async for bot in start_api(fake_slack, tmp_path):
        await post_json(bot, "/api/predict", {"text": "Refund me", "id": "T-9"})
        bot.store.record_answer("T-9", "U1", "billing", source="button", dedupe_key="k9")
        assert bot.store.deliveries() == []
        assert (await deliver_due(bot.rt, now=at(86_400))).attempted == 0


async def test_background_worker_delivers_what_the_outbox_holds_at_start(
    fake_slack: FakeSlack, tmp_path: Path, good_receiver: Receiver
):
    # Resolved while the server was down: the outbox row waits in the database.
    async for bot in start_api(fake_slack, tmp_path):
        await resolved_item_with_callback(bot, good_receiver.url)
    async for bot in start_api(fake_slack, tmp_path):
        worker = asyncio.create_task(run_deliveries(bot.rt))
        try:
            assert await asyncio.wait_for(good_receiver.arrived.get(), 5) == 1
        finally:
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker
        [request] = good_receiver.received
        now = int(request.headers[SIGNATURE_HEADER].split(",")[0][2:])
        assert verify(WEBHOOK_SECRET, request.headers[SIGNATURE_HEADER], request.body, now=now)
        assert json.loads(request.body)["label"] == "billing"


async def test_no_webhook_secret_means_no_deliveries(tmp_path: Path):
    settings = Settings(db=tmp_path / "hitl.db")
    with Store.open(settings.db) as store:
        rt = Runtime(settings=settings, store=store, client=make_client(settings))
        assert (await deliver_due(rt, now=at(0))).attempted == 0
        await asyncio.wait_for(run_deliveries(rt), 5)  # returns at once: nothing to do
