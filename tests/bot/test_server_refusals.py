"""What `hitl serve` refuses, and how it says so: a port already in use (one line, no
traceback), a request Slack did not sign (a warning in the log at the default level, without
the body), and a signed body that is not one of Slack's requests (400, where an action or
command no listener takes gets Bolt's 404, and an event nothing acts on a quiet 200)."""

from __future__ import annotations

import asyncio
import errno
import faulthandler
import logging
import signal
import socket
import time
from pathlib import Path

import pytest

from bot import server
from bot.errors import ConfigError, HitlError
from bot.sandbox import FakeSlack
from tests import signing
from tests.bot.harness import SECRET, Bot, Item, make_settings, seed, start_bot

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        yield running


# -- a port in use ----------------------------------------------------------------------------


async def test_serve_on_a_port_in_use_raises_one_line_saying_what_to_change(
    fake_slack: FakeSlack, tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(faulthandler, "enable", lambda **_: None)  # pytest's own stays
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    settings = make_settings(fake_slack, tmp_path, host="127.0.0.1", port=taken_port)
    with pytest.raises(HitlError) as refused:
        await server.serve(settings, announce=lambda line: None)
    assert str(refused.value) == (
        f"port {taken_port} on 127.0.0.1 is in use (another hitl serve?): "
        "stop it or set HITL_PORT / --port"
    )


@pytest.mark.parametrize("refusal", ["no signing secret", "port in use"])
async def test_a_refused_serve_hands_ctrl_c_sigterm_and_sighup_back_to_its_caller(
    fake_slack: FakeSlack,
    tmp_path: Path,
    taken_port: int,
    monkeypatch: pytest.MonkeyPatch,
    refusal: str,
):
    """A program that runs serve() on its own event loop and meets a refusal keeps its loop's
    signals: no handler of the refused serve() is left to take a later Ctrl-C into a stop that
    nothing waits for. (The refusal init_app makes, no SLACK_SIGNING_SECRET outside Socket
    Mode, is said by `hitl serve` before it calls serve(); the port's is said from inside.)"""
    monkeypatch.setattr(faulthandler, "enable", lambda **_: None)  # pytest's own stays
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    if refusal == "no signing secret":
        settings = make_settings(fake_slack, tmp_path, slack_signing_secret=None)
        refused: type[Exception] = ConfigError
    else:
        settings = make_settings(fake_slack, tmp_path, host="127.0.0.1", port=taken_port)
        refused = HitlError
    with pytest.raises(refused):
        await server.serve(settings, announce=lambda line: None)
    loop = asyncio.get_running_loop()
    left = [sig for sig in server.STOP_SIGNALS if loop.remove_signal_handler(sig)]
    assert [signal.Signals(sig).name for sig in left] == []


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(errno.EACCES, "Permission denied"),
         "not allowed to listen on port 80 on 10.0.0.1 (ports below 1024 need root): "
         "set HITL_PORT / --port"),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"),
         "cannot listen on 10.0.0.1: it is not an address of this machine; set HITL_HOST / "
         "--host (e.g. 127.0.0.1, or 0.0.0.0 for every address)"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
         "cannot listen on 10.0.0.1: it is not an address of this machine; set HITL_HOST / "
         "--host (e.g. 127.0.0.1, or 0.0.0.0 for every address)"),
        (OSError(errno.EMFILE, "Too many open files"),
         "cannot listen on 10.0.0.1:80 (Too many open files): set HITL_HOST / --host or "
         "HITL_PORT / --port"),
    ],
)  # fmt: skip
def test_every_reason_not_to_listen_is_one_line_naming_the_setting(error: OSError, expected: str):
    assert server.listen_problem("10.0.0.1", 80, error) == expected


# -- a request Slack did not sign -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sign", "reason"),
    [
        (lambda body: signing.sign(body, "not-the-secret", FORM),
         "the signature does not match SLACK_SIGNING_SECRET"),
        (lambda body: signing.sign(body, SECRET, FORM, int(time.time()) - 6 * 60),
         "its timestamp is over 5 minutes off"),
        (lambda body: (body, {"Content-Type": FORM}),
         "no X-Slack-Signature or X-Slack-Request-Timestamp header"),
        (lambda body: (body, {**signing.sign(body, SECRET, FORM)[1],
                              "X-Slack-Request-Timestamp": "soon"}),
         "a malformed signature timestamp or body"),
        # hmac.compare_digest raises on text that is not ASCII: was a 500 and a traceback
        (lambda body: (body, {**signing.sign(body, SECRET, FORM)[1],
                              "X-Slack-Signature": "v0=\u00e9"}),
         "a malformed X-Slack-Signature header (not ASCII)"),
    ],
)  # fmt: skip
async def test_a_request_without_slacks_signature_is_a_warning_without_its_body(
    bot: Bot, caplog: pytest.LogCaptureFixture, sign, reason: str
):
    caplog.set_level(logging.WARNING)  # hitl serve's default level
    body = signing.signed_command(signing.command_fields("stats secret-words"), SECRET)[0]
    response = await bot.post(*sign(body))
    assert response.status == 401
    records = [r for r in caplog.records if r.name == "bot.server"]
    assert [r.levelname for r in records] == ["WARNING"]  # shown at the default level
    line = records[0].getMessage()
    assert line.startswith(
        f"refused a request to /slack/events ({len(body)} bytes) without a valid Slack "
        f"signature: {reason}"
    )
    assert "\n" not in line and "secret-words" not in line and "stats" not in line


# -- a signed body that is not one of Slack's requests ----------------------------------------

NOT_SLACK = [
    (b"this is not a form", FORM),
    (b"", FORM),
    (b"", JSON),
    (b"a=1&b=2", FORM),
    (b"payload=%7B%7D", FORM),
    (b"{}", JSON),
    (b'{"type": "zzz"}', JSON),
    (b'{"type": "block_actions"}', JSON),
    (b'{"type": "block_actions", "user": {"id": "U0ANA"}}', JSON),
    (b'{"type": "event_callback"}', JSON),
    (b'{"type": "event_callback", "event": 5}', JSON),
    (b"hello", "text/plain"),
    (b"[1, 2]", JSON),
    (b"payload=%7Bbad", FORM),
]


@pytest.mark.parametrize(("body", "content_type"), NOT_SLACK)
async def test_a_signed_body_that_is_not_a_slack_request_is_a_400(
    bot: Bot, caplog: pytest.LogCaptureFixture, body: bytes, content_type: str
):
    caplog.set_level(logging.WARNING)
    response = await bot.post(*signing.sign(body, SECRET, content_type))
    assert response.status == 400
    assert await response.json() == {"error": "malformed request"}
    [line] = [r.getMessage() for r in caplog.records if r.name == "bot.server"]
    assert line.startswith("malformed Slack request: ")
    assert bot.store.count_answers() == 0


async def test_an_action_or_command_no_listener_takes_is_bolts_404_an_event_200(bot: Bot):
    click = signing.block_actions_payload("U0ANA", "someone.elses.action", "x")
    assert (await bot.action(click)).status == 404
    message = signing.event_envelope({"type": "message", "text": "hi", "user": "U0ANA"})
    assert (await bot.event(message)).status == 200  # acknowledged: Slack would send it again
    other = signing.command_fields("stats", command="/other")
    assert (await bot.post(*signing.signed_command(other, SECRET))).status == 404


async def test_slacks_own_checks_are_answered(bot: Bot):
    check = await bot.post(*signing.sign(b"ssl_check=1&token=x", SECRET, FORM))
    assert check.status == 200
    verify = await bot.event(signing.url_verification_envelope("chal-42"))
    assert verify.status == 200
    assert (await verify.json())["challenge"] == "chal-42"
    assert (await bot.command("help")).status == 200
