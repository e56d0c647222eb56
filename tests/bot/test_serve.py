"""`hitl serve`: refuses to start without what it needs; Socket Mode through a local websocket."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner

from bot import server
from bot.cli import cli
from bot.errors import ConfigError
from bot.sandbox import FakeSlack
from bot.server import BOLT, RUNTIME, init_app
from bot.slack.connect import start_socket_mode
from bot.slack.dispatch import Dispatcher
from tests import signing
from tests.bot.harness import SECRET, Item, make_settings, seed, seed_champion, start_bot
from tests.bot.test_serve_process import free_port
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
        "no label set: set HITL_LABELS (e.g. HITL_LABELS=billing,bug,account) or import "
        "items with labels (hitl import FILE --label-column label)",
    ]


def startable(tmp_path: Path, **more: str) -> dict[str, str]:
    """Everything `hitl serve` needs but a label set (it refuses before it binds the port)."""
    return {
        "HITL_DB": str(tmp_path / "hitl.db"),
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "HITL_CHANNEL": "C1",
        "HITL_PORT": "1",
        **more,
    }


def test_no_label_set_refuses_to_start_and_says_how_to_give_one(tmp_path: Path):
    result = serve(startable(tmp_path))
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: no label set: set HITL_LABELS (e.g. HITL_LABELS=billing,bug,account) or import "
        "items with labels (hitl import FILE --label-column label)\n"
    )


def test_a_route_or_guideline_for_no_label_refuses_to_start_naming_it(tmp_path: Path):
    # "Billing" for "billing", or a typo, in [hitl.routes] was accepted and never applied:
    # the label's questions went to the default channel without a word.
    config = tmp_path / "hitl.toml"
    config.write_text(
        '[hitl]\nlabels = ["billing", "bug", "account"]\n'
        '[hitl.routes]\nBilling = "C0BILLING"\nbugz = "C0BUGS"\n'
        '[labels.acount]\ndescription = "Logins and profiles"\n'
    )
    result = serve(startable(tmp_path, HITL_CONFIG=str(config)))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: [hitl.routes] names 'Billing', which is not a label in force (billing, bug,"
        " account); did you mean 'billing'?",
        "[hitl.routes] names 'bugz', which is not a label in force (billing, bug, account)",
        "[labels.*] names 'acount', which is not a label in force (billing, bug, account)",
    ]


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
    socket_mode = await start_socket_mode(app, settings.slack_app_token)
    try:
        rt = app[RUNTIME]
        await app_dispatch_fill(app)
        message = fake_slack.messages(CHANNEL)[0]
        button = next(
            e
            for b in message["blocks"]
            for e in b.get("elements", [])
            if e.get("action_id") == "hitl.q.label.0"
        )
        payload = signing.block_actions_payload(
            "U0ANA",
            button["action_id"],
            button["value"],
            message_ts=message["ts"],
            block_id="q:a",
            message=message,
        )
        envelope = await socket.send_envelope("interactive", payload)
        await socket.next_ack(envelope)
        assert rt.store.resolution("a")["annotators"] == ["U0ANA"]

        command = await socket.send_envelope("slash_commands", signing.command_fields("stats"))
        ack = await socket.next_ack(command)
        assert "*Answers today:* 1" in json.dumps(ack["payload"], ensure_ascii=False)
        assert app[BOLT] is not None
    finally:
        await socket_mode.close()
        await runner.cleanup()
        await socket.close()


async def app_dispatch_fill(app: web.Application) -> None:
    assert await Dispatcher.of(app[RUNTIME]).fill() == 1


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


# -- Slack is asked who we are once, at start (issue 15, point 8; issue 16, point 10) ----------


async def test_a_click_right_after_start_needs_no_auth_test(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        assert len(fake_slack.calls_to("auth.test")) == 1  # checked at start, before any request
        await bot.dispatcher.fill()
        fake_slack.fail("auth.test", "invalid_auth", times=10)  # from now on auth.test fails
        response = await bot.action(bot.button_payload(bot.posted()[0], "U0ANA", "billing"))
        assert response.status == 200
        assert bot.store.resolution("a")["annotators"] == ["U0ANA"]
        assert len(fake_slack.calls_to("auth.test")) == 1
        assert bot.rt.bot_user_id == fake_slack.bot_user_id


def refused(fake: FakeSlack, case: str) -> tuple[dict, str]:
    """Settings Slack refuses at start, and the one line that says what to fix."""
    if case == "bad bot token":
        return {"slack_bot_token": "xoxb-0000-wrong"}, (
            "SLACK_BOT_TOKEN was refused by Slack (invalid_auth); copy the Bot User OAuth Token "
            "(xoxb-…) from OAuth & Permissions"
        )
    if case == "unknown channel":
        return {"channel": "C0NOSUCH"}, (
            "HITL_CHANNEL=C0NOSUCH: the bot cannot see this channel (channel_not_found); check "
            "the ID, and in a private channel /invite @hitl"
        )
    if case == "private channel without the bot":
        fake.add_channel("G0SECRET", "secret", is_private=True, is_member=False)
        return {"routes": {"billing": "G0SECRET"}}, (
            "routes.billing=G0SECRET: the bot cannot see this channel (channel_not_found); check "
            "the ID, and in a private channel /invite @hitl"
        )
    if case == "token revoked after auth.test":
        fake.fail("conversations.info", "token_revoked", times=1)
        return {}, (
            "SLACK_BOT_TOKEN was refused by Slack (token_revoked); copy the Bot User OAuth Token "
            "(xoxb-…) from OAuth & Permissions"
        )
    if case == "archived report channel":
        fake.add_channel("C0REPORTS", "hitl-reports")
        fake.archive_channel("C0REPORTS")
        return {"report_channel": "C0REPORTS"}, (
            "HITL_REPORT_CHANNEL=C0REPORTS: the channel is archived; unarchive it in Slack or "
            "name another channel"
        )
    assert case == "bad app token"
    return {"slack_app_token": "xapp-1-wrong", "slack_signing_secret": None}, (
        "SLACK_APP_TOKEN was refused by Slack (invalid_auth); generate an app-level token "
        "(xapp-…) with connections:write under Basic Information → App-Level Tokens"
    )


@pytest.mark.parametrize(
    "case",
    [
        "bad bot token",
        "unknown channel",
        "private channel without the bot",
        "archived report channel",
        "token revoked after auth.test",
        "bad app token",
    ],
)
async def test_serve_refuses_to_start_in_one_line_when_slack_refuses(
    fake_slack: FakeSlack, tmp_path: Path, case: str
):
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    changes, expected = refused(fake_slack, case)
    settings = make_settings(fake_slack, tmp_path, port=free_port(), **changes)
    with pytest.raises(ConfigError) as raised:
        await asyncio.wait_for(server.serve(settings), 30)
    assert str(raised.value) == expected
    assert fake_slack.calls_to("chat.postMessage") == []


async def test_serve_says_when_slack_api_url_answers_without_slacks_json(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A wrong path in SLACK_API_URL (or something else answering there): a text/plain 404 is
    one line naming the setting, not an AttributeError traceback ('str' object has no
    attribute 'get') nor "SLACK_BOT_TOKEN was refused by Slack (None)"."""
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    fake_slack.fail("auth.test", "Not Found", status=404, mode="text")
    settings = make_settings(fake_slack, tmp_path, port=free_port())
    with pytest.raises(ConfigError) as raised:
        await asyncio.wait_for(server.serve(settings), 30)
    assert str(raised.value) == (
        f"SLACK_API_URL ({settings.slack_api_url}) answered HTTP 404 without Slack's JSON: check "
        "SLACK_API_URL (unset, it is https://slack.com/api/) and any proxy in between"
    )


@pytest.mark.parametrize(
    "channel", ["#general", "general", "c0123abcd", "https://x.slack.com/archives/C01"]
)
def test_a_channel_name_instead_of_an_id_is_refused_in_one_line(tmp_path: Path, channel: str):
    env = {
        "HITL_DB": str(tmp_path / "hitl.db"),
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "HITL_CHANNEL": channel,
        "HITL_LABELS": "billing,bug",
    }
    result = serve(env)
    assert result.exit_code == 1
    assert result.stderr == (
        f'Error: HITL_CHANNEL="{channel}" is not a channel ID; copy the ID from the channel\'s '
        "details (at the bottom), e.g. C0123ABCD\n"
    )


async def test_starting_logs_no_warning_with_the_token_in_the_environment(
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    monkeypatch.setenv("SLACK_BOT_TOKEN", fake_slack.token)  # as `hitl serve` is usually run
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    caplog.set_level(logging.DEBUG)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        await bot.dispatcher.fill()
    assert "will be unused" not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_missing_scope_for_the_channel_check_is_a_warning_not_a_refusal(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    # An app installed before the manifest asked for channels:read still starts, and is told
    # how to let the check run.
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    fake_slack.fail("conversations.info", "missing_scope")
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        assert await bot.dispatcher.fill() == 1
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        f"cannot check HITL_CHANNEL={CHANNEL}: the app lacks channels:read (missing_scope); add "
        "it under OAuth & Permissions → Bot Token Scopes and reinstall the app"
    )


async def test_a_server_that_creates_its_database_says_so_where_it_is(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Started from another folder (a systemd WorkingDirectory, cron) with HITL_LABELS set,
    `hitl serve` made a new empty ./hitl.db and ran healthy without a word (an outside
    operations test). It says it created one, and where; a database that was there is not
    told."""
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))
    assert not settings.db.exists()
    with caplog.at_level(logging.WARNING, logger="bot.server"):
        async for _bot in start_bot(fake_slack, settings):
            pass
    said = [r.getMessage() for r in caplog.records if "new, empty database" in r.getMessage()]
    assert said == [
        f"created a new, empty database at {settings.db} (nothing was there); if the team's"
        " database is elsewhere, stop the server and point HITL_DB at it (a hitl.toml beside it"
        " is read only from the folder hitl runs in)"
    ]
    caplog.clear()
    async for _bot in start_bot(fake_slack, settings):  # the database is there now
        pass
    assert not [r for r in caplog.records if "new, empty database" in r.getMessage()]


async def test_a_database_file_of_0_bytes_is_said_to_be_empty(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A hitl.db of 0 bytes (truncated by a disk error, or made by `touch`) is an empty
    database to SQLite: the server started on it without a word, the team's data gone
    (outside test of resources)."""
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))
    settings.db.touch()
    with caplog.at_level(logging.WARNING, logger="bot.server"):
        async for _bot in start_bot(fake_slack, settings):
            pass
    said = [r.getMessage() for r in caplog.records if "empty" in r.getMessage()]
    assert said == [
        f"made a new, empty database in {settings.db}, an empty file (0 bytes: nothing was stored"
        " in it); if the team's database was there, stop the server and restore it from a backup"
        " (`hitl restore BACKUP`), or point HITL_DB at where it is"
    ]
    caplog.clear()
    async for _bot in start_bot(fake_slack, settings):  # a database now: nothing said
        pass
    assert not [r for r in caplog.records if "empty" in r.getMessage()]


async def test_a_lock_file_deleted_under_the_server_is_made_again_and_said(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """`rm hitl.db.server.lock` (a cleanup of "stale" lock files) let a second `hitl serve`
    start on the database beside the first, which never noticed (an outside operations test).
    The server looks now and then (``watch_lock``): it makes the file again and locks it, said
    once; a server that started on the new file meanwhile is named in an error."""
    from bot.appkeys import SERVER_LOCK
    from bot.errors import StoreError
    from bot.store.lock import lock_path, server_lock

    seed(tmp_path / "hitl.db", [Item("a", "x")])
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))
    async for bot in start_bot(fake_slack, settings):
        held = bot.http.server.app[SERVER_LOCK]
        path = lock_path(settings.db.resolve())
        with caplog.at_level(logging.WARNING, logger="bot.store.lock"):
            held.check()  # all well: nothing said
            path.unlink()
            held.check()
            held.check()  # said once
        said = [r.getMessage() for r in caplog.records if r.name == "bot.store.lock"]
        assert len(said) == 1 and said[0].startswith(f"the lock file {path} was deleted or")
        assert path.exists()
        with pytest.raises(StoreError, match="in use by another hitl server"):
            with server_lock(settings.db):  # a second server is refused again
                pass
        caplog.clear()
        path.unlink()  # deleted again, and another server takes the new file first
        with server_lock(settings.db), caplog.at_level(logging.ERROR, logger="bot.store.lock"):
            held.check()
        [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert "another hitl server or demo started on" in error and "stop one of them" in error


async def test_the_start_loads_its_champion_with_no_automatic_collection(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The champion's load at start imports most of scikit-learn and skops; each automatic
    collection meanwhile walked the objects those imports had just made (0.13 s of the load's
    0.9 s of CPU). They wait until it is done (``server.collection_paused``), and collect again
    once it is: here any collection (the threshold is lowered so that one would come) counts."""
    db = tmp_path / "hitl.db"
    seed_champion(db, ["refund my invoice", "app crashes"] * 3, ["billing", "bug"] * 3)
    in_load: list[int] = []

    def seen(phase: str, info: dict) -> None:
        frame = sys._getframe(1)
        while phase == "start" and frame is not None:
            if frame.f_code.co_name == "load_champion":
                in_load.append(info["generation"])
                return
            frame = frame.f_back

    thresholds = gc.get_threshold()
    gc.set_threshold(50)  # a load makes thousands of objects: collections would come
    gc.callbacks.append(seen)
    try:
        async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
            assert bot.rt.champion is not None and bot.rt.champion.version == 1
            assert gc.isenabled()
    finally:
        gc.callbacks.remove(seen)
        gc.set_threshold(*thresholds)
    assert in_load == []
