"""Webhooks on resolution: signed, retried with backoff from the outbox, surviving a restart.

The receiver is a small aiohttp app on 127.0.0.1 that follows a script (fail, hang, ok).
Time is driven by passing ``now`` to ``deliver_due``; the receiver's hang is released at the
end, and the sender's own timeout is what ends that attempt.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from bot.api import webhooks
from bot.api.routes import ApiItem
from bot.api.webhooks import (
    BASE_DELAY,
    DELIVERY_HEADER,
    MAX_ATTEMPTS,
    SIGNATURE_HEADER,
    TIMEOUT,
    DeliveryRound,
    backoff,
    deliver_due,
    run_deliveries,
    sign,
    verify,
)
from bot.config import Settings
from bot.runtime import Runtime, make_client
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot
from tests.bot.test_api import T0, WEBHOOK_SECRET, post_json, start_api, stored

BASE = 10.0
# The receivers listen on loopback, which webhooks may reach only when the allow-list says so.
LOOPBACK = {"webhook_allow": ("127.0.0.1",)}


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
    result = bot.store.record_answer(
        item_id, "U1", "billing", source="button", dedupe_key=f"k-{item_id}"
    )
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


def readme_verify() -> Callable[..., bool]:
    """The receiver's ``verify`` that README shows, run as a producer would copy it."""
    code = re.search(r"```python\n(import hashlib.*?def verify\(.*?)```", README.read_text(), re.S)
    assert code is not None, "README's webhook verify example is gone"
    scope: dict[str, Any] = {}
    exec(code.group(1), scope)  # noqa: S102 - the README's own example
    return scope["verify"]


@pytest.mark.parametrize(
    "forged",
    ["t={t},v1=\u00e9", "t={t},v1=\uff41bc", "t=\u00b2,v1=abc", "t=\u00b2{t},v1=abc", "t=,v1=", ""],
    ids=["v1 not ascii", "v1 fullwidth", "t superscript", "t with superscript", "empty", "none"],
)
def test_a_forged_signature_header_is_refused_not_raised_by_both_verifies(forged: str):
    # hmac.compare_digest raises TypeError on text that is not ASCII, and int() refuses "²",
    # which str.isdigit() takes: a receiver following README answered such a header with a 500
    body, now = b'{"id":"T-1"}', int(time.time())
    header = forged.format(t=now)
    assert readme_verify()("s3cret", header, body) is False
    assert verify("s3cret", header, body, now=now) is False
    good = sign("s3cret", body, now)
    assert readme_verify()("s3cret", good, body) and verify("s3cret", good, body, now=now)


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


def observed(method: Callable[..., None], event: asyncio.Event) -> Callable[..., None]:
    """``method``, which sets ``event`` each time it has run."""

    def call(*args: object, **kwargs: object) -> None:
        method(*args, **kwargs)
        event.set()

    return call


async def test_a_delivery_is_recorded_when_its_receiver_answers_not_when_the_round_ends(
    fake_slack: FakeSlack, tmp_path: Path, good_receiver: Receiver, monkeypatch
):
    # A receiver that took its webhook must not get it again after a restart because another
    # receiver of the same round was still hanging.
    async for slow in serve_receiver(["hang"]):
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
            freeze(bot)
            await resolved_item_with_callback(bot, slow.url, "T-1")
            await resolved_item_with_callback(bot, good_receiver.url, "T-2")
            recorded = asyncio.Event()  # the real finish_delivery runs, observed
            monkeypatch.setattr(
                bot.store, "finish_delivery", observed(bot.store.finish_delivery, recorded)
            )
            round_ = asyncio.create_task(deliver_due(bot.rt, now=at(0), base=BASE))
            await slow.arrived.get()  # T-1's receiver holds its answer
            await asyncio.wait_for(recorded.wait(), timeout=10)  # T-2's outcome is stored
            statuses = {d["item_id"]: d["status"] for d in bot.store.deliveries()}
            assert statuses == {"T-1": "pending", "T-2": "delivered"}  # T-1: claimed, awaited
            slow.release.set()
            done = await round_
            assert sorted(done.delivered) == [d["id"] for d in bot.store.deliveries()]


async def test_a_receiver_that_hangs_does_not_hold_up_another_receivers_webhook(
    fake_slack: FakeSlack, tmp_path: Path, good_receiver: Receiver
):
    # Ten decided items whose receiver never answers, then one whose receiver does: a round
    # used to give all 8 of its sending slots to the first, and the last waited for their
    # timeouts (over a minute in production).
    async for slow in serve_receiver(["hang"]):
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
            freeze(bot)
            for n in range(10):
                await resolved_item_with_callback(bot, slow.url, f"S-{n}")
            await resolved_item_with_callback(bot, good_receiver.url, "G-1")
            round_ = asyncio.create_task(
                deliver_due(bot.rt, now=at(0), base=BASE, answer_within=60)
            )
            await asyncio.wait_for(good_receiver.arrived.get(), timeout=10)
            assert slow.received and len(slow.received) <= webhooks.PER_RECEIVER
            slow.release.set()
            done = await round_
            assert len(done.delivered) == 1 + len(slow.received)  # the rest: the next rounds
            pending = [d for d in bot.store.deliveries() if d["status"] == "pending"]
            assert len(pending) == 10 - len(slow.received) and all(
                d["attempts"] == 0 for d in pending
            )


async def test_receiver_that_fails_twice_gets_one_signed_delivery_with_backoff(
    fake_slack: FakeSlack, tmp_path: Path, flaky_receiver: Receiver
):
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
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
            "status": "resolved",
        }
        signed_at = int(at(3 * BASE).timestamp())
        assert delivered.headers[SIGNATURE_HEADER].startswith(f"t={signed_at},v1=")
        assert verify(
            WEBHOOK_SECRET, delivered.headers[SIGNATURE_HEADER], delivered.body, now=signed_at
        )
        assert delivered.headers["Content-Type"] == "application/json"
        assert {r.headers[DELIVERY_HEADER] for r in flaky_receiver.received} == {row["key"]}


async def test_a_pending_delivery_survives_a_restart(
    fake_slack: FakeSlack, tmp_path: Path, failing_receiver: Receiver
):
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
        freeze(bot)
        await resolved_item_with_callback(bot, failing_receiver.url)
        assert len((await deliver_due(bot.rt, now=at(0), base=BASE)).retrying) == 1
    # The app and its store are closed; the next one opens the same database file.
    failing_receiver.script[:] = ["fail", "ok"]
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
        done = await deliver_due(bot.rt, now=at(BASE), base=BASE)
        assert len(done.delivered) == 1
        [row] = bot.store.deliveries("T-1")
        assert (row["status"], row["attempts"]) == ("delivered", 2)
    assert [r.answered for r in failing_receiver.received] == [500, 204]


async def test_delivery_gives_up_after_max_attempts(
    fake_slack: FakeSlack, tmp_path: Path, failing_receiver: Receiver
):
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
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
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
        freeze(bot)
        await resolved_item_with_callback(bot, url)
        done = await deliver_due(bot.rt, now=at(0), base=BASE)
        assert len(done.retrying) == 1
        [row] = bot.store.deliveries("T-1")
        assert row["status"] == "pending" and row["last_error"].startswith("ClientConnectorError")


async def test_an_item_reopened_before_delivery_sends_nothing(
    fake_slack: FakeSlack, tmp_path: Path, good_receiver: Receiver
):
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
        freeze(bot)
        await resolved_item_with_callback(bot, good_receiver.url)
        assert bot.store.undo_resolution("T-1", "U1", since=T0.isoformat())
        done = await deliver_due(bot.rt, now=at(0), base=BASE)
        assert len(done.cancelled) == 1 and done.attempted == 0
        assert bot.store.deliveries("T-1")[0]["status"] == "cancelled"
        assert good_receiver.received == []


async def test_a_label_taken_back_after_its_webhook_is_told_to_the_producer(
    fake_slack: FakeSlack, tmp_path: Path, good_receiver: Receiver
):
    # An Undo or `hitl labels remove` after the webhook was delivered told the producer
    # nothing: it went on using a label the team had taken back.
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
        freeze(bot)
        await resolved_item_with_callback(bot, good_receiver.url)
        await resolved_item_with_callback(bot, good_receiver.url, "T-2")
        assert len((await deliver_due(bot.rt, now=at(0), base=BASE)).delivered) == 2
        assert bot.store.undo_resolution("T-1", "U1", since=T0.isoformat())
        bot.store.remove_label("T-2", user_id="cli:admin", reason="not a refund")
        assert len((await deliver_due(bot.rt, now=at(1), base=BASE)).delivered) == 2
        told = {(b := json.loads(r.body))["id"]: b for r in good_receiver.received[2:]}
        first = json.loads(good_receiver.received[0].body)
        assert first["label"] == "billing" and first["status"] == "resolved"
        model = first["model_label"]
        assert told == {
            "T-1": {"id": "T-1", "label": None, "votes": 0, "resolved_at": None,
                    "model_label": model, "status": "posted"},  # asked again
            "T-2": {"id": "T-2", "label": None, "votes": 0, "resolved_at": None,
                    "model_label": model, "status": "skipped"},  # set aside
        }  # fmt: skip
        # decided again: the producer hears the new label (and nothing more is waiting)
        bot.store.record_answer("T-1", "U2", "bug", source="button", dedupe_key="k-again")
        assert len((await deliver_due(bot.rt, now=at(2), base=BASE)).delivered) == 1
        assert json.loads(good_receiver.received[-1].body)["label"] == "bug"
        assert await deliver_due(bot.rt, now=at(86_400), base=BASE) == DeliveryRound()


async def test_items_without_callback_url_queue_no_delivery(fake_slack: FakeSlack, tmp_path: Path):
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
        await post_json(bot, "/api/predict", {"text": "Refund me", "id": "T-9"})
        bot.store.record_answer("T-9", "U1", "billing", source="button", dedupe_key="k9")
        assert bot.store.deliveries() == []
        assert (await deliver_due(bot.rt, now=at(86_400))).attempted == 0


async def test_background_worker_delivers_what_the_outbox_holds_at_start(
    fake_slack: FakeSlack, tmp_path: Path, good_receiver: Receiver
):
    # Resolved while the server was down: the outbox row waits in the database.
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
        await resolved_item_with_callback(bot, good_receiver.url)
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
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


# -- where webhooks may go --


class FakeDNS(AbstractResolver):
    """Name resolution as a DNS server would answer it: each name maps to its addresses."""

    def __init__(self, names: dict[str, list[str]]):
        self.names = names
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(f"{host}: no such name")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in self.names[host]
        ]

    async def close(self) -> None:
        pass


# (callback_url, where it points, why it is refused); {port} is the loopback receiver's.
INTERNAL = [
    ("http://127.0.0.1:{port}/hook", "127.0.0.1", "a loopback address"),
    ("http://[::1]:{port}/hook", "::1", "a loopback address"),
    ("http://0.0.0.0:{port}/hook", "0.0.0.0", "an unspecified address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "a link-local address"),
    ("http://10.0.0.5/hook", "10.0.0.5", "a private address"),
    ("http://2130706433:{port}/hook", "2130706433 (127.0.0.1)", "a loopback address"),
    ("http://0x7f.1:{port}/hook", "0x7f.1 (127.0.0.1)", "a loopback address"),
    ("http://[::ffff:127.0.0.1]:{port}/hook", "::ffff:127.0.0.1 (127.0.0.1)", "a loopback address"),
    ("http://[2002:7f00:1::]/hook", "2002:7f00:1:: (127.0.0.1)", "a loopback address"),  # 6to4
    ("http://[2002:a00:1::]/hook", "2002:a00:1:: (10.0.0.1)", "a private address"),
    ("http://224.0.0.1/hook", "224.0.0.1", "a multicast address"),
    ("http://240.0.0.1/hook", "240.0.0.1", "a reserved address"),
    ("http://[fec0::1]/hook", "fec0::1", "a site-local address"),  # deprecated, not "private"
    (
        "http://metadata.google.internal/computeMetadata/v1/",
        "metadata.google.internal",
        "an internal host name",
    ),
    ("http://localhost:{port}/hook", "localhost", "an internal host name"),
]


async def test_callback_urls_to_internal_addresses_are_refused_with_the_reason(
    fake_slack: FakeSlack, tmp_path: Path, good_receiver: Receiver
):
    port = good_receiver.url.split(":")[2].split("/")[0]
    urls = [url.format(port=port) for url, _, _ in INTERNAL]
    async for bot in start_api(fake_slack, tmp_path):
        items = [{"text": f"item {n}", "callback_url": url} for n, url in enumerate(urls)]
        response = await post_json(bot, "/api/items", {"items": items})
        assert response.status == 200
        body = await response.json()
        assert (body["created"], body["rejected"]) == (0, len(INTERNAL))
        for result, (_, host, why) in zip(body["results"], INTERNAL, strict=True):
            assert result["field"] == f"items[{result['index']}].callback_url"
            assert result["error"] == (
                f"items[{result['index']}].callback_url points at {host}, {why}; webhooks only"
                " go to public addresses unless the server's HITL_WEBHOOK_ALLOW names it"
            )
        single = await post_json(bot, "/api/predict", {"text": "hi", "callback_url": urls[0]})
        assert single.status == 400
        assert (await single.json())["field"] == "callback_url"
        assert stored(bot) == 0 and bot.store.deliveries() == []
    assert good_receiver.received == []


# (callback_url, why no webhook could reach it): each was answered "registered" and never
# delivered (port 0, the escaped host) or refused naming a host that was fine (the backslash).
UNREACHABLE = [
    (
        "http://example.com:0/hook",
        " has port 0, which nothing listens on; give the receiver's port, or none for the"
        " scheme's own (80 or 443)",
    ),
    (
        "https://ex%61mple.com/hook",
        "'s host ex%61mple.com is written with percent escapes; write its characters as they"
        " are (example.com, not ex%61mple.com)",
    ),
    (
        "http://127.0.0.1\\@example.com/hook",
        " has a backslash (\\) before its path; URLs separate with /",
    ),
]


async def test_callback_urls_no_webhook_could_reach_are_refused_saying_what_to_fix(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in start_api(fake_slack, tmp_path):
        items = [
            {"text": f"item {n}", "callback_url": url} for n, (url, _) in enumerate(UNREACHABLE)
        ]
        response = await post_json(bot, "/api/items", {"items": items})
        body = await response.json()
        assert (response.status, body["created"], body["rejected"]) == (200, 0, len(UNREACHABLE))
        for result, (_, why) in zip(body["results"], UNREACHABLE, strict=True):
            field = f"items[{result['index']}].callback_url"
            assert (result["field"], result["error"]) == (field, f"{field}{why}")
        single = await post_json(
            bot, "/api/predict", {"text": "hi", "callback_url": UNREACHABLE[0][0]}
        )
        assert (single.status, (await single.json())["field"]) == (400, "callback_url")
        assert stored(bot) == 0 and bot.store.deliveries() == []


@pytest.mark.parametrize("url", [url for url, _, _ in INTERNAL if "{port}" in url])
async def test_an_internal_callback_url_stored_before_is_refused_at_delivery(
    fake_slack: FakeSlack, tmp_path: Path, good_receiver: Receiver, url: str
):
    port = good_receiver.url.split(":")[2].split("/")[0]
    async for bot in start_api(fake_slack, tmp_path):
        freeze(bot)
        # A row from before callback_url was checked on arrival.
        old = ApiItem(id="T-1", text="Refund me", meta={}, callback_url=url.format(port=port))
        bot.store.add_api_items([old])
        bot.store.record_answer("T-1", "U1", "billing", source="button", dedupe_key="k1")
        done = await deliver_due(bot.rt, now=at(0), base=BASE)
        assert len(done.failed) == 1 and done.retrying == []
        [row] = bot.store.deliveries("T-1")
        assert row["status"] == "failed" and row["last_error"].startswith("refused: ")
        assert "HITL_WEBHOOK_ALLOW" in row["last_error"]
    assert good_receiver.received == []


@pytest.mark.parametrize(
    "addresses", [["127.0.0.1"], ["93.184.216.34", "127.0.0.1"], ["::1"], ["10.1.2.3"]]
)
async def test_a_host_name_that_resolves_to_an_internal_address_is_refused_at_delivery(
    fake_slack: FakeSlack, tmp_path: Path, good_receiver: Receiver, addresses: list[str]
):
    port = good_receiver.url.split(":")[2].split("/")[0]
    dns = FakeDNS({"hooks.example.com": addresses})
    async for bot in start_api(fake_slack, tmp_path):
        freeze(bot)
        # A public-looking name passes on arrival; what it resolves to is checked at delivery.
        await resolved_item_with_callback(bot, f"http://hooks.example.com:{port}/hook")
        done = await deliver_due(bot.rt, now=at(0), base=BASE, dns=dns)
        assert len(done.failed) == 1
        [row] = bot.store.deliveries("T-1")
        internal = next(a for a in addresses if a != "93.184.216.34")
        assert row["last_error"].startswith(
            f"refused: hooks.example.com resolves to {internal}, a "
        )
        assert dns.asked == ["hooks.example.com"]
    assert good_receiver.received == []


@pytest.mark.parametrize("allow", [("127.0.0.1",), ("127.0.0.0/8",), ("hooks.example.com",)])
async def test_an_allow_listed_loopback_receiver_gets_its_webhook(
    fake_slack: FakeSlack, tmp_path: Path, good_receiver: Receiver, allow: tuple[str, ...]
):
    port = good_receiver.url.split(":")[2].split("/")[0]
    dns = FakeDNS({"hooks.example.com": ["127.0.0.1"]})
    async for bot in start_api(fake_slack, tmp_path, webhook_allow=allow):
        freeze(bot)
        await resolved_item_with_callback(bot, f"http://hooks.example.com:{port}/hook")
        literal = {"text": "Crash", "id": "T-2", "callback_url": good_receiver.url}
        response = await post_json(bot, "/api/predict", literal)
        if allow == ("hooks.example.com",):  # the name is allowed, not its address
            assert response.status == 400
        else:
            assert response.status == 200
            bot.store.record_answer("T-2", "U1", "bug", source="button", dedupe_key="k2")
        done = await deliver_due(bot.rt, now=at(0), base=BASE, dns=dns)
        assert len(done.delivered) == len(bot.store.deliveries()) and done.failed == []
    assert len(good_receiver.delivered) == len(done.delivered) == (1 if "hooks" in allow[0] else 2)


async def test_localhost_named_in_the_allow_list_is_reached(
    fake_slack: FakeSlack, tmp_path: Path, good_receiver: Receiver
):
    url = good_receiver.url.replace("127.0.0.1", "localhost")
    async for bot in start_api(fake_slack, tmp_path, webhook_allow=("localhost",)):
        freeze(bot)
        await resolved_item_with_callback(bot, url)
        assert len((await deliver_due(bot.rt, now=at(0), base=BASE)).delivered) == 1
    assert len(good_receiver.delivered) == 1
