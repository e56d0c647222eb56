"""The labeling modal: one item at a time, moving to the next on each answer.

The modal keeps each channel's items in their channel, so a label routed to a private channel
is only shown to people there. ``/hitl label`` serves the channel it was run in: its open
questions and the waiting items that would be posted there (Slack lets only a private
channel's members run a command in it). App Home's "Start labeling" (and ``/hitl label`` run
outside the question channels, in a direct message say) serves HITL_CHANNEL and the routed
channels the person has answered a question in; of those, a private channel only to its
current members, as Slack says (``ChannelMembers``); when Slack cannot say, its items are not
served and the window says what an admin must fix. The channels ride along in the modal's
``private_metadata``, so every next item comes from the same ones, less a private one the
person is not in now: each next item is checked as a new window's, however the window was
opened (``/hitl label`` in the private channel too). Windows open at once are shown
different items while an item needs no more people than it is shown to (``bot.slack.holds``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackClientError
from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient

from bot import eventloop
from bot.errors import SLACK_TOKEN_REFUSED, StoreError, slack_said
from bot.labelset import routes_in_force
from bot.runtime import Runtime, answer_lost, open_window, update_window
from bot.slack import blocks
from bot.slack.holds import Holds
from bot.slack.questions import build_question
from bot.slack.windowgold import GoldTurns, gold_every, gold_for_window
from bot.store import Store

logger = logging.getLogger(__name__)

# How long what Slack said of a channel (private or not, and a private one's members) is used.
# Younger than MEMBERS_FRESH it is used as it is; older, it is still used while Slack is asked
# again in the background (off the window's path); older than MEMBERS_MAX_AGE a private
# channel's list is not trusted, and the window waits for Slack's answer, at most MEMBERS_WAIT
# seconds (a trigger_id lives 3 s), unless the person is found on a page already read; a
# channel last seen public is served without waiting (see ``ChannelMembers``).
# member_joined_channel / member_left_channel, when the app is subscribed to them, change a
# list at once. Seconds.
MEMBERS_FRESH = 60.0
MEMBERS_MAX_AGE = 300.0
MEMBERS_WAIT = 1.5
MEMBERS_RETRY = 30.0  # after Slack refused or failed, a window asks again after this
MEMBERS_PAGE = 1000  # conversations.members' largest page
METADATA_LIMIT = 3000  # Slack's limit for a view's private_metadata


@dataclass
class _Known:
    """What Slack said of one channel, asked at ``at`` (``ChannelMembers.clock``)."""

    private: bool
    members: set[str]  # a private channel's; empty for a public one (not asked)
    at: float


class ChannelMembers:
    """Who is in the private question channels, as Slack says, for the labeling window.

    Per channel, ``conversations.info`` says whether it is private, and for a private one
    ``conversations.members`` (paginated) lists its members: asked once per channel at a time
    (a task of the runtime's ``background``), kept ``MEMBERS_FRESH`` seconds, then asked again
    in the background while the list is still used, up to ``MEMBERS_MAX_AGE``. When Slack
    cannot be asked (an error, a missing scope, the bot removed from the channel), a private
    channel, or one never known, is served to nobody until it can (``served``): the person is
    told in one line what an admin must fix, and the log says it once. Whether a channel was
    public is kept across a failed ask: a public channel stays open to everyone (until
    ``conversations.info`` says it is private: its members are then needed). The start-up
    check's answer (``seen_at_start``) is the first one; a channel public when last asked is
    never waited for (served while asked again). A member found on a page read so far is
    served without waiting for the rest (``_listed``); a window drawn before Slack answered is
    drawn again when it has (``_redraw_when_said``). The bot leaving or joining a channel drops
    an answer being read then, and a join forgets a refusal (``member_changed``). Every next
    item of an open window is checked as a new window's (``next_in_modal``), whichever way
    the window was opened."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.clock: Callable[[], float] = time.monotonic
        self.known: dict[str, _Known] = {}
        self.public: dict[str, bool] = {}  # what the last answer said, kept through failures
        # (a channel not in it: never known, served to nobody until it is)
        self.failed: dict[str, tuple[str, str | None, float]] = {}  # why, scope needed, when
        self.asking: dict[str, asyncio.Task] = {}
        self.changes: dict[str, list[tuple[str, bool]]] = {}  # events seen while asking
        self.said: set[tuple[str, str]] = set()  # (channel, why) logged since the last answer
        # bumped when the bot leaves or joins a channel: an answer asked before is dropped
        self.epoch: dict[str, int] = {}
        # a private channel's members read so far, while its pages are read; ``paged`` is set
        # (and replaced) at each page: a window waiting for one person looks again
        self.reading: dict[str, set[str]] = {}
        self.paged = asyncio.Event()

    @classmethod
    def of(cls, rt: Runtime) -> ChannelMembers:
        """The runtime's (made at first use)."""
        members = _MEMBERS.get(rt)
        if members is None:
            members = _MEMBERS[rt] = cls(rt)
        return members

    def _usable(self, channel: str) -> _Known | None:
        """What is known of ``channel``, unless it was said ``MEMBERS_MAX_AGE`` ago or more
        (or on another clock: a time ahead of ``clock``'s now is not trusted either)."""
        known = self.known.get(channel)
        if known is not None and 0 <= self.clock() - known.at < MEMBERS_MAX_AGE:
            return known
        return None

    def seen_at_start(self, channel: str, shown: object) -> None:
        """What the start-up check's ``conversations.info`` said of ``channel`` (``shown``, its
        ``channel``; ``bot.slack.connect.check_slack``): a public channel is served to everyone
        from the first window on without asking Slack (asked again as any list is, and kept
        open when that fails); a private one still waits for its members."""
        private = shown.get("is_private") if isinstance(shown, dict) else None
        if not isinstance(private, bool):
            return
        self.public[channel] = not private
        if not private and channel not in self.known:
            self.known[channel] = _Known(False, set(), self.clock())

    def _ask(self, channel: str) -> asyncio.Task | None:
        """Ask Slack about ``channel`` in the background, unless it is asked already, or it
        failed less than ``MEMBERS_RETRY`` seconds ago; the task asking, if any."""
        if channel in self.asking:
            return self.asking[channel]
        failed = self.failed.get(channel)
        if failed is not None and self.clock() - failed[2] < MEMBERS_RETRY:
            return None
        self.changes[channel] = []
        task = asyncio.create_task(self._fetch(channel), name=f"hitl-members-{channel}")
        self.asking[channel] = task
        self.rt.background.keep(task)
        return task

    async def _fetch(self, channel: str) -> None:
        at = self.clock()
        epoch = self.epoch.get(channel, 0)
        me = asyncio.current_task()
        client = self.rt.client
        try:
            info = await client.conversations_info(channel=channel)
            shown = info.get("channel")
            private = not isinstance(shown, dict) or shown.get("is_private") is not False
            members: set[str] = set()
            if private and self.asking.get(channel) is me:
                self.reading[channel] = members
                # private from now on, whatever the pages say (or fail to): a public channel's
                # list said nothing of who is in it, so it is not used while they are read
                self.public[channel] = False
                known = self.known.get(channel)
                if known is not None and not known.private:
                    del self.known[channel]
            cursor: str | None = None
            while private:
                page = await client.conversations_members(
                    channel=channel, limit=MEMBERS_PAGE, cursor=cursor
                )
                members.update(m for m in page.get("members") or [] if isinstance(m, str))
                self.paged.set()
                self.paged = asyncio.Event()
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if cursor is None:
                    break
        except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            if self.epoch.get(channel, 0) != epoch:  # the bot left or joined since: of before
                return
            why = slack_said(exc) or type(exc).__name__
            needed = slack_said(exc, "needed")
            self.failed[channel] = (why, needed if isinstance(needed, str) else None, at)
            if (channel, why) not in self.said:
                self.said.add((channel, why))
                if self.public.get(channel):  # public when last asked: it stays open
                    logger.info(
                        "cannot ask Slack whether %s is still public (%s): the labeling window "
                        "serves its items to everyone, as it was public; %s",
                        channel,
                        why,
                        _admin_fix(why, self.failed[channel][1]),
                    )
                else:
                    asked = (  # a private channel's members, or whether it is private
                        f"who is in {channel}"
                        if channel in self.public
                        else f"whether {channel} is private"
                    )
                    logger.warning(
                        "cannot ask Slack %s (%s): the labeling window serves its items "
                        "to nobody until it can; %s",
                        asked,
                        why,
                        _admin_fix(why, self.failed[channel][1]),
                    )
            return
        finally:
            changes = []
            if self.asking.get(channel) is me:  # (not a later ask's, after the bot came back)
                del self.asking[channel]
                changes = self.changes.pop(channel, [])
                self.reading.pop(channel, None)
        if self.epoch.get(channel, 0) != epoch:  # read before the bot left (or joined): its
            return  # list is not Slack's now, and no event tells the app what changed since
        for user, joined in changes:  # the events seen while the pages were read
            (members.add if joined else members.discard)(user)
        self.known[channel] = _Known(private, members, at)
        self.public[channel] = not private
        self.failed.pop(channel, None)
        self.said = {(c, why) for c, why in self.said if c != channel}

    async def served(self, channels: Iterable[str], user_id: str) -> tuple[list[str], str]:
        """Of ``channels``, those whose items ``user_id`` may be served: a public one, a
        private one they are in; and the line that says why some could not be checked ("" if
        none). Waits for Slack only for a channel not known (or known too long ago), at
        most ``MEMBERS_WAIT`` seconds; a list getting old is asked again in the background."""
        wanted = list(dict.fromkeys(channels))
        waiting: dict[str, asyncio.Task] = {}
        for channel in wanted:
            known = self._usable(channel)
            if known is None or self.clock() - known.at >= MEMBERS_FRESH:
                task = self._ask(channel)
                # a channel public when last asked is served meanwhile (below): nothing to wait
                if known is None and task is not None and not self.public.get(channel):
                    waiting[channel] = task
        if waiting:
            await self._wait(waiting, user_id)  # the tasks go on past it
        kept, fixes = [], []
        for channel in wanted:
            known = self._usable(channel)
            if known is not None:
                if not known.private or user_id in known.members:
                    kept.append(channel)
            elif self.public.get(channel):  # public when last asked: Slack failing since
                kept.append(channel)
            elif self._listed(channel, user_id):  # on a page read so far of a private one's
                kept.append(channel)
            else:  # private, or never known: served to nobody until Slack says
                failed = self.failed.get(channel)
                of = _OF_PRIVATE if channel in self.public else _OF_UNKNOWN
                fix = _person_fix(*failed[:2], of) if failed else _STILL_ASKING.format(of=of)
                if fix not in fixes:
                    fixes.append(fix)
        if not fixes:
            return kept, ""
        return kept, "Some items are not shown: " + " Also: ".join(fixes)

    async def _wait(self, waiting: dict[str, asyncio.Task], user_id: str) -> None:
        """Until Slack has answered for each of ``waiting``'s channels, or listed ``user_id``
        on a page of it read so far (a member of a channel of many pages is served without
        waiting for the rest), at most ``MEMBERS_WAIT`` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + MEMBERS_WAIT
        while True:
            left = [t for c, t in waiting.items() if not t.done() and not self._listed(c, user_id)]
            if not left or loop.time() >= end:
                return
            page = asyncio.ensure_future(self.paged.wait())
            try:
                await asyncio.wait(
                    [*left, page], timeout=end - loop.time(), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                page.cancel()

    def _listed(self, channel: str, user_id: str) -> bool:
        """Whether ``user_id`` is in private ``channel`` by the pages of it read so far and the
        member events seen since its reading began."""
        read = self.reading.get(channel)
        if read is None:
            return False
        listed = user_id in read
        for user, joined in self.changes.get(channel, []):
            if user == user_id:
                listed = joined
        return listed

    def still_asked(self, channels: Iterable[str]) -> list[str]:
        """Of ``channels``, those withheld by ``served`` only because Slack is being asked
        about them now (a private one, or one never known, whose answer is not in yet)."""
        return [
            c
            for c in channels
            if c in self.asking and self._usable(c) is None and not self.public.get(c)
        ]

    def ran_in(self, channel: str, user_id: str) -> None:
        """``user_id`` ran ``/hitl label`` in ``channel`` (Slack sends a command run in a
        private channel only from its members): counted in its list, and the list asked for
        now, if it is not known or getting old, for the window's next items."""
        self.member_changed(channel, user_id, joined=True)
        known = self._usable(channel)
        if known is None or self.clock() - known.at >= MEMBERS_FRESH:
            self._ask(channel)

    def member_changed(self, channel: str, user_id: str, joined: bool) -> None:
        """Slack's ``member_joined_channel`` (``joined``) or ``member_left_channel``. The bot
        itself leaving makes the channel unknown (asked again, and refused, before use), and an
        answer being read then is dropped when it comes; the bot invited back forgets why Slack
        refused before, and asks again at once."""
        if not channel or not user_id:
            return
        if user_id == self.rt.bot_user_id:
            self.epoch[channel] = self.epoch.get(channel, 0) + 1
            self.asking.pop(channel, None)  # its answer is dropped (``_fetch``): ask anew
            self.changes.pop(channel, None)
            self.reading.pop(channel, None)
            if not joined:
                self.known.pop(channel, None)
                return
            asked = channel in self.public or channel in self.failed  # a window's channel
            self.failed.pop(channel, None)
            self.said = {(c, why) for c, why in self.said if c != channel}
            if asked:
                self._ask(channel)
            return
        if channel in self.changes:  # asked now: applied on top of the answer
            self.changes[channel].append((user_id, joined))
        known = self.known.get(channel)
        if known is not None and known.private:
            (known.members.add if joined else known.members.discard)(user_id)


_MEMBERS: weakref.WeakKeyDictionary[Runtime, ChannelMembers] = weakref.WeakKeyDictionary()

_STILL_ASKING = (
    "Slack has not said yet {of}; this window shows their items when it has"
    " (or try again in a few seconds)."
)
# What Slack did not say of a channel served to nobody: a private one's members; whether one
# never known (the start-up check and the window's asks failed) is private.
_OF_PRIVATE = "who is in their channel"
_OF_UNKNOWN = "whether their channel is private"


def _admin_fix(why: str, needed: str | None) -> str:
    """What an admin must do about Slack's ``why`` (and the scope ``needed``), for the log."""
    if why == "missing_scope":
        return (
            f"add the {needed or 'groups:read'} scope under OAuth & Permissions → Bot Token "
            "Scopes (manifest.yml has it) and reinstall the app"
        )
    if why in SLACK_TOKEN_REFUSED:
        return "the bot's token is refused: reinstall the app"
    if why in ("channel_not_found", "not_in_channel"):
        return "invite the bot to the channel (/invite @hitl) or name another channel"
    return "it is asked again in a moment"


def _person_fix(why: str, needed: str | None, of: str = _OF_PRIVATE) -> str:
    """The part of the window's line that says what to do about ``why``; ``of``: what Slack
    did not tell (``_OF_PRIVATE``, ``_OF_UNKNOWN``)."""
    if why == "missing_scope":
        scope = needed or "groups:read"
        return (
            f"Slack did not tell me {of} (the app lacks the {scope} scope);"
            f" ask an admin to add {scope} to the app and reinstall it."
        )
    if why in SLACK_TOKEN_REFUSED:
        return "Slack refused the bot's token; ask an admin to reinstall the app."
    if why in ("channel_not_found", "not_in_channel"):
        return (
            f"Slack did not tell me {of} ({why}); ask an admin to invite "
            "the bot to it again (/invite @hitl)."
        )
    return (
        f"Slack did not tell me {of} ({why}); try again in a minute, and"
        " tell an admin if it keeps failing."
    )


async def channels_for_home(rt: Runtime, user_id: str) -> list[str]:
    """As ``home_channels``, without the line on what could not be checked."""
    return (await home_channels(rt, user_id))[0]


async def home_channels(rt: Runtime, user_id: str) -> tuple[list[str], str, list[str]]:
    """HITL_CHANNEL, and the routed channels where ``user_id`` has answered a question; of
    those, a private one only if they are in it now (``ChannelMembers.served``, with its
    line on the channels Slack could not say of); and the window's channels: those served,
    and those Slack is still being asked about (served from a next item on, if Slack says
    so; checked again for each, ``next_in_modal``). The routed channels answered in are read
    in a worker thread, on a connection of its own (``Store.apart``): the look grows with the
    person's answers or the channel's posts (``Store.has_answered_in``)."""
    settings = rt.settings
    channels = [settings.channel] if settings.channel else []
    routed = sorted(set(settings.routes.values()) - set(channels))
    if routed:
        served = rt.store

        def read() -> list[str]:
            with served.apart() as store:
                return [channel for channel in routed if store.has_answered_in(user_id, channel)]

        try:
            channels = channels + await asyncio.to_thread(read)
        except StoreError:  # an in-memory store, or a file lost or replaced: as before, here
            channels = channels + [c for c in routed if served.has_answered_in(user_id, c)]
    if not channels:
        return [], "", []
    members = ChannelMembers.of(rt)
    kept, line = await members.served(channels, user_id)
    later = members.still_asked(channels)
    return kept, line, [c for c in channels if c in kept or c in later]


async def channels_for_command(rt: Runtime, channel_id: str | None, user_id: str) -> list[str]:
    """The channel ``/hitl label`` was run in, when questions go there; else as App Home."""
    return (await command_channels(rt, channel_id, user_id))[0]


async def command_channels(
    rt: Runtime, channel_id: str | None, user_id: str
) -> tuple[list[str], str, list[str]]:
    """The channel ``/hitl label`` was run in, when questions go there (Slack sends a
    command run in a private channel only from its members); else as App Home."""
    settings = rt.settings
    if channel_id and channel_id in {settings.channel, *settings.routes.values()}:
        ChannelMembers.of(rt).ran_in(channel_id, user_id)  # for the window's next items
        return [channel_id], "", [channel_id]
    return await home_channels(rt, user_id)


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
    publishes Home again then (``from_home``), or the person sees the counts of before. Every
    window asks for it: its close ends the hold on the item it showed (``Holds``)."""
    if channel_id is None:
        channels, note, window = await home_channels(rt, user_id)
    else:
        channels, note, window = await command_channels(rt, channel_id, user_id)
    home = channel_id is None
    view = await _window_view(rt, user_id, channels, window, answered=0, note=note, home=home)
    opened = await open_window(client, trigger_id, view)
    _redraw_when_said(rt, client, user_id, window, view, opened, 0, "", home)


# What views.open says when the trigger_id (3 s of life, one use) can no longer open a window.
TRIGGER_ERRORS = frozenset({"expired_trigger_id", "exchanged_trigger_id", "invalid_trigger_id"})


# What a window's views.open (or views.push) may meet besides Slack's refusal (a
# ``SlackApiError``, caught before these: it is one of them): no answer within the client's
# timeout, a connection dropped after it was sent, Slack not reached at all.
NOT_ANSWERED = (SlackClientError, aiohttp.ClientError, TimeoutError, OSError)


def not_answered(
    exc: BaseException, window: str, again: str, method: str = "views.open"
) -> tuple[str, str]:
    """What the log says (after the caller's "who, where: ") and what the person is told when
    the ``method`` call that opens ``window`` got no answer (``NOT_ANSWERED``): when it reached
    Slack (``answer_lost``), the window may be open, and told to open it again blindly the
    person would have two; when it did not, it is not open. ``again`` as for ``not_opened``."""
    lost = answer_lost(exc)
    if lost is not None:
        return (
            f"{method} may have opened the {window} window: {lost}",
            f"Slack did not answer in time when I opened the {window} window: if no window"
            f" opened, {again} again.",
        )
    return (
        f"could not reach Slack to open the {window} window ({type(exc).__name__})",
        f"I could not reach Slack to open the {window} window: {again} again, and tell an"
        " admin if it keeps failing.",
    )


def not_opened(error: str | None, window: str, again: str) -> str:
    """The one line that tells a person why Slack did not open ``window`` (``views.open``
    answered ``error``) and what to do: do ``again`` (a trigger lives 3 s, a rate limit
    passes), or, with a token Slack refuses, ask an admin (doing it again cannot help), as
    for a window larger than Slack takes (``view_too_large``)."""
    said = f"Slack did not let me open the {window} window ({error or 'no reason given'})"
    if error in SLACK_TOKEN_REFUSED:
        return f"{said}: the bot's token is refused; ask an admin to reinstall the app."
    if error == "ratelimited":
        return f"{said}: Slack is busy; {again} again in a few seconds."
    if error == "view_too_large":  # the same window again would be as large
        return (
            f"{said}: it is larger than the 250 kB Slack takes in one window, so doing it"
            " again will not help; tell whoever runs hitl (the bot's log has it)."
        )
    if error in TRIGGER_ERRORS:  # too old or used: a new command brings a new trigger
        return f"{said}: {again} again."
    return f"{said}: {again} again, and tell an admin if it keeps failing."


async def next_in_modal(
    rt: Runtime,
    client: AsyncWebClient,
    body: dict,
    counted: bool,
    note: str = "",
    *,
    again: bool = False,
    first: str | None = None,
    decided: Offer | None = None,
    undo_clicked: bool = False,
    taken_back: bool = False,
    repeat: bool = False,
) -> None:
    """Redraw the modal on the person's next item, with ``note`` on top: what a message in the
    channel would say as an ephemeral note (a modal has no channel to put one in), such as an
    answer that came too late or a label no longer in the set. ``again``: the click was not
    stored (a label no longer in the set, a team whose answers do not count), so the item the
    window showed is shown again while it is still theirs to answer (the note is about it),
    not whichever item comes first now (a question posted meanwhile, say); ``first``: that
    item, shown first while it is theirs to answer (the item an Undo reopened).

    The window offers an Undo of the person's last decision in it, as the channel does in an
    ephemeral note: ``decided`` (item, label), an answer that decided its item, whose Undo
    replaces the one offered; the offer rides in ``private_metadata`` through the redraws
    that follow until a click on it (``undo_clicked``) takes it away. ``taken_back``: the
    Undo took back an answer this session counted (one less answered). ``repeat``: the
    click repeats an answer given in this window after the drawing it came from (a double
    click, Slack's retry), which that drawing's count does not hold: counted in the drawing,
    not again in the gold turns."""
    view: dict[str, Any] = body.get("view") or {}
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except json.JSONDecodeError:
        meta = {}
    if not isinstance(meta, dict):
        meta = {}
    answered = int(meta.get("answered") or 0) + (1 if counted or repeat else 0)
    if taken_back:
        answered = max(answered - 1, 0)
    shown = meta.get("item") if again and isinstance(meta.get("item"), str) else None
    shown = first or shown
    offer = decided or (None if undo_clicked else _offered(meta))
    user_id = body["user"]["id"]
    if counted and isinstance(meta.get("item"), str):  # one more item answered in a window
        GoldTurns.of(rt).answered(user_id, gold=rt.store.is_gold(meta["item"]))
    channels = meta.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        channels, unchecked, window = await home_channels(rt, user_id)  # opened before kept
    else:  # each next item as a new window's: less a private channel the person is not in now
        members = ChannelMembers.of(rt)
        window = channels
        channels, unchecked = await members.served(window, user_id)
        later = members.still_asked(window)
        window = [c for c in window if c in channels or c in later]
    home = from_home(body)
    drawn = await _window_view(
        rt,
        user_id,
        channels,
        window,
        answered,
        _lines(note, unchecked),
        home=home,
        first=shown,
        offer=offer,
    )
    updated = await update_window(client, view.get("id"), view.get("hash"), drawn)
    _redraw_when_said(rt, client, user_id, window, drawn, updated, answered, note, home)


def _lines(*lines: str) -> str:
    return " ".join(line for line in lines if line)


# An Undo a window offers: (item, label, the decision it undoes: ``labels.decided_by``, None
# in a window drawn before the offer said it)
Offer = tuple[str, str, int | None]


def _offered(meta: object) -> Offer | None:
    """The Undo a window's ``private_metadata`` (``meta``) offers, or None."""
    undo = meta.get("undo") if isinstance(meta, dict) else None
    if not isinstance(undo, list) or len(undo) not in (2, 3):
        return None
    if not all(isinstance(u, str) for u in undo[:2]):
        return None
    decision = undo[2] if len(undo) == 3 else None
    if not isinstance(decision, int) or isinstance(decision, bool):
        decision = None
    return undo[0], undo[1], decision


async def _window_view(
    rt: Runtime,
    user_id: str,
    channels: list[str],
    window: list[str],
    answered: int,
    note: str = "",
    *,
    home: bool,
    first: str | None = None,
    offer: Offer | None = None,
) -> View:
    """``_view`` on ``channels`` (those served now), keeping ``window`` as the window's
    channels (with those Slack is still being asked about) for its next items."""
    view = await _view(rt, user_id, channels, answered, note, home=home, first=first, offer=offer)
    meta = json.loads(view.private_metadata or "{}")
    view.private_metadata = json.dumps({**meta, "channels": window})
    return view


# How many asks a window drawn before Slack answered waits for, one after the other (a new ask
# begins when the bot leaves or joins the channel while it is read); then it is drawn anyway.
REDRAW_ASKS = 4


def _redraw_when_said(
    rt: Runtime,
    client: AsyncWebClient,
    user_id: str,
    window: list[str],
    drawn: View,
    reply: Any,
    answered: int,
    note: str,
    home: bool,
) -> None:
    """A window drawn with no item while Slack was still being asked about some of its
    channels (a private channel of many members takes longer to list than a window can wait
    to open) is drawn again once Slack has answered: on an item if the person is served one
    then, else with the line that says why not. Not if the person acted in it meanwhile (its
    ``hash`` changed) or closed it: Slack refuses the redraw, and that is all. A window
    redrawn before its answer was lost (``update_window``) has no hash to send: sent
    without, as a window with no item has nothing to act in but its close."""
    members = ChannelMembers.of(rt)
    later = members.still_asked(window)
    shown = json.loads(drawn.private_metadata or "{}").get("item")
    opened = reply.get("view") if hasattr(reply, "get") else None
    if not later or shown is not None or not isinstance(opened, dict):
        return
    tasks = [members.asking[c] for c in later if c in members.asking]

    def closing() -> bool:  # the server is stopping: the store and the session close next
        return getattr(rt.trainer, "closing", False) is True

    async def redraw() -> None:
        waited = tasks
        for _ in range(REDRAW_ASKS):
            await asyncio.wait(waited)  # each ends (a Slack call gives up after its timeout)
            if closing():
                return
            channels, unchecked = await members.served(window, user_id)
            # asked again meanwhile (the bot left or joined the channel while it was read:
            # that answer was dropped, a new ask began): the window waits for that one too
            waited = [
                members.asking[c]
                for c in members.still_asked(window)
                if c not in channels and c in members.asking
            ]
            if not waited:
                break
        if closing():
            return
        try:
            view = await _window_view(
                rt,
                user_id,
                channels,
                window,
                answered,
                _lines(note, unchecked),
                home=home,
                offer=_offered(json.loads(drawn.private_metadata or "{}")),
            )
            await client.views_update(view_id=opened.get("id"), hash=opened.get("hash"), view=view)
        except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.debug(  # hash_conflict (the person clicked), not_found (closed): as meant
                "the labeling window of %s was not redrawn: %s",
                user_id,
                slack_said(exc) or type(exc).__name__,
            )
        except Exception as exc:  # the database refusing the read (closed, full, damaged)
            if closing():
                return
            logger.warning(
                "the labeling window of %s was not redrawn: %s",
                user_id,
                str(exc) or type(exc).__name__,
            )

    rt.background.keep(asyncio.create_task(redraw(), name=f"hitl-window-{user_id}"))


def from_home(body: dict) -> bool:
    """Whether the labeling modal of ``body`` (a click in it, its ``view_closed``) was opened
    from App Home, as its ``private_metadata`` says."""
    view = body.get("view") or {}
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except (json.JSONDecodeError, TypeError):
        return False
    return isinstance(meta, dict) and meta.get("home") is True


def shown_in(body: dict) -> str | None:
    """The item the labeling modal of ``body`` (a click in it, its ``view_closed``) showed, as
    its ``private_metadata`` says; None for none (or metadata not ours)."""
    view = body.get("view") or {}
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except (json.JSONDecodeError, TypeError):
        return None
    item = meta.get("item") if isinstance(meta, dict) else None
    return item if isinstance(item, str) else None


async def _view(
    rt: Runtime,
    user_id: str,
    channels: list[str],
    answered: int,
    note: str = "",
    *,
    home: bool,
    first: str | None = None,
    offer: Offer | None = None,
) -> View:
    """The window on ``user_id``'s next item (``first`` when it still is one of theirs), with
    the Undo ``offer`` (item, label) above it (``next_in_modal``). An item other windows
    hold for as many people as it needs answers is shown only when no other is left; the item
    shown is held for ``user_id`` (``Holds``). At HITL_GOLD_RATE, one item in
    ``gold_every`` is a gold question waiting to be asked (``bot.slack.windowgold``)."""
    routes = routes_in_force(rt.settings, rt.store)
    holds = Holds.of(rt)  # items other windows show, while they need no more people
    crowded = holds.crowded(user_id, rt.settings.votes, rt.store.votes_in)
    turns = GoldTurns.of(rt)
    gold = None
    if first is not None:  # a gold question shown again (an Undo reopened it, a refused click)
        gold = await gold_for_window(rt, user_id, channels, item_id=first)
    if gold is None and turns.due(user_id, gold_every(rt.settings.gold_rate)):
        gold = await gold_for_window(rt, user_id, channels, crowded)
        # another window may have taken it while the guess was made (a worker thread)
        if gold is not None and gold.item_id in holds.crowded(
            user_id, rt.settings.votes, rt.store.votes_in
        ):
            gold = None  # the turn stays due: the next drawing looks again
    if gold is not None:
        item_id: str | None = gold.item_id
    else:
        item_id = await _next_item(rt, user_id, channels, routes, holds, crowded, first)
    holds.hold(user_id, item_id)  # no await since the item was checked: it is still so
    guessed = (gold.model_version, gold.ranked) if gold is not None else None
    question = build_question(rt.store, rt.settings, item_id, guessed=guessed) if item_id else None
    undo = blocks.modal_undo_block(*offer) if offer is not None else None
    view = blocks.modal_view(question, rt.store.waiting_count(), answered, undo)
    if note:
        view.blocks = [SectionBlock(text=MarkdownTextObject(text=blocks.fit(note))), *view.blocks]
    meta = json.loads(view.private_metadata or "{}")
    meta = {**meta, "channels": channels, "home": home}
    kept = json.dumps({**meta, "undo": list(offer)}) if offer is not None else ""
    # the offer is kept for the redraws that follow while Slack's limit has room for it (ids
    # of 200 characters written as \u escapes may not): else it is offered in this one only
    view.private_metadata = kept if 0 < len(kept) <= METADATA_LIMIT else json.dumps(meta)
    # every window asks for view_closed, which ends its hold (``Holds``), and Home's has Home
    # published again; views.update replaces the whole view, notify_on_close too: every redraw
    view.notify_on_close = True
    return view


# How many times a window's next item is read in a worker thread when what was read is no
# longer the one to show (``_next_item``); then it is read on the event loop.
READS = 3


def _lookup(
    store: Store,
    user_id: str,
    channels: list[str],
    routes: Mapping[str, str],
    default_channel: str | None,
    crowded: list[str],
    first: str | None,
) -> tuple[str | None, bool]:
    """The window's next item (``first`` while it is one, held or not; else one outside
    ``crowded``, the items other windows hold; when only held items are left, one of them,
    not nothing), and whether it is one of those last (only held items left)."""
    item = store.next_in_channels(
        user_id, channels, routes, default_channel, exclude=crowded, first=first
    )
    if item is None and crowded:
        return store.next_in_channels(user_id, channels, routes, default_channel), True
    return item, False


def _lookup_apart(store: Store, *args: Any) -> tuple[str | None, bool]:
    """``_lookup`` on a connection of its own (``Store.apart``), for a worker thread."""
    with store.apart() as own:
        return _lookup(own, *args)


async def _next_item(
    rt: Runtime,
    user_id: str,
    channels: list[str],
    routes: Mapping[str, str],
    holds: Holds,
    crowded: list[str],
    first: str | None,
) -> str | None:
    """The item ``_view`` shows (``_lookup``), read in a worker thread on a connection of its
    own: the lookup steps past every item the person answered that still waits for other
    people's answers (HITL_VOTES > 1), 50-90 ms at 10,000 of them, on the event loop before.
    What the thread read is checked here, by its key, with the holds of now: an item another
    window was shown meanwhile, when it needs no more people (``Holds.crowded``), or one
    decided, deleted or answered since (``Store.still_next``), is read again, leaving out the
    items held now; after ``READS`` reads, on the event loop. An item read while only held
    items were left is kept if the holds are the same now. With no file to open again (a
    store in memory, a file lost or replaced) the lookup runs here, as it did."""
    store, settings = rt.store, rt.settings
    args = (user_id, channels, routes, settings.channel)
    for _ in range(READS):
        try:
            item, only_held = await eventloop.to_thread(_lookup_apart, store, *args, crowded, first)
        except StoreError:
            break
        if item is None:  # nothing left to this person, held or not
            return None
        now = holds.crowded(user_id, settings.votes, store.votes_in)
        held_as_read = set(now) == set(crowded) if only_held else item == first or item not in now
        if held_as_read and store.still_next(*args, item):
            return item
        crowded = now
    return _lookup(store, *args, crowded, first)[0]
