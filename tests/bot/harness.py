"""The bot under test: the real `init_app` over HTTP on loopback, its Web API client pointed at
the fake Slack, and helpers that send correctly signed requests to `/slack/events`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.config import Settings
from bot.learning.stopping import _curve as product_curve
from bot.runtime import Runtime, make_client
from bot.sandbox import FakeSlack
from bot.sandbox.webapi import message_refusal
from bot.server import RUNTIME, init_app
from bot.slack.blocks import decode_value
from bot.slack.connect import SocketMode, start_socket_mode
from bot.slack.dispatch import Dispatcher
from bot.store import Store
from tests import signing
from tests.fake_slack import CHANNEL
from tests.fake_socket_mode import FakeSocketMode

if TYPE_CHECKING:
    from model.stopping import Extrapolation

SECRET = "test-signing-secret"
LABELS = ("billing", "bug", "account", "how_to", "feature_request", "praise")


def margin_scored(rows: Sequence[tuple]) -> list[tuple]:
    """(id, version, label, confidence, ranked) rows with the margin strategy's priority
    (1 - (best - second best)) added, as ``Store.set_predictions`` takes them."""
    return [(*row, 1 - (row[4][0][1] - (row[4][1][1] if len(row[4]) > 1 else 0.0))) for row in rows]


@dataclass
class Item:
    id: str
    text: str
    label: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


CURVES: dict[tuple, Extrapolation | None] = {}


def remembered_curve(
    texts: list[str], labels: list[str], pipeline: str | None, uniform: list[bool] | None = None
) -> Extrapolation | None:
    """The product's ``bot.learning.stopping._curve``, remembered by its arguments for this
    process: ten fits and 200 bootstrap refits (~0.4 s, more on a loaded machine), which tests
    that fit the same labels more than once (or another test's) would repeat. A pure function of
    its arguments (its draws are seeded), so which test computes it first does not matter; every
    other update's curve (other labels, other uniform ones) is computed, and the tests that
    check a curve's value compare with ``_curve`` computed afresh. Tests take it through the
    ``remembered_curves`` fixture (tests/bot/conftest.py)."""
    key = (tuple(texts), tuple(labels), pipeline, None if uniform is None else tuple(uniform))
    if key not in CURVES:
        CURVES[key] = product_curve(texts, labels, pipeline, uniform)
    return CURVES[key]


def seed(db: Path, items: Sequence[Item]) -> None:
    with Store.open(db) as store:
        store.add_items(items, "import")


def seed_champion(db: Path, texts: Sequence[str], labels: Sequence[str]) -> None:
    """A champion model beside ``db`` (in ``<db>.models/``, where the server looks), fitted on
    ``texts``: a server started on ``db`` scores with it, and has its scoring children."""
    from model import ModelRegistry, TextClassifier

    registry = ModelRegistry(db.with_name(db.name + ".models"))
    meta = registry.save(TextClassifier().fit(list(texts), list(labels)), n_train=len(texts))
    registry.promote(meta.version)


def make_settings(fake: FakeSlack, tmp_path: Path, **changes: Any) -> Settings:
    base = Settings(
        slack_bot_token=fake.token,
        slack_signing_secret=SECRET,
        slack_api_url=fake.base_url,
        db=tmp_path / "hitl.db",
        channel=CHANNEL,
        labels=LABELS,
        admins=("U0ADMIN",),
        # margin's picks from the first model on: a young model's TypiClust picks (the
        # default, HITL_TYPICAL_UNTIL=auto) wait on an order computed in a child, so which
        # items a test's young model asks would depend on when it is ready; the tests of
        # those picks ask for them (tests/bot/test_typical.py)
        typical_until=0,
    )
    return base.with_changes(**changes)


@dataclass
class Bot:
    http: TestClient
    rt: Runtime
    dispatcher: Dispatcher
    fake: FakeSlack
    clicks: int = 0

    @property
    def store(self) -> Store:
        return self.rt.store

    async def post(self, body: bytes, headers: dict[str, str]):
        return await self.http.post("/slack/events", data=body, headers=headers)

    async def action(self, payload: dict, *, timestamp: int | None = None):
        """Post a click (or any interaction); a message's click built with no response_url of
        its own (``signing.RESPONSE_URL``) gets this fake's, for that message, so a reply to
        the clicker is recorded in ``fake.responses`` as Slack would show it."""
        if payload.get("response_url") == signing.RESPONSE_URL:
            # (a fuzzed payload's container may be anything: then the channel's, for no message)
            container = payload.get("container")
            where = container if isinstance(container, dict) else {}
            channel, ts = where.get("channel_id"), where.get("message_ts")
            url = self.fake.response_url(
                channel if isinstance(channel, str) and channel else CHANNEL,
                ts if isinstance(ts, str) and ts else None,
            )
            payload = {**payload, "response_url": url}
        return await self.post(*signing.signed_action(payload, SECRET, timestamp))

    async def command(self, text: str, user: str = "U0ANA", **kwargs: Any):
        """Run ``/hitl text`` as ``user``; with no ``response_url`` given, the fake's own for the
        command's channel, so a reply after the ack is recorded in ``fake.responses``."""
        if kwargs.get("response_url", signing.RESPONSE_URL) == signing.RESPONSE_URL:
            kwargs["response_url"] = self.fake.response_url(kwargs.get("channel_id", CHANNEL))
        fields = signing.command_fields(text, user, **kwargs)
        response = await self.post(*signing.signed_command(fields, SECRET))
        if response.status == 200 and response.content_type == "application/json":
            # the acknowledgement's body is a message Slack shows: it refuses what it refuses
            # in one (read here once, as aiohttp keeps the body for the test to read again)
            body = await response.json()
            refused = message_refusal(body) if body.get("blocks") else None
            assert refused is None, f"/hitl {text}: Slack refuses the ack: {refused.extra}"
        return response

    async def event(self, envelope: dict):
        return await self.post(*signing.signed_event(envelope, SECRET))

    async def settled(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until every question message matches the database (the redraw after an ack
        runs after Slack got its answer, so a test waits for it here). It returns as soon as
        that holds; ``timeout`` only bounds a test that would fail, so it is generous: on a
        loaded machine (two suites and benchmarks on 2 cores) 5 s ran out."""
        rt = self.rt
        await rt.background.drain(timeout)
        async with asyncio.timeout(timeout):
            await rt.redrawer.all_drawn()

    def next_action_ts(self) -> str:
        self.clicks += 1
        return f"1700000100.{self.clicks:06d}"

    def posted(self) -> list[dict]:
        """Questions in the channel, oldest first, as the fake holds them now."""
        return self.fake.messages(CHANNEL)

    def button_payload(self, message: dict, user: str, label: str | None, **kw: Any) -> dict:
        """The payload of a click on `label`'s button (or Skip, for None) in `message`."""
        for block in message["blocks"]:
            for element in block.get("elements", []):
                if element.get("type") != "button":
                    continue
                _, value_label = decode_value(element["value"])
                if value_label == label and (
                    label is not None or element["action_id"].endswith("skip")
                ):
                    payload = signing.block_actions_payload(
                        user,
                        element["action_id"],
                        element["value"],
                        message_ts=message["ts"],
                        block_id=block["block_id"],
                        message=message,
                        **kw,
                    )
                    payload["actions"][0]["action_ts"] = self.next_action_ts()
                    return payload
        raise AssertionError(f"no button for {label!r} in {json.dumps(message)[:300]}")

    def first_label(self, message: dict) -> str:
        """The first label with a button in ``message`` (with no model, five drawn per item)."""
        for block in message["blocks"]:
            for element in block.get("elements", []):
                if element.get("type") == "button" and ".label." in element["action_id"]:
                    return decode_value(element["value"])[1]
        raise AssertionError(f"no label button in {json.dumps(message)[:300]}")

    def select_payload(self, message: dict, user: str, label: str) -> dict:
        for block in message["blocks"]:
            for element in block.get("elements", []):
                if element.get("type") in ("static_select", "external_select"):
                    payload = signing.block_actions_payload(
                        user,
                        element["action_id"],
                        label,
                        action_type=element["type"],
                        message_ts=message["ts"],
                        block_id=block["block_id"],
                        message=message,
                    )
                    payload["actions"][0]["action_ts"] = self.next_action_ts()
                    return payload
        raise AssertionError("no select in the message")


class ServedAsServe(TestServer):
    """aiohttp's TestServer, run as `hitl serve` runs the app (``bot.server.serve``'s
    AppRunner): TestServer cancels a handler whose client hangs up, `hitl serve` lets it run
    to its end, so a test of a client that goes away meets what production does."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        kwargs["handler_cancellation"] = False
        return await super()._make_runner(**kwargs)


async def start_bot(
    fake: FakeSlack,
    settings: Settings,
    *,
    background: bool = False,
    retries: int | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 (the Web API client's, for a test)
) -> AsyncIterator[Bot]:
    """Serve the bot on loopback. ``retries`` replaces the Web API client's retry count (0
    lets a test see the dispatcher's own handling of an error); ``timeout`` its seconds for a
    call (a short one lets a test see a call Slack holds, ``fail(..., mode="timeout")``, time
    out)."""

    def configure(rt: Runtime) -> None:
        Dispatcher.of(rt).post_interval = 0.0
        # Which posts are audits and gold is drawn at random: the same draws in every run, so
        # a test cannot pass or fail by the luck of them.
        Dispatcher.of(rt).rng = random.Random(0)
        if retries is not None or timeout is not None:
            rt.client = make_client(
                settings,
                retries=2 if retries is None else retries,
                timeout=rt.client.timeout if timeout is None else timeout,
                # a session's own timeout is the one its calls keep: a short one, a call each
                session=rt.client.session if timeout is None else None,
            )

    app = init_app(settings, run_background=background, configure=configure, retry_base=0.01)
    async with ServedAsServe(app, host="127.0.0.1") as server, TestClient(server) as http:
        yield Bot(http, app[RUNTIME], Dispatcher.of(app[RUNTIME]), fake)


def block_suggestion_payload(user: str, action_id: str, block_id: str, value: str) -> dict:
    """What Slack sends when someone types in an external select (the options request)."""
    return {
        "type": "block_suggestion",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0HITL"},
        "container": {"type": "message", "message_ts": "1", "channel_id": CHANNEL},
        "api_app_id": "A0HITL",
        "token": signing.VERIFICATION_TOKEN,
        "action_id": action_id,
        "block_id": block_id,
        "value": value,
        "team": {"id": "T0HITL", "domain": "hitl-sandbox"},
        "channel": {"id": CHANNEL, "name": "labeling"},
        "message": {"type": "message", "ts": "1"},
    }


class ManualClock:
    """A clock the test moves (``now``), for the parts that take one (``Redrawer.clock``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def posted_on_clock(
    fake: FakeSlack,
    tmp_path: Path,
    items: Sequence[Item],
    n: int,
    retries: int = 0,
    **changes: Any,
) -> AsyncIterator[tuple[Bot, Any, ManualClock]]:
    """A bot with ``n`` questions posted (HITL_MAX_OPEN=``n``) and settled, its redrawer on a
    ``ManualClock``: yields (bot, redrawer, clock)."""
    from bot.slack.redraw import Redrawer

    seed(tmp_path / "hitl.db", items)
    settings = make_settings(fake, tmp_path, max_open=n, **changes)
    async for bot in start_bot(fake, settings, retries=retries):
        assert await bot.dispatcher.fill() == n
        await bot.settled()
        clock = ManualClock()
        Redrawer.of(bot.rt).clock = clock
        yield bot, Redrawer.of(bot.rt), clock


def item_of(message: dict) -> str:
    """The item a question message asks about (its metadata)."""
    return message["metadata"]["event_payload"]["item_id"]


def has_buttons(message: dict) -> bool:
    """Whether a message shows any button (an open question)."""
    return any(
        element.get("type") == "button"
        for block in message.get("blocks", [])
        for element in block.get("elements", []) or []
    )


# -- Socket Mode ------------------------------------------------------------------------------

OPEN = "apps.connections.open"


class World:
    def __init__(self, fake: FakeSlack, server: FakeSocketMode, app: web.Application):
        self.fake = fake
        self.server = server
        self.app = app
        self.http: TestClient | None = None
        self.socket_mode: SocketMode | None = None

    @property
    def client(self) -> Any:
        assert self.socket_mode is not None
        return self.socket_mode.client

    def opens(self) -> int:
        return len(self.fake.calls_to(OPEN))

    async def healthz(self) -> tuple[int, dict]:
        assert self.http is not None
        response = await self.http.get("/healthz")
        return response.status, await response.json()

    async def command_acked(self, link: Any, timeout: float = 2.0) -> bool:  # noqa: ASYNC109
        envelope = await self.server.send_envelope(
            "slash_commands",
            signing.command_fields("stats", response_url=self.fake.response_url(CHANNEL)),
            on=link,
        )
        try:
            await self.server.next_ack(envelope, timeout=timeout)
        except TimeoutError:
            return False
        return True


def socket_settings(fake_slack: FakeSlack, tmp_path: Path, connect_retry: float = 0.01) -> Settings:
    """Settings of a server in Socket Mode (an app token, no signing secret) on a database
    with one waiting item."""
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    return make_settings(
        fake_slack,
        tmp_path,
        slack_app_token=fake_slack.app_token,
        slack_signing_secret=None,
        connect_retry=connect_retry,
    )


@contextlib.asynccontextmanager
async def socket_world(
    fake_slack: FakeSlack,
    tmp_path: Path,
    connect_retry: float = 0.01,
    server: FakeSocketMode | None = None,
) -> AsyncIterator[World]:
    """A server in Socket Mode (its HTTP side on a test server, for /healthz), connected to a
    fake Socket Mode server (``server``, or a new one)."""
    server = server or FakeSocketMode()
    fake_slack.socket_url = await server.start()
    settings = socket_settings(fake_slack, tmp_path, connect_retry)
    app = init_app(settings, run_background=False)
    world = World(fake_slack, server, app)
    try:
        async with TestServer(app, host="127.0.0.1") as test_server:
            async with TestClient(test_server) as http:
                world.http = http
                world.socket_mode = await start_socket_mode(app, settings.slack_app_token)
                await server.wait_connected()
                try:
                    yield world
                finally:
                    await world.socket_mode.close()
    finally:
        await server.close()


class LogLines(logging.Handler):
    """Log records a test collects (add it to the loggers it watches), and a bounded wait for
    one: ``wait`` returns as soon as the line is logged; its timeout only bounds a test that
    would fail."""

    WAIT = 5.0  # seconds ``wait`` gives a line by default

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        for predicate, future in self._waiters:
            if not future.done() and predicate():
                future.set_result(None)

    def said(self, text: str, level: int = logging.DEBUG) -> list[str]:
        return [
            r.getMessage() for r in self.records if text in r.getMessage() and r.levelno >= level
        ]

    def all(self) -> list[str]:
        return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in self.records]

    async def wait(self, text: str, count: int = 1, timeout: float | None = None) -> None:  # noqa: ASYNC109
        def predicate() -> bool:
            return len(self.said(text)) >= count

        if predicate():
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            async with asyncio.timeout(self.WAIT if timeout is None else timeout):
                await future
        except TimeoutError:
            raise AssertionError(f"no {count}x {text!r} in the log: {self.all()}") from None

    def tracebacks(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records if r.exc_info or r.exc_text]


# The labeling window (`/hitl label`'s modal) as a person uses it, through the fake Slack's
# recorded views and signed block actions.


async def open_window(bot: Bot, user: str, channel: str = CHANNEL) -> str:
    """``user`` runs `/hitl label` in ``channel`` (a trigger of its own); the window's id."""
    trigger = f"1.{bot.next_action_ts()}"
    assert (await bot.command("label", user, channel_id=channel, trigger_id=trigger)).status == 200
    return (await bot.fake.next_call("views.open")).reply["view"]["id"]


def window_item(bot: Bot, view_id: str) -> str | None:
    """The item the window shows now (None: nothing left)."""
    return json.loads(bot.fake.views[view_id]["private_metadata"])["item"]


def window_labels(bot: Bot, view_id: str) -> list[str]:
    """The labels of the window's label buttons, in order."""
    return [
        json.loads(e["value"])["l"]
        for b in bot.fake.views[view_id]["blocks"]
        for e in b.get("elements", [])
        if e.get("type") == "button" and ".label." in e.get("action_id", "")
    ]


async def click_in_window(bot: Bot, user: str, view_id: str, label: str) -> None:
    """``user`` clicks ``label``'s button in the window as drawn now; its work settled."""
    view = bot.fake.views[view_id]
    [button] = [
        e
        for b in view["blocks"]
        for e in b.get("elements", [])
        if e.get("type") == "button" and f'"l":{json.dumps(label)}' in e.get("value", "")
    ]
    payload = signing.block_actions_payload(user, button["action_id"], button["value"], view=view)
    payload["actions"][0]["action_ts"] = bot.next_action_ts()
    assert (await bot.action(payload)).status == 200
    await bot.settled()


async def one_posted(
    fake: FakeSlack, tmp_path: Path, item_ids: Sequence[str], **changes: Any
) -> AsyncIterator[Bot]:
    """A bot on items ``item_ids`` ("text of i1"…): one posted (HITL_MAX_OPEN=1, with
    ``changes``), the others waiting; what the labeling-window tests start from."""
    seed(tmp_path / "hitl.db", [Item(i, f"text of {i}") for i in item_ids])
    settings = make_settings(fake, tmp_path, max_open=1, **changes)
    async for running in start_bot(fake, settings):
        assert await running.dispatcher.fill() == 1
        yield running


def threads_calling(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[str]:
    """Wrap ``module.name`` so each call records the name of the thread it ran in (the real
    function still runs); the list fills as calls come."""
    threads: list[str] = []
    real = getattr(module, name)

    def watched(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, watched)
    return threads
