"""Socket Mode against HTTP, differentially: one scripted sequence of people's actions (clicks,
a double click, Skip, "Other…", Undo, /hitl commands, the labeling window and its clicks, the
review window's submissions, App Home, type-ahead requests) run once over signed HTTP and once
over Socket Mode (tests/fake_socket_mode.py), each on a fresh database and a fresh fake Slack:
the acks, the stored answers and labels, the Web API calls and the response_url posts must be
the same. Then what only Socket Mode meets: an envelope Slack sends again, a disconnect in the
middle of a burst, the websocket dropped while a click is handled.

Nothing sleeps to wait: each step waits for its ack, then for the bot's work to settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bot.appkeys import RUNTIME
from bot.runtime import Runtime
from bot.sandbox import FakeSlack
from bot.server import init_app
from bot.slack import blocks
from bot.slack.blocks import START_LABELING_ACTION as START_LABELING
from bot.slack.connect import start_socket_mode
from bot.slack.dispatch import Dispatcher
from bot.slack.review import (
    DECISION_ACTION,
    DECISION_BLOCK,
    DECISION_SEARCH_ACTION,
    REVIEW_CALLBACK,
)
from tests import signing
from tests.bot.harness import (
    SECRET,
    Bot,
    Item,
    block_suggestion_payload,
    make_settings,
    seed,
    start_bot,
)
from tests.fake_slack import CHANNEL, build_workspace
from tests.fake_socket_mode import FakeSocketMode

ITEMS = [Item(f"i{k}", f"text number {k}: refund, crash or password?") for k in range(1, 6)]
Send = Callable[[str, dict], Awaitable[tuple[int, Any]]]


@dataclass
class Served:
    """The bot on one transport: ``send(kind, body)`` is what Slack sends (an envelope's type:
    ``interactive``, ``slash_commands``, ``events_api``) and returns its ack as
    (status, content): content None for an empty ack, else the JSON Slack reads."""

    bot: Bot  # its helpers that build payloads and wait for the redraws (no HTTP client)
    send: Send
    server: FakeSocketMode | None = None  # Socket Mode's


def configure(rt: Runtime) -> None:
    """As ``start_bot`` configures it: no pause between posts, the same random draws."""
    Dispatcher.of(rt).post_interval = 0.0
    Dispatcher.of(rt).rng = random.Random(0)


@contextlib.asynccontextmanager
async def over_http(fake: FakeSlack, tmp_path: Path, **changes: Any) -> AsyncIterator[Served]:
    seed(tmp_path / "hitl.db", ITEMS)
    bots = start_bot(fake, make_settings(fake, tmp_path, **changes))
    bot = await anext(bots)
    signed = {
        "interactive": signing.signed_action,
        "slash_commands": signing.signed_command,
        "events_api": signing.signed_event,
    }

    async def send(kind: str, body: dict) -> tuple[int, Any]:
        response = await bot.post(*signed[kind](body, SECRET))
        text = await response.text()
        if response.status != 200 or not text:
            return response.status, None
        if response.content_type == "application/json":
            return 200, json.loads(text)
        return 200, {"text": text}  # as slack_bolt's Socket Mode adapter sends a text body

    try:
        yield Served(bot, send)
    finally:
        await bots.aclose()


@contextlib.asynccontextmanager
async def over_socket(fake: FakeSlack, tmp_path: Path, **changes: Any) -> AsyncIterator[Served]:
    seed(tmp_path / "hitl.db", ITEMS)
    server = FakeSocketMode()
    fake.socket_url = await server.start()
    settings = make_settings(
        fake, tmp_path, slack_app_token=fake.app_token, slack_signing_secret=None, **changes
    )
    app = init_app(settings, run_background=False, configure=configure, retry_base=0.01)

    async def send(kind: str, body: dict) -> tuple[int, Any]:
        envelope = await server.send_envelope(kind, body)
        return 200, (await server.next_ack(envelope, timeout=10)).get("payload")

    try:
        async with TestServer(app, host="127.0.0.1"):
            socket_mode = await start_socket_mode(app, fake.app_token)
            try:
                rt = app[RUNTIME]
                bot = Bot(None, rt, Dispatcher.of(rt), fake)  # type: ignore[arg-type]
                yield Served(bot, send, server)
            finally:
                await socket_mode.close()
    finally:
        await server.close()


# -- what a person does, as payloads ----------------------------------------------------------


def response_url_of(payload: dict, fake: FakeSlack) -> dict:
    """A message's click answered where the fake records it (``fake.responses``)."""
    container = payload.get("container") or {}
    if payload.get("response_url") == signing.RESPONSE_URL:
        url = fake.response_url(CHANNEL, container.get("message_ts"))
        return {**payload, "response_url": url}
    return payload


def element(blocks_: list[dict], pick: Callable[[dict], bool]) -> tuple[dict, dict]:
    """The first element ``pick`` takes, with its block."""
    for block in blocks_:
        for found in block.get("elements", []) or []:
            if pick(found):
                return block, found
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and pick(accessory):
            return block, accessory
    raise AssertionError(f"nothing such in {json.dumps(blocks_)[:400]}")


def is_action(pattern: Any) -> Callable[[dict], bool]:
    """An element with an action_id ``pattern`` (a compiled one, or the id) matches."""
    if isinstance(pattern, str):
        return lambda e: e.get("action_id") == pattern
    return lambda e: bool(pattern.match(e.get("action_id", "")))


def undo_payload(bot: Bot, user: str) -> dict:
    """``user``'s click on the Undo the bot offered them last (an ephemeral note)."""
    [*_, offer] = [
        e for e in bot.fake.ephemerals if e["user"] == user and "hitl.undo" in json.dumps(e)
    ]
    offered = offer["blocks"] if isinstance(offer["blocks"], list) else json.loads(offer["blocks"])
    block, button = element(offered, is_action(blocks.UNDO_ACTION))
    payload = signing.block_actions_payload(
        user,
        button["action_id"],
        button["value"],
        message_ts=offer["message_ts"],
        block_id=block.get("block_id", "undo"),
        response_url=bot.fake.response_url(CHANNEL, offer["message_ts"]),
    )
    payload["actions"][0]["action_ts"] = bot.next_action_ts()
    return payload


def view_click(bot: Bot, user: str, view: dict, pick: Callable[[dict], bool]) -> dict:
    """``user``'s click on the element ``pick`` finds in ``view`` (a modal, or Home)."""
    block, button = element(view["blocks"], pick)
    payload = signing.block_actions_payload(
        user,
        button["action_id"],
        button.get("value", ""),
        block_id=block.get("block_id", "view"),
        view=view,
    )
    payload["actions"][0]["action_ts"] = bot.next_action_ts()
    payload["trigger_id"] = f"1.{bot.next_action_ts()}"
    return payload


def button_labels(message: dict) -> list[str]:
    """The labels of a question's label buttons, in order."""
    return [
        blocks.decode_value(e["value"])[1]
        for b in message["blocks"]
        for e in b.get("elements", []) or []
        if e.get("type") == "button" and ".label." in e.get("action_id", "")
    ]


def opened_view(fake: FakeSlack) -> dict:
    """The view the last views.open made, as the fake holds it."""
    return fake.views[fake.calls_to("views.open")[-1].reply["view"]["id"]]


def act(payload: dict) -> tuple[str, dict]:
    """An interaction (a click, a choice, a submission, a type-ahead request) to send."""
    return "interactive", payload


def review_submission(view: dict, value: str | None, user: str = "U0ADMIN") -> dict:
    values = {}
    if value is not None:
        values = {DECISION_BLOCK: {DECISION_ACTION: signing.selected_option_value(value)}}
    return signing.view_submission_payload(
        REVIEW_CALLBACK,
        values,
        user_id=user,
        private_metadata=view["private_metadata"],
        view_id=view["id"],
        blocks=view["blocks"],
    )


# -- the script -------------------------------------------------------------------------------


async def script(served: Served) -> list[tuple[str, Any, int]]:
    """The same people's actions, step by step; per step its acks and where the Web API calls
    it made end. Each step settles (acks in, redraws done) before the next."""
    bot, send, fake = served.bot, served.send, served.bot.fake
    steps: list[tuple[str, Any, int]] = []

    async def step(name: str, *sent: tuple[str, dict]) -> list[Any]:
        acks = [await send(kind, response_url_of(body, fake)) for kind, body in sent]
        await bot.settled()
        steps.append((name, acks, len(fake.calls)))
        return acks

    def command(text: str, user: str = "U0ANA") -> tuple[str, dict]:
        trigger = f"1.{bot.next_action_ts()}"
        url = fake.response_url(CHANNEL, f"cmd.{trigger}")
        return "slash_commands", signing.command_fields(
            text, user, response_url=url, trigger_id=trigger
        )

    def click(message: dict, user: str, label: str | None) -> tuple[str, dict]:
        return act(bot.button_payload(message, user, label))

    assert await bot.dispatcher.fill() == 3
    await bot.settled()
    steps.append(("posted", [], len(fake.calls)))
    q1, q2, q3 = bot.posted()
    first = bot.first_label(q1)
    await step("a click", click(q1, "U0ANA", first))
    await step("a double click deciding it", click(q1, "U0RAJ", first), click(q1, "U0RAJ", first))
    await step("undo", act(undo_payload(bot, "U0RAJ")))
    await step("undo again", act(undo_payload(bot, "U0RAJ")))
    await step("skip", click(q2, "U0ANA", None))
    await step("other…", act(bot.select_payload(q2, "U0RAJ", "praise")))
    one, other, *_ = button_labels(q3)
    await step("a split", click(q3, "U0ANA", one), click(q3, "U0RAJ", other))
    q3_block = next(b for b in q3["blocks"] if b.get("block_id", "").startswith("q:"))["block_id"]
    await step(
        "type-ahead",
        act(block_suggestion_payload("U0ANA", "hitl.q.other_ext", q3_block, "bi")),
        act(block_suggestion_payload("U0ADMIN", DECISION_SEARCH_ACTION, DECISION_BLOCK, "bu")),
        act(block_suggestion_payload("U0ANA", DECISION_SEARCH_ACTION, DECISION_BLOCK, "bu")),
    )
    for text in ("help", "stats", "queue", "leaderboard", "retrian"):
        await step(f"/hitl {text}", command(text))
    await step("/hitl review", command("review", "U0ADMIN"))
    review = opened_view(fake)
    await step("a review without a decision", act(review_submission(review, None)))
    await step("a review by a non-admin", act(review_submission(review, "label:bug", "U0ANA")))
    await step("a review decision", act(review_submission(review, "label:bug")))
    await step("/hitl label", command("label"))
    window = opened_view(fake)["id"]
    label_button = is_action(blocks.LABEL_ACTION)
    await step("a window's click", act(view_click(bot, "U0ANA", fake.views[window], label_button)))
    skip_button = is_action(blocks.SKIP_ACTION)
    await step("a window's skip", act(view_click(bot, "U0ANA", fake.views[window], skip_button)))
    await step("the window closed", act(signing.view_closed_payload("U0ANA", fake.views[window])))
    await step("home", ("events_api", signing.app_home_opened_event("U0ANA")))
    start = view_click(bot, "U0ANA", fake.home["U0ANA"], is_action(START_LABELING))
    await step("start labeling", act(start))
    await bot.dispatcher.fill()
    await bot.settled()
    steps.append(("filled again", [], len(fake.calls)))
    return steps


def what_slack_saw(fake: FakeSlack, steps: list[tuple[str, Any, int]]) -> list[tuple]:
    """Per step: its acks, and the Web API calls it made (method, parameters), the fake's
    address written out of them; apps.connections.open is Socket Mode's own. A step's calls
    are compared as a set: its redraw and the person's note run side by side."""
    seen, start = [], 0
    for name, acks, end in steps:
        calls = [
            f"{call.method} {json.dumps(call.params, sort_keys=True, default=str)}"
            for call in fake.calls[start:end]
            if call.method != "apps.connections.open"
        ]
        seen.append((name, acks, sorted(c.replace(fake.root_url, "FAKE") for c in calls)))
        start = end
    return seen


def what_was_stored(bot: Bot) -> tuple[list, list]:
    answers = [{k: v for k, v in a.items() if k != "created_at"} for a in bot.store.iter_answers()]
    labels = [
        {k: v for k, v in row.items() if k in ("id", "label", "votes", "agreement")}
        for row in bot.store.iter_export()
    ]
    return answers, labels


def responses(fake: FakeSlack) -> list[str]:
    return [json.dumps(r, sort_keys=True).replace(fake.root_url, "FAKE") for r in fake.responses]


async def test_the_same_actions_over_http_and_socket_mode_give_the_same_acks_store_and_calls(
    fake_slack: FakeSlack, tmp_path: Path
):
    runs = {}
    for name, transport in (("http", over_http), ("socket", over_socket)):
        fake = fake_slack if name == "http" else build_workspace()
        if name == "socket":
            await fake.start()
        try:
            where = tmp_path / name
            where.mkdir()
            async with transport(fake, where, max_open=3, votes=2) as served:
                steps = await script(served)
                runs[name] = (what_slack_saw(fake, steps), what_was_stored(served.bot))
            runs[name] += (responses(fake),)
        finally:
            if name == "socket":
                await fake.close()
    http, socket = runs["http"], runs["socket"]
    for one, other in zip(http[0], socket[0], strict=True):
        assert one == other
    assert http[1] == socket[1]
    assert http[2] == socket[2]
    # and what they agree on is what the script meant to do
    acks = {name: acks for name, acks, _ in http[0]}
    assert acks["a review without a decision"] == [
        (200, {"response_action": "errors", "errors": {DECISION_BLOCK: "Pick a decision."}})
    ]
    assert acks["/hitl retrian"][0][1]["text"].startswith("I don't know `retrian`.")
    offered = [content for _, content in acks["type-ahead"]]  # review's to an admin only
    assert offered[0]["options"] and offered[1]["option_groups"] and offered[2] == {"options": []}
    answers, labels = http[1]
    assert len(answers) == 9 and [row["label"] for row in labels] == ["bug"]


# -- what only Socket Mode meets ----------------------------------------------------------------


def acks_of(server: FakeSocketMode, envelope: str) -> list[dict]:
    return [sent for sent in server.received if sent.get("envelope_id") == envelope]


def answers(bot: Bot) -> list[tuple]:
    return [(a["item_id"], a["user_id"], a["label"]) for a in bot.store.iter_answers()]


async def test_a_click_and_a_window_click_sent_again_after_their_answer_are_acked_and_stored_once(
    fake_slack: FakeSlack, tmp_path: Path
):
    async with over_socket(fake_slack, tmp_path, max_open=2) as served:
        bot, server = served.bot, served.server
        assert server is not None
        assert await bot.dispatcher.fill() == 2
        await bot.settled()
        q1, _ = bot.posted()
        label = bot.first_label(q1)
        click = response_url_of(bot.button_payload(q1, "U0ANA", label), fake_slack)
        await served.send("slash_commands", signing.command_fields("label", "U0RAJ"))
        await bot.settled()
        window = opened_view(fake_slack)
        in_window = view_click(bot, "U0RAJ", window, is_action(blocks.LABEL_ACTION))
        chosen = blocks.decode_value(in_window["actions"][0]["value"])[1]
        for payload in (click, in_window):
            first = await server.send_envelope("interactive", payload)
            await server.next_ack(first)
            await bot.settled()
            made = len(fake_slack.calls)
            # the ack did not reach Slack: the same envelope again, and once more at once
            await server.send_envelope("interactive", payload, envelope_id=first)
            await server.send_envelope("interactive", payload, envelope_id=first)
            await server.wait_for(lambda first=first: len(acks_of(server, first)) == 3)
            await bot.settled()
            again = fake_slack.calls[made:]
            # nothing more for the channel's question or the clicker (a second Undo offer)
            assert all(call.method == "views.update" for call in again), again
            # a window moved on already is not moved on again (its drawing's hash is stale)
            assert all(call.reply["error"] == "hash_conflict" for call in again), again
        assert answers(bot) == [
            ("i5", "U0ANA", label),
            (json.loads(window["private_metadata"])["item"], "U0RAJ", chosen),
        ]


PEOPLE = [f"U0P{k:02d}" for k in range(8)]


@pytest.mark.parametrize("reason", ["warning", "refresh_requested"])
async def test_a_disconnect_in_the_middle_of_a_burst_of_clicks_loses_none_and_stores_each_once(
    fake_slack: FakeSlack, tmp_path: Path, reason: str
):
    async with over_socket(fake_slack, tmp_path, max_open=1, votes=len(PEOPLE) + 1) as served:
        bot, server = served.bot, served.server
        assert server is not None
        assert await bot.dispatcher.fill() == 1
        await bot.settled()
        [question] = bot.posted()
        label = bot.first_label(question)
        clicks = [
            response_url_of(bot.button_payload(question, person, label), fake_slack)
            for person in PEOPLE
        ]
        first = server.connections_made[0]
        sent = [await server.send_envelope("interactive", c, on=first) for c in clicks[:3]]
        await server.disconnect(reason, on=first)
        # Slack goes on sending on the old connection a moment, then on the new one
        sent += [await server.send_envelope("interactive", c, on=first) for c in clicks[3:5]]
        await server.wait_connected(count=2)
        second = server.connections_made[1]
        sent += [await server.send_envelope("interactive", c, on=second) for c in clicks[5:]]
        for envelope in sent:
            await server.next_ack(envelope)
        await bot.settled()
        assert [len(acks_of(server, envelope)) for envelope in sent] == [1] * len(PEOPLE)
        assert sorted(answers(bot)) == sorted(("i5", person, label) for person in PEOPLE)


@pytest.mark.parametrize("abort", [False, True], ids=["closed", "cut"])
async def test_a_click_whose_connection_drops_while_it_is_handled_is_stored_once_and_acked(
    fake_slack: FakeSlack, tmp_path: Path, abort: bool
):
    async with over_socket(fake_slack, tmp_path, max_open=1) as served:
        bot, server = served.bot, served.server
        assert server is not None
        assert await bot.dispatcher.fill() == 1
        await bot.settled()
        [question] = bot.posted()
        label = bot.first_label(question)
        click = response_url_of(bot.button_payload(question, "U0ANA", label), fake_slack)
        # the answer is written; its ack waits for the store to say it is on disk
        entered, release = asyncio.Event(), asyncio.Event()
        synced = bot.rt.store.synced

        async def held() -> Any:
            entered.set()
            await release.wait()
            return await synced()

        bot.rt.store.synced = held  # type: ignore[method-assign]
        first = server.connections_made[0]
        envelope = await server.send_envelope("interactive", click, on=first)
        await asyncio.wait_for(entered.wait(), 5)
        await server.drop(first, abort=abort)  # Slack closes it, or the network cuts it
        await server.wait_connected(count=2)
        release.set()
        await server.next_ack(envelope, timeout=5)
        assert server.connections_made[1].acks == [{"envelope_id": envelope}]  # the newest
        await bot.settled()
        bot.rt.store.synced = synced  # type: ignore[method-assign]
        # had Slack shown the person an error, their click again is acked and stored once
        again = response_url_of(bot.button_payload(question, "U0ANA", label), fake_slack)
        await served.send("interactive", again)
        await bot.settled()
        assert answers(bot) == [("i5", "U0ANA", label)]
