"""Keeps each question message true to the database.

Every change to an item bumps its post's ``redraw_seq``; ``Redrawer.pending`` draws the message
from the database with ``chat.update`` and records what it drew. A failed update leaves the
post pending, and the background ``Redrawer.run`` tries again with backoff, so the message ends
up right even when Slack fails for a while. The backoff is the message's own: clicks and new
items under way do not cut it short (a pass after a change tries only the messages that are
due), and its failure is said once, then once more when it is drawn. A post that goes through
again (the dispatcher's) makes every message backing off due at once. A pass moves every wait it
skips (a message behind its channel's or the token's backoff, a look for lost posts behind the
erasures') to when it can go, so the background loop sleeps until a pass can do something.

A 429 on a ``chat.update`` holds every redraw (the start draws too) until its Retry-After, on
the redrawer's clock (``update_due``): Slack counts chat.update per workspace, so the pass's
other messages would meet the same 429. The call is one try for a rate limit
(``no_rate_waits``): the client's own retries slept the Retry-After out inside the pass, its
lock held, twice, then went on to the next message at once, into the same 429.

A ``chat.update`` whose outcome is unknown (a timeout, a dropped connection, a 5xx: Slack may
apply it late, over a newer drawing) has its message drawn once more ``UPDATE_SETTLE`` seconds
later, even if a later update went through (nothing moves that draw earlier: a post that goes
through again cuts the failures' backoff short, not the settle). At start every open question is
drawn once (its message may be another app's: the app was created again), a few at a time
(``START_BATCH`` every ``START_GAP`` seconds) after each pass's changes, so clicks' redraws go
first; a failure a retry may fix (a 429, at least its Retry-After; a 5xx, a timeout, the
token) stops it, and it goes on with backoff. The old message of a question moved out of a
channel no longer asked in is drawn as moved (no buttons) while its item is open.

An error that no retry can fix is given up at once, with one log line: a message Slack refuses
(``invalid_blocks``…). The message keeps its last drawing; the next change to its item tries
again. A channel that refuses the bot (removed from it, archived, a private channel it was
removed from: ``CHANNEL_REFUSED``) is said once, as the start-up check says it, and waited out:
its messages stay pending, tried again with a backoff of the channel's own (at most every 5
minutes), sooner once the dispatcher posts there again or Slack says it was unarchived
(``channel_works``). A token Slack no longer accepts is said once and
waited out: the messages stay pending, tried again with backoff (at most every 5 minutes),
and are drawn once the token works again (an admin fixes it, or reinstalls the app).

A question still open whose message is gone (``message_not_found`` ``GIVE_UP_AFTER`` times in
a row, spanning ``GONE_SPAN`` seconds or not in the channel's history at its ts: deleted in
Slack; Slack may say message_not_found for a while of a message that is there. A channel whose
history the bot may not read (a scope) is said once, and there the answers must span it;
``cant_update_message`` at once: posted by another bot user, as after the app was created
again) can no longer be answered: it is taken back as an expired one is
(``Store.take_back_gone``, one transaction for the pass), its place free and its item back in
the queue, in one log line, and the dispatcher is woken to fill the place. A decided one is
left as it is. Nobody can click a deleted message, so no redraw would tell: every
``LOOK_EVERY`` seconds a full or quiet question channel's history is read (one call, at most
two a minute: ``look_for_deleted``), and an open question's message not there, or named by
Slack's ``message_deleted`` event (to an app subscribed to message events), is drawn once
more, so the same answers tell whether it is gone (``suspect``).

A Web API answer with HTTP 200 that is not JSON (a proxy's page) is a ``NotSlackJson``
(``bot.runtime.JsonAnswers``), a failure like any other, not an AttributeError out of slack_sdk.

The messages of items `hitl delete` deleted (``erased_posts``) are deleted from Slack with
``chat.delete`` by the same passes, with a backoff of their own; one already gone counts as
deleted. One Slack refuses to delete for good (``cant_delete_message``: posted by another bot
user) is said once and set aside until the server restarts, so the others go on; a failure a
retry may fix (a rate limit, at least its Retry-After; a 5xx, a timeout, the token) stops the
pass and is tried again with backoff. A deleted item whose post got no answer (the server
stopped, or Slack timed out, during it: ``Store.lost_posts``) has its message looked for in
the channel's history by its metadata, back to the newest question recorded before it, as the
dispatcher looks for a lost post, and deleted if it is there; a look Slack fails is retried
as a ``chat.delete`` is, one it refuses (a scope, the channel) is said once and set aside.

A change made outside the server (`hitl labels rename|set|remove …` while `hitl serve` runs)
bumps the posts in the database, but no click tells the server: every ``IDLE_TICK`` the
background loop asks SQLite whether another connection committed since its last pass
(``PRAGMA data_version``, no table read) and makes a pass if one did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError, SlackObjectFormationError

from bot.errors import SLACK_TOKEN_REFUSED, SLACK_TOKEN_RETRY, slack_said
from bot.runtime import (
    NotSlackJson,
    Runtime,
    no_rate_waits,
    one_try,
    retry_after,
    wait_until_woken,
)
from bot.slack import blocks
from bot.slack.questions import as_asked, build_question, label_set, smaller_after
from bot.store import DatabaseError, database_problem
from bot.words import first_few

logger = logging.getLogger(__name__)

# chat.delete: the message, or its channel, is gone: it counts as deleted
GONE = {"message_not_found", "channel_not_found", "cant_update_message", "is_archived"}
# chat.update: the message is gone (deleted in Slack), or was posted by another bot user (the
# app was created again): an open question there can no longer be answered, and is taken back
MESSAGE_GONE = {"message_not_found", "cant_update_message"}
GONE_FOR_GOOD = {"cant_update_message"}  # Slack's final word: taken back at the first answer
GONE_WHY = {
    "message_not_found": "deleted in Slack",
    "cant_update_message": "posted by another app: was the app created again?",
}
# Permanent: for this message (it cannot be drawn so), for its channel, or for every call.
MESSAGE_REFUSED = {
    "invalid_blocks",
    "invalid_blocks_format",
    "msg_too_long",
    "msg_blocks_too_long",
    "no_text",
    "edit_window_closed",
}
# The channel refuses the bot for now (removed, archived, a private channel it left): its
# messages wait, with a backoff of the channel's own, and are drawn once it works again
CHANNEL_REFUSED = {"not_in_channel", "is_archived", "channel_not_found"}
TOKEN_REFUSED = {
    *SLACK_TOKEN_REFUSED,
    "missing_scope",
    "not_allowed_token_type",
    "team_access_not_granted",
}
# Slack refuses to delete this message, and would again: set aside (said once), the others go on
ERASE_REFUSED = {
    "cant_delete_message",
    "compliance_exports_prevent_deletion",
    "not_in_channel",
    "restricted_action",
    "invalid_ts",
}
# Slack's own failures: a retry may go through
ERASE_RETRIED = {
    "ratelimited",
    "internal_error",
    "fatal_error",
    "request_timeout",
    "service_unavailable",
    "team_added_to_org",
    "unknown_error",
}
LOST_SETTLE = 60.0  # seconds after a lost post before a history without it means "not posted"
LOST_LOOK = 10.0  # seconds between looks for a lost post not found yet
LOST_PAGES = 100  # history pages (of 200) read at most in one look for a lost post
# seconds after a chat.update whose outcome is unknown (a timeout, a dropped connection, a 5xx)
# before its message is drawn once more: Slack may apply it late, over a newer drawing
UPDATE_SETTLE = 60.0
# chat.update's errors after which Slack may yet have applied it ("it's possible some aspect of
# the operation succeeded"), as a 5xx or a timeout
UPDATE_UNSURE = {"internal_error", "fatal_error"}
MAX_BACKOFF = 300.0
GIVE_UP_AFTER = 3  # "message gone" answers in a row before its message is looked for
# seconds message_not_found must last before its question is taken back, unless the channel's
# history (read once the answers are GIVE_UP_AFTER) does not hold the message
GONE_SPAN = 300.0
START_BATCH = 4  # open questions drawn at start per pass, after that pass's changes
START_GAP = 6.0  # seconds between the start's batches: at most 40 chat.update a minute
IDLE_TICK = 5.0  # seconds between looks for changes another connection committed
# A look at a channel's history for open questions deleted in Slack (``look_for_deleted``):
LOOK_EVERY = 300.0  # seconds between two looks at one channel, at least
LOOK_GAP = 30.0  # seconds between two looks, whatever the channel: two calls a minute at most
LOOK_PAGES = 2  # history pages (of 200 messages) one look reads at most
# A look's history read Slack refuses for a scope or the channel (``_look_in``): not read there
# again for HISTORY_RETRY seconds (a scope added and the app reinstalled, a channel converted
# back), sooner once a read goes through, or, for the channel, once posting there works
# (``channel_works``). Any other failure (``not_in_channel``: the dispatcher joins the
# channel again at its next post there) waits for the channel's next look.
HISTORY_REFUSED = {"missing_scope", "channel_not_found"}
HISTORY_RETRY = 900.0  # seconds; as the dispatcher's BROKEN_RETRY
SHOW_ITEMS = 5  # items a failure line names


@dataclass
class Backoff:
    """A message whose last redraw failed for a reason a retry may fix: when to try it again."""

    error: str  # what its first failure said (said once, until it is drawn)
    delay: float  # seconds; doubles at each failure, up to MAX_BACKOFF
    due: float  # the redrawer's clock; it is not tried before
    channel: str | None = None  # a message's channel (``channel_works`` makes it due)


class Refusals:
    """Channel -> why Slack refused to let the bot read its history (``history_refused``),
    each for ``retry`` seconds of ``clock``: ``channel in refusals`` holds while that lasts,
    then the history is read again. What was said is kept until a read goes through, or the
    channel works again (``clear``), so the same refusal once more is not said again."""

    def __init__(self, clock: Callable[[], float], retry: float = HISTORY_RETRY) -> None:
        self.clock = clock
        self.retry = retry
        self.refused: dict[str, tuple[str, float]] = {}  # channel -> (error, the clock until)

    def __contains__(self, channel: object) -> bool:
        entry = self.refused.get(str(channel))
        return entry is not None and entry[1] > self.clock()

    def __setitem__(self, channel: str, error: str) -> None:
        self.refused[channel] = (error, self.clock() + self.retry)

    def refuse(self, channel: str, error: str) -> bool:
        """``channel``'s history refused (``error``) for a while: whether that is news (not
        the refusal said there last)."""
        said = self.refused.get(channel)
        self[channel] = error
        return said is None or said[0] != error

    def clear(self, channel: str, *, keep: Collection[str] = ()) -> str | None:
        """Forget ``channel``'s refusal, unless its error is one of ``keep``; returns the
        refusal forgotten (None: none)."""
        entry = self.refused.get(channel)
        if entry is None or entry[0] in keep:
            return None
        del self.refused[channel]
        return entry[0]

    def __repr__(self) -> str:
        now = self.clock()
        return repr({channel: e for channel, (e, until) in self.refused.items() if until > now})


class Redrawer:
    """Owns the redraw state: one pass at a time, a click during a pass asks for one more, the
    backoff of each message whose redraw failed, the count of "message gone" answers per post,
    and the event that wakes the background loop. Held as ``rt.redrawer``.

    A message whose redraw failed keeps its backoff whatever wakes the redrawer: clicks and
    new items start passes, but a pass only tries the messages that are due, so traffic
    neither calls Slack more often nor logs more lines. Its failure is said once, with how
    many messages wait, and its redraw once it goes through. A refused token holds every
    message back the same way (its own backoff, up to ``SLACK_TOKEN_RETRY``)."""

    def __init__(self, rt: Runtime, *, retry_base: float = 1.0) -> None:
        self.rt = rt
        self.retry_base = retry_base  # seconds; the backoff after a failure doubles from here
        self.clock: Callable[[], float] = time.monotonic  # seconds, for the backoffs
        self.lock = asyncio.Lock()
        self.drawn = asyncio.Condition()  # notified after each pass
        self.again = False  # a change arrived during the pass in progress
        self.tried_failed = 0  # messages the last pass tried and failed (not those held back)
        # (post id, ts) -> ("message gone" answers in a row, the clock at the first): keyed by
        # ts too, as a new post may reuse a deleted post's id
        self.gone: dict[tuple[int, str], tuple[int, float]] = {}
        # channel -> why its history is not readable, for a while (``Refusals``)
        self.history_refused = Refusals(lambda: self.clock())
        # channel -> the clock before which its history is not read again (a 429's Retry-After)
        self.history_wait: dict[str, float] = {}
        self.backoff: dict[int, Backoff] = {}  # post id -> its retry, after a failed redraw
        # channel -> its retry, after a redraw there failed for the channel (CHANNEL_REFUSED):
        # every message of it waits for that one backoff, said once
        self.channel_held: dict[str, Backoff] = {}
        self.woken = asyncio.Event()
        self.idle_tick = IDLE_TICK
        self.seen_version: int | None = None  # the database's data_version at the last pass
        self.db_refused: str | None = None  # the database's problem last said (once while it lasts)
        self.token_refused: str | None = None  # what Slack said of the bot token, until it works
        self.token_delay = 0.0  # seconds; the refused token's backoff
        # The clock before which no redraw is tried (a refused token); None once a pass has
        # tried Slack after it (or nothing was left to try): a pass that fails for another
        # reason, or finds nothing to redraw, must not leave a due time in the past for the
        # background loop to wait on (it made every wait 0 s: a loop that spun).
        self.token_due: float | None = None
        # The clock before which no chat.update is tried: Slack rate-limited one (a 429, at
        # least its Retry-After; Slack counts chat.update per workspace, so the others would
        # meet the same 429). None once a pass has tried Slack after it.
        self.update_due: float | None = None
        self.update_delay = 0.0  # seconds; the rate limit's backoff, when Slack says no wait
        self.erase_error: str | None = None  # why the last chat.delete failed, until one works
        self.erase_delay = 0.0  # seconds; the erasures' backoff after a failure
        self.erase_due: float | None = None  # the clock before which no erasure is tried again
        self.erase_refused: dict[int, str] = {}  # erased post id -> what Slack said: set aside
        self.lost_due: float | None = None  # the clock before which no lost post is looked for
        self.lost_seen: dict[int, float] = {}  # lost post id -> the clock when first looked for
        # post id -> (the clock before which it is not drawn, its channel): a message drawn
        # once more though the database says it is drawn: after a chat.update whose outcome
        # is unknown (Slack may apply it late, over a newer drawing: ``UPDATE_SETTLE``; no
        # other redraw, nor ``retry_now``, moves it earlier), or a start draw that failed for
        # the message (its own backoff then)
        self.again_due: dict[int, tuple[float, str]] = {}
        self.update_settle = UPDATE_SETTLE
        # post id -> its channel: the open questions still to draw once since the start
        # (``redraw_open``: a message may be another app's, or behind), oldest first
        self.start_left: dict[int, str] = {}
        self.start_splits: set[int] = set()  # those of them that are splits' (closed) posts
        # the HITL_VOTES the start draws the splits under, recorded once they are drawn
        self.splits_votes: int | None = None
        self.start_due: float | None = None  # the clock before which no start draw is made
        self.start_delay = 0.0  # seconds; the start draws' backoff after a failure
        self.start_batch = START_BATCH
        self.start_gap = START_GAP
        # channel -> the clock before which its history is not looked at again for deleted
        # questions (``look_for_deleted``); the clock before which no channel's is
        self.look_at: dict[str, float] = {}
        self.look_next = 0.0
        self.look_every = LOOK_EVERY
        self.look_gap = LOOK_GAP

    @classmethod
    def of(cls, rt: Runtime) -> Redrawer:
        """The redrawer ``rt`` holds."""
        if not isinstance(rt.redrawer, cls):
            raise RuntimeError("the runtime was built without a redrawer")
        return rt.redrawer

    def wake(self) -> None:
        """Ask the background loop (``run``) for a pass now (of the messages that are due)."""
        self.woken.set()

    def retry_now(self) -> None:
        """Slack answers again (a post went through, the token works): the messages backing
        off are due now, and the background loop makes a pass."""
        now = self.clock()
        for waiting in [*self.backoff.values(), *self.channel_held.values()]:
            waiting.due = now
        # a settle draw (``again_due``) keeps its time: drawn earlier, a late update could
        # still land after it
        if self.start_delay and self.start_due is not None:  # the start draws' failure
            self.start_due = min(self.start_due, now)
        if self.token_refused:
            self.token_due = now
        self.wake()

    def channel_works(self, channel: str) -> None:
        """Posting to ``channel`` works again (a post went through, the bot joined it, it was
        unarchived): its messages waiting for the channel are due now, and its history is
        looked at again (a refusal for the channel forgotten; a scope's waits its retry)."""
        self.history_refused.clear(channel, keep={"missing_scope"})
        waiting = self.channel_held.get(channel)
        if waiting is not None:
            now = waiting.due = self.clock()
            for held in self.backoff.values():  # their waits were moved to the channel's
                if held.channel == channel:
                    held.due = min(held.due, now)
            self.wake()  # a settle draw (``again_due``) keeps its time

    def redraw_open(self) -> None:
        """Draw every open question once (at start): its message may be behind (a redraw the
        last run did not finish), or another app's (the app was created again:
        ``cant_update_message``, and the question is taken back). Drawn ``start_batch`` at a
        time, ``start_gap`` seconds apart, after each pass's changes (``_start_batch``). A
        split's question too (its post closed to free its place, its buttons still taking
        votes), in a channel still asked in: it shows the HITL_VOTES in force ("2 of 4 answers
        in"), not the one it was drawn under. Only when that is not the HITL_VOTES the splits
        were all drawn under (``Store.split_draws_votes``: recorded once the start's draws are
        done, ``_splits_drawn``): the splits are the review backlog, with no bound, and their
        draws spend the chat.update budget the clicks' redraws need."""
        store, votes = self.rt.store, self.rt.settings.votes
        if store.split_draws_votes() != votes:  # a split may show another HITL_VOTES
            store.begin_split_draws(votes)  # until they are all drawn: under no known one
            self.splits_votes = votes
        for post in store.open_posts():
            self.start_left.setdefault(int(post["id"]), str(post["channel"]))
        asked_in = self._asked_in()
        for post in store.split_posts() if self.splits_votes is not None else []:
            if post["channel"] in asked_in:  # elsewhere it stays as drawn (not "moved")
                self.start_left.setdefault(int(post["id"]), str(post["channel"]))
                self.start_splits.add(int(post["id"]))
        if not self.start_left:
            self._splits_drawn()
        if self.start_left:
            self.start_due = self.clock()
            self.wake()

    def _splits_drawn(self) -> None:
        """The start's draws are done: the splits ``redraw_open`` drew show the HITL_VOTES in
        force, recorded (one row) so that a start with it draws none of them. Not while a
        split's draw may still be owed: one drawn once more later (``again_due``: Slack said
        its message was not found). One whose channel refused the bot is owed a redraw in the
        database (``_splits_dropped``): drawn when the channel takes the bot's messages again."""
        if self.splits_votes is None:
            return
        if any(post_id in self.start_splits for post_id in self.again_due):
            return  # recorded after that draw (a run that stops first leaves it to the next)
        self.rt.store.end_split_draws(self.splits_votes)
        self.splits_votes = None

    def _splits_dropped(self, splits: dict[int, str]) -> None:
        """After a pass (``pending``): ``splits`` (post id -> channel) were the splits still to
        draw when it began. One that left the start's draws (``start_left``) while its channel
        is refused (``channel_held``; not one drawn once more later, ``again_due``) was
        dropped undrawn: Slack refused the bot the channel (not_in_channel, is_archived…).
        Each is owed a redraw in the database (``Store.owe_redraws``), so it is drawn with
        the channel's other waiting messages once the channel works again (in this run or the
        next), and the other channels' splits are not drawn again at every start. A split
        drawn before its channel refused another message of the same pass is owed one too.
        Not one in a channel no longer asked in (a retired label's route, which the team may
        have archived: the start does not check it), whose splits stay as drawn."""
        asked_in = self._asked_in()
        dropped = [
            post_id
            for post_id, channel in splits.items()
            if post_id not in self.start_left
            and post_id not in self.again_due
            and channel in self.channel_held
            and channel in asked_in
        ]
        if not dropped:
            return
        self.rt.store.owe_redraws(dropped)
        logger.info(
            "%d split message(s) wait to be redrawn for HITL_VOTES=%d until their channel takes"
            " the bot's messages again: %s",
            len(dropped),
            self.rt.settings.votes,
            ", ".join(sorted({splits[post_id] for post_id in dropped})),
        )

    def _asked_in(self) -> list[str]:
        """The question channels as the dispatcher has them (a retired label's route left
        out): the start's and the splits' draws, and which old messages are drawn as moved."""
        asked = getattr(self.rt.dispatcher, "question_channels", None)
        return asked() if asked is not None else question_channels(self.rt.settings)

    async def soon(self) -> None:
        """Bring the messages up to date after a change, coalescing with a pass in progress.

        While a pass is running, a click only asks it to go round once more: under a burst of
        clicks each busy message is redrawn once per pass with its latest state, not once per
        click (``chat.update`` is a Tier 3 method, and every redraw costs the event loop).
        A message backing off is left to its next attempt (``run``). A database that refuses
        the pass (another process's lock, a full disk) is said once while it lasts, as the
        background loop says it, and that loop's next look (``idle_tick``) tries again: the
        change is stored, so the caller (a click's redraw after its ack) has nothing to undo.
        """
        if self.lock.locked():
            self.again = True
            return
        try:
            failed = await self.pending(due_only=True)
        except DatabaseError as exc:  # another process's lock, a full disk: not the caller's
            self._refused(exc)  # said once while it lasts, not once per click
            self.seen_version = None  # the background loop's next look makes a pass
            return
        self._answers_again()
        if failed:
            self.wake()  # the background loop retries with backoff

    async def pending(self, *, due_only: bool = False) -> int:
        """Redraw every post whose message is behind the database; return how many are left
        behind (failed, or, with ``due_only``, still backing off).

        Passes repeat while changes arrive during one (``soon``), and stop after a failed
        pass: retrying is the background loop's job, with backoff. Without ``due_only`` every
        message is tried now, backoff or not."""
        async with self.lock:
            while True:
                self.again = False
                await self._erase(due_only=due_only)
                # the splits still to draw under the start's HITL_VOTES, and their channels
                splits = (
                    {i: c for i, c in self.start_left.items() if i in self.start_splits}
                    if self.splits_votes is not None and self.start_splits
                    else {}
                )
                failed = await self._pass(due_only=due_only)
                if splits:
                    self._splits_dropped(splits)  # owed in the database first: then recorded
                if not any(post_id in self.start_splits for post_id in self.start_left):
                    self._splits_drawn()  # open questions a refusing channel holds need not wait
                # round again for a change made during the pass, unless one of its calls
                # failed (the background loop retries, with backoff); a message only backing
                # off (held) is no failure of this pass: it must not leave that change undrawn
                if self.tried_failed or not self.again:
                    break
            if self.again:  # left for the background loop: its next look makes a pass
                self.seen_version = None
        async with self.drawn:
            self.drawn.notify_all()
        return failed

    async def all_drawn(self) -> None:
        """Wait until every message matches the database, the deleted items' messages
        deleted (checked after each pass)."""
        store = self.rt.store
        async with self.drawn:
            await self.drawn.wait_for(
                lambda: not store.posts_to_redraw() and not store.erased_posts(1)
            )

    def next_due(self) -> float | None:
        """The clock at which the next message backing off is due (None: none is). A pass
        moves every wait it skips to when it can be tried (a message behind its channel's or
        the token's backoff, a look for lost posts behind the erasures'), so a due time in the
        past always has a pass to make: the background loop never waits 0 s on one."""
        dues = [waiting.due for waiting in [*self.backoff.values(), *self.channel_held.values()]]
        dues += [self._again_at(post_id) for post_id in self.again_due]
        if self.start_left and self.start_due is not None:
            dues.append(self.start_due)
        if self.token_refused and self.token_due is not None:
            dues.append(self.token_due)
        if self.update_due is not None:
            dues.append(self.update_due)
        if self.erase_due is not None:
            dues.append(self.erase_due)
        if self.lost_due is not None:
            dues.append(self.lost_due)
        return min(dues, default=None)

    def _again_at(self, post_id: int) -> float:
        """When the draw once more of ``post_id`` (``again_due``) can be made: its settle time,
        and not before its own, its channel's or the token's backoff."""
        due, channel = self.again_due[post_id]
        waits = [due]
        if post_id in self.backoff:
            waits.append(self.backoff[post_id].due)
        if channel in self.channel_held:
            waits.append(self.channel_held[channel].due)
        if self.token_refused and self.token_due is not None:
            waits.append(self.token_due)
        if self.update_due is not None:
            waits.append(self.update_due)
        return max(waits)

    async def run(self) -> None:
        """Background task: redraw when woken, retry failures when their backoff ends, and
        every ``idle_tick`` look for changes another connection (the CLI) committed.

        It outlives any one failure, as the dispatcher's rounds do: a database that refuses a
        write (another process holds its lock past the wait, a full disk) or a read (damage)
        is said in one line, once while it lasts, and the loop looks again every
        ``idle_tick`` (not sooner, whatever wakes it: the message drawn before the refused
        write would be drawn again at each wake); anything else is logged with its traceback.
        It ended the task for good: no retries, no redraws of the CLI's changes, no erasures
        until a restart, and not a line in the log."""
        started = False
        while True:
            self.woken.clear()
            try:
                if not started:  # every open question drawn once (the app created again…)
                    self.redraw_open()
                    started = True
                due = self.next_due()
                if (due is not None and due <= self.clock()) or (
                    self.seen_version != self.rt.store.data_version()
                ):
                    await self.pending(due_only=True)
                await self.look_for_deleted()  # when one is due: rarely a Slack call
            except DatabaseError as exc:  # a lock held by another process, a full disk, damage
                self._refused(exc)
                await self._after_failure()
                continue
            except Exception:  # noqa: BLE001 - the redrawer must outlive any one failure
                logger.exception("redraw pass failed")
                await self._after_failure()
                continue
            self._answers_again()
            due = self.next_due()
            timeout = self.idle_tick
            if due is not None:
                timeout = min(max(due - self.clock(), 0.0), timeout)
            await wait_until_woken(self.woken, timeout)
            if self.woken.is_set():
                self.seen_version = None  # woken: a pass whatever the version says

    def _refused(self, exc: DatabaseError) -> None:
        """The database refused a pass's write or read: said once while it lasts (the
        background loop's, or a click's redraw after its ack, whichever meets it first)."""
        problem = str(database_problem(self.rt.settings.db, exc, lost=self.rt.store.lost))
        if problem != self.db_refused:
            logger.error(
                "redraws wait: %s (said once while it lasts; tried again every %g s)",
                problem,
                self.idle_tick,
            )
        self.db_refused = problem

    def _answers_again(self) -> None:
        """A pass went through: a refusal said before is over, and said so."""
        if self.db_refused is not None:
            logger.warning("redraws go on: the database answers again")
            self.db_refused = None

    async def _after_failure(self) -> None:
        """A pass failed: wait ``idle_tick`` (a due time left in the past would make every
        wait 0 s), then make a pass whatever the database's version says."""
        self.seen_version = None
        await asyncio.sleep(self.idle_tick)

    def _failed(self, post: dict, error: str, new: dict[str, list[str]]) -> None:
        """Back ``post`` off; a first failure is said (gathered by error in ``new``)."""
        now, waiting = self.clock(), self.backoff.get(post["id"])
        if waiting is None:
            self.backoff[post["id"]] = Backoff(
                error, self.retry_base, now + self.retry_base, post["channel"]
            )
            new.setdefault(error, []).append(post["item_id"])
        else:
            waiting.delay = min(waiting.delay * 2, MAX_BACKOFF)
            waiting.due = now + waiting.delay

    def _token_failed(self) -> None:
        self.token_delay = min(self.token_delay * 2 or self.retry_base, SLACK_TOKEN_RETRY)
        self.token_due = self.clock() + self.token_delay

    def _rate_limited(
        self,
        post: dict,
        error: str,
        wait: float | None,
        new: dict[str, list[str]],
        is_start: bool,
    ) -> None:
        """Slack rate-limited ``post``'s chat.update: no chat.update is tried before its
        Retry-After (``wait``; with none, a backoff doubling from ``retry_base``), the
        message's own retry not before it either, and the start draws wait as well."""
        self.update_delay = min(self.update_delay * 2 or self.retry_base, MAX_BACKOFF)
        self.update_due = self.clock() + max(wait or 0.0, self.update_delay)
        if is_start:
            self._start_failed(wait)  # it waits with the start draws
        else:
            self._failed(post, error, new)
            self.backoff[post["id"]].due = max(self.backoff[post["id"]].due, self.update_due)
        self._hold_until(self.update_due)

    def _hold_until(self, until: float) -> None:
        """Every message waits until ``until`` at least (the token's backoff): no due time
        is left in the past for the background loop to wait on (``next_due``)."""
        for waiting in [*self.backoff.values(), *self.channel_held.values()]:
            waiting.due = max(waiting.due, until)
        if self.start_left:
            self.start_due = max(self.start_due or until, until)

    def _unsure(self, post: dict) -> None:
        """``post``'s chat.update failed with its outcome unknown (a timeout, a dropped
        connection, a 5xx): Slack may apply it late, over a newer drawing, so its message is
        drawn once more ``update_settle`` seconds after the last such failure."""
        self.again_due[int(post["id"])] = (
            self.clock() + self.update_settle,
            str(post["channel"]),
        )

    def _hold(self, posts: list[dict], now: float) -> set[int]:
        """The posts held back from this pass (``due_only``): by their own backoff, or their
        channel's. Each held one's waits move to when it can be tried, and a channel's wait
        that passed while all its messages are held moves to the first of theirs, so every
        due time a pass skips moves forward (``next_due``)."""
        held: set[int] = set()
        first: dict[str, float] = {}  # channel -> when the first of its messages may be tried
        for post in posts:
            post_id, channel = int(post["id"]), str(post["channel"])
            waits = [now]
            if post_id in self.backoff:
                waits.append(self.backoff[post_id].due)
            if channel in self.channel_held:
                waits.append(self.channel_held[channel].due)
            wait = max(waits)
            first[channel] = min(first.get(channel, wait), wait)
            if wait <= now:
                continue
            held.add(post_id)
            if post_id in self.backoff:
                self.backoff[post_id].due = wait
        for channel, waiting in self.channel_held.items():
            if waiting.due <= now and first.get(channel, now) > now:
                waiting.due = first[channel]
        return held

    def _with_again(self, posts: list[dict], now: float) -> list[dict]:
        """``posts`` (behind the database) and the posts due to be drawn once more
        (``again_due``), oldest first."""
        behind = {int(post["id"]) for post in posts}
        extra = []
        for post_id, (due, _) in list(self.again_due.items()):
            if post_id in behind or due > now:
                continue
            post = self.rt.store.post(post_id)
            if post is None:  # deleted since
                del self.again_due[post_id]
                continue
            extra.append(post)
        return sorted([*posts, *extra], key=lambda post: int(post["id"])) if extra else posts

    async def _pass(self, *, due_only: bool = False) -> int:
        rt, gone, backoff = self.rt, self.gone, self.backoff
        failed = 0
        self.seen_version = rt.store.data_version()
        now = self.clock()
        posts = self._with_again(rt.store.posts_to_redraw(), now)
        behind = {post["id"] for post in posts} | set(self.again_due)
        for post_id in [p for p in backoff if p not in behind]:
            del backoff[post_id]  # drawn or given up meanwhile (a restore, another pass)
        for key in [key for key in gone if key[0] not in behind]:
            del gone[key]  # drawn, taken back or deleted meanwhile
        behind_in = {post["channel"] for post in posts}
        for channel in [c for c in self.channel_held if c not in behind_in]:
            del self.channel_held[channel]  # nothing of it left to draw
        if due_only and self.token_refused and self.token_due is not None and self.token_due > now:
            self._hold_until(self.token_due)  # the token's backoff holds every message back
            self.tried_failed = 0
            return len(posts)
        # the token's wait is over: this pass tries Slack (a refusal sets a new one)
        self.token_due = None
        if due_only and self.update_due is not None and self.update_due > now:
            self._hold_until(self.update_due)  # a 429's Retry-After holds every chat.update
            self.tried_failed = 0
            return len(posts)
        self.update_due = None  # its wait is over: a new 429 sets a new one
        if due_only:
            held = self._hold(posts, now)
            failed = sum(post["id"] in held for post in posts)  # left to their next attempt
            posts = [post for post in posts if post["id"] not in held]
        held_back = failed
        start = self._start_batch(behind, now)
        start_ids = {int(post["id"]) for post in start}
        posts = [*posts, *start]  # after the changes: clicks' redraws go first
        trouble = False  # a failure a retry may fix: the start draws wait
        labels = label_set(rt.settings, rt.store) if posts else []
        # channel -> (error, messages left waiting) for the channels refused in this pass
        refused_channels: dict[str, tuple[str, int]] = {}
        new_failures: dict[str, list[str]] = {}  # error -> items whose first failure it is
        recovered: list[str] = []  # errors of the messages drawn after failing
        channels_back: list[str] = []  # channels whose waiting messages are drawn again
        gone_posts: list[dict] = []  # open questions whose message is gone: taken back
        asked_in = self._asked_in() if posts else []
        updates = no_rate_waits(rt.client)  # a 429 waits on the redrawer's clock, not in here
        for n, post in enumerate(posts):
            is_start = int(post["id"]) in start_ids
            if is_start and trouble:
                continue  # left for the start draws' next batch
            if is_start and post["channel"] in refused_channels:
                self.start_left.pop(int(post["id"]), None)  # its channel refuses the bot
                continue
            if post["channel"] in refused_channels:
                error, count = refused_channels[post["channel"]]
                refused_channels[post["channel"]] = (error, count + 1)
                failed += 1  # it waits for the channel
                continue
            question = build_question(rt.store, rt.settings, post["item_id"], labels)
            if question is None:
                self._drop(post)
                continue
            moved = bool(post["closed_at"] and asked_in) and post["channel"] not in asked_in
            asking: blocks.Question | None = None  # drawn as a question, with its buttons
            try:
                if post.get("expired_at") and post["closed_at"] and question.status == "open":
                    # taken back (HITL_QUESTION_TTL): no buttons, and says so; one left
                    # half-way says how many answers it held (they count), and since when
                    # none came
                    answers, last = rt.store.answers_when_taken_back(
                        post["item_id"], post["expired_at"]
                    )
                    since = max(
                        [str(post["posted_at"]), *([last] if last else [])],
                        key=datetime.fromisoformat,
                    )
                    age = open_for(since, post["expired_at"])
                    why = post.get("taken_back")  # a retire's says so, not a time
                    text = blocks.expired_text(question, age, answers, why)
                    drawn = blocks.expired_blocks(question, age, answers, why)
                elif moved and question.status == "open":
                    # moved out of a channel no longer asked in: it stays so, no buttons
                    now = rt.store.post_for_item(post["item_id"])
                    there = (
                        now["channel"]
                        if now and now["closed_at"] is None and now["channel"] in asked_in
                        else None
                    )
                    text = moved_text(asked_in, there)
                    drawn = blocks.report_blocks([text])
                else:
                    asking = as_asked(rt, question)  # "Other…" small if Slack needs it so
                    text, drawn = blocks.question_text(asking), blocks.question_blocks(asking)
                try:
                    await updates.chat_update(
                        channel=post["channel"], ts=post["ts"], text=text, blocks=drawn
                    )
                except SlackApiError as exc:
                    # too long with "Other…" listing the labels: drawn again at once with
                    # the type-ahead "Other…", not given up (``smaller_after``)
                    smaller = smaller_after(rt, asking, slack_said(exc)) if asking else None
                    if smaller is None:
                        raise
                    text, drawn = blocks.question_text(smaller), blocks.question_blocks(smaller)
                    await updates.chat_update(
                        channel=post["channel"], ts=post["ts"], text=text, blocks=drawn
                    )
            except SlackObjectFormationError as exc:  # built here: Slack was never asked
                self._give_up(post, f"its blocks could not be built ({exc})")
                continue
            except SlackApiError as exc:
                error = slack_said(exc) or "unknown_error"
                if isinstance(exc, NotSlackJson):  # a proxy's page: Slack may have had it
                    error = "HTTP 200 without Slack's JSON"
                if error in TOKEN_REFUSED:
                    self._token_failed()
                    if self.token_due is not None:  # every message waits for the token
                        self._hold_until(self.token_due)
                    if self.token_refused != error:
                        self.token_refused = error
                        logger.error(
                            "cannot redraw %d message(s): Slack said %s for the bot token; fix "
                            "SLACK_BOT_TOKEN or the app's scopes (reinstall the app). They are "
                            "drawn once the token works again",
                            len(posts) - n,
                            error,
                        )
                    # every call would say the same: wait (the start draws, at their next batch)
                    failed += sum(int(p["id"]) not in start_ids for p in posts[n:])
                    break
                if error in CHANNEL_REFUSED:
                    refused_channels[post["channel"]] = (error, 1)
                    if is_start:
                        self.start_left.pop(int(post["id"]), None)
                    failed += 1
                    continue
                if error in MESSAGE_REFUSED:
                    self._give_up(post, f"Slack said {error}")
                    continue
                if getattr(exc.response, "status_code", 200) == 429 or error == "ratelimited":
                    # Slack counts chat.update per workspace: the others would meet the same
                    # 429. Every message waits for its Retry-After (the start draws too)
                    self._rate_limited(post, error, _wait(exc), new_failures, is_start)
                    failed += sum(int(p["id"]) not in start_ids for p in posts[n + 1 :])
                    failed += 1
                    break
                if error in GONE_FOR_GOOD:
                    is_gone = True
                elif error in MESSAGE_GONE:
                    is_gone = await self._gone_for_sure(post)
                else:
                    is_gone = False
                    gone.pop((int(post["id"]), str(post["ts"])), None)  # not in a row
                if is_gone:
                    if post["closed_at"] is None:  # still asked: taken back, after the loop
                        gone_posts.append({**post, "error": error})
                        continue
                    logger.warning(
                        "message for item %s in %s is gone (%s); not redrawing it",
                        post["item_id"],
                        post["channel"],
                        error,
                    )
                    self._drop(post)
                else:
                    self._failed(post, error, new_failures)
                    failed += 1
                    if (
                        error in UPDATE_UNSURE
                        or getattr(exc.response, "status_code", 200) >= 500
                        or isinstance(exc, NotSlackJson)
                    ):
                        self._unsure(post)  # it may yet land, over a newer drawing
                    if error in MESSAGE_GONE:  # this message's own: tried again with backoff
                        if is_start:
                            self.start_left.pop(int(post["id"]), None)
                            self.again_due.setdefault(int(post["id"]), (now, str(post["channel"])))
                    else:  # a rate limit, Slack's failure: the start draws wait too
                        trouble = True
                        if is_start and int(post["id"]) not in self.again_due:
                            backoff.pop(post["id"], None)  # it waits with the start draws
                        if is_start or self.start_left:
                            self._start_failed(_wait(exc))
                continue
            except (TimeoutError, SlackClientError, OSError, aiohttp.ClientError) as exc:
                self._failed(post, type(exc).__name__, new_failures)
                self._unsure(post)  # Slack may have it, and apply it late
                failed += 1
                trouble = True
                if self.start_left:
                    self._start_failed(None)
                continue
            if post["id"] in backoff:
                recovered.append(backoff[post["id"]].error)
            if self.channel_held.pop(post["channel"], None) is not None:
                channels_back.append(post["channel"])
            self._drop(post)  # a settle draw still to come stays (a late update may yet land)
            self.update_delay = 0.0  # Slack takes chat.update again
            if is_start:
                self.start_delay = 0.0
            if self.token_refused:
                logger.warning("Slack accepts the bot token again; redrawing the messages")
                self.token_refused = None
                self.token_delay = 0.0
        for error, items in new_failures.items():
            shown = first_few(items, SHOW_ITEMS)
            logger.warning(
                "chat.update failed for %d message(s) (items %s): %s; retried with backoff, "
                "said again only once they are drawn",
                len(items),
                shown,
                error,
            )
        if recovered:
            logger.warning(
                "redrew %d message(s) whose chat.update had failed (%s): Slack takes them again",
                len(recovered),
                ", ".join(sorted(set(recovered))),
            )
        for channel in channels_back:
            logger.warning("%s takes the bot's messages again; redrawing the ones waiting", channel)
            back = getattr(rt.dispatcher, "channel_back", None)
            if back is not None:  # the dispatcher: post there again now, if it had stopped
                back(channel)
        for channel, (error, count) in refused_channels.items():
            self._channel_failed(channel, error, count)
        self._take_back_gone(gone_posts)
        if not self.start_left:
            self.start_due, self.start_delay = None, 0.0
        self.tried_failed = failed - held_back
        return failed

    def _start_batch(self, behind: set[int], now: float) -> list[dict]:
        """The next ``start_batch`` open questions to draw once since the start
        (``redraw_open``), when their time has come (``start_due``); the next batch is due
        ``start_gap`` seconds later. One drawn by this pass anyway (behind the database, or a
        draw once more), decided or deleted since is no longer to draw; one whose channel
        waits (``channel_held``) waits with it; a split there is owed a redraw in the database
        (``Store.owe_redraws``), drawn with the channel's waiting messages once it works."""
        if not self.start_left or (self.start_due is not None and self.start_due > now):
            return []
        batch: list[dict] = []
        owed: list[int] = []  # splits of a channel that refuses the bot: drawn once it works
        for post_id, channel in list(self.start_left.items()):
            if len(batch) >= self.start_batch:
                break
            if channel in self.channel_held:
                if post_id in self.start_splits:
                    owed.append(post_id)
                continue
            post = self.rt.store.post(post_id) if post_id not in behind else None
            # a split's post is closed: drawn unless taken back since (decided since, it is
            # drawn as it is now, as the pass drew it)
            split = post is not None and post_id in self.start_splits
            if (
                post is None
                or (post["closed_at"] is not None and not split)
                or (split and post["expired_at"] is not None)
            ):
                del self.start_left[post_id]
                self.start_splits.discard(post_id)
                continue
            batch.append(post)
        if owed:
            self.rt.store.owe_redraws(owed)  # first: a write that fails forgets none of them
            for post_id in owed:
                del self.start_left[post_id]
        self.start_due = now + self.start_gap
        return batch

    def _start_failed(self, wait: float | None) -> None:
        """A failure a retry may fix: the start draws wait (doubling up to ``MAX_BACKOFF``,
        and at least ``wait``: a 429's Retry-After)."""
        self.start_delay = min(self.start_delay * 2 or self.retry_base, MAX_BACKOFF)
        self.start_due = self.clock() + max(self.start_delay, wait or 0.0)

    async def _gone_for_sure(self, post: dict) -> bool:
        """Slack said message_not_found of ``post``'s message: whether it is gone for sure.
        Counted by post and ts (a new post may reuse a deleted post's id). After
        ``GIVE_UP_AFTER`` in a row it is gone once they span ``GONE_SPAN`` seconds (Slack
        says so for good); sooner only if the channel's history, read at its ts (one call),
        does not hold it. A message found there resets the count (Slack said so only for a
        while). Where the history cannot be read (``HISTORY_REFUSED``: a scope, the channel
        gone; said once until a read goes through or the channel works again, however often
        the refusal runs out and is met again), the answers must span ``GONE_SPAN``; a read
        that failed for another reason (a retry may fix it, or ``not_in_channel``) is made
        again at the next answer."""
        key, now = (int(post["id"]), str(post["ts"])), self.clock()
        count, first = self.gone.get(key, (0, now))
        self.gone[key] = (count + 1, first)
        if count + 1 < GIVE_UP_AFTER:
            return False
        if now - first >= GONE_SPAN:
            return True
        channel = str(post["channel"])
        if channel not in self.history_refused and self.history_wait.get(channel, now) <= now:
            try:  # one try, never waiting out a 429 inside the pass (the lock is held)
                page = await one_try(self.rt.client, wait_rate_limits=False).conversations_history(
                    channel=channel, latest=str(post["ts"]), inclusive=True, limit=1
                )
            except SlackApiError as exc:
                error = slack_said(exc) or "unknown_error"
                if getattr(exc.response, "status_code", 200) == 429 or error == "ratelimited":
                    # not before its Retry-After, for every message of the channel
                    self.history_wait[channel] = now + (_wait(exc) or MAX_BACKOFF)
                    return False
                if error not in HISTORY_REFUSED:
                    # a retry may fix it, or it is the channel's (not_in_channel: the bot
                    # joins again at its next post there), as for a look (``_look_in``):
                    # looked for again at the next answer
                    return False
                # a scope, the channel gone: for a while (``Refusals``), and said once
                # while it lasts, not again each time the refusal runs out and is met again
                if self.history_refused.refuse(channel, error):
                    logger.warning(
                        "cannot read the history of %s to check that a question's message is"
                        " gone (conversations.history said %s): its questions are taken back"
                        " once Slack has said message_not_found for %g minutes",
                        channel,
                        error,
                        GONE_SPAN / 60,
                    )
            except (TimeoutError, SlackClientError, OSError, aiohttp.ClientError):
                return False
            else:
                if any(
                    str(message.get("ts")) == str(post["ts"])
                    for message in page.get("messages") or []
                ):
                    self.gone[key] = (0, now)  # it is there: Slack said so only for a while
                    return False
                return True
        return False

    def suspect(self, post: dict) -> None:
        """``post``'s message may be gone (deleted in Slack): it is drawn once more now, and
        Slack's answers tell, as for any redraw (``_gone_for_sure``: message_not_found
        ``GIVE_UP_AFTER`` times, then the channel's history at its ts). A message that is
        there is only drawn again; one that is gone is taken back. A draw once more already
        to come keeps its time."""
        self.again_due.setdefault(int(post["id"]), (self.clock(), str(post["channel"])))
        self.wake()

    def message_deleted(self, channel: str, ts: str) -> None:
        """Slack's ``message_deleted`` event (sent to an app subscribed to message events):
        an open question's message is checked now (``suspect``); the event alone takes
        nothing back. Any other message is no question's: nothing to do."""
        if not channel or not ts:
            return
        for post in self.rt.store.open_posts():
            if post["channel"] == channel and str(post["ts"]) == ts:
                logger.info(
                    "Slack says the message of item %s in %s was deleted; checking it",
                    post["item_id"],
                    channel,
                )
                self.suspect(post)

    async def look_for_deleted(self) -> int:
        """Now and then, look in a question channel's history for its open questions'
        messages, and check those not there (``suspect``): nobody can click a deleted
        message, so no redraw would tell it is gone, and its question held its place until
        HITL_QUESTION_TTL (never with 0) or a restart. One channel per look, one call (at
        most ``LOOK_PAGES`` pages, newest first, down to its oldest open question), at most
        one look every ``look_gap`` seconds and one per channel every ``look_every``
        seconds; a channel is looked at only when it is full (HITL_MAX_OPEN) or nothing was
        posted there for ``look_every`` seconds: one being answered and filled again costs
        nothing. Returns how many messages were not there."""
        now = self.clock()
        if now < self.look_next:
            return 0
        by_channel: dict[str, list[dict]] = {}
        for post in self.rt.store.open_posts():
            by_channel.setdefault(str(post["channel"]), []).append(post)
        for channel in [c for c in self.look_at if c not in by_channel]:
            del self.look_at[channel]  # none open: a new question's look comes after a while
        due: list[tuple[float, str]] = []
        for channel, posts in by_channel.items():
            at = self.look_at.setdefault(channel, now + self.look_every)
            if (
                at > now
                or channel in self.history_refused
                or channel in self.channel_held  # it refuses the bot: said, and waited out
                or self.history_wait.get(channel, now) > now
                or not self._still(posts)
            ):
                continue
            due.append((at, channel))
        if not due:  # the open questions are read again after the gap, not at every pass
            self.look_next = now + self.look_gap
            return 0
        _, channel = min(due)
        self.look_next = now + self.look_gap
        self.look_at[channel] = now + self.look_every
        return await self._look_in(channel, by_channel[channel])

    def _still(self, posts: list[dict]) -> bool:
        """Whether a channel with these open questions is full (HITL_MAX_OPEN), or had none
        posted for ``look_every`` seconds (by the database's clock)."""
        if len(posts) >= self.rt.settings.max_open:
            return True
        try:
            newest = max(datetime.fromisoformat(str(post["posted_at"])) for post in posts)
            now = datetime.fromisoformat(self.rt.store.now())
        except ValueError:
            return True
        return (now - newest).total_seconds() >= self.look_every

    async def _look_in(self, channel: str, posts: list[dict]) -> int:
        """``look_for_deleted``'s look at ``channel``: its history, newest first, down to the
        oldest of ``posts`` (at most ``LOOK_PAGES`` pages); the posts whose message is not
        there are checked (``suspect``). A rate limit waits for its Retry-After; a refusal
        (``HISTORY_REFUSED``: a scope, the channel gone) is said once, and the channel is
        looked at again ``HISTORY_RETRY`` seconds later (sooner once posting there works:
        ``channel_works``); any other failure (``not_in_channel``: the bot joins again at its
        next post there) waits for the next look. A read that goes through forgets the
        refusal."""
        oldest = min(float(post["ts"]) for post in posts)
        seen: set[str] = set()
        reached = float("inf")  # the oldest ts read: posts older than it are not judged
        cursor: str | None = None
        client = one_try(self.rt.client, wait_rate_limits=False)
        try:
            for _ in range(LOOK_PAGES):
                page = await client.conversations_history(
                    channel=channel, limit=200, **({"cursor": cursor} if cursor else {})
                )
                for message in page.get("messages") or []:
                    seen.add(str(message.get("ts")))
                    reached = min(reached, float(message.get("ts") or "inf"))
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not page.get("has_more") or not cursor:
                    reached = float("-inf")  # the whole history was read
                    break
                if reached <= oldest:
                    break
        except SlackApiError as exc:
            error = slack_said(exc) or "unknown_error"
            if getattr(exc.response, "status_code", 200) == 429 or error == "ratelimited":
                self.history_wait[channel] = self.clock() + (_wait(exc) or MAX_BACKOFF)
            elif error in HISTORY_REFUSED and self.history_refused.refuse(channel, error):
                logger.warning(
                    "cannot read the history of %s to look for questions deleted in Slack"
                    " (conversations.history said %s): a question deleted there keeps its"
                    " place until HITL_QUESTION_TTL, or until the history can be read (tried"
                    " again every %g minutes)",
                    channel,
                    error,
                    HISTORY_RETRY / 60,
                )
            return 0
        except (TimeoutError, SlackClientError, OSError, aiohttp.ClientError, ValueError):
            return 0
        if self.history_refused.clear(channel) is not None:
            logger.warning("the history of %s can be read again", channel)
        missing = [
            post for post in posts if float(post["ts"]) >= reached and str(post["ts"]) not in seen
        ]
        if missing:
            logger.info(
                "%d open question(s) in %s are not in its history (deleted in Slack?): drawing"
                " them once more to tell (%s)",
                len(missing),
                channel,
                ", ".join(str(post["item_id"]) for post in missing[:SHOW_ITEMS])
                + (" …" if len(missing) > SHOW_ITEMS else ""),
            )
        for post in missing:
            self.suspect(post)
        return len(missing)

    def _channel_failed(self, channel: str, error: str, count: int) -> None:
        """A redraw in ``channel`` failed for the channel (``CHANNEL_REFUSED``): its ``count``
        messages tried or skipped in this pass wait, with the channel's backoff (doubling up to
        ``MAX_BACKOFF``, cut short by ``channel_works``); said once while it lasts."""
        now, waiting = self.clock(), self.channel_held.get(channel)
        if waiting is None or waiting.error != error:
            delay = self.retry_base if waiting is None else waiting.delay
            self.channel_held[channel] = Backoff(error, delay, now + delay)
            logger.error(
                "cannot redraw %d message(s) in %s: %s. They keep their last drawing until "
                "the channel works again, and are redrawn then (tried again with backoff, at "
                "most %g minutes apart; said again once they are drawn)",
                count,
                channel,
                channel_problem(error),
                MAX_BACKOFF / 60,
            )
        else:
            waiting.delay = min(waiting.delay * 2, MAX_BACKOFF)
            waiting.due = now + waiting.delay

    def _take_back_gone(self, posts: list[dict]) -> None:
        """Take back the open questions whose message is gone (``MESSAGE_GONE``), as an
        expired question is (``Store.take_back_gone``, one transaction): their places are free
        and their items back in the queue; said in one line. The dispatcher is woken to fill
        the places."""
        if not posts:
            return
        taken = self.rt.store.take_back_gone(
            [post["id"] for post in posts], self.rt.settings.threshold
        )
        for post in taken:  # one decided meanwhile keeps its count: left as it is next pass
            self.gone.pop((int(post["id"]), str(post["ts"])), None)
            self.backoff.pop(post["id"], None)
            self.again_due.pop(post["id"], None)
            self.start_left.pop(int(post["id"]), None)
        if not taken:
            return
        errors = {post["id"]: post["error"] for post in posts}
        said = sorted({errors[post["id"]] for post in taken})
        logger.warning(
            "took back %d open question(s) whose Slack message is gone (%s) (%s): nobody can "
            "answer them there; their places are free and their items back in the queue, to be "
            "asked again",
            len(taken),
            "; ".join(f"{error}: {GONE_WHY[error]}" for error in said),
            ", ".join(f"{post['item_id']} in {post['channel']}" for post in taken[:SHOW_ITEMS])
            + (" …" if len(taken) > SHOW_ITEMS else ""),
        )
        self.rt.wake_dispatcher()

    async def _erase(self, *, due_only: bool) -> None:
        """Delete the Slack messages of deleted items (``Store.erased_posts``), after looking
        for the lost ones (``_look_for_lost``). A message already gone (or its channel) counts
        as deleted; one Slack refuses to delete for good (``ERASE_REFUSED``) is said once and
        set aside, and the others go on; any other failure stops the pass, said once, and is
        tried again with backoff (doubling up to ``MAX_BACKOFF``)."""
        if due_only and self.erase_due is not None and self.erase_due > self.clock():
            if self.lost_due is not None:  # the look for lost posts waits for the erasures
                self.lost_due = max(self.lost_due, self.erase_due)
            return
        if not await self._look_for_lost(due_only=due_only):
            return
        # a 429 backs the erasures off on this clock (``_erase_failed``), not slept out in the
        # call with the redrawer's lock held (``no_rate_waits``, as chat.update)
        store, client = self.rt.store, no_rate_waits(self.rt.client)
        tried: set[int] = set()  # this pass: each message once
        while posts := [
            post
            for post in store.erased_posts(skip=[*self.erase_refused, *tried])
            if int(post["id"]) not in tried
        ]:
            for post in posts:
                tried.add(int(post["id"]))
                try:
                    await client.chat_delete(channel=post["channel"], ts=post["ts"])
                except SlackApiError as exc:
                    error = slack_said(exc) or "unknown_error"
                    if error in ERASE_REFUSED or (error not in GONE and _refusal(exc, error)):
                        self._erase_refused(post, error)
                        continue
                    if error not in GONE:
                        self._erase_failed(error, _wait(exc))
                        return
                except (TimeoutError, SlackClientError, OSError, aiohttp.ClientError) as exc:
                    self._erase_failed(type(exc).__name__)
                    return
                store.forget_erased_post(int(post["id"]))
        if self.erase_error is not None:
            logger.warning("deleted the messages of the deleted items: Slack takes them again")
        self.erase_error, self.erase_delay, self.erase_due = None, 0.0, None

    def _erase_refused(self, post: dict, error: str) -> None:
        """Slack will not delete this message: set it aside (until a restart), said once."""
        self.erase_refused[int(post["id"])] = error
        logger.error(
            "cannot delete the Slack message of a deleted item (ts %s in %s): chat.delete said"
            " %s; left in Slack (delete it by hand there), the others are deleted",
            post["ts"],
            post["channel"],
            error,
        )

    async def _look_for_lost(self, *, due_only: bool) -> bool:
        """Look for the messages of deleted items whose post got no answer
        (``Store.lost_posts``) in their channel's history, by the item id in their metadata,
        from the newest message back to the newest question recorded before the attempt (as
        the dispatcher looks for its own lost posts: Slack's time of a message, not this
        machine's clock, bounds the read), at most ``LOST_PAGES`` pages. One found is left
        to delete; one not found once ``LOST_SETTLE`` seconds have passed since the post
        counts as never posted (said when the pages ran out first); one not found before is
        looked for again in ``LOST_LOOK`` seconds. False when Slack failed for a reason a
        retry may fix (a rate limit, a 5xx, its own failures, the token, a timeout): the
        erasures back off, as for ``chat.delete``. A channel it may not read (missing_scope,
        not_in_channel…) is said once and the post set aside."""
        now = self.clock()
        if due_only and self.lost_due is not None and self.lost_due > now:
            return True
        self.lost_due = None
        store = self.rt.store
        lost_posts = store.lost_posts()
        open_posts = store.open_posts() if lost_posts else []
        for lost in lost_posts:
            if int(lost["id"]) in self.erase_refused:
                continue
            since = _floor(open_posts, str(lost["channel"]), str(lost["attempted_at"]))
            try:
                stamps, whole = await self._history_of(
                    str(lost["channel"]), str(lost["item_id"]), since
                )
            except SlackApiError as exc:
                error = slack_said(exc) or "unknown_error"
                if error != "missing_scope" and not _refusal(exc, error):
                    self._erase_failed(error, _wait(exc), "conversations.history")
                    return False
                # not readable (missing_scope: the token works, but may not read history;
                # not_in_channel…): said once, set aside, and the other erasures go on
                self.erase_refused[int(lost["id"])] = error
                logger.error(
                    "cannot look in %s for the question of deleted item %s, whose post got no"
                    " answer: conversations.history said %s; if it was posted, it is left in"
                    " Slack (delete it by hand there)",
                    lost["channel"],
                    lost["item_id"],
                    error,
                )
                continue
            except (TimeoutError, SlackClientError, OSError, aiohttp.ClientError) as exc:
                self._erase_failed(type(exc).__name__, None, "conversations.history")
                return False
            seen = self.lost_seen.setdefault(int(lost["id"]), now)
            if (
                stamps
                or _settled(store.now(), str(lost["attempted_at"]))
                or now - seen >= LOST_SETTLE  # the wall clock was set back since the post
            ):
                if not stamps and not whole:
                    logger.warning(
                        "gave up looking in %s for the question of deleted item %s, whose"
                        " post got no answer (%s UTC): it is not in the newest %d messages,"
                        " and older ones are not read; if it was posted, it is left in Slack"
                        " (delete it by hand there)",
                        lost["channel"],
                        lost["item_id"],
                        str(lost["attempted_at"])[:19].replace("T", " "),
                        LOST_PAGES * 200,
                    )
                store.found_lost_post(int(lost["id"]), str(lost["channel"]), stamps)
                self.lost_seen.pop(int(lost["id"]), None)
            else:  # a slow Slack may store it yet: look again later
                self.lost_due = now + LOST_LOOK
        return True

    async def _history_of(
        self, channel: str, item_id: str, since: str | None
    ) -> tuple[list[str], bool]:
        """The ts of the messages in ``channel`` whose metadata names ``item_id``, newest
        first, from its history after the message ``since`` (a ts; None: all of it), at
        most ``LOST_PAGES`` pages; and whether that read all of it (False: it stopped at the
        limit without finding one)."""
        found: list[str] = []
        cursor: str | None = None
        bound = {} if since is None else {"oldest": since}
        # inside the pass, its lock held: a 429 backs the erasures off on the redrawer's
        # clock (``_erase_failed``), not slept out in the call (``no_rate_waits``)
        client = no_rate_waits(self.rt.client)
        for _ in range(LOST_PAGES):
            page = await client.conversations_history(
                channel=channel,
                limit=200,
                include_all_metadata=True,
                **bound,
                **({"cursor": cursor} if cursor else {}),
            )
            for message in page.get("messages") or []:
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("item_id") == item_id:
                    found.append(str(message["ts"]))
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if found or not page.get("has_more") or not cursor:
                return found, True
        return found, False

    def _erase_failed(
        self, error: str, wait: float | None = None, method: str = "chat.delete"
    ) -> None:
        """A failure a retry may fix: the erasures wait (doubling up to ``MAX_BACKOFF``, and
        at least ``wait``: a 429's Retry-After), said once until one works."""
        if self.erase_error is None:
            logger.warning(
                "could not delete the Slack message of a deleted item: %s said %s;"
                " tried again with backoff, said again once it works",
                method,
                error,
            )
        self.erase_error = error
        self.erase_delay = min(self.erase_delay * 2 or self.retry_base, MAX_BACKOFF)
        self.erase_due = self.clock() + max(self.erase_delay, wait or 0.0)

    def _drop(self, post: dict) -> None:
        """``post`` needs no redraw (drawn, or left as it is): forget its failures. A settle
        draw still to come (``again_due``, its time not reached) stays: whatever draws the
        message meanwhile, a late update may yet land after it."""
        self.gone.pop((int(post["id"]), str(post["ts"])), None)
        self.backoff.pop(post["id"], None)
        self.start_left.pop(int(post["id"]), None)
        again = self.again_due.get(int(post["id"]))
        if again is not None and again[0] <= self.clock():
            del self.again_due[int(post["id"])]
        self.rt.store.mark_drawn(post["id"], post["redraw_seq"])

    def _give_up(self, post: dict, why: str) -> None:
        """This message cannot be drawn so: leave it as it is, and say so once."""
        self._drop(post)
        logger.error(
            "gave up redrawing the message of item %s in %s: %s; it keeps its last drawing until "
            "the item changes again",
            post["item_id"],
            post["channel"],
            why,
        )


def question_channels(settings: object) -> list[str]:
    """The channels questions are asked in now (HITL_CHANNEL and the routes' channels), as
    the dispatcher reads them."""
    found = [getattr(settings, "channel", None), *getattr(settings, "routes", {}).values()]
    return sorted({channel for channel in found if channel})


def moved_text(channels: list[str], asked_in: str | None = None) -> str:
    """What the old message of a question moved out of a channel no longer asked in says:
    where its item is asked now (``asked_in``, the channel of its open question), or, when it
    is not asked yet, that it went back to the queue of ``channels`` (those asked in now)."""
    if asked_in is not None:
        return (
            f"This question is now asked in <#{asked_in}>: answer it there (an answer already"
            " given here counts)."
        )
    where = ", ".join(f"<#{channel}>" for channel in channels)
    return (
        "This channel is no longer asked in: this question went back to the queue and is asked"
        f" again in {where} when its turn comes (an answer already given here counts)."
    )


def channel_problem(error: str) -> str:
    """What Slack refusing the bot a channel (``CHANNEL_REFUSED``) means, and what to do: as
    the start-up check says it (``bot.slack.connect``), for the redrawer's and the
    dispatcher's lines."""
    if error == "channel_not_found":
        return (
            "the bot cannot see this channel (channel_not_found); check the ID, and in a "
            "private channel /invite @hitl"
        )
    if error == "is_archived":
        return "the channel is archived (is_archived); unarchive it"
    if error == "not_in_channel":
        return (
            "the bot is not in the channel (not_in_channel); it joins a public channel again at "
            "its next post there, or /invite @hitl"
        )
    return f"Slack said {error}"


def _refusal(exc: SlackApiError, error: str) -> bool:
    """Whether ``chat.delete``'s ``error`` is Slack's final word on this message (an answer
    with ``ok: false`` that no retry changes), rather than one a retry may fix: a 5xx, a rate
    limit, Slack's own failures, or the token (every call would say the same)."""
    status = getattr(exc.response, "status_code", 200)
    return status < 500 and status != 429 and error not in TOKEN_REFUSED | ERASE_RETRIED


def _wait(exc: SlackApiError) -> float | None:
    """A 429's Retry-After in seconds (None for any other failure)."""
    response = exc.response
    if getattr(response, "status_code", 200) != 429:
        return None
    try:
        return retry_after(response)  # type: ignore[arg-type]
    except (AttributeError, TypeError):
        return None


def _floor(open_posts: list[dict], channel: str, attempted_at: str) -> str | None:
    """The ts of the newest open question in ``channel`` recorded before ``attempted_at`` (a
    lost post's attempt): its message is older than the lost one, so the look for it stops
    there. None when there is none (the whole history, up to ``LOST_PAGES``)."""
    stamps = [
        str(post["ts"])
        for post in open_posts
        if post["channel"] == channel and str(post["posted_at"]) < attempted_at
    ]
    return max(stamps, key=float, default=None)


def _settled(now: str, attempted_at: str) -> bool:
    """Whether ``LOST_SETTLE`` seconds have passed since a post made at ``attempted_at``,
    by the database's clock (``Redrawer.lost_seen`` counts for a clock set back since)."""
    try:
        elapsed = datetime.fromisoformat(now) - datetime.fromisoformat(attempted_at)
    except ValueError:
        return True
    return elapsed.total_seconds() >= LOST_SETTLE


def open_for(posted_at: str, expired_at: str) -> timedelta:
    """How long a question taken back as expired stood unanswered."""
    return max(datetime.fromisoformat(expired_at) - datetime.fromisoformat(posted_at), timedelta())
