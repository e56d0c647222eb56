"""Security: signed requests only, admin checks that payloads cannot skip, no secret in any log
line, tampered models refused, item text that cannot ping anyone."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import aiohttp
import pytest

from bot.learning.jobs import run_retrain
from bot.sandbox import FakeSlack
from bot.slack import blocks
from bot.slack.blocks import encode_value
from tests import signing
from tests.bot.harness import SECRET, Bot, Item, make_settings, seed, start_bot
from tests.bot.test_learning import labeled_items
from tests.bot.test_serve_process import free_port, read_until
from tests.fake_slack import CHANNEL


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "refund please"), Item("b", "app crashes")])
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        yield running


def requests(bot: Bot, message: dict) -> dict[str, tuple[str, dict]]:
    """One request of each kind Slack sends: a click, a slash command, an event."""
    return {
        "action": ("action", bot.button_payload(message, "U0ANA", bot.first_label(message))),
        "command": ("command", signing.command_fields("label", "U0ANA")),
        "event": ("event", signing.app_home_opened_event("U0ANA")),
    }


SIGNERS = {
    "action": signing.signed_action,
    "command": signing.signed_command,
    "event": signing.signed_event,
}


@pytest.mark.parametrize("kind", ["action", "command", "event"])
@pytest.mark.parametrize("attack", ["unsigned", "wrong secret", "replayed", "tampered body"])
async def test_every_slack_route_refuses_bad_signatures_and_stores_nothing(
    bot: Bot, kind: str, attack: str
):
    await bot.dispatcher.fill()
    _, payload = requests(bot, bot.posted()[0])[kind]
    sign = SIGNERS[kind]
    if attack == "wrong secret":
        body, headers = sign(payload, "not-the-secret")
    elif attack == "replayed":
        body, headers = sign(payload, SECRET, int(time.time()) - 301)
    else:
        body, headers = sign(payload, SECRET)
        if attack == "unsigned":
            headers = {"Content-Type": headers["Content-Type"]}
        else:
            body = body.replace(b"U0ANA", b"U0ADM")
    calls_before = len(bot.fake.calls)
    response = await bot.post(body, headers)
    assert response.status == 401
    assert bot.store.count_answers() == 0
    assert len(bot.fake.calls) == calls_before  # nothing opened, published or posted


async def test_admin_checks_cannot_be_skipped_by_crafted_payloads(bot: Bot):
    # A retrain "button" does not exist; the command is the only way, and it checks.
    text = await (await bot.command("retrain --force", "U0ANA")).text()
    assert text.startswith("Only admins can use `/hitl retrain`.")
    text = await (await bot.command("ROLLBACK 1", "U0ANA")).text()
    assert text.startswith("Only admins can use `/hitl rollback`.")
    # Retrain and rollback are commands only: no button or modal runs them, so a crafted
    # click or submission with an admin-sounding id reaches no listener and changes nothing.
    for action_id in ("hitl.retrain", "hitl.admin.retrain", "hitl.rollback", "hitl.q.retrain"):
        crafted = signing.block_actions_payload("U0ANA", action_id, "1")
        assert (await bot.action(crafted)).status in (200, 404)
    for callback_id in ("hitl.retrain", "hitl.rollback", blocks.MODAL_CALLBACK):
        crafted = signing.view_submission_payload(callback_id, {}, user_id="U0ANA")
        assert (await bot.action(crafted)).status in (200, 404)
    assert bot.store.runs("retrain") == [] and bot.store.runs("rollback") == []
    assert bot.rt.trainer.task is None
    # Undo is for the person who decided: a crafted undo from someone else changes nothing.
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    label = bot.first_label(message)
    await bot.action(bot.button_payload(message, "U0ANA", label))
    item_id = bot.store.db["posts"].get(1)["item_id"]
    crafted = signing.block_actions_payload("U0RAJ", "hitl.undo", encode_value(item_id, label))
    crafted["response_url"] = bot.fake.response_url(CHANNEL)
    assert (await bot.action(crafted)).status == 200
    assert bot.store.resolution(item_id)["label"] == label


async def test_item_text_cannot_ping_the_channel_or_mention_people(
    fake_slack: FakeSlack, tmp_path: Path
):
    evil = "<!channel> urgent <!here> ask <@U0ADMIN> at <https://evil.example|bank> & co"
    seed(tmp_path / "hitl.db", [Item("evil", evil)])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        await bot.dispatcher.fill()
        message = bot.posted()[0]
        shown = json.dumps([message["text"], message["blocks"]])
        for needle in ("<!channel>", "<!here>", "<@U0ADMIN>", "<https://"):
            assert needle not in shown
        assert "&lt;!channel&gt;" in message["blocks"][0]["text"]["text"]


async def test_a_tampered_model_file_is_refused_and_the_previous_one_used(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    seed(tmp_path / "hitl.db", labeled_items())
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))
    async for bot in start_bot(fake_slack, settings):
        await run_retrain(bot.rt, "cli")
        bot.store.add_items(labeled_items("M"), "import")
        await run_retrain(bot.rt, "cli", force=True)
    model_file = settings.models_dir / "v2.skops"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    async for bot in start_bot(fake_slack, settings):
        assert bot.rt.champion is not None and bot.rt.champion.version == 1
    assert "model v2 refused" in caplog.text and "sha256" in caplog.text


def serve_env(fake_slack: FakeSlack, db: Path, port: int, **more: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "HITL_"))},
        "SLACK_BOT_TOKEN": fake_slack.token,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake_slack.base_url,
        "HITL_CHANNEL": CHANNEL,
        "HITL_LABELS": "billing,bug",
        "HITL_DB": str(db),
        "HITL_PORT": str(port),
        **more,
    }


async def test_no_token_or_secret_reaches_the_logs_of_a_failing_run(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = tmp_path / "hitl.db"
    seed(db, [Item("a", "refund please"), Item("b", "crash")])
    fake_slack.token = "xoxb-1111-2222-revoked-after-start"
    fake_slack.fail("chat.postMessage", "invalid_auth", times=100)  # the token stops working
    secrets = [fake_slack.token, SECRET, "api-token-0123456789", "webhook-secret-abcdef"]
    port = free_port()
    env = serve_env(fake_slack, db, port, HITL_API_TOKEN=secrets[2], HITL_WEBHOOK_SECRET=secrets[3])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "-vvv", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    seen: list[str] = []
    try:
        await asyncio.wait_for(read_until(process.stderr, "listening on", seen), 60)
        if not any("invalid_auth" in line for line in seen):  # the first post's refusal may
            await asyncio.wait_for(read_until(process.stderr, "invalid_auth", seen), 60)  # come
        # before or after "listening on" (before, on Python 3.13)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}"
            body, headers = signing.signed_command(signing.command_fields("stats"), "wrong")
            async with http.post(f"{url}/slack/events", data=body, headers=headers) as r:
                assert r.status == 401
            wrong = {"Authorization": "Bearer api-token-0123456789x"}
            async with http.post(f"{url}/api/predict", json={"text": "x"}, headers=wrong) as r:
                assert r.status == 401
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
    logs = "".join(seen) + (await process.stderr.read()).decode()
    assert "'Authorization':" in logs  # -vvv logged every request with its headers...
    for secret in secrets:
        assert secret not in logs  # ...but never a secret


async def test_a_token_slack_refuses_stops_serve_at_start_in_one_line(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = tmp_path / "hitl.db"
    seed(db, [Item("a", "refund please")])
    env = serve_env(fake_slack, db, free_port(), SLACK_BOT_TOKEN="xoxb-1111-2222-not-valid")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        code = await asyncio.wait_for(process.wait(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 1
    assert (await process.stderr.read()).decode() == (
        "Error: SLACK_BOT_TOKEN was refused by Slack (invalid_auth); copy the Bot User OAuth "
        "Token (xoxb-…) from OAuth & Permissions\n"
    )
    assert fake_slack.calls_to("chat.postMessage") == []


def test_the_log_redactor_hides_tokens_and_configured_secrets():
    import logging

    from bot.logs import Redactor

    redactor = Redactor()
    redactor.add("hunter2-signing", None)
    record = logging.LogRecord(
        "x",
        logging.ERROR,
        __file__,
        1,
        "calling %s with %s and Authorization: Bearer abc.def and %s",
        ("xoxb-123-456-abcdef", "xapp-1-A1-xyz", "hunter2-signing"),
        None,
    )
    assert redactor.filter(record)
    assert record.getMessage() == (
        "calling xoxb-*** with xapp-*** and Authorization: Bearer *** and ***"
    )


# -- Socket Mode: no HTTP door to the listeners (issue 15, point 1) ----------------------------


async def test_in_socket_mode_forged_http_requests_find_no_slack_route(
    fake_slack: FakeSlack, tmp_path: Path
):
    from tests.bot.test_learning import UNLABELED

    seed(tmp_path / "hitl.db", labeled_items() + UNLABELED)
    settings = make_settings(
        fake_slack, tmp_path, labels=("billing", "bug"), slack_app_token=fake_slack.app_token
    )  # a signing secret is set too: in Socket Mode it is not a way in either
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        imported = bot.store.count_answers()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        click = "payload=" + quote(json.dumps(bot.button_payload(bot.posted()[0], "U0RAJ", "bug")))
        forged = [
            (urlencode(signing.command_fields("retrain --force", "U0ADMIN")).encode(), form),
            (urlencode(signing.command_fields("rollback 1", "U0ADMIN")).encode(), form),
            (click.encode(), form),
        ]
        for body, headers in forged:
            response = await bot.post(body, headers)
            assert response.status == 404
        assert bot.rt.trainer.task is None
        assert bot.store.runs("retrain") == [] and bot.store.runs("rollback") == []
        assert bot.store.count_answers() == imported


# -- the signature is checked before the body is parsed (issue 15, point 7) --------------------


NESTED = "[" * 100_000


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize(
    "body, content_type",
    [
        (NESTED.encode(), "application/json"),
        (("payload=" + quote(NESTED)).encode(), "application/x-www-form-urlencoded"),
        (b"payload=%FF%FE%7B", "application/x-www-form-urlencoded"),
    ],
    ids=["nested json", "nested payload form", "bad utf-8 form"],
)
async def test_a_malformed_body_gets_a_4xx_and_no_traceback(
    bot: Bot, caplog: pytest.LogCaptureFixture, signed: bool, body: bytes, content_type: str
):
    caplog.set_level(logging.DEBUG)
    headers = {"Content-Type": content_type}
    if signed:
        body, headers = signing.sign(body, SECRET, content_type)
    response = await bot.post(body, headers)
    assert response.status == (400 if signed else 401)
    assert (await response.json())["error"]
    assert "Traceback" not in caplog.text
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert bot.store.count_answers() == 0


async def test_a_body_that_is_not_utf8_gets_a_401(bot: Bot, caplog: pytest.LogCaptureFixture):
    # Slack signs text; bytes that are not UTF-8 cannot carry its signature at all.
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": "1",
        "X-Slack-Signature": "v0=00",
    }
    response = await bot.post(b"\xff\xfe{", headers)
    assert response.status == 401
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("stamp", ["not-a-number", "", "1e3", "99999999999999999999999"], ids=repr)
async def test_a_garbled_timestamp_header_gets_a_401(bot: Bot, stamp: str):
    body, headers = signing.signed_command(signing.command_fields("stats"), SECRET)
    headers["X-Slack-Request-Timestamp"] = stamp
    response = await bot.post(body, headers)
    assert response.status == 401


@pytest.mark.parametrize("attack", ["unsigned", "wrong secret", "replayed"])
async def test_the_body_of_a_refused_request_is_never_logged(
    bot: Bot, caplog: pytest.LogCaptureFixture, attack: str
):
    caplog.set_level(logging.DEBUG)  # every logger, Bolt's and the libraries' included
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    payload = bot.button_payload(message, "U0ANA", bot.first_label(message))
    payload["response_url"] = "https://hooks.slack.com/actions/T0HITL/1/SECRET-RESPONSE-URL"
    if attack == "wrong secret":
        body, headers = signing.signed_action(payload, "not-the-secret")
    elif attack == "replayed":
        body, headers = signing.signed_action(payload, SECRET, int(time.time()) - 301)
    else:
        body, headers = signing.signed_action(payload, SECRET)
        headers = {"Content-Type": headers["Content-Type"]}
    caplog.clear()  # what the dispatcher's post logged at DEBUG is not the request's
    response = await bot.post(body, headers)
    assert response.status == 401
    assert "SECRET-RESPONSE-URL" not in caplog.text
    assert "refund please" not in caplog.text and "payload=" not in caplog.text
