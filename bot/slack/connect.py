"""Reaching Slack at start: who the bot is and whether it sees its channels (``check_slack``),
and Socket Mode's connection (``SocketMode``), each retried with backoff while Slack cannot be
reached, one line per failed attempt; a refusal is a ``ConfigError`` naming what to fix.
``bot.server`` calls these while it composes the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.appkeys import BOLT, RUNTIME
from bot.config import Settings
from bot.errors import SLACK_TOKEN_REFUSED, ConfigError, slack_said
from bot.eventloop import urgent
from bot.runtime import Runtime, one_try
from bot.slack.acks import dispatch_until_acked

logger = logging.getLogger(__name__)

RETRY_BASE = 1.0  # seconds before the second attempt to reach Slack at start
MAX_BACKOFF = 60.0  # seconds between two attempts to reach Slack, at most
MAX_DOUBLINGS = 32  # past this the cap holds for any base; more would overflow a float


def channel_settings(settings: Settings) -> list[tuple[str, str]]:
    """Every channel the bot posts in, with the setting that names it."""
    named = [("HITL_CHANNEL", settings.channel), ("HITL_REPORT_CHANNEL", settings.report_channel)]
    named += [(f"routes.{label}", channel) for label, channel in sorted(settings.routes.items())]
    return [(name, channel) for name, channel in named if channel]


# -- Slack, asked once at start ------------------------------------------------------------

UNREACHABLE = (SlackClientError, aiohttp.ClientError, OSError, TimeoutError)
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


def is_transient(exc: SlackApiError) -> bool:
    """A Slack error worth another try later (rate limit, 5xx), not a refusal."""
    status = getattr(exc.response, "status_code", 200)
    return status == 429 or status >= 500 or slack_said(exc) in TRANSIENT_ERRORS


def not_from_slack(exc: SlackApiError, base_url: str) -> str | None:
    """The line for an error answered without Slack's JSON (``ok``, ``error``): a wrong path in
    SLACK_API_URL, or something else answering there (a proxy's error page); None for Slack's
    own refusal."""
    if slack_said(exc) is not None:
        return None
    status = getattr(exc.response, "status_code", None)
    return (
        f"SLACK_API_URL ({base_url}) answered HTTP {status} without Slack's JSON: check "
        "SLACK_API_URL (unset, it is https://slack.com/api/) and any proxy in between"
    )


def describe(exc: BaseException) -> str:
    """One line about a failed connection: the exception's kind and its first line."""
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def backoff(attempt: int, base: float = RETRY_BASE) -> float:
    """``base`` doubled ``attempt`` times, at most MAX_BACKOFF. The exponent is capped: after
    1,024 attempts (17 hours of Slack unreachable at start) ``2**attempt`` times a float
    raised OverflowError, and `hitl serve` stopped with a traceback instead of trying on."""
    return min(base * 2 ** min(attempt, MAX_DOUBLINGS), MAX_BACKOFF)


async def retry_until_answered(
    call: Callable[[], Awaitable[Any]], trouble: str, base: float = RETRY_BASE
) -> Any:
    """``call()`` until Slack answers it: while Slack cannot be reached (or says "later"), one
    line per failed attempt, and the wait between two attempts doubles from ``base`` seconds
    (HITL_CONNECT_RETRY) up to a minute. A refusal (``SlackApiError``) is raised for the caller
    to explain. Cancelling stops it."""
    attempt = 0
    while True:
        try:
            return await call()
        except SlackApiError as exc:
            if not is_transient(exc):
                raise
            error = slack_said(exc)
            status = getattr(exc.response, "status_code", None)
            reason = f"Slack said {error}" if error else f"HTTP {status}, not Slack's JSON"
        except UNREACHABLE as exc:
            reason = describe(exc)
        delay = backoff(attempt, base)
        logger.warning("%s (%s); retrying in %g s", trouble, reason, delay)
        await asyncio.sleep(delay)
        attempt += 1


def token_refused(error: str | None) -> str:
    return (
        f"SLACK_BOT_TOKEN was refused by Slack ({error}); copy the Bot User OAuth Token "
        "(xoxb-…) from OAuth & Permissions"
    )


async def check_slack(rt: Runtime) -> Mapping[str, Any]:
    """Ask Slack once who the bot is (``auth.test``) and whether it sees its channels
    (``conversations.info``: ``channels:read``, ``groups:read`` for a private channel). A
    refusal is a ``ConfigError`` naming the setting to fix (a missing scope only a warning:
    the channel may still work); while Slack cannot be reached this keeps trying. Returns
    the ``auth.test`` answer."""
    trouble = f"cannot reach Slack at {rt.client.base_url}"
    client = one_try(rt.client)  # each logged attempt one call; the waits are the setting's
    try:
        auth = await retry_until_answered(client.auth_test, trouble, rt.settings.connect_retry)
    except SlackApiError as exc:
        line = not_from_slack(exc, str(rt.client.base_url)) or token_refused(slack_said(exc))
        raise ConfigError([line]) from None
    rt.bot_user_id = auth.get("user_id")
    problems = []
    for name, channel in channel_settings(rt.settings):

        async def channel_info(channel: str = channel) -> Any:
            return await client.conversations_info(channel=channel)

        try:
            info = await retry_until_answered(channel_info, trouble, rt.settings.connect_retry)
            if (info.get("channel") or {}).get("is_archived"):
                problems.append(
                    f"{name}={channel}: the channel is archived; unarchive it in Slack or name "
                    "another channel"
                )
        except SlackApiError as exc:
            error = slack_said(exc)
            if error in SLACK_TOKEN_REFUSED:  # revoked since auth.test: not the channel
                raise ConfigError([token_refused(error)]) from None
            if error == "missing_scope":  # an app installed before the manifest asked for it
                needed = slack_said(exc, "needed") or "channels:read"
                logger.warning(
                    "cannot check %s=%s: the app lacks %s (missing_scope); add it under OAuth & "
                    "Permissions → Bot Token Scopes and reinstall the app",
                    name,
                    channel,
                    needed,
                )
            else:
                problems.append(
                    f"{name}={channel}: the bot cannot see this channel ({error}); check the "
                    "ID, and in a private channel /invite @hitl"
                )
    if problems:
        raise ConfigError(problems)
    return auth.data


# -- Socket Mode ----------------------------------------------------------------------------


class _OneAttemptClient(SocketModeClient):
    """slack_sdk's aiohttp Socket Mode client, making one attempt per ``connect()``.

    The library's ``connect()`` retries a failure itself, forever, every few seconds, with a
    traceback each time, and reuses a wss URL that has already been used. Here a failed
    attempt raises and forgets its URL, and ``SocketMode.connect`` retries with backoff, one
    line per attempt. Once connected, reconnections (Slack recycles connections) go through
    the library's session monitor, which calls this and logs one line when it fails.
    """

    async def issue_new_wss_url(self) -> str:
        # The library's version logs a two-line error and sleeps out a rate limit itself.
        response = await self.web_client.apps_connections_open(app_token=self.app_token)
        return response["url"]

    async def connect(self) -> None:
        old = self.current_session
        self.auto_reconnect_enabled = False
        try:
            if old is not None and not old.closed:
                with contextlib.suppress(Exception):
                    await old.close()
            if self.aiohttp_client_session.closed:
                self.aiohttp_client_session = aiohttp.ClientSession()
            if self.wss_uri is None:
                self.wss_uri = await self.issue_new_wss_url()
            try:
                session = await self.aiohttp_client_session.ws_connect(
                    self.wss_uri,
                    autoping=False,
                    heartbeat=self.ping_interval,
                    proxy=self.proxy,
                    ssl=self.web_client.ssl if self.web_client.ssl is not None else True,
                )
            finally:
                self.wss_uri = None  # one URL, one connection: the next attempt asks again
        finally:
            self.auto_reconnect_enabled = self.default_auto_reconnect_enabled
        self.current_session = session
        self.stale = False
        await session.ping(f"sdk-ping-pong:{time.time()}".encode())
        for task in (self.current_session_monitor, self.message_receiver):
            if task is not None:
                task.cancel()
        self.current_session_monitor = asyncio.ensure_future(self.monitor_current_session())
        self.message_receiver = asyncio.ensure_future(self.receive_messages())


class SocketMode:
    """Slack's requests over Socket Mode: envelopes in over a websocket, to the Bolt app, and
    its answers back as acks (apps.connections.open goes through SLACK_API_URL)."""

    def __init__(self, bolt: AsyncApp, app_token: str, rt: Runtime):
        self.bolt = bolt
        self.rt = rt
        self.client = _OneAttemptClient(
            app_token=app_token,
            logger=logging.getLogger("bot.socket_mode"),
            web_client=rt.client,
            ping_interval=10,
        )
        self.client.socket_mode_request_listeners.append(self._handle)

    async def _handle(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        started = time.time()
        urgent()  # this request's steps run ahead of the producers' (bot/eventloop.py)
        response = await dispatch_until_acked(
            lambda: run_async_bolt_app(self.bolt, request), self.rt.background.keep
        )
        await send_async_response(client, request, response, started)

    async def connect(self) -> None:
        """Connect, retrying with backoff while Slack cannot be reached; a refused app-level
        token is a ``ConfigError``."""
        trouble = "Socket Mode: cannot connect to Slack"
        # apps.connections.open one try per attempt (``one_try``); once connected, the
        # library's reconnections get the server's client and its retries back.
        self.client.web_client = one_try(self.rt.client)
        try:
            await retry_until_answered(self.client.connect, trouble, self.rt.settings.connect_retry)
        except SlackApiError as exc:
            error = slack_said(exc)
            if error == "not_enabled":
                line = (
                    "Socket Mode is not enabled for this app; turn it on under Socket Mode "
                    "(manifest.yml: socket_mode_enabled: true), or unset SLACK_APP_TOKEN"
                )
            else:
                line = (
                    f"SLACK_APP_TOKEN was refused by Slack ({error}); generate an app-level "
                    "token (xapp-…) with connections:write under Basic Information → "
                    "App-Level Tokens"
                )
            raise ConfigError([line]) from None
        finally:
            self.client.web_client = self.rt.client

    async def close(self) -> None:
        await self.client.close()


async def start_socket_mode(app: web.Application, app_token: str) -> SocketMode:
    """Connect the started app to Slack over Socket Mode."""
    socket = SocketMode(app[BOLT], app_token, app[RUNTIME])
    try:
        await socket.connect()
    except BaseException:
        await socket.close()
        raise
    return socket
