"""`hitl serve`: refuses to start without what it needs; Socket Mode through a local websocket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.server import BOLT, RUNTIME, init_app, start_socket_mode
from tests import signing
from tests.bot.harness import Item, make_settings, seed
from tests.fake_slack import CHANNEL
from tests.fake_socket_mode import FakeSocketMode


def serve(env: dict[str, str]):
    return CliRunner().invoke(cli, ["serve"], env=env, prog_name="hitl")


def test_missing_tokens_are_named_one_per_line(tmp_path: Path):
    result = serve({"HITL_DB": str(tmp_path / "hitl.db")})
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: SLACK_BOT_TOKEN is not set; copy the Bot User OAuth Token (xoxb-…)",
        "SLACK_SIGNING_SECRET is not set; copy it from Basic Information → App Credentials "
        "(or set SLACK_APP_TOKEN for Socket Mode)",
        "HITL_CHANNEL is not set; give the ID of the channel for questions",
    ]


def test_no_label_set_refuses_to_start_and_says_how_to_give_one(tmp_path: Path):
    env = {
        "HITL_DB": str(tmp_path / "hitl.db"),
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "HITL_CHANNEL": "C1",
        "HITL_PORT": "1",
    }
    result = serve(env)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: no label set: set HITL_LABELS (e.g. HITL_LABELS=billing,bug,account) or import "
        "items with labels (hitl import FILE --label-column label)\n"
    )


async def test_socket_mode_answers_a_click_and_a_command(fake_slack: FakeSlack, tmp_path: Path):
    socket = FakeSocketMode()
    fake_slack.socket_url = await socket.start()
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    settings = make_settings(
        fake_slack, tmp_path, slack_app_token=fake_slack.app_token, slack_signing_secret=None
    )
    app = init_app(settings, run_background=False)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    handler = await start_socket_mode(app, settings.slack_app_token)
    try:
        rt = app[RUNTIME]
        await app_dispatch_fill(app)
        message = fake_slack.messages(CHANNEL)[0]
        button = next(
            e for b in message["blocks"] for e in b.get("elements", [])
            if e.get("action_id") == "hitl.q.label.0"
        )  # fmt: skip
        payload = signing.block_actions_payload(
            "U0ANA", button["action_id"], button["value"], message_ts=message["ts"],
            block_id="q:a", message=message,
        )  # fmt: skip
        envelope = await socket.send_envelope("interactive", payload)
        await socket.next_ack(envelope)
        assert rt.store.resolution("a")["annotators"] == ["U0ANA"]

        command = await socket.send_envelope("slash_commands", signing.command_fields("stats"))
        ack = await socket.next_ack(command)
        assert "*Answers today:* 1" in json.dumps(ack["payload"], ensure_ascii=False)
        assert app[BOLT] is not None
    finally:
        await handler.close_async()
        await runner.cleanup()
        await socket.close()


async def app_dispatch_fill(app: web.Application) -> None:
    from bot.server import DISPATCHER

    assert await app[DISPATCHER].fill() == 1


@pytest.mark.parametrize("path", ["/healthz"])
async def test_healthz_reports_the_database(fake_slack: FakeSlack, tmp_path: Path, path: str):
    from aiohttp.test_utils import TestClient, TestServer

    seed(tmp_path / "hitl.db", [Item("a", "x")])
    app = init_app(make_settings(fake_slack, tmp_path), run_background=False)
    async with TestServer(app, host="127.0.0.1") as server, TestClient(server) as http:
        response = await http.get(path)
        assert response.status == 200
        body = await response.json()
        assert (body["ok"], body["db"], body["champion"]) == (True, "ok", None)
