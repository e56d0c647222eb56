"""Reaching Slack at start: who the bot is and whether it sees its channels (``check_slack``),
and Socket Mode's connection (``SocketMode``), each retried with backoff while Slack cannot be
reached, one line per failed attempt; a refusal is a ``ConfigError`` naming what to fix.
``bot.server`` calls these while it composes the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.appkeys import BOLT, RUNTIME
from bot.config import SPECS, Settings, _named_where_set
from bot.errors import SLACK_TOKEN_REFUSED, ConfigError, slack_said
from bot.eventloop import urgent
from bot.runtime import SLACK_TIMEOUT, Runtime, one_try
from bot.slack.acks import dispatch_until_acked

logger = logging.getLogger(__name__)

RETRY_BASE = 1.0  # seconds before the second attempt to reach Slack at start
MAX_BACKOFF = 60.0  # seconds between two attempts to reach Slack, at most
MAX_DOUBLINGS = 32  # past this the cap holds for any base; more would overflow a float


def channel_settings(settings: Settings) -> list[tuple[str, str]]:
    """Every channel the bot posts in, with the setting that names it, named where its value
    came from (``bot.config.channel_id_problems``): its variable, or the file and its key
    (``hitl.toml report_channel``)."""
    named = [
        (_named_where_set(settings, spec), getattr(settings, spec.name))
        for spec in SPECS
        if spec.name in ("channel", "report_channel")
    ]
    named += [(f"routes.{label}", channel) for label, channel in sorted(settings.routes.items())]
    return [(name, channel) for name, channel in named if channel]


# -- Slack, asked once at start ------------------------------------------------------------

UNREACHABLE = (SlackClientError, aiohttp.ClientError, OSError, TimeoutError)
# What Bolt's parsing of a request not shaped like Slack's raises (as ``bot.server`` catches)
MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError)
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


# A URL's query and fragment: a Socket Mode URL's carries the connection ticket
# (``wss://…/link/?ticket=…``), which opens the app's connection to whoever has it.
URL_QUERY = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>?#]*)[?#][^\s'\"<>]*")


def without_query(text: str) -> str:
    """``text`` with every URL's query string (and fragment) written ``?…``: the host and path
    stay, to tell where a connection failed; a ticket does not reach the log or /healthz."""
    return URL_QUERY.sub(r"\1?…", text)


def describe(exc: BaseException) -> str:
    """One line about a failed connection: the exception's kind and its first line, without
    any URL's query string (aiohttp's handshake error names the URL, ticket included)."""
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {without_query(lines[0])}" if lines else type(exc).__name__


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
            reason, wait = said_later(exc)
        except UNREACHABLE as exc:
            reason, wait = describe(exc), 0.0
        delay = max(backoff(attempt, base), wait)
        logger.warning("%s (%s); retrying in %g s", trouble, reason, delay)
        await asyncio.sleep(delay)
        attempt += 1


def said_later(exc: SlackApiError) -> tuple[str, float]:
    """Why a transient Slack error failed a call, in a few words, and how long Slack asked to
    wait before the next (a rate limit's Retry-After; else 0)."""
    error = slack_said(exc)
    status = getattr(exc.response, "status_code", None)
    headers = getattr(exc.response, "headers", None) or {}
    retry_after = headers.get("Retry-After") or headers.get("retry-after")
    try:
        wait = max(float(retry_after), 0.0) if retry_after is not None else 0.0
    except ValueError:
        wait = 0.0
    reason = f"Slack said {error}" if error else f"HTTP {status}, not Slack's JSON"
    if status == 429 or error == "ratelimited":
        reason += f": Slack rate-limits this call, Retry-After {wait:g} s"
    return reason, wait


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
    the ``auth.test`` answer.

    A route of a retired label is not checked: nothing is asked there while the label is
    retired (``bot.labelset.retired_in_config`` warns of it at start), and `/hitl labels
    retire` by an admin who cannot edit hitl.toml, then the unused channel archived, kept
    the bot from starting. Its channel is checked all the same when another setting names
    it."""
    trouble = f"cannot reach Slack at {rt.client.base_url}"
    client = one_try(rt.client)  # each logged attempt one call; the waits are the setting's
    try:
        auth = await retry_until_answered(client.auth_test, trouble, rt.settings.connect_retry)
    except SlackApiError as exc:
        line = not_from_slack(exc, str(rt.client.base_url)) or token_refused(slack_said(exc))
        raise ConfigError([line]) from None
    rt.bot_user_id = auth.get("user_id")
    problems = []
    unused = _retired_routes(rt)
    for name, channel in channel_settings(rt.settings):
        if name in unused:
            continue

        async def channel_info(channel: str = channel) -> Any:
            return await client.conversations_info(channel=channel)

        try:
            info = await retry_until_answered(channel_info, trouble, rt.settings.connect_retry)
            if isinstance(rt, Runtime):  # public or private: the labeling window's first
                # answer (a public channel served to everyone without asking Slack again)
                from bot.slack.modal import ChannelMembers

                ChannelMembers.of(rt).seen_at_start(channel, info.get("channel"))
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


def _retired_routes(rt: Runtime) -> set[str]:
    """The ``channel_settings`` names of the routes whose label (after its renames and
    merges) is retired: unused while it is (``check_slack`` does not check them)."""
    return {f"routes.{label}" for label in retired_route_labels(rt)}


def retired_route_labels(rt: Runtime) -> set[str]:
    """The labels of HITL routes (``rt.settings.routes``, as written) that are retired, after
    their renames and merges: nothing is asked in their channels while they are. One read of
    the label set's few rows, one of its aliases; none without routes."""
    if not rt.settings.routes:
        return set()
    retired = rt.store.retired_labels()
    if not retired:
        return set()
    aliases = rt.store.label_aliases()
    return {label for label in rt.settings.routes if aliases.get(label, label) in retired}


# -- Socket Mode ----------------------------------------------------------------------------

# Seconds apps.connections.open may take, and then again the websocket's handshake, before the
# attempt gives up (one line) and the next one asks for a new URL: a stuck edge that accepts
# TCP and never answers the upgrade held the bot deaf for aiohttp's default of 5 minutes.
CONNECT_TIMEOUT = SLACK_TIMEOUT
CLOSE_TIMEOUT = 2.0  # seconds Slack gets to answer the closing of a websocket
PING_INTERVAL = 10.0  # seconds between two pings on the websocket (slack_sdk's session monitor)
# Seconds without a Socket Mode connection before /healthz answers 503: no click, command or
# event reaches the bot meanwhile. A refusal that needs the operator (token refused, Socket
# Mode turned off) answers 503 at once.
SOCKET_GRACE = 30.0
# Seconds a connection must last for its end to count as an ordinary drop. One that ends sooner
# (closed as soon as it is made, too_many_websockets each time) does not reset the backoff: from
# the second in a row the reconnections wait as failed attempts do, said in one line.
MIN_LIFETIME = 30.0
# Seconds the replaced connection is still read after a refresh, as Slack may go on sending on it
# a while; then the bot closes it, reading on until Slack answers the close.
OLD_GRACE = 1.0
# Slack asks to move to a new connection; the one it is sent on still works.
ROUTINE = frozenset({"refresh_requested", "warning"})
_ENDED = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})
_CLOSE_FRAME = (1000).to_bytes(2, "big")  # WSCloseCode.OK

NOT_ENABLED = (
    "Socket Mode is not enabled for this app; turn it on under Socket Mode "
    "(manifest.yml: socket_mode_enabled: true), or unset SLACK_APP_TOKEN"
)


def app_token_refused(exc: SlackApiError) -> str:
    """The line for apps.connections.open's refusal: what the operator must fix."""
    error = slack_said(exc)
    if error == "not_enabled":
        return NOT_ENABLED
    return (
        f"SLACK_APP_TOKEN was refused by Slack ({error}); generate an app-level token (xapp-…) "
        "with connections:write under Basic Information → App-Level Tokens"
    )


def _is_disconnect(raw_message: str) -> bool:
    """Whether a message on the websocket is Slack's ``disconnect`` (asking for another)."""
    if '"disconnect"' not in raw_message:
        return False
    with contextlib.suppress(ValueError):
        message = json.loads(raw_message)
        return isinstance(message, dict) and message.get("type") == "disconnect"
    return False


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else f"{value / 60:.1f} min"


class _OneAttemptClient(SocketModeClient):
    """slack_sdk's aiohttp Socket Mode client (its session monitor and its acks), reading each
    connection itself, making one bounded attempt per ``connect()`` and reconnecting in one task
    of its own.

    The library's ``connect()`` retries a failure itself, forever, every few seconds, with a
    traceback each time, reuses a wss URL that has already been used, and waits for a
    handshake as long as aiohttp lets it (5 minutes). Its ``connect_to_new_endpoint`` waits 5 s
    for its lock and then connects anyway: two reconnections at once, and the websocket the
    first one made was never read nor closed. Its receiver stops reading a connection as soon
    as another replaces it, and sleeps a ping interval (10 s) when the connection ends without a
    close frame. Here ``connect()`` holds the lock, asks for a new URL and shakes hands within
    CONNECT_TIMEOUT each, and keeps the session it made; the one it replaces is still read for
    OLD_GRACE seconds, then closed, read until Slack answers the close (``_retire``). Each
    session has a reader of its own (``_read``), which asks for a reconnection as soon as the
    current session ends. Every request for a reconnection (Slack's ``disconnect``, a session
    found closed or stale) goes to ``keep_connected``, which reconnects with backoff, one line
    per failed attempt (a refusal said once while it lasts), one line when connections keep
    ending as soon as they are made, and one when it is connected again.
    """

    def __init__(self, *args: Any, opener: Any = None, retry_base: float = RETRY_BASE, **kw: Any):
        super().__init__(*args, **kw)
        self.opener = opener  # apps.connections.open: one try, a rate limit not waited out
        self.retry_base = retry_base
        self.keeper: asyncio.Task | None = None
        self.in_flight: set[asyncio.Future] = set()  # envelopes being handled
        self.retiring: set[asyncio.Task] = set()  # replaced sessions, read until they close
        self._leaving: set[Any] = set()  # sessions the bot is closing itself: no reconnection
        self._wanted = asyncio.Event()  # a reconnection is asked for
        self._close_first = False  # too_many_websockets: the old connection goes first
        self._why: str | None = None  # why the current connection ends, unless a routine move
        self.connected_at: float | None = None  # monotonic: the current session was made
        self.good_at: tuple[float, float] | None = None  # (monotonic, wall): last known good
        self.short = 0  # connections in a row that ended within MIN_LIFETIME
        self.down_since: float | None = None  # monotonic: the connection lost, or an attempt failed
        self.down_at: float | None = None  # the same moment, wall clock (for /healthz)
        self.dropped: str | None = None  # how the connection was lost, said when it is back
        self.problem: str | None = None  # the last failed attempt's line
        self.refusal: str | None = None  # a refusal the operator must fix, said once
        self.on_back: Callable[[], None] | None = None  # called when an outage ends

    # ---- one attempt

    async def issue_new_wss_url(self) -> str:
        # The library's version logs a two-line error and sleeps out a rate limit itself.
        opener = self.opener or self.web_client
        response = await opener.apps_connections_open(app_token=self.app_token)
        return response["url"]

    async def _within(self, work: Awaitable[Any], what: str) -> Any:
        limit = CONNECT_TIMEOUT
        try:
            async with asyncio.timeout(limit):
                return await work
        except TimeoutError:
            raise TimeoutError(f"{what} within {limit:g} s") from None

    async def _close_quietly(self, session: Any) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT + 1):
                await session.close()

    async def connect(self) -> None:
        async with self.connect_operation_lock:  # one connection made at a time
            if self.closed:
                return
            old = self.current_session
            if old is not None and self._close_first and not old.closed:
                # too_many_websockets: fewer connections first; what it still sends is read
                await self._retire(old, self.message_receiver, grace=0.0)
            elif old is not None and old.closed:
                await self._close_quietly(old)
            if self.aiohttp_client_session.closed:
                self.aiohttp_client_session = aiohttp.ClientSession()
            session = None
            try:
                url, self.wss_uri = self.wss_uri, None  # one URL, one connection
                if url is None:
                    url = await self._within(
                        self.issue_new_wss_url(), "apps.connections.open did not answer"
                    )
                session = await self._within(
                    self.aiohttp_client_session.ws_connect(
                        url,
                        autoping=False,
                        heartbeat=self.ping_interval,
                        proxy=self.proxy,
                        ssl=self.web_client.ssl if self.web_client.ssl is not None else True,
                        timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT),
                    ),
                    "the websocket handshake did not finish",
                )
                await session.ping(f"sdk-ping-pong:{time.time()}".encode())
            except BaseException:
                if session is not None:  # made, not kept: closed, never left unread
                    await self._close_quietly(session)
                raise
            # The switch: from here the new session is current; the one it replaces is read on
            # until it closes (``_retire``), so that what Slack sent on it is acked.
            self.current_session = session
            self.stale = False
            self.last_ping_pong_time = time.time()
            self.connected_at = time.monotonic()
            self._good(session)
            self._close_first = False
            self._why = None
            self._wanted.clear()  # the reconnections asked for until now: this one
            monitor, reader = self.current_session_monitor, self.message_receiver
            self.current_session_monitor = asyncio.ensure_future(self.monitor_current_session())
            self.message_receiver = asyncio.ensure_future(self._read(session))
            if monitor is not None:
                monitor.cancel()
            self._leaving.discard(old)
            if old is not None and old is not session:
                if old.closed:
                    if reader is not None:
                        reader.cancel()
                else:
                    task = asyncio.ensure_future(self._retire(old, reader, OLD_GRACE))
                    self.retiring.add(task)
                    task.add_done_callback(self.retiring.discard)

    # ---- reading

    async def receive_messages(self) -> None:
        # The library's receiver (for its own connect()): the current session's reader here.
        if self.current_session is not None:
            await self._read(self.current_session)

    async def _read(self, session: Any) -> None:
        """Read ``session`` until it ends: its envelopes to the queue (whichever session is
        current), its pongs noted. The end of the current session asks for a reconnection at
        once, whether Slack closed it or the TCP connection was cut."""
        how = "the connection was lost"
        try:
            while not self.closed:
                message = await session.receive()
                if message.type == WSMsgType.TEXT:
                    if session is not self.current_session and _is_disconnect(message.data):
                        continue  # it is being replaced already
                    self._good(session)
                    await self.enqueue_message(message.data)
                elif message.type == WSMsgType.PONG:
                    self._pong(session, message.data)
                elif message.type == WSMsgType.PING:
                    with contextlib.suppress(Exception):
                        await session.pong(message.data)
                elif message.type in _ENDED:
                    if message.type == WSMsgType.CLOSE:
                        how = "the connection closed"
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the session is unusable: reconnect
            how = f"the connection failed ({describe(exc)})"
        if session is self.current_session and session not in self._leaving and not self.closed:
            self._lost(how)

    def _good(self, session: Any) -> None:
        if session is self.current_session:
            self.good_at = (time.monotonic(), time.time())

    def _pong(self, session: Any, data: bytes | None) -> None:
        if session is not self.current_session or not data:
            return
        kind, _, sent = data.decode("utf-8", "replace").partition(":")
        if kind == "sdk-ping-pong":
            with contextlib.suppress(ValueError):
                self.last_ping_pong_time = float(sent)
        self._good(session)

    async def _retire(self, session: Any, reader: asyncio.Future | None, grace: float) -> None:
        """The replaced ``session``: read on for ``grace`` seconds (Slack may still send on it,
        and may close it itself), then closed, read until Slack answers the close (within
        CLOSE_TIMEOUT): what Slack sent before it learned of the close is acked."""
        self._leaving.add(session)
        try:
            if reader is not None and not reader.done():
                if grace > 0:
                    await asyncio.wait({reader}, timeout=grace)
                if not reader.done() and not session.closed:
                    with contextlib.suppress(Exception):
                        await session.send_frame(_CLOSE_FRAME, WSMsgType.CLOSE)
                    await asyncio.wait({reader}, timeout=CLOSE_TIMEOUT)
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            await self._close_quietly(session)
            if session is not self.current_session:  # else until the switch: not a drop
                self._leaving.discard(session)

    # ---- reconnecting

    async def connect_to_new_endpoint(self, force: bool = False) -> None:
        """Slack asked for a new connection (``force``), or the session monitor found it closed
        or stale: ``keep_connected`` reconnects. Never waits, never raises."""
        if self.closed:
            return
        if not force and await self.is_connected():
            return
        if not force:
            self._lost("no answer to pings" if self.stale else "the connection closed")
            return
        self._wanted.set()

    def _lost(self, how: str) -> None:
        """The current connection is gone: counted from when it was last known good, and a
        reconnection asked for."""
        self._why = self._why or how
        self._note_down(how, since_good=True)
        if not self.closed:
            self._wanted.set()

    async def run_message_listeners(self, message: dict, raw_message: str) -> None:
        if message.get("type") == "disconnect":
            reason = message.get("reason")
            self._close_first = reason == "too_many_websockets"
            if reason not in ROUTINE and self._why is None:
                self._why = f"Slack said {reason}"
                if reason == "too_many_websockets":
                    self._why += " (another copy of the app may hold Slack's 10 connections)"
            if reason == "link_disabled":  # Socket Mode was turned off for the app
                self._refused(NOT_ENABLED)
            await self.connect_to_new_endpoint(force=True)
            return
        await super().run_message_listeners(message, raw_message)

    def start_keeping(self) -> None:
        if self.keeper is None:
            self.keeper = asyncio.ensure_future(self.keep_connected())

    async def keep_connected(self) -> None:
        """Reconnect whenever asked, with backoff from HITL_CONNECT_RETRY up to a minute while
        it fails; one line per failed attempt, a refusal once while it lasts. Connections that
        end as soon as they are made count as failed attempts from the second in a row: one
        line, and the outage lasts until a connection holds MIN_LIFETIME seconds."""
        while not self.closed:
            if not await self._wait_for_request():
                continue
            attempt = self._waits_owed()
            if attempt:
                delay = backoff(attempt - 1, self.retry_base)
                self._flapping(delay)
                await asyncio.sleep(delay)
            while self._wanted.is_set() and not self.closed:
                try:
                    await self.connect()
                except SlackApiError as exc:
                    if is_transient(exc):
                        reason, wait = said_later(exc)
                        delay = max(backoff(attempt, self.retry_base), wait)
                        self._trouble(reason, delay)
                    elif slack_said(exc) is None:  # not Slack's answer (a proxy's page)
                        delay = backoff(attempt, self.retry_base)
                        self._trouble(self._not_slack(exc), delay)
                    else:
                        self._refused(app_token_refused(exc))
                        delay = backoff(attempt, self.retry_base)
                except Exception as exc:  # noqa: BLE001 - unreachable, timed out: one line each
                    delay = backoff(attempt, self.retry_base)
                    self._trouble(describe(exc), delay)
                else:
                    if not self.closed and self.short < 2:
                        self._back()
                    break
                attempt += 1
                await asyncio.sleep(delay)

    async def _wait_for_request(self) -> bool:
        """Until a reconnection is asked for (True). While connections keep ending as soon as
        they are made, the one made last that holds MIN_LIFETIME ends the outage (False)."""
        if self._wanted.is_set():
            return True
        if self.short < 2 or self.connected_at is None:
            await self._wanted.wait()
            return True
        left = self.connected_at + MIN_LIFETIME - time.monotonic()
        try:
            async with asyncio.timeout(max(left, 0.0)):
                await self._wanted.wait()
            return True
        except TimeoutError:
            self.short = 0
            self._back(self.connected_at)
            return False

    def _waits_owed(self) -> int:
        """Count the connection that ends: a routine move (refresh) or one that lasted resets
        the count; one that ended within MIN_LIFETIME adds to it. How many waits the next
        attempt owes: none for the first in a row."""
        lived = None if self.connected_at is None else time.monotonic() - self.connected_at
        young = lived is not None and lived < MIN_LIFETIME
        if self._why is None:  # Slack's refresh: the connection still works
            if not young:
                self.short = 0
            return 0
        self.short = self.short + 1 if young else 0
        return max(self.short - 1, 0)

    def _flapping(self, delay: float) -> None:
        self._note_down(self._why)
        line = (
            f"each new connection ends within {_seconds(MIN_LIFETIME)} ({self._why}; "
            f"{self.short} in a row)"
        )
        said = self.problem is not None and self.problem.startswith("each new connection")
        self.refusal = None
        self.problem = line
        if not said:
            logger.warning(
                "Socket Mode: %s; reconnecting with backoff, up to a minute between attempts "
                "(next in %g s; said once while it lasts)",
                line,
                delay,
            )

    def _not_slack(self, exc: SlackApiError) -> str:
        line = not_from_slack(exc, str(self.web_client.base_url))
        return line or describe(exc)

    def _note_down(self, dropped: str | None = None, since_good: bool = False) -> None:
        if self.down_since is None:
            if since_good and self.good_at is not None:
                self.down_since, self.down_at = self.good_at
            else:
                self.down_since, self.down_at = time.monotonic(), time.time()
        if dropped is not None and self.dropped is None:
            self.dropped = dropped

    def _trouble(self, reason: str, delay: float) -> None:
        self._note_down()
        self.refusal = None
        self.problem = f"cannot reconnect to Slack ({reason})"
        logger.warning("Socket Mode: %s; retrying in %g s", self.problem, delay)

    def _refused(self, line: str) -> None:
        self._note_down()
        self.problem = line
        if self.refusal != line:
            self.refusal = line
            logger.error(
                "Socket Mode: %s; no click, command or event reaches the bot until then (trying "
                "again, at most every %g s)",
                line,
                MAX_BACKOFF,
            )

    def _back(self, at: float | None = None) -> None:
        """Connected again (``at``: since then, monotonic): said once per outage, and
        ``on_back`` told."""
        outage = self.down_since is not None
        if self.down_since is not None:
            gap = _seconds((at if at is not None else time.monotonic()) - self.down_since)
            if self.problem is None:
                logger.warning(
                    "Socket Mode: %s; connected to Slack again after %s",
                    self.dropped or "the connection was lost",
                    gap,
                )
            else:
                logger.warning("Socket Mode: connected to Slack again after %s", gap)
        self.down_since = self.down_at = self.dropped = self.problem = self.refusal = None
        if outage and self.on_back is not None:
            self.on_back()

    def posts_held(self) -> str | None:
        """Why a new question would reach nobody who could answer it (the dispatcher holds its
        posts meanwhile): Slack refuses the connection, or there has been none for longer than
        SOCKET_GRACE (/healthz answers 503 for both); None while connected or during a short
        reconnection."""
        if self.refusal is not None:
            return "Slack refuses the connection"
        if self.down_since is not None and time.monotonic() - self.down_since > SOCKET_GRACE:
            return f"no connection for over {_seconds(SOCKET_GRACE)}"
        return None

    def health(self) -> tuple[str, str | None, bool]:
        """For /healthz: the connection's state, the problem's line, and whether it is well
        (a refusal is not; an outage is past SOCKET_GRACE seconds). A session found closed or
        without an answer to pings here is an outage from when it was last known good, and a
        reconnection is asked for."""
        if self.refusal is not None:
            return "refused", self.refusal, False
        if self.down_since is None:
            session = self.current_session
            pongless = self.last_ping_pong_time is not None and (
                time.time() - self.last_ping_pong_time >= self.ping_interval * 4
            )
            if session is not None and not session.closed and not pongless:
                return "connected", None, True
            if session is not None and session in self._leaving:  # closed first, to reconnect
                now = datetime.now(UTC).isoformat(timespec="seconds")
                return f"reconnecting since {now}", self.problem, True
            if session is not None and not self.closed:
                self._lost("no answer to pings" if pongless else "the connection closed")
            self._note_down()
        assert self.down_since is not None and self.down_at is not None
        since = datetime.fromtimestamp(self.down_at, UTC).isoformat(timespec="seconds")
        outage = time.monotonic() - self.down_since
        return f"reconnecting since {since}", self.problem, outage <= SOCKET_GRACE

    # ---- envelopes and acks

    async def process_message(self) -> None:
        self._dispatch(await self.message_queue.get())

    def _dispatch(self, raw_message: str | None) -> None:
        if raw_message is None:
            return
        message = json.loads(raw_message) if raw_message.startswith("{") else {}
        task = asyncio.ensure_future(self.run_message_listeners(message, raw_message))
        self.in_flight.add(task)  # shutdown lets it finish and ack
        task.add_done_callback(self.in_flight.discard)

    async def send_message(self, message: str) -> None:
        # The library's version adds a warning of its own before it raises: the caller says it.
        try:
            await self.current_session.send_str(message)  # type: ignore[union-attr]
        except ConnectionError:
            # replaced meanwhile: once more on the session ``connect()`` keeps
            async with self.connect_operation_lock:
                if not await self.is_connected():
                    raise
                await self.current_session.send_str(message)  # type: ignore[union-attr]

    # ---- stopping

    def _readers(self) -> list[asyncio.Future]:
        tasks = [self.keeper, self.current_session_monitor, self.message_receiver]
        return [t for t in tasks if t is not None] + list(self.retiring)

    async def stop_taking(self) -> None:
        """Read no more envelopes and reconnect no more; those already read are dispatched."""
        self.auto_reconnect_enabled = False
        tasks = self._readers()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while not self.message_queue.empty():
            self._dispatch(self.message_queue.get_nowait())

    async def close(self) -> None:
        self.closed = True
        self.auto_reconnect_enabled = False
        tasks = self._readers()
        tasks.append(self.message_processor)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.current_session is not None:
            await self._close_quietly(self.current_session)
        await self.aiohttp_client_session.close()


# Each runtime's Socket Mode connection, for /healthz (``socket_mode_of``).
_SOCKETS: weakref.WeakKeyDictionary[Any, SocketMode] = weakref.WeakKeyDictionary()


def socket_mode_of(rt: Any) -> SocketMode | None:
    """The runtime's Socket Mode connection; None in HTTP mode."""
    return _SOCKETS.get(rt)


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
            ping_interval=PING_INTERVAL,
            # apps.connections.open one try per attempt, a rate limit said, not slept out
            opener=one_try(rt.client, wait_rate_limits=False),
            retry_base=rt.settings.connect_retry,
        )
        self.client.socket_mode_request_listeners.append(self._handle)
        self.client.on_back = self._connected_again
        with contextlib.suppress(TypeError):  # a runtime that takes no weak reference (tests)
            _SOCKETS[rt] = self

    async def _handle(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        started = time.time()
        urgent()  # this request's steps run ahead of the producers' (bot/eventloop.py)
        try:
            response = await dispatch_until_acked(
                lambda: run_async_bolt_app(self.bolt, request), self.rt.background.keep
            )
        except MALFORMED as exc:
            # An envelope not shaped like Slack's (Bolt's parsing of it raised): one line, no
            # traceback, as over HTTP (``bot.server.slack_events``: a 400). Not acknowledged,
            # as HTTP's 400 and Bolt's own 400s here (``on_error``) are not: an interaction's
            # person sees it failed (nothing was done), and an event is sent again at most
            # three times, each one more line.
            logger.warning(
                "malformed Slack request: %s (Socket Mode %s envelope; not acknowledged)",
                type(exc).__name__,
                str(request.type)[:40],
            )
            return
        try:
            await send_async_response(client, request, response, started)
        except Exception as exc:  # noqa: BLE001 - the connection is gone: one line, no traceback
            logger.warning(
                "Socket Mode: the ack of envelope %s (%s) could not be sent (%s); Slack shows "
                "an error, or sends it again once connected",
                request.envelope_id,
                request.type,
                describe(exc),
            )

    def _connected_again(self) -> None:
        """An outage ended: the dispatcher, which may hold its posts meanwhile, posts again."""
        self.rt.wake_dispatcher()

    def posts_held(self) -> str | None:
        return self.client.posts_held()

    def health(self) -> tuple[str, str | None, bool]:
        return self.client.health()

    async def connect(self) -> None:
        """Connect, retrying with backoff while Slack cannot be reached; a refused app-level
        token is a ``ConfigError``. Once connected, the client reconnects on its own."""
        trouble = "Socket Mode: cannot connect to Slack"
        try:
            await retry_until_answered(self.client.connect, trouble, self.rt.settings.connect_retry)
        except SlackApiError as exc:  # a proxy's page is not Slack refusing the token
            line = not_from_slack(exc, str(self.rt.client.base_url)) or app_token_refused(exc)
            raise ConfigError([line]) from None
        self.client.start_keeping()

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109
        """For a shutdown: read no new envelope, let those taken finish and ack (within
        ``timeout`` seconds), then close the connection."""
        try:
            await self.client.stop_taking()
            left = set(self.client.in_flight)
            if left:
                _, left = await asyncio.wait(left, timeout=timeout)
            if left:
                logger.warning(
                    "Socket Mode: %d request(s) from Slack were still being handled %g s into "
                    "the shutdown; stopped unacked (Slack shows those people an error)",
                    len(left),
                    timeout,
                )
                for task in left:
                    task.cancel()
                await asyncio.gather(*left, return_exceptions=True)
        finally:
            await self.close()

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
