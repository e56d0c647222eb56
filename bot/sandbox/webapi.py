"""An in-memory fake of the Slack Web API, served by aiohttp on an OS-picked loopback port.

It answers the methods slack-hitl uses with Slack's real response shapes and error codes, records
every call in order, and lets a caller inject faults (an error reply, a 429 with Retry-After, a
dropped connection, a response held until released, an error or a drop after the call took
effect) and answers `missing_scope` for history it was not granted. Tests await what they expect
(`next_call`, `wait_for`) instead of sleeping.

`blocks_cap` (off by default) models a limit Slack does not document: a message whose blocks are
too big as a whole is refused with `msg_blocks_too_long` although every block keeps its own
limits (reported at ~11-13 k characters of block text: slackapi/bolt-js#2509, #2867). Slack does
not say what it counts; the fake counts the characters of the blocks' JSON, written compactly,
and refuses chat.postMessage, chat.update and chat.postEphemeral above `blocks_cap` (a
response_url is not capped: the reports say it took the same blocks). Every message's blocks are
checked as Slack checks them beyond slack_sdk (50 blocks, a text object of 1 to 3,000
characters, a section field of at most 2,000): a chat.* call is answered `invalid_blocks`, a
response_url a 400 with that code (an incoming webhook's answer), and `message_refusal` checks
a content no call carries (a command's acknowledgement: tests/bot/harness.py checks each).

Wire format (slack-sdk's AsyncWebClient): chat.* and views.* send a JSON body; auth.test,
chat.delete, conversations.join, files.* and apps.connections.open send their arguments in the query
string of an empty-bodied POST; users.info, conversations.info and conversations.members are GETs.
All three are merged
into `Call.params`, and JSON-encoded string arguments (`blocks`, `view`, `files`...) are decoded.

Its length (~840 lines, over the house's ~400) is one handler per Slack method, each a few
lines of Slack's documented behaviour, beside the state they share (channels, messages, views,
files) and the fault switches every handler honours. Split by method family, each part would
reach into the same state and faults; kept together, it reads as Slack's method list.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

logger = logging.getLogger(__name__)

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_VIEW_TEXT = 24
JSON_ARGS = frozenset({"attachments", "blocks", "files", "metadata", "view"})
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
FAULT_MODES = frozenset({"error", "reset", "timeout", "text"})
FIRST_TS_MICROS = 1_700_000_000_000_100
MAX_TEXT_OBJECT = 3000  # any plain_text / mrkdwn text object in a block (slack_sdk checks some)
RESPONSE_URL = "response_url"  # fail()'s name for the POSTs to every response_url()
MAX_SECTION_FIELD = 2000  # each text of a section's fields (slack_sdk checks only their number)
HISTORY_SCOPES = {"channel": "channels:history", "group": "groups:history", "im": "im:history"}

Params = dict[str, Any]
Reply = dict[str, Any]


class SlackError(Exception):
    """An `ok: false` answer: `error` is Slack's code, `extra` goes into the body beside it."""

    def __init__(self, error: str, **extra: Any):
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class Call:
    """One Web API call as the fake received it."""

    method: str
    params: Params
    token: str | None
    at: int  # position in FakeSlack.calls
    http_method: str = "POST"
    faulted: bool = False
    reply: Reply | None = None  # the body the fake answered with (None: faulted, no body)
    peer: tuple | None = None  # the caller's (host, port): one per TCP connection


@dataclass
class _Fault:
    error: str
    times: int
    status: int
    retry_after: int | None
    mode: str
    after: bool = False


class FakeSlack:
    """One fake workspace: channels, users, messages, views, files, and the calls made to it."""

    def __init__(
        self,
        *,
        team_id: str = "T0HITL",
        bot_user_id: str = "UBOT",
        bot_id: str = "BHITL",
        token: str = "xoxb-test-token",
        app_token: str = "xapp-test-token",
        app_id: str = "A0HITL",
        team_name: str = "HITL Sandbox",
        scopes: tuple[str, ...] = (
            "chat:write",
            "commands",
            "channels:join",
            "channels:read",
            "channels:history",
            "groups:read",
            "groups:history",
            "files:write",
            "im:write",
        ),
    ):
        self.team_id = team_id
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.token = token
        self.app_token = app_token
        self.scopes = scopes
        self.socket_url: str | None = None  # what apps.connections.open hands out
        # characters of a message's blocks as compact JSON above which chat.* answers
        # msg_blocks_too_long (None: no cap); see the module's docstring
        self.blocks_cap: int | None = None
        self.base_url = ""
        self.root_url = ""

        self.calls: list[Call] = []
        self.ephemerals: list[dict] = []
        self.views: dict[str, dict] = {}
        self.home: dict[str, dict] = {}
        self.files: dict[str, dict] = {}
        self.responses: list[dict] = []  # bodies POSTed to response_url()s

        self._channels: dict[str, dict] = {}
        self._users: dict[str, dict] = {}
        self._messages: dict[str, dict[str, dict]] = {}
        self._members: dict[str, list[str]] = {}  # channel -> its members, in joining order
        self._used_triggers: set[str] = set()
        self._faults: dict[str, list[_Fault]] = {}
        self._cursors: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._ts = itertools.count(0)
        self._changed = asyncio.Condition()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.observers: list[Callable[[], None]] = []  # called after every change (the sandbox UI)

        self.add_user(bot_user_id, "hitl", real_name="slack-hitl")
        self._users[bot_user_id]["is_bot"] = True
        self._users[bot_user_id]["profile"]["bot_id"] = bot_id
        self._handlers: dict[str, Callable[[Params], Reply]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "conversations.join": self._conversations_join,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "conversations.history": self._conversations_history,
            "conversations.open": self._conversations_open,
            "users.info": self._users_info,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "apps.connections.open": self._apps_connections_open,
        }
        self.app = web.Application()
        self.app.router.add_route("POST", "/api/{method}", self._handle_api)
        self.app.router.add_route("GET", "/api/{method}", self._handle_api)
        self.app.router.add_route("POST", "/upload/{file_id}", self._handle_upload)
        self.app.router.add_route("PUT", "/upload/{file_id}", self._handle_upload)
        self.app.router.add_route("POST", "/responses/{channel}/{ts}", self._handle_response_url)

    # ---------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on `host` (port 0: the OS picks one); returns `base_url` for AsyncWebClient."""
        self._runner = web.AppRunner(self.app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.root_url = f"http://{host}:{bound_port}"
        self.base_url = f"{self.root_url}/api/"
        return self.base_url

    async def close(self) -> None:
        self.release_timeouts()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- observing calls

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def next_call(self, method: str, timeout: float = 2.0) -> Call:  # noqa: ASYNC109
        """The next call to `method` not yet returned by this method, waiting for it if needed."""
        cursor = self._cursors.get(method, 0)
        self._cursors[method] = cursor + 1
        try:
            await self.wait_for(
                lambda: len(self.calls_to(method)) > cursor,
                timeout,
                waiting_for=f"call #{cursor + 1} to {method}",
            )
        except TimeoutError:
            if self._cursors[method] == cursor + 1:
                self._cursors[method] = cursor
            raise
        return self.calls_to(method)[cursor]

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 2.0,  # noqa: ASYNC109 (an upper bound for tests, not a client timeout)
        *,
        waiting_for: str = "",
    ) -> None:
        """Return once `predicate()` is true; it is re-checked after every call the fake answers."""
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(predicate)
        except TimeoutError:
            seen = ", ".join(call.method for call in self.calls[-10:]) or "none"
            what = waiting_for or "condition"
            raise TimeoutError(f"{what} not met within {timeout}s; last calls: {seen}") from None

    # ---------------------------------------------------------------- workspace state

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        is_member: bool = True,
        is_private: bool = False,
        members: Iterable[str] | None = None,
    ) -> None:
        """A channel. Its ``members`` (``conversations.members``), unless given, are the people
        in the workspace now (someone added later is not in it: ``join_channel``); the bot is
        one of them when ``is_member``, given or not."""
        people = [u for u in self._users if u != self.bot_user_id] if members is None else members
        self._members[channel_id] = [u for u in people if u != self.bot_user_id]
        if is_member:
            self._members[channel_id].append(self.bot_user_id)
        self._channels[channel_id] = {
            "id": channel_id,
            "name": name,
            "is_channel": not is_private,
            "is_group": is_private,
            "is_im": False,
            "is_private": is_private,
            "is_member": is_member,
            "is_archived": False,
            "created": 1_700_000_000,
            "context_team_id": self.team_id,
        }
        self._messages.setdefault(channel_id, {})

    def remove_bot(self, channel_id: str) -> None:
        """Someone removes the bot from the channel (``/remove @bot``): posting there says
        ``not_in_channel`` until it joins again."""
        self._channels[channel_id]["is_member"] = False
        self.leave_channel(channel_id, self.bot_user_id)

    def join_channel(self, channel_id: str, user_id: str) -> None:
        """``user_id`` joins the channel (or is invited): ``conversations.members`` lists them.
        Slack's ``member_joined_channel`` event is the test's to send."""
        if user_id not in self._members[channel_id]:
            self._members[channel_id].append(user_id)

    def leave_channel(self, channel_id: str, user_id: str) -> None:
        """``user_id`` leaves the channel (or is removed); the event is the test's to send."""
        if user_id in self._members[channel_id]:
            self._members[channel_id].remove(user_id)

    def members(self, channel_id: str) -> list[str]:
        return list(self._members.get(channel_id, []))

    def archive_channel(self, channel_id: str) -> None:
        """Someone archives the channel: posting or joining there says ``is_archived``."""
        self._channels[channel_id]["is_archived"] = True

    def unarchive_channel(self, channel_id: str) -> None:
        self._channels[channel_id]["is_archived"] = False

    def add_user(
        self, user_id: str, name: str, *, real_name: str | None = None, is_admin: bool = False
    ) -> None:
        real_name = real_name or name.title()
        self._users[user_id] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": real_name,
            "deleted": False,
            "is_admin": is_admin,
            "is_owner": False,
            "is_bot": False,
            "tz": "Etc/UTC",
            "tz_offset": 0,
            "profile": {"display_name": name, "real_name": real_name},
        }

    def dm_channel(self, user_id: str) -> str:
        """The id of the bot's direct-message channel with `user_id` (opened on first use)."""
        channel_id = "D" + user_id[1:]
        if channel_id not in self._channels:
            self._channels[channel_id] = {
                "id": channel_id,
                "is_im": True,
                "is_channel": False,
                "is_private": True,
                "is_member": True,
                "user": user_id,
            }
            self._messages[channel_id] = {}
        return channel_id

    def messages(self, channel_id: str) -> list[dict]:
        """Current messages of a channel (thread replies included), oldest first."""
        return [copy.deepcopy(message) for message in self.stored_messages(channel_id)]

    def stored_messages(self, channel_id: str) -> list[dict]:
        """``messages`` as stored, not copied: for a reader that only looks, many times over
        (the simulated teammates before each answer, the page's newest stamp): copying every
        message each time grew with the channel, a tenth of a 300-answer demo's CPU."""
        stored = self._messages.get(channel_id, {})
        return [stored[ts] for ts in sorted(stored)]

    def message(self, channel_id: str, ts: str) -> dict:
        return copy.deepcopy(self._messages[channel_id][ts])

    def response_url(self, channel_id: str, message_ts: str | None = None) -> str:
        """A response_url for payloads: POSTs to it act on `channel_id` (and that message)."""
        return f"{self.root_url}/responses/{channel_id}/{message_ts or '-'}"

    # ---------------------------------------------------------------- faults

    def fail(
        self,
        method: str,
        error: str = "internal_error",
        *,
        times: int = 1,
        status: int = 200,
        retry_after: int | None = None,
        mode: str = "error",
        after: bool = False,
    ) -> None:
        """Make the next `times` calls of `method` fail.

        mode "error": HTTP `status` with `{"ok": false, "error": error}` (429 → "ratelimited"
        plus `Retry-After: retry_after or 1`; 500/503 → "internal_error"). mode "reset": the
        connection is dropped without an answer. mode "text": HTTP `status` with a text/plain
        body, not Slack's JSON (a proxy's error page, a wrong path). mode "timeout": no answer until
        `release_timeouts()`, then the call is answered normally (as a slow Slack would).

        `after=True` ("error" and "reset" only): the call takes effect first (the message is
        stored, the update applied), then the fault is all the caller gets, as when Slack
        did the work and its answer was lost.

        `method` RESPONSE_URL ("response_url") fails the POSTs to every `response_url()`
        (mode "error" answers `status` with `error` as a text body, as hooks.slack.com does).
        """
        if mode not in FAULT_MODES:
            raise ValueError(f"mode={mode!r}; use one of {sorted(FAULT_MODES)}")
        if times < 1:
            raise ValueError(f"times={times}; a fault needs at least one call")
        if after and mode in ("timeout", "text"):
            raise ValueError("after=True needs mode 'error' or 'reset'")
        fault = _Fault(error, times, status, retry_after, mode, after)
        self._faults.setdefault(method, []).append(fault)

    def release_timeouts(self) -> None:
        """Answer every call held by a "timeout" fault; later "timeout" faults hold again."""
        self._release.set()
        self._release = asyncio.Event()

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times == 0:
            queue.pop(0)
        return fault

    # ---------------------------------------------------------------- HTTP edge

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            params = await _read_params(request)
        except ValueError:
            params, bad_body = {}, True
        else:
            bad_body = False
        call = Call(method, params, _bearer_token(request), len(self.calls), request.method)
        call.peer = request.transport.get_extra_info("peername") if request.transport else None
        self.calls.append(call)
        fault = self._take_fault(method)
        if fault is not None:
            call.faulted = True
            logger.debug("fault %s on %s (call %d)", fault.mode, method, call.at)
            if fault.after and not bad_body:
                self._answer(call)  # it takes effect; the caller never hears so
            if fault.mode == "reset":
                await self._notify()
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=500)
            if fault.mode == "error":
                await self._notify()
                return _error_response(fault)
            if fault.mode == "text":
                await self._notify()
                return web.Response(status=fault.status, text=f"{fault.status}: {fault.error}")
            await self._notify()
            await self._release.wait()
        body = {"ok": False, "error": "invalid_json"} if bad_body else self._answer(call)
        call.reply = body
        await self._notify()
        return web.json_response(body, headers={"X-OAuth-Scopes": ",".join(self.scopes)})

    def _answer(self, call: Call) -> Reply:
        handler = self._handlers.get(call.method)
        try:
            if handler is None:
                raise SlackError("unknown_method")
            self._check_token(call)
            return {"ok": True, **handler(call.params)}
        except SlackError as failure:
            return {"ok": False, "error": failure.error, **failure.extra}

    def _check_token(self, call: Call) -> None:
        expected = self.app_token if call.method in APP_TOKEN_METHODS else self.token
        if not call.token:
            raise SlackError("not_authed")
        if call.token != expected:
            known = call.token in (self.token, self.app_token)
            raise SlackError("not_allowed_token_type" if known else "invalid_auth")

    async def _handle_upload(self, request: web.Request) -> web.Response:
        upload = self.files.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404, text="file not found")
        upload["content"] = await request.read()
        await self._notify()
        return web.Response(text=f"OK - {len(upload['content'])}")

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        """A POST to a ``response_url()``; its faults are ``fail(RESPONSE_URL, ...)``'s."""
        channel_id, ts = request.match_info["channel"], request.match_info["ts"]
        payload = await request.json()
        fault = self._take_fault(RESPONSE_URL)
        if fault is not None and not fault.after:
            return await self._faulted_response(request, fault)
        refused = None if payload.get("delete_original") else message_refusal(payload)
        if refused is not None:  # as Slack answers a response_url (an incoming webhook's codes)
            logger.warning("response_url refused (%s): %s", refused.error, refused.extra)
            return web.Response(status=400, text=refused.error)
        self.responses.append({"channel": channel_id, "message_ts": ts, "payload": payload})
        stored = self._messages.get(channel_id, {})
        if payload.get("delete_original") and ts in stored:
            del stored[ts]
        elif payload.get("replace_original") and ts in stored:
            for key in ("text", "blocks", "attachments", "metadata"):
                stored[ts].pop(key, None)
            stored[ts].update({"text": ""}, **_content(payload))
            stored[ts]["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        elif payload.get("response_type") == "in_channel" and channel_id in self._channels:
            self._store_message(channel_id, payload)
        if fault is not None:  # it took effect; the caller never hears so
            return await self._faulted_response(request, fault)
        await self._notify()
        return web.Response(text="ok")

    async def _faulted_response(self, request: web.Request, fault: _Fault) -> web.Response:
        """A response_url's answer to a POST under ``fault``: a dropped connection, or an
        error status with a text body (``hooks.slack.com`` answers text, not JSON)."""
        await self._notify()
        if fault.mode == "reset" and request.transport is not None:
            request.transport.abort()
        if fault.mode == "timeout":
            await self._release.wait()
        return web.Response(status=fault.status, text=fault.error)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
        for observer in list(self.observers):
            observer()

    # ---------------------------------------------------------------- methods

    def _auth_test(self, params: Params) -> Reply:
        return {
            "url": f"https://{self.team_id.lower()}.slack.com/",
            "team": self.team_name,
            "user": self._users[self.bot_user_id]["name"],
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: Params) -> Reply:
        channel_id = self._writable_channel(params.get("channel"))
        _require_content(params, self.blocks_cap)
        message = self._store_message(channel_id, params)
        return {"channel": channel_id, "ts": message["ts"], "message": copy.deepcopy(message)}

    def _chat_update(self, params: Params) -> Reply:
        channel_id = self._writable_channel(params.get("channel"))
        stored = self._stored_message(channel_id, params.get("ts"))
        if stored.get("user") != self.bot_user_id:  # another user's or app's message
            raise SlackError("cant_update_message")
        _require_content(params, self.blocks_cap)
        stored.update(_content(params), edited={"user": self.bot_user_id, "ts": self._next_ts()})
        return {
            "channel": channel_id,
            "ts": stored["ts"],
            "text": stored["text"],
            "message": copy.deepcopy(stored),
        }

    def _chat_delete(self, params: Params) -> Reply:
        channel_id = self._writable_channel(params.get("channel"))
        stored = self._stored_message(channel_id, params.get("ts"))
        if stored.get("user") != self.bot_user_id:  # a bot token deletes only its own
            raise SlackError("cant_delete_message")
        del self._messages[channel_id][stored["ts"]]
        return {"channel": channel_id, "ts": stored["ts"]}

    def _chat_post_ephemeral(self, params: Params) -> Reply:
        channel_id = self._writable_channel(params.get("channel"))
        if params.get("user") not in self._users:
            raise SlackError("user_not_in_channel")
        _require_content(params, self.blocks_cap)
        message_ts = self._next_ts()
        self.ephemerals.append(
            {"channel": channel_id, "user": params["user"], "message_ts": message_ts}
            | {key: params.get(key) for key in ("text", "blocks", "thread_ts")}
        )
        return {"message_ts": message_ts}

    def _conversations_join(self, params: Params) -> Reply:
        channel = self._channels.get(params.get("channel", ""))
        if channel is None or (channel["is_private"] and not channel["is_member"]):
            raise SlackError("channel_not_found")
        if channel["is_private"]:
            raise SlackError("method_not_supported_for_channel_type")
        if channel.get("is_archived"):
            raise SlackError("is_archived")
        reply: Reply = {}
        if channel["is_member"]:
            reply = {"warning": "already_in_channel"}
            reply["response_metadata"] = {"warnings": ["already_in_channel"]}
        channel["is_member"] = True
        return {"channel": copy.deepcopy(channel), **reply}

    def _conversations_info(self, params: Params) -> Reply:
        return {"channel": copy.deepcopy(self._visible_channel(params.get("channel")))}

    def _conversations_members(self, params: Params) -> Reply:
        """The channel's members' ids, ``limit`` a page (100 unless given, at most 1,000); a
        page that is not the last has ``response_metadata.next_cursor``, which ``cursor``
        takes; the last one's is "" (as Slack's). Needs ``channels:read`` for a public channel,
        ``groups:read`` for a private one; a private channel the bot is not in does not
        exist (``channel_not_found``)."""
        channel = self._visible_channel(params.get("channel"))
        if channel["is_im"]:
            return {"members": [channel["user"], self.bot_user_id]}
        self._require_scope("groups:read" if channel["is_private"] else "channels:read")
        try:
            limit = max(1, min(int(params.get("limit") or 100), 1000))
            start = 0
            if params.get("cursor"):
                start = int(base64.b64decode(str(params["cursor"])).decode().removeprefix("at:"))
        except ValueError:
            raise SlackError("invalid_cursor") from None
        members = self._members.get(channel["id"], [])
        page = members[start : start + limit]
        more = start + limit < len(members)
        cursor = base64.b64encode(f"at:{start + limit}".encode()).decode() if more else ""
        return {"members": page, "response_metadata": {"next_cursor": cursor}}

    def _conversations_history(self, params: Params) -> Reply:
        """Newest first; ``oldest``/``latest`` bound the ts; metadata only when asked for.
        Needs the history scope of the channel's type (`groups:history` for a private one),
        and, as for a bot token, to be in the channel (``not_in_channel``). A page that is
        not the last has ``response_metadata.next_cursor``, which ``cursor`` takes to read
        the next (older) one, as Slack's does."""
        channel = self._visible_channel(params.get("channel"))
        kind = "im" if channel["is_im"] else "group" if channel["is_private"] else "channel"
        self._require_scope(HISTORY_SCOPES[kind])
        if not channel["is_member"] and not channel["is_im"]:
            raise SlackError("not_in_channel")
        oldest = float(params.get("oldest") or 0)
        latest = float(params.get("latest") or "inf")
        if params.get("cursor"):
            try:
                cursor = base64.b64decode(str(params["cursor"])).decode()
                latest = min(latest, float(cursor.removeprefix("next_ts:")))
            except ValueError:
                raise SlackError("invalid_cursor") from None
        limit = max(1, min(int(params.get("limit") or 100), 999))
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        found = []
        for message in sorted(
            self._messages[channel["id"]].values(), key=lambda m: float(m["ts"]), reverse=True
        ):
            if oldest < float(message["ts"]) <= latest:
                shown = copy.deepcopy(message)
                if not with_metadata:
                    shown.pop("metadata", None)
                found.append(shown)
        reply: Reply = {"messages": found[:limit], "has_more": len(found) > limit}
        if len(found) > limit:  # the next page starts at the first message left out
            cursor = base64.b64encode(f"next_ts:{found[limit]['ts']}".encode()).decode()
            reply["response_metadata"] = {"next_cursor": cursor}
        return reply

    def _conversations_open(self, params: Params) -> Reply:
        """The bot's direct messages with one person (``users``); needs ``im:write``."""
        self._require_scope("im:write")
        users = [u for u in str(params.get("users") or "").split(",") if u]
        if len(users) != 1:  # group DMs (mpim) are not faked
            raise SlackError("not_enough_users" if not users else "method_not_supported")
        if users[0] not in self._users:
            raise SlackError("user_not_found")
        return {"channel": {"id": self.dm_channel(users[0])}}

    def _users_info(self, params: Params) -> Reply:
        user = self._users.get(params.get("user", ""))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": copy.deepcopy(user)}

    def _views_open(self, params: Params) -> Reply:
        view = self._checked_view(params, trigger=True)
        return {"view": self._store_view(view)}

    def _views_push(self, params: Params) -> Reply:
        view = self._checked_view(params, trigger=True)
        return {"view": self._store_view(view)}

    def _views_update(self, params: Params) -> Reply:
        view = self._checked_view(params)
        if params.get("view_id"):
            current = self.views.get(params["view_id"])
        elif params.get("external_id"):
            by_external = {v.get("external_id"): v for v in self.views.values()}
            current = by_external.get(params["external_id"])
        else:
            raise SlackError("invalid_arguments", response_metadata=_messages("view_id"))
        if current is None:
            raise SlackError("not_found")
        if params.get("hash") and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        updated = self._store_view(view, replacing=current)
        return {"view": updated}

    def _views_publish(self, params: Params) -> Reply:
        user_id = params.get("user_id")
        if not user_id:
            raise SlackError("invalid_arguments", response_metadata=_messages("user_id"))
        if user_id not in self._users:
            raise SlackError("user_not_found")
        view = self._checked_view(params)
        if view.get("type") != "home":
            raise SlackError("invalid_arguments", response_metadata=_messages("view/type"))
        current = self.home.get(user_id)
        if current and params.get("hash") and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        published = self._store_view(view, replacing=current)
        self.home[user_id] = self.views[published["id"]]
        return {"view": published}

    def _files_get_upload_url(self, params: Params) -> Reply:
        filename, length = params.get("filename"), params.get("length")
        if not filename or length is None:
            raise SlackError("invalid_arguments", response_metadata=_messages("filename/length"))
        file_id = f"F{next(self._ids):010d}"
        self.files[file_id] = {
            "id": file_id,
            "filename": filename,
            "title": None,
            "length": int(length),
            "content": b"",
            "channel": None,
            "completed": False,
        }
        return {"upload_url": f"{self.root_url}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, params: Params) -> Reply:
        entries = params.get("files")
        if not isinstance(entries, list) or not entries:
            raise SlackError("invalid_arguments", response_metadata=_messages("files"))
        if any(entry.get("id") not in self.files for entry in entries):
            raise SlackError("file_not_found")
        channel_id = params.get("channel_id") or params.get("channels")
        if channel_id:
            channel_id = self._writable_channel(channel_id)
        shared = []
        for entry in entries:
            upload = self.files[entry["id"]]
            title = entry.get("title") or upload["filename"]
            upload.update(title=title, channel=channel_id, completed=True)
            shared.append(
                {
                    "id": upload["id"],
                    "name": upload["filename"],
                    "title": title,
                    "size": len(upload["content"]),
                    "channels": [channel_id] if channel_id else [],
                }
            )
        if channel_id:
            text = params.get("initial_comment") or ""
            self._store_message(channel_id, {"text": text, "files": shared})
        return {"files": shared}

    def _apps_connections_open(self, params: Params) -> Reply:
        if self.socket_url is None:
            raise SlackError("not_enabled")  # this fake has no Socket Mode server attached
        return {"url": self.socket_url}

    # ---------------------------------------------------------------- helpers

    def _next_ts(self) -> str:
        micros = FIRST_TS_MICROS + 100 * next(self._ts)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _require_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            raise SlackError("missing_scope", needed=scope, provided=",".join(self.scopes))

    def _visible_channel(self, channel_id: str | None) -> dict:
        """The channel as the bot sees it: private channels it is not in do not exist."""
        if channel_id in self._users:
            channel_id = self.dm_channel(channel_id)
        channel = self._channels.get(channel_id or "")
        if channel is None or (channel["is_private"] and not channel["is_member"]):
            raise SlackError("channel_not_found")
        return channel

    def _writable_channel(self, channel_id: str | None) -> str:
        channel = self._visible_channel(channel_id)
        if channel.get("is_archived"):
            raise SlackError("is_archived")
        if not channel["is_member"]:
            raise SlackError("not_in_channel")
        return channel["id"]

    def _stored_message(self, channel_id: str, ts: str | None) -> dict:
        stored = self._messages[channel_id].get(ts or "")
        if stored is None:
            raise SlackError("message_not_found")
        return stored

    def _store_message(self, channel_id: str, params: Params) -> dict:
        message = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "ts": self._next_ts(),
            "text": "",
            **_content(params),
        }
        for key in ("thread_ts", "files", "metadata"):
            if params.get(key):
                message[key] = params[key]
        self._messages[channel_id][message["ts"]] = message
        return message

    def _checked_view(self, params: Params, *, trigger: bool = False) -> dict:
        if trigger:
            trigger_id = params.get("trigger_id")
            if not trigger_id:
                raise SlackError("invalid_arguments", response_metadata=_messages("trigger_id"))
            if trigger_id in self._used_triggers:
                raise SlackError("exchanged_trigger_id")
            self._used_triggers.add(trigger_id)
        view = params.get("view")
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments", response_metadata=_messages("view"))
        problems = _view_problems(view)
        if problems:
            raise SlackError("invalid_arguments", response_metadata={"messages": problems})
        return view

    def _store_view(self, view: dict, *, replacing: dict | None = None) -> dict:
        view_id = replacing["id"] if replacing else f"V{next(self._ids):010d}"
        external_id = view.get("external_id", "")
        if external_id and any(
            v.get("external_id") == external_id and v["id"] != view_id for v in self.views.values()
        ):
            raise SlackError("duplicate_external_id")
        state = replacing["state"] if replacing else {"values": {}}
        stored = {
            "id": view_id,
            "team_id": self.team_id,
            "type": view.get("type"),
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": external_id,
            "state": state,
            "hash": f"{self._next_ts()}.{hashlib.sha1(view_id.encode()).hexdigest()[:8]}",
            "clear_on_close": view.get("clear_on_close", False),
            "notify_on_close": view.get("notify_on_close", False),
            "root_view_id": replacing["root_view_id"] if replacing else view_id,
            "previous_view_id": replacing["previous_view_id"] if replacing else None,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        for key in ("title", "close", "submit"):
            if view.get(key):
                stored[key] = view[key]
        self.views[view_id] = stored
        return copy.deepcopy(stored)


# -------------------------------------------------------------------- pure helpers


async def _read_params(request: web.Request) -> Params:
    """Arguments from the query string, a form body and a JSON body, merged in that order."""
    params: Params = dict(request.query)
    if request.body_exists:
        if request.content_type == "application/json":
            body = json.loads(await request.text() or "{}")
            if not isinstance(body, dict):
                raise ValueError("JSON body is not an object")
            params.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            params.update({key: value for key, value in form.items() if isinstance(value, str)})
    for key in JSON_ARGS & params.keys():
        if isinstance(params[key], str):
            # Not JSON: left as a string; the method reports it as malformed.
            with contextlib.suppress(json.JSONDecodeError):
                params[key] = json.loads(params[key])
    return params


def _bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _error_response(fault: _Fault) -> web.Response:
    headers = {}
    error = fault.error
    if fault.status == 429:
        error = "ratelimited"
        headers["Retry-After"] = str(1 if fault.retry_after is None else fault.retry_after)
    elif fault.status in (500, 503):
        error = "internal_error"
    return web.json_response({"ok": False, "error": error}, status=fault.status, headers=headers)


def _messages(field: str) -> dict:
    return {"messages": [f"[ERROR] missing required field: {field}"]}


def _content(params: Params) -> dict:
    """The message content carried by chat.* / response_url arguments."""
    content = {}
    for key in ("text", "blocks", "attachments", "metadata"):
        if params.get(key) is not None:
            content[key] = params[key]
    return content


def _require_content(params: Params, blocks_cap: int | None = None) -> None:
    """Refuse what Slack refuses in a chat.* call's content; ``blocks_cap``: the size of the
    blocks, as compact JSON, above which it answers ``msg_blocks_too_long``."""
    if not (params.get("text") or params.get("blocks") or params.get("attachments")):
        raise SlackError("no_text")
    blocks = params.get("blocks")
    if blocks is None:
        return
    if not isinstance(blocks, list):
        raise SlackError("invalid_blocks_format")
    if blocks_cap is not None:
        compact = json.dumps(blocks, ensure_ascii=False, separators=(",", ":"))
        if len(compact) > blocks_cap:
            raise SlackError("msg_blocks_too_long")
    problems = []
    if len(blocks) > MAX_MESSAGE_BLOCKS:
        problems.append(f"no more than {MAX_MESSAGE_BLOCKS} items allowed [json-pointer:/blocks]")
    problems += _block_problems(blocks, "/blocks")
    if problems:
        metadata = {"messages": problems}
        raise SlackError("invalid_blocks", errors=problems, response_metadata=metadata)


def message_refusal(content: Params) -> SlackError | None:
    """What Slack would refuse in a message's content that no Web API call carries (the body
    of a command's acknowledgement, a response_url's), or None."""
    try:
        _require_content(content)
    except SlackError as refused:
        return refused
    return None


def _view_problems(view: dict) -> list[str]:
    """What Slack would refuse in ``view`` (``invalid_arguments``); a view over Slack's 250 kB
    raises ``view_too_large``, as Slack answers it (measured as slack_sdk sends it: JSON)."""
    max_view_bytes = 250_000
    if len(json.dumps(view).encode()) > max_view_bytes:
        raise SlackError("view_too_large")
    problems = []
    if view.get("type") not in ("modal", "home"):
        problems.append("[ERROR] must be one of modal, home [json-pointer:/view/type]")
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        return [*problems, "[ERROR] must provide an array [json-pointer:/view/blocks]"]
    if len(blocks) > MAX_VIEW_BLOCKS:
        problems.append(
            f"[ERROR] no more than {MAX_VIEW_BLOCKS} items allowed [json-pointer:/view/blocks]"
        )
    for key in ("title", "close", "submit"):
        text = (view.get(key) or {}).get("text", "") if isinstance(view.get(key), dict) else ""
        if len(text) > MAX_VIEW_TEXT:
            problems.append(
                f"[ERROR] must be less than {MAX_VIEW_TEXT + 1} characters "
                f"[json-pointer:/view/{key}/text]"
            )
    return problems + [f"[ERROR] {p}" for p in _block_problems(blocks, "/view/blocks")]


def _block_problems(blocks: list, pointer: str) -> list[str]:
    """What slack_sdk's own validators say about each block (plain dicts are never checked)."""
    problems = []
    for index, block in enumerate(blocks):
        where = f"[json-pointer:{pointer}/{index}]"
        if not isinstance(block, dict) or "type" not in block:
            problems.append(f"must be a block object with a type {where}")
            continue
        try:
            parsed = Block.parse(block)
            if parsed is None:
                problems.append(f"unknown block type {block['type']!r} {where}")
            else:
                parsed.to_dict()
        except (SlackObjectFormationError, TypeError, ValueError, AttributeError) as error:
            problems.append(f"{error} {where}")
            continue
        problems += _long_texts(block, f"{pointer}/{index}")
        fields = block.get("fields") if block["type"] == "section" else None
        for n, field in enumerate(fields if isinstance(fields, list) else []):
            if isinstance(field, dict) and len(str(field.get("text", ""))) > MAX_SECTION_FIELD:
                problems.append(
                    f"must be less than {MAX_SECTION_FIELD + 1} characters "
                    f"[json-pointer:{pointer}/{index}/fields/{n}/text]"
                )
    return problems


def _long_texts(node: Any, pointer: str) -> list[str]:
    """Text objects over Slack's 3000 characters, or empty (Slack wants at least 1), wherever
    they sit (slack_sdk checks neither of a context element's text, for one)."""
    if isinstance(node, list):
        return [p for n, child in enumerate(node) for p in _long_texts(child, f"{pointer}/{n}")]
    if not isinstance(node, dict):
        return []
    if node.get("type") in ("plain_text", "mrkdwn"):
        size = len(str(node.get("text", "")))
        if size > MAX_TEXT_OBJECT:
            return [
                f"must be less than {MAX_TEXT_OBJECT + 1} characters [json-pointer:{pointer}/text]"
            ]
        if size == 0:
            return [f"must be more than 0 characters [json-pointer:{pointer}/text]"]
        return []
    return [p for key, child in node.items() for p in _long_texts(child, f"{pointer}/{key}")]
