"""The labeling modal: one item at a time, moving to the next on each answer.

The modal keeps each channel's items in their channel, so a label routed to a private channel
is only shown to people there. ``/hitl label`` serves the channel it was run in: its open
questions and the waiting items that would be posted there. App Home's "Start labeling" (and
``/hitl label`` run outside the question channels, in a direct message say) serves HITL_CHANNEL
and the routed channels the person has answered a question in. The channels ride along in the
modal's ``private_metadata``, so every next item comes from the same ones.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import SLACK_TOKEN_REFUSED, StoreError
from bot.labelset import routes_in_force
from bot.runtime import Runtime
from bot.slack import blocks
from bot.slack.questions import build_question


async def channels_for_home(rt: Runtime, user_id: str) -> list[str]:
    """HITL_CHANNEL, and the routed channels where ``user_id`` has answered a question. Those
    are read in a worker thread, on a connection of its own (``Store.apart``): the look grows
    with the person's answers or the channel's posts (``Store.has_answered_in``)."""
    settings = rt.settings
    channels = [settings.channel] if settings.channel else []
    routed = sorted(set(settings.routes.values()) - set(channels))
    if not routed:
        return channels
    served = rt.store

    def read() -> list[str]:
        with served.apart() as store:
            return [channel for channel in routed if store.has_answered_in(user_id, channel)]

    try:
        return channels + await asyncio.to_thread(read)
    except StoreError:  # an in-memory store, or a file lost or replaced: as before, here
        return channels + [c for c in routed if served.has_answered_in(user_id, c)]


async def channels_for_command(rt: Runtime, channel_id: str | None, user_id: str) -> list[str]:
    """The channel ``/hitl label`` was run in, when questions go there; else as App Home."""
    settings = rt.settings
    if channel_id and channel_id in {settings.channel, *settings.routes.values()}:
        return [channel_id]
    return await channels_for_home(rt, user_id)


async def open_labeling_modal(
    rt: Runtime,
    client: AsyncWebClient,
    trigger_id: str,
    user_id: str,
    channel_id: str | None = None,
) -> None:
    """Open the modal on the first item for ``user_id``: of ``channel_id``'s items when the
    command was run there, else (App Home's *Start labeling*) of App Home's channels. A modal
    opened from App Home asks Slack for ``view_closed`` (``notify_on_close``): Home stays on
    screen under it, and Slack sends no ``app_home_opened`` when it closes, so the app
    publishes Home again then (``from_home``), or the person sees the counts of before."""
    if channel_id is None:
        channels = await channels_for_home(rt, user_id)
    else:
        channels = await channels_for_command(rt, channel_id, user_id)
    view = _view(rt, user_id, channels, answered=0, home=channel_id is None)
    await client.views_open(trigger_id=trigger_id, view=view)


# What views.open says when the trigger_id (3 s of life, one use) can no longer open a window.
TRIGGER_ERRORS = frozenset({"expired_trigger_id", "exchanged_trigger_id", "invalid_trigger_id"})


def not_opened(error: str | None, window: str, again: str) -> str:
    """The one line that tells a person why Slack did not open ``window`` (``views.open``
    answered ``error``) and what to do: do ``again`` (a trigger lives 3 s, a rate limit
    passes), or, with a token Slack refuses, ask an admin (doing it again cannot help)."""
    said = f"Slack did not let me open the {window} window ({error or 'no reason given'})"
    if error in SLACK_TOKEN_REFUSED:
        return f"{said}: the bot's token is refused; ask an admin to reinstall the app."
    if error == "ratelimited":
        return f"{said}: Slack is busy; {again} again in a few seconds."
    if error in TRIGGER_ERRORS:  # too old or used: a new command brings a new trigger
        return f"{said}: {again} again."
    return f"{said}: {again} again, and tell an admin if it keeps failing."


async def next_in_modal(
    rt: Runtime, client: AsyncWebClient, body: dict, counted: bool, note: str = ""
) -> None:
    """Redraw the modal on the person's next item, with ``note`` on top: what a message in the
    channel would say as an ephemeral note (a modal has no channel to put one in), such as an
    answer that came too late or a label no longer in the set."""
    view: dict[str, Any] = body.get("view") or {}
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except json.JSONDecodeError:
        meta = {}
    if not isinstance(meta, dict):
        meta = {}
    answered = int(meta.get("answered") or 0) + (1 if counted else 0)
    user_id = body["user"]["id"]
    channels = meta.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        channels = await channels_for_home(rt, user_id)  # opened before channels were kept
    await client.views_update(
        view_id=view.get("id"),
        hash=view.get("hash"),
        view=_view(rt, user_id, channels, answered, note, home=from_home(body)),
    )


def from_home(body: dict) -> bool:
    """Whether the labeling modal of ``body`` (a click in it, its ``view_closed``) was opened
    from App Home, as its ``private_metadata`` says."""
    view = body.get("view") or {}
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except (json.JSONDecodeError, TypeError):
        return False
    return isinstance(meta, dict) and meta.get("home") is True


def _view(
    rt: Runtime, user_id: str, channels: list[str], answered: int, note: str = "", *, home: bool
) -> View:
    routes = routes_in_force(rt.settings, rt.store)
    item_id = rt.store.next_in_channels(user_id, channels, routes, rt.settings.channel)
    question = build_question(rt.store, rt.settings, item_id) if item_id else None
    view = blocks.modal_view(question, rt.store.waiting_count(), answered)
    if note:
        view.blocks = [SectionBlock(text=MarkdownTextObject(text=blocks.fit(note))), *view.blocks]
    meta = json.loads(view.private_metadata or "{}")
    view.private_metadata = json.dumps({**meta, "channels": channels, "home": home})
    # views.update replaces the whole view, notify_on_close too: sent on every redraw
    view.notify_on_close = home
    return view
