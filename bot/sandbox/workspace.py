"""The sandbox workspace: what people see and do in the local Slack of `hitl demo`.

A ``Sandbox`` wraps the fake Web API (``FakeSlack``, which holds channels, messages, views and
files as the bot wrote them) and plays Slack's other half: every click, select, modal action and
slash command becomes the payload Slack would send, signed with the signing secret and POSTed
over HTTP to the bot's real ``/slack/events``. What the bot answers in the HTTP response (a slash
command's ephemeral text, a modal's ``response_action``) and what it POSTs to a ``response_url``
are kept here and shown to the person they were for.

Its length (~480 lines) is one method per thing a person can do in Slack (click, pick,
submit, type a command, open a tab), each building its payload from ``payloads`` and keeping
what the bot answered; they share the people, channels and pending notes of one workspace.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.sandbox import payloads
from bot.sandbox.webapi import FakeSlack, SlackError

logger = logging.getLogger(__name__)

COMMAND = "/hitl"


class SandboxError(Exception):
    """Something a person asked for that the sandbox cannot do (unknown message, user…)."""


@dataclass
class Reply:
    """The bot's HTTP answer to one request: status and body (JSON decoded when it is JSON)."""

    status: int
    body: Any

    @property
    def text(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("text") or "")
        return self.body if isinstance(self.body, str) else ""


@dataclass
class Note:
    """An ephemeral message that did not come through chat.postEphemeral: an ack body or a
    response_url reply."""

    user: str
    channel: str
    key: tuple[str, int]  # where it sorts among the channel's messages
    text: str
    blocks: list[dict]
    source: str  # "ack" or "response_url"
    message_ts: str  # its own ts, so a response_url can replace or delete it


class Sandbox:
    def __init__(self, fake: FakeSlack, signing_secret: str, *, team_domain: str = "hitl-sandbox"):
        self.fake = fake
        self.secret = signing_secret
        self.team = {"id": fake.team_id, "domain": team_domain}
        self.bot_url: str | None = None  # http://host:port/slack/events, set once it listens
        self.users: dict[str, dict] = {}
        self.dms: dict[str, str] = {}  # user -> their direct-message channel with the bot
        self.channels: dict[str, dict] = {}
        self.notes: list[Note] = []
        self.modals: dict[str, list[str]] = {}  # user -> stack of open view ids
        self.errors: dict[str, dict[str, str]] = {}  # view id -> block_id -> the bot's error
        self.version = 0
        # this run of the workspace: a demo started again is a new Slack (its messages, their
        # ts and its change counter start afresh), so what a page kept of the old one is reset
        self.instance = secrets.token_hex(8)
        self.closing = False  # set at shutdown: browsers waiting for a change are let go
        self._event = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._counter = itertools.count(1)
        self._triggers: dict[str, str] = {}  # trigger_id -> user
        self._responders: dict[tuple[str, str], str] = {}  # (channel, message_ts) -> user
        self._calls_seen = 0
        self._responses_seen = 0
        fake.observers.append(self._on_change)

    # ------------------------------------------------------------ setup

    def add_user(self, user_id: str, name: str, real_name: str | None = None) -> None:
        self.fake.add_user(user_id, name, real_name=real_name)
        self.users[user_id] = {"id": user_id, "name": name, "real_name": real_name or name.title()}
        self.dms[user_id] = self.fake.dm_channel(user_id)  # the app's Messages tab, for them

    def add_channel(self, channel_id: str, name: str) -> None:
        self.fake.add_channel(channel_id, name)
        self.channels[channel_id] = {"id": channel_id, "name": name}

    async def start(self, bot_url: str) -> None:
        self.bot_url = bot_url
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    def stop_waiting(self) -> None:
        self.closing = True
        self._bump()

    async def close(self) -> None:
        self.stop_waiting()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------ changes

    def _bump(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    def _on_change(self) -> None:
        """After each change in the fake: learn which modal opened for whom, stamp new
        response_url replies so they sort where they arrived, and wake the browsers."""
        for call in self.fake.calls[self._calls_seen :]:
            reply = call.reply or {}
            if call.method in ("views.open", "views.push") and reply.get("ok"):
                user = self._triggers.get(str(call.params.get("trigger_id")))
                if user is not None:
                    self.modals.setdefault(user, []).append(reply["view"]["id"])
        self._calls_seen = len(self.fake.calls)
        for response in self.fake.responses[self._responses_seen :]:
            self._take_response(response)
        self._responses_seen = len(self.fake.responses)
        self._bump()

    async def wait_changed(self, since: int, timeout: float) -> int:  # noqa: ASYNC109
        """Return the version once it differs from ``since`` (or after ``timeout`` seconds)."""
        event = self._event
        if self.version == since and not self.closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        return self.version

    # ------------------------------------------------------------ talking to the bot

    async def _send(self, body: bytes, headers: dict[str, str]) -> Reply:
        if self._session is None or self.bot_url is None:
            raise SandboxError("the sandbox is not started")
        async with self._session.post(self.bot_url, data=body, headers=headers) as response:
            raw = await response.text()
            parsed: Any = raw
            if response.content_type == "application/json" and raw:
                with contextlib.suppress(json.JSONDecodeError):
                    parsed = json.loads(raw)
            return Reply(response.status, parsed)

    def _trigger(self, user_id: str) -> str:
        trigger_id = f"{int(time.time())}.{next(self._counter)}.{secrets.token_hex(8)}"
        self._triggers[trigger_id] = user_id
        return trigger_id

    def _action_ts(self) -> str:
        return f"{int(time.time())}.{next(self._counter):06d}"

    def _user(self, user_id: str) -> dict:
        if user_id not in self.users:
            raise SandboxError(f"no user {user_id} in the sandbox")
        return self.users[user_id]

    async def click(
        self,
        user_id: str,
        *,
        action_id: str,
        block_id: str,
        value: str | None = None,
        channel: str | None = None,
        ts: str | None = None,
        view_id: str | None = None,
        view_hash: str | None = None,
    ) -> Reply:
        """A click on a button, or a choice (``value``) in a select, in a message or a view;
        with ``view_hash``, only on the view as it was when drawn (see :meth:`_drawn_view`)."""
        user = self._user(user_id)
        if view_id is not None:
            view = self._drawn_view(view_id, view_hash)
            element = _find_element(view.get("blocks", []), block_id, action_id)
            action = payloads.action_object(element, block_id, self._action_ts(), value)
            payload = payloads.block_actions(
                user=user,
                team=self.team,
                app_id=self.fake.app_id,
                action=action,
                trigger_id=self._trigger(user_id),
                view=view,
            )
        else:
            if channel is None or ts is None:
                raise SandboxError("a click needs a message (channel and ts) or a view")
            message, ephemeral = self._message(user_id, channel, ts)
            element = _find_element(message.get("blocks") or [], block_id, action_id)
            action = payloads.action_object(element, block_id, self._action_ts(), value)
            self._responders[(channel, ts)] = user_id
            payload = payloads.block_actions(
                user=user,
                team=self.team,
                app_id=self.fake.app_id,
                action=action,
                trigger_id=self._trigger(user_id),
                message=message,
                channel=self.channels.get(channel, {"id": channel}),
                response_url=self.fake.response_url(channel, ts),
                is_ephemeral=ephemeral,
            )
        reply = await self._send(*payloads.signed_interaction(payload, self.secret))
        self._note_reply(user_id, channel, reply)
        return reply

    async def suggest(
        self,
        user_id: str,
        *,
        action_id: str,
        block_id: str,
        value: str,
        channel: str | None = None,
        ts: str | None = None,
        view_id: str | None = None,
    ) -> list[dict]:
        """The options an external select offers for what was typed (a block_suggestion)."""
        user = self._user(user_id)
        view = self._view(view_id) if view_id is not None else None
        if view is not None:
            container = {"type": "view", "view_id": view["id"]}
        else:
            container = {"type": "message", "message_ts": ts, "channel_id": channel}
        payload = payloads.block_suggestion(
            user=user,
            team=self.team,
            app_id=self.fake.app_id,
            action_id=action_id,
            block_id=block_id,
            value=value,
            container=container,
            channel=self.channels.get(channel or "") if view is None else None,
            view=view,
        )
        reply = await self._send(*payloads.signed_interaction(payload, self.secret))
        if reply.status != 200 or not isinstance(reply.body, dict):
            return []
        if reply.body.get("option_groups"):
            return [o for g in reply.body["option_groups"] for o in g.get("options", [])]
        return list(reply.body.get("options") or [])

    async def command(self, user_id: str, channel: str, line: str) -> Reply:
        """A slash command typed in the message box, e.g. ``/hitl stats``."""
        user = self._user(user_id)
        if channel not in self.channels and channel != self.dms.get(user_id):
            # its answer would go where nobody can see it
            raise SandboxError(
                f"no channel {channel} in the sandbox: slash commands are sent in a channel"
            )
        command, _, text = line.strip().partition(" ")
        if command != COMMAND:
            # Slack answers a command no app in the workspace registered, and sends the app
            # nothing (sent, Bolt would print its "[Suggestion] @app.command(...)" hint for a
            # developer to the demo's terminal). 404, as Bolt answered it.
            note = f"{command} is not a valid command. Try {COMMAND} help."
            self._add_note(user_id, channel, note, [], "ack")
            return Reply(404, "")
        token = f"cmd{next(self._counter)}"
        self._responders[(channel, token)] = user_id
        fields = payloads.command_fields(
            user=user,
            team=self.team,
            app_id=self.fake.app_id,
            channel=self.channels.get(channel, {"id": channel}),
            command=command,
            # as Slack sends it: &, < and > escaped ("Escaping text"), nothing else
            text=text.strip().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
            trigger_id=self._trigger(user_id),
            response_url=self.fake.response_url(channel, token),
        )
        reply = await self._send(*payloads.signed_command(fields, self.secret))
        self._note_reply(user_id, channel, reply)
        return reply

    async def open_home(self, user_id: str) -> Reply:
        """The person opened the app's Home tab: an ``app_home_opened`` event."""
        self._user(user_id)
        home = self.fake.home.get(user_id)
        event = payloads.app_home_opened(user_id, self._action_ts(), home)
        envelope = payloads.event_envelope(
            event,
            team_id=self.team["id"],
            app_id=self.fake.app_id,
            bot_user_id=self.fake.bot_user_id,
            number=next(self._counter),
        )
        return await self._send(*payloads.signed_event(envelope, self.secret))

    async def submit_view(
        self,
        user_id: str,
        view_id: str,
        values: dict[str, dict[str, Any]] | None = None,
        view_hash: str | None = None,
    ) -> Reply:
        """The person pressed the modal's submit button, with ``values`` chosen in its input
        blocks (``{block_id: {action_id: value}}``); then what the bot's ``response_action``
        says: ``errors`` (shown under their blocks, the modal stays), ``update`` (this view
        becomes the one sent), ``push`` (a new view on top), ``clear`` (every view closes),
        none (this view closes). With ``view_hash``, only the view as it was when drawn."""
        user = self._user(user_id)
        view = self._drawn_view(view_id, view_hash)
        view["state"] = payloads.view_state(with_block_ids(view.get("blocks") or []), values or {})
        payload = payloads.view_submission(
            user=user,
            team=self.team,
            app_id=self.fake.app_id,
            view=view,
            trigger_id=self._trigger(user_id),
        )
        reply = await self._send(*payloads.signed_interaction(payload, self.secret))
        body = reply.body if isinstance(reply.body, dict) else {}
        action = body.get("response_action")
        self.errors.pop(view_id, None)
        if reply.status != 200:
            self._bump()
        elif action in (None, "clear"):
            self._close(user_id, view_id, everything=action == "clear")
        elif action == "errors":
            self.errors[view_id] = {str(k): str(v) for k, v in (body.get("errors") or {}).items()}
            self._bump()
        elif action in ("update", "push"):
            self._show(user_id, view_id, body.get("view"), push=action == "push")
        return reply

    def _show(self, user_id: str, view_id: str, new: Any, *, push: bool) -> None:
        """A view the bot answered a submission with: in place of ``view_id``, or on top."""
        try:
            if push:
                stored = self.fake._views_push({"view": new, "trigger_id": self._trigger(user_id)})
                self.modals.setdefault(user_id, []).append(stored["view"]["id"])
            else:
                self.fake._views_update({"view": new, "view_id": view_id})
        except SlackError as exc:  # Slack would refuse it too, and leave the modal as it was
            raise SandboxError(f"the app answered an invalid view: {exc.error}") from exc
        self._bump()

    async def close_view(self, user_id: str, view_id: str) -> Reply | None:
        user = self._user(user_id)
        view = self._view(view_id)
        self._close(user_id, view_id)
        if not view.get("notify_on_close"):
            return None
        payload = payloads.view_closed(
            user=user, team=self.team, app_id=self.fake.app_id, view=view
        )
        return await self._send(*payloads.signed_interaction(payload, self.secret))

    def _close(self, user_id: str, view_id: str, *, everything: bool = False) -> None:
        stack = self.modals.get(user_id, [])
        if everything:
            stack.clear()
        elif view_id in stack:
            del stack[stack.index(view_id) :]
        self._bump()

    # ------------------------------------------------------------ what the bot said back

    def _note_reply(self, user_id: str, channel: str | None, reply: Reply) -> None:
        text = reply.text
        blocks = reply.body.get("blocks") if isinstance(reply.body, dict) else None
        if reply.status != 200:
            said = reply.body.get("error") if isinstance(reply.body, dict) else reply.body
            said = str(said or "").strip()[:200]
            text = f"⚠️ The app answered HTTP {reply.status}" + (f": {said}" if said else "")
        if not channel or not (text or blocks):
            return
        self._add_note(user_id, channel, text, blocks or [], "ack")

    def _add_note(self, user: str, channel: str, text: str, blocks: list, source: str) -> None:
        key = (self._latest_ts(), next(self._counter))
        ts = f"{key[0]}~{key[1]}"
        self.notes.append(Note(user, channel, key, text, blocks, source, ts))
        self._bump()

    def _take_response(self, response: dict) -> None:
        """A POST to a response_url: edit or delete an ephemeral, or add one for its user."""
        channel, ts, body = response["channel"], response["message_ts"], response["payload"]
        for ephemeral in self.fake.ephemerals:
            if ephemeral["message_ts"] == ts and ephemeral["channel"] == channel:
                _edit(ephemeral, body)
                return
        for note in self.notes:
            if note.message_ts == ts and note.channel == channel:
                if body.get("delete_original"):
                    note.text, note.blocks = "", []
                elif body.get("replace_original"):
                    note.text, note.blocks = body.get("text") or "", body.get("blocks") or []
                return
        if body.get("replace_original") or body.get("delete_original"):
            return  # the fake already edited the channel message
        if body.get("response_type") == "in_channel":
            return  # the fake already posted it
        user = self._responders.get((channel, ts))
        if user is not None:
            self._add_note(
                user, channel, body.get("text") or "", body.get("blocks") or [], "response_url"
            )

    # ------------------------------------------------------------ what a person sees

    def _latest_ts(self) -> str:
        stamps = [m["ts"] for c in self.channels for m in self.fake.stored_messages(c)]
        stamps += [e["message_ts"] for e in self.fake.ephemerals]
        return max(stamps, default="0")

    def _message(self, user_id: str, channel: str, ts: str) -> tuple[dict, bool]:
        with contextlib.suppress(KeyError):
            return self.fake.message(channel, ts), False
        for ephemeral in self.fake.ephemerals:
            if ephemeral["message_ts"] == ts and ephemeral["user"] == user_id:
                return _ephemeral_message(ephemeral), True
        for note in self.notes:
            if note.message_ts == ts and note.user == user_id:
                return {"type": "message", "ts": ts, "text": note.text, "blocks": note.blocks}, True
        raise SandboxError(f"no message {ts} in {channel}")

    def _view(self, view_id: str) -> dict:
        view = self.fake.views.get(view_id)
        if view is None:
            raise SandboxError(f"no view {view_id}")
        return view

    def _drawn_view(self, view_id: str, view_hash: str | None) -> dict:
        """The view ``view_id``, if it still is the one a page drew (its ``hash``): a click or
        a submission carries the view it was made in, and the bot reads the item from its
        metadata. A view moved on since (another tab answered, a click already sent) would
        have stored the choice as the answer to the next item, one the person never read."""
        view = self._view(view_id)
        if view_hash is not None and view.get("hash") != view_hash:
            raise SandboxError(
                "This window has moved on since the page drew it (another tab, or a click "
                "already sent): nothing was sent. Look at it again and choose."
            )
        return view

    def modal_for(self, user_id: str) -> dict | None:
        stack = self.modals.get(user_id) or []
        return self.fake.views.get(stack[-1]) if stack else None

    def timeline(self, user_id: str, channel: str) -> list[dict]:
        """The channel as ``user_id`` sees it: messages, plus the ephemerals meant for them."""
        entries: list[tuple[tuple[str, int], dict]] = []
        for message in self.fake.messages(channel):
            entries.append(((message["ts"], 0), _shown(message, ephemeral=False)))
        for ephemeral in self.fake.ephemerals:
            if ephemeral["user"] == user_id and ephemeral["channel"] == channel:
                if not ephemeral.get("deleted"):
                    shown = _shown(_ephemeral_message(ephemeral), ephemeral=True)
                    entries.append(((ephemeral["message_ts"], 0), shown))
        for note in self.notes:
            if note.user == user_id and note.channel == channel and (note.text or note.blocks):
                message = {"ts": note.message_ts, "text": note.text, "blocks": note.blocks}
                entries.append((note.key, _shown(message, ephemeral=True)))
        return [shown for _, shown in sorted(entries, key=lambda entry: entry[0])]

    def state(self, user_id: str) -> dict:
        """Everything the browser draws for ``user_id``, as JSON."""
        self._user(user_id)
        people = {uid: u["name"] for uid, u in self.users.items()}
        people[self.fake.bot_user_id] = "hitl"
        return {
            "version": self.version,
            "instance": self.instance,
            "team": {"id": self.team["id"], "name": self.fake.team_name},
            "me": user_id,
            "bot": {"id": self.fake.bot_user_id, "name": "hitl"},
            "users": [self.users[u] for u in self.users],
            "names": people,
            "channels": [
                {**c, "messages": self.timeline(user_id, c["id"])} for c in self.channels.values()
            ],
            "dm": {"id": self.dms[user_id], "messages": self.timeline(user_id, self.dms[user_id])},
            "home": _with_view_block_ids(self.fake.home.get(user_id)),
            "modal": self._modal_state(user_id),
        }

    def _modal_state(self, user_id: str) -> dict | None:
        """The modal on top, with the errors the bot answered its last submission with."""
        view = _with_view_block_ids(self.modal_for(user_id))
        if view is not None:
            view["errors"] = self.errors.get(view["id"], {})
        return view


def block_id_of(block: dict, index: int) -> str:
    """Slack gives a block without a ``block_id`` one of its own; the sandbox uses its index."""
    return block.get("block_id") or f"sb{index}"


def with_block_ids(blocks: list[dict]) -> list[dict]:
    return [{**block, "block_id": block_id_of(block, i)} for i, block in enumerate(blocks)]


def _with_view_block_ids(view: dict | None) -> dict | None:
    if view is None:
        return None
    return {**view, "blocks": with_block_ids(view.get("blocks") or [])}


def _find_element(blocks: list[dict], block_id: str, action_id: str) -> dict:
    for index, block in enumerate(blocks):
        if block_id_of(block, index) != block_id:
            continue
        candidates = list(block.get("elements") or [])
        if block.get("accessory"):
            candidates.append(block["accessory"])
        if isinstance(block.get("element"), dict):
            candidates.append(block["element"])
        for element in candidates:
            if element.get("action_id") == action_id:
                return element
    raise SandboxError(f"no element {action_id} in block {block_id}")


def _ephemeral_message(ephemeral: dict) -> dict:
    return {
        "type": "message",
        "ts": ephemeral["message_ts"],
        "text": ephemeral.get("text") or "",
        "blocks": ephemeral.get("blocks") or [],
    }


def _edit(ephemeral: dict, body: dict) -> None:
    if body.get("delete_original"):
        ephemeral["deleted"] = True
    elif body.get("replace_original"):
        ephemeral["text"], ephemeral["blocks"] = body.get("text") or "", body.get("blocks")


def _shown(message: dict, *, ephemeral: bool) -> dict:
    return {
        "ts": message["ts"],
        "text": message.get("text") or "",
        "blocks": with_block_ids(message.get("blocks") or []),
        "files": message.get("files") or [],
        "edited": bool(message.get("edited")),
        "ephemeral": ephemeral,
    }
