"""The dispatcher: keeps each question channel filled up to HITL_MAX_OPEN unanswered posts.

It takes the next items from ``model.selection`` (most uncertain first, a random audit share,
random picks while there is no model), routes each to its channel, and posts at most one
question per second per channel. A post is recorded only after Slack returns its ``ts``; on a
failure the item stays queued and the channel backs off (a 429 waits for Retry-After,
``not_in_channel`` joins once, a permanent error stops posting to that channel).

A post whose answer was lost (a timeout, a reset, a 5xx or Slack's ``fatal_error``: Slack
may have stored it) is never sent again blindly: the channel's history is searched for it by
its metadata first, and a message not there yet is looked for again until ``post_settle``
seconds have passed since the post (a slow Slack may store it after the client gave up).
A 429 on that search (or on the join it needs) is one call, its Retry-After waited out by the
channel, as for a post, not slept out inside the round nor met again after the backoff's
first second.
Every post is noted in the database before the call (``post_attempts``), so a server that
stopped or died during a post looks for it too before posting the item again. When the app
lacks the scope to read that history (``groups:history`` for a private channel), the scope is
named once, the channel keeps getting other questions, and only the lost ones wait. A post
left so in a channel no longer asked in at the restart is looked for there; found, it is
moved as that channel's open questions are. An answer that is not Slack's JSON (a proxy's
page, HTTP 200: ``NotSlackJson``) leaves a post unsure too.

A ``channel_archive`` event stops posting to the channel only when it is not older than the
last ``channel_unarchive`` seen and ``conversations.info`` does not say the channel is not
archived: Slack sends an event again, late, when its first delivery failed.

A post Slack accepted but the database could not record (a full disk) is kept, with its
``ts``, and recorded first in every later round: a round whose record fails posts nothing, so
no question goes out twice, or unrecorded, while the database refuses writes.

A question left unanswered for HITL_QUESTION_TTL hours (72 by default; 0: never) is taken back
in a round (``_expire``, a bounded read of the open posts by age): its item goes back to the
queue, its place in the channel is free at once, and its message is redrawn without buttons.

In Socket Mode no new question is posted while Slack refuses the connection, or while it has
been down longer than its grace (``_link_held``): nobody could answer it. A short reconnection
does not hold posts, and the connection, once back, wakes the dispatcher.

Slightly over ~400 lines: the round, the channel backoff and the lost-post search share the
channel state this dispatcher owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.errors import SLACK_TOKEN_REFUSED, SLACK_TOKEN_RETRY, slack_said
from bot.labelset import channel_for, in_force, not_in_force, routes_in_force
from bot.learning.jobs import sync_champion
from bot.learning.scoring import (
    ScoringOutOfMemory,
    candidates,
    choose,
    fresh_window,
    guesses_in_force,
    score_pending,
    scorer_of,
)
from bot.learning.typical import typical_candidates
from bot.runtime import NotSlackJson, Runtime, no_rate_waits, wait_until_woken
from bot.slack import blocks
from bot.slack.connect import retired_route_labels, socket_mode_of
from bot.slack.guidelines import meta_line
from bot.slack.questions import (
    as_asked,
    gold_passed_over,
    label_set,
    shown_reason,
    smaller_after,
    young_model,
)
from bot.slack.redraw import Redrawer, channel_problem
from bot.store import DatabaseError, database_problem

logger = logging.getLogger(__name__)

# A restart refuses to start in these states (the start-up check looks at the channel): a
# line about them says to fix the channel, not to restart.
NO_RESTART = {"channel_not_found", "is_archived"}
PERMANENT = {
    "channel_not_found",
    *SLACK_TOKEN_REFUSED,
    "is_archived",
    "missing_scope",
    "restricted_action",
}
ITEM_ERRORS = {"invalid_blocks", "invalid_blocks_format", "msg_too_long", "msg_blocks_too_long"}
MAX_ITEM_FAILURES = 3
MAX_BACKOFF = 300.0
# A backoff doubles at most this many times (then MAX_BACKOFF holds for any base): the failures
# in a row are not capped, and 2 ** 1024 times a float overflowed (85 hours of failures).
MAX_DOUBLINGS = 32
BROKEN_RETRY = 900  # seconds before a channel that failed permanently is tried again
IDLE_TICK = 30.0
SAID_AGAIN = 600  # seconds: a lasting database problem is said again after this

EXPIRE_BATCH = 50  # questions taken back as expired per round, at most (HITL_QUESTION_TTL)
UNRECORDED_TICK = 1.0  # a post the database could not record yet is tried again this often
GOLD_WINDOW = 5  # gold items read first per draw: the first routed to the channel is posted
GOLD_PAGE = 100  # gold items read (and guessed, in a worker thread) per page after those
GOLD_DEPTH = 1_000  # gold items looked at, at most, for one channel's draw
# GoldScan.judged's entries, at most (about 100 B each): past it the map is emptied and the draws
# go on from their cursors, guessing again the items they come round to (once a round at most)
GOLD_JUDGED = 100_000
POST_SETTLE = 60.0  # seconds after a lost post before a history without it means "not posted"
HISTORY_PAGE = 200  # messages per conversations.history call when looking for lost posts
HISTORY_PAGES = 20  # pages read at most in one look (4,000 messages since the lost post)
# Errors Slack answers when the call may have done its work all the same.
MAYBE_DONE = {"internal_error", "fatal_error", "request_timeout", "service_unavailable"}


@dataclass
class ChannelState:
    """What the dispatcher knows about one question channel."""

    broken: str | None = None  # a permanent error: nothing is posted here until restart
    last_error: str | None = None
    failures: int = 0
    next_attempt: float = 0.0  # loop time before which nothing is posted (backoff, Retry-After)
    last_post: float = float("-inf")
    joined: bool = False  # joined since the last post went through: joins once, not in a loop
    unsure: set[str] = field(default_factory=set)  # items whose post got no clear answer
    # (mirrors the post_attempts rows left behind; read from them when the dispatcher starts)
    adopted: set[str] = field(default_factory=set)  # of those, found posted after all
    missing_scope: str | None = None  # the scope reading its history needs and lacks
    history_retry_at: float = 0.0  # loop time before which the history is not read again
    # The newest ts Slack gave a post here (returned, or found): a lost post made after it
    # has a later one, so the history is read from there (``oldest``), not from the top.
    last_ts: str | None = None
    floors: dict[str, str | None] = field(default_factory=dict)  # unsure item -> its last_ts
    retry_said: str | None = None  # the stop "trying again" was said for (once while it lasts)
    # what Slack said when it refused, for good, the last read of the history for lost posts
    # (channel_not_found, missing_scope…; None: read, or failed for a reason a retry may fix)
    history_refused: str | None = None


@dataclass
class GoldScan:
    """Where the dispatcher's gold draws are in the gold items, in memory, under one context
    (``context``: the model that guesses, the label set in force, the routes): per channel, the
    page of the gold index a draw starts from (``start``; None: the first), moved past the
    items it could not ask there; and what it knows of the items it guessed and did not ask
    (``judged``: item id -> the channel it goes to, or PASSED_OVER), so a later draw under the
    same context reads past them without guessing them again. All of it is dropped when the
    context changes: a new model may be unsure of an item passed over, or route it here.
    ``judged`` holds GOLD_JUDGED items at most: one that would grow past it is emptied first
    (the cursors stay), so its memory stays bounded whatever the gold items and however long
    the model stays; an item posted is taken out of it."""

    context: tuple[Any, ...] | None = None
    start: dict[str, Any] = field(default_factory=dict)  # channel -> GoldCursor (or None)
    judged: dict[str, str] = field(default_factory=dict)


PASSED_OVER = ""  # ``GoldScan.judged``: sure of it, outside the audit share (no channel is "")


def judge_gold(
    classifier: Any,
    items: list[dict[str, Any]],
    *,
    strategy: str,
    aliases: dict[str, str],
    out: Any,
    routes: dict[str, str],
    settings: Any,
    channel: str,
    young: bool,
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """In a worker thread: guess ``items`` with ``classifier`` and return the first one to
    post to ``channel`` as a gold question, with its guess (``model_version`` is the
    caller's), and, for those before it that are not, the channel each goes to, or
    PASSED_OVER (``gold_passed_over``; never during the warm-up, ``young``, nor an item marked
    gold while it waited). Pure: no database, no event loop."""
    judged: dict[str, str] = {}
    guesses = guesses_in_force(
        classifier,
        items,
        strategy=strategy,
        aliases=aliases,
        out=out,
        routes=routes,
        settings=settings,
    )
    for item, ranked, label, confidence, to in guesses:
        if to != channel:
            judged[item["id"]] = to
            continue
        if label is not None and not young:
            marked = bool(item.get("marked"))
            if gold_passed_over(settings, item["id"], confidence, marked=marked):
                judged[item["id"]] = PASSED_OVER  # sure of it, outside the audit share: waits
                continue
        return {**item, "predicted_label": label, "ranked": ranked}, judged
    return None, judged


class JoinFailed(Exception):
    """``conversations.join`` failed before a post (the bot was not in the channel): nothing
    was posted. ``cause`` is what the call raised."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True)
class Unrecorded:
    """A post Slack accepted whose record the database refused: what ``record_post`` needs."""

    channel: str
    ts: str
    reason: str
    shown: tuple[Any, Any, Any]  # model_version, predicted_label, confidence


class Dispatcher:
    """Owns the question channels' state (``channels``), the pace of posting and the event
    that wakes its background loop. Held as ``rt.dispatcher``; others only ``wake()`` it."""

    def __init__(
        self,
        rt: Runtime,
        rng: random.Random | None = None,
        *,
        post_interval: float = 1.0,
        retry_base: float = 1.0,
        post_settle: float = POST_SETTLE,
    ):
        self.rt = rt
        self.rng = rng or random.Random()
        self.post_interval = post_interval  # seconds between two posts to one channel, at least
        self.retry_base = retry_base  # seconds; a failing channel's backoff doubles from here
        self.post_settle = post_settle
        self.ahead: dict[str, float] = {}  # posts made after now by the wall clock: first seen
        self.channels: dict[str, ChannelState] = {}
        self.woken = asyncio.Event()
        self.item_failures: dict[str, int] = {}
        self.unrecorded: dict[str, Unrecorded] = {}  # by item id, in the order they were posted
        self._attempts_read = False
        # old posts of moved questions, by item, to redraw: once when they are moved (asked
        # again this round, or back in the queue), again when a later round asks their item
        self.moved: dict[str, list[dict[str, Any]]] = {}
        self.asked_again: dict[str, str] = {}  # moved items asked since, and where
        self.labels_under: int | None = None  # the label set's change count of this round
        self.resting: set[str] = set()  # this round's items ignored lately (``Store.resting``)
        self.db_said: tuple[str, float] | None = None  # the database problem last said, and when
        self.scoring_failures = 0  # rounds in a row scoring ran out of memory (the backoff)
        self.scoring_retry_at = 0.0  # loop time the backoff holds the channels until
        self.link_held: str | None = None  # why new posts wait for Socket Mode (said once)
        # channel -> the event_time of the latest channel_unarchive Slack sent for it: an
        # archive event from before it (a late redelivery) is no news
        self.unarchived_at: dict[str, float] = {}
        # the settings and label-set change count the retired routes were read under, and
        # their labels (``question_channels``)
        self.retired_routes: tuple[object, int | None, set[str]] | None = None

    @classmethod
    def of(cls, rt: Runtime) -> Dispatcher:
        """The dispatcher ``rt`` holds."""
        if not isinstance(rt.dispatcher, cls):
            raise RuntimeError("the runtime was built without a dispatcher")
        return rt.dispatcher

    def wake(self) -> None:
        """Ask the background loop (``run``) for a round now."""
        self.woken.set()

    def channel_state(self, channel: str) -> ChannelState:
        return self.channels.setdefault(channel, ChannelState())

    def question_channels(self) -> list[str]:
        """The channels questions are asked in: HITL_CHANNEL and the channels of the routes
        in force. A retired label's route is left out (nothing is predicted a retired label)
        unless another setting names its channel: the start does not check its channel
        (``check_slack``), which the team may have archived, and the questions left open
        there when the label was retired are moved at start, and by each round, as those of
        any channel no longer asked in (``requeue_posts_outside``, ``_move_reopened``), not
        held there for good where nobody may answer.
        The retired routes are read again when the label set changed (``labels_under``, read
        each round) or the settings did, not at every call."""
        rt = self.rt
        settings = rt.settings
        found = [settings.channel, *settings.routes.values()]
        if settings.routes:
            cached = self.retired_routes
            if cached is None or cached[0] is not settings or cached[1] != self.labels_under:
                cached = (settings, self.labels_under, retired_route_labels(rt))
                self.retired_routes = cached
            if cached[2]:
                found = [settings.channel]
                found += [c for label, c in settings.routes.items() if label not in cached[2]]
        return sorted({c for c in found if c})

    async def run(self) -> None:
        """Background task: fill channels whenever woken, or on a slow tick."""
        loop = asyncio.get_running_loop()
        while True:
            self.woken.clear()
            await self.round()
            await wait_until_woken(self.woken, self.next_wait(loop.time()))

    async def round(self) -> None:
        """One round (``fill``) that outlives any failure: a database problem is said in one
        line (again after SAID_AGAIN if it lasts); scoring out of memory, said by the scorer,
        holds the channels back (``_scoring_backoff``); anything else is logged."""
        loop = asyncio.get_running_loop()
        self._scoring_resumed()
        try:
            await self.fill()
        except DatabaseError as exc:  # a full disk, a lock held: one line, not a traceback
            problem = str(database_problem(self.rt.settings.db, exc))
            # A round with nothing to write goes through meanwhile, so "it lasts" is told
            # by time: the same problem again within SAID_AGAIN is not said again.
            said = self.db_said
            if said is None or said[0] != problem or loop.time() - said[1] >= SAID_AGAIN:
                logger.error(
                    "dispatcher round failed: %s; tried again each round (said again"
                    " after %d minutes if it lasts)",
                    problem,
                    SAID_AGAIN // 60,
                )
                self.db_said = (problem, loop.time())
        except ScoringOutOfMemory:  # said once by the scorer while it lasts
            self._scoring_backoff()
        except Exception:  # noqa: BLE001 - the dispatcher must outlive any one failure
            logger.exception("dispatcher round failed")

    def _scoring_backoff(self) -> None:
        """Scoring ran out of memory (``Scorer.out_of_memory``): no channel is posted to for
        a while, the channels' backoff (``next_attempt``) doubling from IDLE_TICK to
        MAX_BACKOFF, rather than each round (every wake: clicks, items) sending the model at
        full cost again. The round after the wait tries again; the scorer says when it works."""
        self.scoring_failures += 1
        delay = min(IDLE_TICK * 2 ** min(self.scoring_failures - 1, MAX_DOUBLINGS), MAX_BACKOFF)
        self.scoring_retry_at = asyncio.get_running_loop().time() + delay
        for channel in self.question_channels():
            state = self.channel_state(channel)
            state.next_attempt = max(state.next_attempt, self.scoring_retry_at)
        logger.debug("dispatcher: scoring ran out of memory; next round in %.0f s", delay)

    def _scoring_resumed(self) -> None:
        """Scoring works again (the backoff's round, or a producer's item, went through): the
        backoff ends, and the channels it held back may post now."""
        if not self.scoring_failures or scorer_of(self.rt).out_of_memory is not None:
            return
        self.scoring_failures = 0
        for state in self.channels.values():
            if state.next_attempt == self.scoring_retry_at:  # not a Slack backoff since
                state.next_attempt = 0.0

    def next_wait(self, now: float) -> float:
        """Seconds until the next round: the first channel due, at most IDLE_TICK; a post the
        database has not recorded yet (a full disk) is tried every UNRECORDED_TICK, so it is
        recorded, and posting goes on, soon after space is back."""
        waits = [
            max(s.next_attempt, s.last_post + self.post_interval) - now
            for s in self.channels.values()
            if not s.broken and max(s.next_attempt, s.last_post + self.post_interval) > now
        ]
        if self.unrecorded:
            waits.append(UNRECORDED_TICK)
        return min([IDLE_TICK, *waits])

    def _read_attempts(self) -> None:
        """Once, before the first round: the posts an earlier run of the server left without an
        answer (it stopped or died during them) are looked for before their items go again,
        and the open questions of channels no longer asked in go back to the queue. A post
        left so in a channel no longer asked in is looked for there too
        (``_look_in_old_channels``): dropped, its message (had Slack stored it) kept its
        buttons for good, and its item was asked a second time."""
        if self._attempts_read:
            return
        channels = self.question_channels()
        attempts = self.rt.store.post_attempts()
        # each lost post's floor, read before the questions of old channels are closed (the
        # floor is the newest open question of its channel posted before it)
        floors = {
            a["item_id"]: self._recorded_floor(a["channel"], a["attempted_at"]) for a in attempts
        }
        threshold = self.rt.settings.threshold  # an auto item asked as an audit stays auto
        moved = self.rt.store.requeue_posts_outside(channels, threshold) if channels else []
        if moved:
            for post in moved:
                self.moved.setdefault(post["item_id"], []).append(post)
            logger.info(
                "moved %d open question(s) out of channels no longer asked in; they are asked"
                " again in %s (an answer on the old message still counts)",
                len(moved),
                ", ".join(channels),
            )
        for attempt in attempts:
            state = self.channel_state(attempt["channel"])
            state.unsure.add(attempt["item_id"])
            state.floors[attempt["item_id"]] = floors[attempt["item_id"]]
            logger.info(
                "item %s was being posted to %s when the server stopped; looking for it in the"
                " channel before posting it again%s",
                attempt["item_id"],
                attempt["channel"],
                "" if attempt["channel"] in channels else " (no longer asked in)",
            )
        # Only now: a round the database refused (another process's write lock at start) reads
        # them again, or a post the last run left unfinished would be posted a second time.
        self._attempts_read = True

    async def _say_moved(self) -> None:
        """Have the old messages of the questions moved out of channels no longer asked in
        redrawn, after the round's posts: they show no buttons, so no question is left with two
        live messages (the old and the new), and say where the question is asked now, or, for
        one whose item waits in the queue (more moved than places, or routed to a full
        channel), that it went back there; that one is drawn again when a later round asks its
        item (``_posted``). The redrawer draws them (``moved_text``, from the database): they
        are marked due, and a refused or rate-limited ``chat.update`` is tried again with its
        backoff, a 429 held until its Retry-After on the redrawer's clock (``update_due``).
        Drawn here with the client's own call, a 429 was slept out inside the round (twice),
        the next old message called into the same limit, and one refused kept its buttons for
        good (nothing marked it due again)."""
        due: list[int] = []
        for item_id, posts in list(self.moved.items()):
            there = self.asked_again.get(item_id)
            if there is None and posts[0].get("said"):
                continue  # it still waits in the queue, as its message says
            due += [int(post["id"]) for post in posts]
        if not due:
            return
        try:
            self.rt.store.owe_redraws(due)
        except DatabaseError:  # the round says it (its writes fail too); the next marks them
            return
        for item_id, posts in list(self.moved.items()):
            if self.asked_again.pop(item_id, None) is not None:
                del self.moved[item_id]  # drawn for good
            else:
                for post in posts:
                    post["said"] = True
        if isinstance(self.rt.redrawer, Redrawer):
            await self.rt.redrawer.soon()

    async def _expire(self) -> None:
        """Take back the questions left unanswered for HITL_QUESTION_TTL hours (0: never), at
        most EXPIRE_BATCH a round, the oldest first (``Store.expire_posts``): their places are
        free for this round, their items wait in the queue again (scored by the model of now
        before they are asked again), and their messages are redrawn without buttons."""
        ttl = self.rt.settings.question_ttl
        if ttl <= 0:
            return
        expired = self.rt.store.expire_posts(ttl, EXPIRE_BATCH, self.rt.settings.threshold)
        if not expired:
            return
        logger.info(
            "took back %d question(s) unanswered for over %d hours (%s); their items are back"
            " in the queue",
            len(expired),
            ttl,
            ", ".join(f"{post['item_id']} in {post['channel']}" for post in expired[:5])
            + (" …" if len(expired) > 5 else ""),
        )
        if isinstance(self.rt.redrawer, Redrawer):
            await self.rt.redrawer.soon()

    def _record_unrecorded(self) -> None:
        """Record the posts Slack accepted while the database refused their record."""
        for item_id, post in list(self.unrecorded.items()):
            self.rt.store.record_post(
                item_id, post.channel, post.ts, post.reason, *post.shown, drawn_under=-1
            )  # drawn in an earlier round: redrawn under the label set in force, once
            del self.unrecorded[item_id]
            logger.warning(
                "recorded item %s's post to %s (ts %s): the database takes writes again",
                item_id,
                post.channel,
                post.ts,
            )

    async def fill(self) -> int:
        """One round: post to every channel with room; return how many were posted. The old
        messages of moved questions are redrawn after its posts (``_say_moved``)."""
        rt = self.rt
        if rt.store.lost is not None:
            return 0  # the database file is gone: nothing asked could be recorded (said once)
        if rt.label_change.held:
            # this server's label change holds the write lock: a write here would hold the
            # event loop waiting for it, then fail; its end wakes the dispatcher
            return 0
        self._read_attempts()
        try:
            return await self._fill()
        finally:
            if self.moved:
                await self._say_moved()

    async def _fill(self) -> int:
        """``fill``'s posts."""
        rt = self.rt
        self._record_unrecorded()  # raises while the database refuses writes: nothing is posted
        await self._expire()
        # the label set's change count the round's buttons are drawn under (``record_post``)
        self.labels_under = rt.store.label_set_change_count()
        await self._look_in_old_channels()
        await self._move_reopened()
        ttl = rt.settings.question_ttl
        resting = rt.store.resting(ttl) if ttl > 0 else set()  # ignored lately: asked last
        self.resting = resting
        labels = label_set(rt.settings, rt.store)
        if len(labels) < 2:
            return 0
        if self._link_held():
            return 0  # Socket Mode: no click could reach the bot; reconnecting wakes us
        loop = asyncio.get_running_loop()
        open_counts = rt.store.open_post_counts()
        if all(
            open_counts.get(c, 0) >= rt.settings.max_open and not self.channel_state(c).unsure
            for c in self.question_channels()
        ):
            return 0  # every channel is full: an answer woke us, but there is no room yet
        now = loop.time()
        if all(
            now < max(s.next_attempt, s.last_post + self.post_interval)
            for s in map(self.channel_state, self.question_channels())
        ):
            return 0  # no channel may post yet (clicks and predicts wake us): run() comes back
        with contextlib.suppress(OSError):  # the models folder is gone: the watch says so
            await sync_champion(rt)
        await score_pending(rt, max_chunks=1)  # one bounded chunk; the scorer does the rest
        # each channel with free places gets a window of its own when none of its items is
        # among the most uncertain of all (``scoring.window``)
        free = [c for c in self.question_channels() if open_counts.get(c, 0) < rt.settings.max_open]
        pool, audit_pool = candidates(rt, self.rng, free)
        pool = await fresh_window(rt, pool, free)  # a new model ranks the window first
        # a young model's TypiClust picks (HITL_TYPICAL_UNTIL); None: none, or not ready yet
        typical = typical_candidates(rt)
        taken: set[str] = set()
        posted = 0
        routes = routes_in_force(rt.settings, rt.store)
        for channel in self.question_channels():
            state = self.channel_state(channel)
            now = loop.time()
            if state.unsure and now >= state.next_attempt and now >= state.history_retry_at:
                if await self._reconcile(channel):
                    open_counts = rt.store.open_post_counts()
                    pool = [it for it in pool if it["id"] not in state.adopted]
                    audit_pool = [it for it in audit_pool if it["id"] not in state.adopted]
                    if typical is not None:
                        typical = [it for it in typical if it["id"] not in state.adopted]
                elif state.broken:  # the token: nothing can be posted until it works
                    continue
                elif loop.time() < state.history_retry_at and not state.missing_scope:
                    # a 429: the channel waits its Retry-After (posting now could post a
                    # question twice), not the backoff's, which called into the limit again
                    state.next_attempt = max(state.next_attempt, state.history_retry_at)
                    state.last_error = "ratelimited"
                    continue
                elif not state.missing_scope:
                    self._back_off(channel, "history unavailable")
                    continue  # posting now could post a question twice
            # Items whose post may be in a channel already wait until the history says so.
            held = {item_id for other in self.channels.values() for item_id in other.unsure}
            room = rt.settings.max_open - open_counts.get(channel, 0)
            if room <= 0 or loop.time() < state.next_attempt:
                continue
            if state.broken and state.retry_said != state.broken:
                # once while it lasts: with no item routed here no post pushes the retry on,
                # and every round (each click, each API item) said it again
                logger.info("trying %s again after %s", channel, state.broken)
                state.retry_said = state.broken

            def routed_here(
                it: dict[str, Any], channel: str = channel, held: set[str] = held
            ) -> bool:
                return (
                    it["id"] not in taken
                    and it["id"] not in held
                    and channel_for(routes, rt.settings, it["predicted_label"]) == channel
                )

            mine, audits = last(
                resting,
                [it for it in pool if routed_here(it)],
                [it for it in audit_pool if routed_here(it)],
            )
            # At Slack's pace one post per channel goes out this round (a second pick stands
            # by in case Slack refuses the first); choosing a batch for all the room, with its
            # duplicate checks, and posting one of it was most of a round's work.
            wanted = room if self.post_interval <= 0 else min(room, 2)
            # a pick taken back unanswered lately rests too (as ``last`` does the pools'): the
            # order's other picks come first, then the closest calls; it, a TTL on
            ours = (
                None
                if typical is None
                else [it for it in typical if routed_here(it) and it["id"] not in resting]
            )
            for item, reason in choose(rt, mine, wanted, self.rng, audit_pool=audits, typical=ours):
                if loop.time() < state.last_post + self.post_interval:
                    break  # at most one post per interval per channel; run() comes back
                gold = await self._gold_instead(channel, taken | held)
                if gold is not None:
                    item, reason = gold, "gold"
                taken.add(item["id"])
                result = await self.post(channel, item, reason, labels)
                if result is None:
                    continue  # this item was refused; the next one may go
                if not result:
                    break
                posted += 1
        return posted

    def _link_held(self) -> bool:
        """Whether new questions wait for Socket Mode's connection: while Slack refuses it, or
        it has been down past its grace (not during a short reconnection), a question would
        reach nobody who could answer. Said once when posting holds, once when it resumes."""
        link = socket_mode_of(self.rt)
        why = link.posts_held() if link is not None else None
        if why is not None and self.link_held is None:
            logger.warning(
                "no new question is posted while Socket Mode is down (%s); posting resumes "
                "once it connects",
                why,
            )
        elif why is None and self.link_held is not None:
            logger.warning("Socket Mode is connected again: new questions are posted again")
        self.link_held = why
        return why is not None

    def _meta_line(self, item_id: str) -> str:
        """The item's HITL_SHOW_META fields, for under its question (one read, when set)."""
        fields = self.rt.settings.show_meta
        if not fields:
            return ""
        item = self.rt.store.get_item(item_id) or {}
        return meta_line(item.get("meta") or {}, fields)

    def _gold_scan(self) -> GoldScan:
        """The gold draws' state (``GoldScan``), made at the first draw."""
        scan = getattr(self, "_gold", None)
        if scan is None:
            scan = self._gold = GoldScan()
        return scan

    async def _gold_instead(self, channel: str, taken: set[str]) -> dict[str, Any] | None:
        """With probability HITL_GOLD_RATE, drawn for each post, a gold item to post instead
        (None: post the pick, also when no gold item waits for this channel). It gets the guess
        of the model that scores the queue (``Runtime.model``: the working model after a
        refresh, else the champion) as every other question has one, so its "model rN"/"vN"
        is theirs; computed in a worker thread.

        With HITL_GOLD_RATE=0 no gold question is drawn, except a stored item marked gold while
        it waited in the queue (``next_gold(marked=True)``; not one imported as gold): it would
        have been asked, and marking it must not take it out of labelling, so it goes in the
        pick's place (marked items are few, each asked once). With a rate, those marked items
        are looked at first (GOLD_WINDOW of them), as they waited for an answer already.

        A gold question goes to the channel of its guess (``[hitl.routes]``), so the gold items
        are read a page at a time (``Store.gold_page``: GOLD_WINDOW, then GOLD_PAGE each, from
        the index), each page guessed and judged in one worker-thread call (``judge_gold``),
        until one is this channel's, up to GOLD_DEPTH items: reading only the GOLD_WINDOW
        oldest, a channel whose gold items came after another channel's got none while that
        channel did not ask them (full of ignored questions, archived, slow).

        Past its warm-up, a gold item imported as gold that the model is sure of (a guess at or
        above HITL_THRESHOLD, which no uncertainty pick shows) is asked only in the gold items'
        audit share (``gold_passed_over``): it is passed over, still waiting (a later model may
        be unsure of it). One marked gold while it waited is never passed over. So that items
        passed over never keep a channel from the others, however many come first, each
        channel's draws go round the gold items (``GoldScan``): a draw starts at the page where
        the channel's last one found its item, or where it stopped reading, and goes on from the
        first item past the last; an item it judged (passed over, another channel's) is read
        past without a guess until the model, the label set or the routes change, when the
        draws start again from the first item. A draw costs at most GOLD_DEPTH items read (in
        pages of GOLD_PAGE on the event loop, indexed) and guessed (in a worker thread). Its
        full ranking is what its question shows, then and on every later drawing (``post``)."""
        rt = self.rt
        marked = rt.settings.gold_rate <= 0
        # a gold question ignored lately waits (``Store.resting``): the pick goes instead
        exclude = sorted(taken | self.resting)

        def page(
            limit: int, after: Any = None, *, only_marked: bool = marked
        ) -> tuple[list[dict[str, Any]], Any]:
            return rt.store.gold_page(
                limit,
                exclude,
                marked=only_marked,
                configured=rt.settings.labels,
                after=after,
                sources=True,
            )

        scan = self._gold_scan()
        # with HITL_GOLD_RATE=0 only marked items are read, none passed over: from the first
        start = None if marked or rt.model is None else scan.start.get(channel)
        waiting, after = page(GOLD_WINDOW, start)
        if not waiting and start is not None:  # the last draw read to the end: from the first
            start = None
            waiting, after = page(GOLD_WINDOW)
        if not waiting:
            return None
        if not marked and self.rng.random() >= rt.settings.gold_rate:
            return None
        routes = routes_in_force(rt.settings, rt.store)
        model = rt.model
        if model is None:  # no guess: a gold question goes to the default channel
            return waiting[0] if channel_for(routes, rt.settings, None) == channel else None
        out = not_in_force(rt.settings, rt.store)  # a label no button offers is no guess
        aliases = rt.store.label_aliases()
        context = (model.version, out.kept, frozenset(aliases.items()), frozenset(routes.items()))
        if scan.context != context:  # what was judged may judge otherwise now: from the first
            scan.context, scan.start, scan.judged = context, {}, {}
            if start is not None:
                start = None
                waiting, after = page(GOLD_WINDOW)
                if not waiting:
                    return None
        young = young_model(rt.store, rt.settings, model.version, model)

        async def first_here(items: list[dict[str, Any]]) -> tuple[bool, dict[str, Any] | None]:
            """Whether the model is still the draw's, and the first of ``items`` to post here."""
            fresh = [
                it
                for it in items
                if scan.judged.get(it["id"]) in (None, channel)  # guessed unless judged
            ]
            if not fresh:  # read past: the loop may run others between two pages
                await asyncio.sleep(0)
                return rt.model is model, None
            found, judged = await asyncio.to_thread(
                judge_gold,
                model.classifier,
                fresh,
                strategy=rt.settings.strategy,
                aliases=aliases,
                out=out,
                routes=routes,
                settings=rt.settings,
                channel=channel,
                young=young,
            )
            if rt.model is not model:  # a new model: the next draw judges with it
                return False, None
            if len(scan.judged) + len(judged) > GOLD_JUDGED:  # bounded (``GoldScan``)
                scan.judged.clear()
            scan.judged.update(list(judged.items())[:GOLD_JUDGED])
            if found is not None:
                scan.judged.pop(found["id"], None)  # asked: kept no more
                found["model_version"] = model.version
            return True, found

        if not marked:  # the items marked gold while they waited first (few, indexed)
            same, found = await first_here(page(GOLD_WINDOW, only_marked=True)[0])
            if not same or found is not None:
                return found
        seen: set[str] = set()  # this draw's items: a draw that went round stops at them
        looked, page_from, wrapped = 0, start, start is None
        while True:
            ids = [it["id"] for it in waiting]
            round_done = any(i in seen for i in ids)
            if round_done:  # back at the items this draw began with
                waiting = waiting[: next(n for n, i in enumerate(ids) if i in seen)]
            seen.update(ids)
            same, found = await first_here(waiting)
            if not same:
                return None
            if found is not None:
                if not marked:
                    scan.start[channel] = page_from  # this page again: the rest of it waits
                return found
            looked += len(waiting)
            if round_done or looked >= GOLD_DEPTH:
                if not marked:
                    scan.start[channel] = after if not round_done else None
                return None
            if after is None:  # the last gold item: on from the first, once
                if wrapped:
                    if not marked:
                        scan.start[channel] = None
                    return None
                wrapped = True
            page_from = after
            waiting, after = page(min(GOLD_PAGE, GOLD_DEPTH - looked), after)
            if not waiting:
                if not marked:
                    scan.start[channel] = None
                return None

    async def post(
        self, channel: str, item: dict[str, Any], reason: str, labels: list[str]
    ) -> bool | None:
        """Post one question: True when Slack took it; None when Slack refused this item only
        (it is retried later, then set aside); False to end this channel's round (backoff,
        rate limit, a permanent error)."""
        rt = self.rt
        state = self.channel_state(channel)
        loop = asyncio.get_running_loop()
        if rt.model and "ranked" not in item:  # the round's rows leave the guesses out
            item = {**item, **rt.store.prediction(item["id"])}
        guesses = [(str(lb), float(p)) for lb, p in item["ranked"] or []] if rt.model else []
        if guesses:  # under the label set in force: a renamed label shows its new name
            out = not_in_force(rt.settings, rt.store)  # retired, or never in the set
            guesses = in_force(guesses, rt.store.label_aliases(), out)
        # an item asked again (its question taken back: HITL_QUESTION_TTL, a move) holds the
        # answers it had, and they count: its new question shows them, as a redraw does
        tally = rt.store.tally(item["id"])
        question = blocks.Question(
            item_id=item["id"],
            text=item["text"],
            labels=labels,
            guesses=guesses,
            model_version=item["model_version"] if guesses else None,
            reason=shown_reason(
                rt.store,
                rt.settings,
                item["id"],
                reason,
                item["model_version"] if guesses else None,
                rt.model,
                # an item marked gold while it waited is asked however sure the model is
                confidence=guesses[0][1] if guesses and item.get("marked") else None,
            ),
            votes=tally.votes,
            skips=tally.skips,
            votes_needed=rt.settings.votes,
            show_votes=rt.settings.show_votes,
            meta_line=self._meta_line(item["id"]),
            has_guidelines=bool(rt.settings.guidelines),
        )
        question = as_asked(rt, question)  # "Other…" as the type-ahead if Slack needs it small
        shown = (question.model_version, *(guesses[0] if guesses else (None, None)))
        # Durable before the call: if the answer is lost, or this process with it, whoever
        # posts next looks for the message first.
        # a gold question's ranking, made as it is posted (``_gold_instead``), is stored with
        # its item as the scorer stores the others': every later drawing shows these guesses
        # (not over the prediction of an item marked gold while it waited: begin_post_attempt)
        gold_ranked = item.get("ranked") if reason == "gold" and guesses else None
        if not rt.store.begin_post_attempt(
            item["id"], channel, reason, *shown, gold_ranked=gold_ranked
        ):
            # deleted (`hitl delete`) or decided (the labeling modal, `hitl labels set`) since
            # the round read it: not posted, and the next pick may go
            return None
        floor = self._floor(channel)  # before the call: the lost post would come after it
        try:
            response = await self._post_message(channel, question)
        except JoinFailed as failed:
            # nothing was posted (the join came first): the item is not unsure, and the next
            # round joins again (``_post_message``)
            rt.store.end_post_attempt(item["id"])
            return self._join_failed(channel, failed.cause)
        except SlackApiError as exc:
            error = slack_said(exc) or "unknown_error"
            if isinstance(exc, NotSlackJson):  # a proxy's page: Slack may have had the call
                error = "HTTP 200 without Slack's JSON"
            if (
                exc.response.status_code >= 500
                or error in MAYBE_DONE
                or isinstance(exc, NotSlackJson)
            ):
                self._unsure(channel, item["id"], floor)  # Slack may have posted it anyway
            else:
                rt.store.end_post_attempt(item["id"])  # a refusal: nothing was posted
            if error in SLACK_TOKEN_REFUSED:
                self._token_refused(channel, error)
            elif error in NO_RESTART:
                self._stop_posting(
                    channel, error, channel_problem(error), BROKEN_RETRY, restart=False
                )
            elif error in PERMANENT:
                fix = "fix the channel"
                if error == "missing_scope":
                    needed = slack_said(exc, "needed") or "chat:write"
                    error, fix = f"missing_scope {needed}", scope_fix(needed)
                self._stop_posting(channel, error, f"Slack said {error}; {fix}", BROKEN_RETRY)
            elif error in ITEM_ERRORS:
                return self._item_failed(item["id"], error)
            elif exc.response.status_code == 429:
                retry_after = _retry_after(exc)
                state.next_attempt = loop.time() + retry_after
                state.last_error = "ratelimited"
                logger.warning("rate limited in %s; waiting %.0f s", channel, retry_after)
            else:
                self._back_off(channel, error)
            return False
        except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._unsure(channel, item["id"], floor)  # no answer: it may exist all the same
            self._back_off(channel, type(exc).__name__)
            return False
        self._posted(channel, item["id"], response["ts"], reason, shown)
        return True

    def _unsure(self, channel: str, item_id: str, floor: str | None) -> None:
        """``item_id``'s post got no clear answer: it is looked for in the channel's history,
        from ``floor`` (the newest ts Slack gave a post here before this one) on."""
        state = self.channel_state(channel)
        state.unsure.add(item_id)
        state.floors[item_id] = floor

    def _floor(self, channel: str) -> str | None:
        """The newest ts Slack gave a post in ``channel`` so far (None: none known): a post
        made from now on has a later one."""
        state = self.channel_state(channel)
        if state.last_ts is None:  # none since the start: the open questions' posts
            state.last_ts = self._recorded_floor(channel, None)
        return state.last_ts

    def _recorded_floor(self, channel: str, before: str | None) -> str | None:
        """The newest ts of the open questions in ``channel`` recorded before ``before`` (the
        database's time of a post attempt; None: any), or None."""
        stamps = [
            post["ts"]
            for post in self.rt.store.open_posts()
            if post["channel"] == channel and (before is None or post["posted_at"] < before)
        ]
        return max(stamps, key=float, default=None)

    def _join_failed(self, channel: str, exc: Exception) -> bool:
        """The bot is not in ``channel`` and joining it failed: said like a post that failed,
        and tried again (joined) once the channel's backoff ends. Returns False."""
        if not isinstance(exc, SlackApiError):
            self._back_off(channel, f"conversations.join: {type(exc).__name__}")
            return False
        error = slack_said(exc) or "unknown_error"
        if error in SLACK_TOKEN_REFUSED:
            self._token_refused(channel, error)
        elif error in NO_RESTART:
            self._stop_posting(channel, error, channel_problem(error), BROKEN_RETRY, restart=False)
        elif error in PERMANENT or error == "method_not_supported_for_channel_type":
            why = f"the bot is not in the channel and cannot join it (Slack said {error})"
            if error == "missing_scope":
                needed = slack_said(exc, "needed") or "channels:join"
                error, why = f"missing_scope {needed}", scope_fix(needed)
            self._stop_posting(channel, error, f"{why}; invite it with /invite @hitl", BROKEN_RETRY)
        elif exc.response.status_code == 429:
            state = self.channel_state(channel)
            retry_after = _retry_after(exc)
            state.next_attempt = asyncio.get_running_loop().time() + retry_after
            state.last_error = "ratelimited"
            logger.warning("rate limited in %s; waiting %.0f s", channel, retry_after)
        else:
            self._back_off(channel, f"conversations.join: {error}")
        return False

    def _settled(self, attempted_at: str) -> bool:
        """Whether ``post_settle`` seconds have passed since a post made at ``attempted_at``.
        One the wall clock puts in the future was made before the clock stepped back (NTP):
        its seconds count from when it was first seen so, by the loop's monotonic clock, not
        from when the wall clock catches up with it (an hour after a step of an hour)."""
        now = datetime.fromisoformat(self.rt.store.now())
        elapsed = (now - datetime.fromisoformat(attempted_at)).total_seconds()
        if elapsed < 0:
            loop_now = asyncio.get_running_loop().time()
            elapsed = loop_now - self.ahead.setdefault(attempted_at, loop_now)
            if elapsed >= self.post_settle:
                del self.ahead[attempted_at]
        return elapsed >= self.post_settle

    def _posted(
        self,
        channel: str,
        item_id: str,
        ts: str,
        reason: str,
        shown: tuple[Any, Any, Any],
        *,
        found: bool = False,  # found in the history after a lost answer: said so already
    ) -> None:
        state = self.channel_state(channel)
        state.last_post = asyncio.get_running_loop().time()
        if state.broken is not None:
            logger.warning("posting to %s again (it had stopped: %s)", channel, state.broken)
        elif state.last_error is not None:  # the failures, or the rate limit, were said
            logger.warning("posting to %s works again (after %s)", channel, state.last_error)
        if (state.broken or state.last_error) and isinstance(self.rt.redrawer, Redrawer):
            self.rt.redrawer.retry_now()  # Slack answers: its waiting redraws need no backoff
        if isinstance(self.rt.redrawer, Redrawer):
            # the bot can write here (it joined again, was invited back): the messages whose
            # redraw waited for the channel are drawn now
            self.rt.redrawer.channel_works(channel)
        state.failures = 0
        state.last_error = None
        state.broken = None
        state.retry_said = None
        if state.last_ts is None or float(ts) > float(state.last_ts):
            state.last_ts = ts
        state.unsure.discard(item_id)
        state.floors.pop(item_id, None)
        self.item_failures.pop(item_id, None)
        if item_id in self.moved:  # its old message says where it is asked now
            self.asked_again[item_id] = channel
        try:
            # a message found in the history was drawn in an earlier round, under a label set
            # not known now (-1: redrawn under the one in force, once)
            drawn_under = -1 if found else self.labels_under
            recorded = self.rt.store.record_post(
                item_id, channel, ts, reason, *shown, drawn_under=drawn_under
            )
        except DatabaseError:
            # Slack shows it and the database does not know: keep it, to record it before
            # anything else is posted (the item, still queued, would otherwise go again).
            self.unrecorded[item_id] = Unrecorded(channel, ts, reason, shown)
            logger.warning(
                "item %s was posted to %s (ts %s) but the database refused to record it;"
                " nothing more is posted until it is recorded",
                item_id,
                channel,
                ts,
            )
            raise
        if not recorded:  # deleted while it was posted: its message is left to delete
            logger.info("item %s was deleted while it was posted; deleting its message", item_id)
            if isinstance(self.rt.redrawer, Redrawer):
                self.rt.redrawer.wake()
            return
        if (
            drawn_under is not None
            and self.rt.store.label_set_change_count() != drawn_under
            and isinstance(self.rt.redrawer, Redrawer)
        ):
            self.rt.redrawer.wake()  # drawn under a label set changed since: due for a redraw
        if not found:  # else "posted after all" said it: a second line read as a second post
            logger.info("posted item %s to %s (%s)", item_id, channel, reason)

    async def _move_reopened(self) -> None:
        """Each round, move the open questions of channels no longer asked in, as the start
        does (``_read_attempts``): a question reopened in such a channel since (an Undo of a
        decision made there, a Skip that ends a split there, a label's route retired while
        its question was open) would otherwise sit where the dispatcher neither fills nor
        counts, nobody asked about its item until HITL_QUESTION_TTL took it back. Its item
        waits in the queue to be asked where it goes now. With none to move, one read of the
        open posts' index (``posts_open_age``: a few rows at any number of posts). Their old
        messages are due for a redraw, which draws them from the database (no buttons, saying
        where the question went), so a redraw of the reopened question already on its way
        is drawn over; asked again, they say where (``_posted``, ``_say_moved``)."""
        channels = self.question_channels()
        if not channels:
            return
        moved = self.rt.store.requeue_posts_outside(
            channels, self.rt.settings.threshold, redraw=True
        )
        if not moved:
            return
        for post in moved:
            # drawn by the redrawer now; by ``_say_moved`` once its item is asked again
            self.moved.setdefault(post["item_id"], []).append({**post, "said": True})
        logger.info(
            "moved %d question(s) reopened in channels no longer asked in (%s) out of them;"
            " they are asked again in %s (an answer on the old message still counts)",
            len(moved),
            ", ".join(sorted({post["channel"] for post in moved})),
            ", ".join(channels),
        )
        if isinstance(self.rt.redrawer, Redrawer):
            await self.rt.redrawer.soon()

    async def _look_in_old_channels(self) -> None:
        """Look for the posts an earlier run left without an answer in channels no longer
        asked in (``_read_attempts``), in those channels' history, as in a question channel
        (``_reconcile``). One found is recorded, then moved as the start moves the open
        questions of such channels (closed, its item back in the queue, its message redrawn
        without buttons to say where it is asked now: ``_say_moved``); one not there once
        ``post_settle`` has passed is posted where it goes now. Until then its item is not
        posted anywhere. A look that failed for a reason a retry may fix is made again with
        backoff (doubling up to MAX_BACKOFF); one Slack refuses for good (channel_not_found,
        missing_scope…) ends the search, said in one line, and the items are asked again."""
        asked_in = self.question_channels()
        loop = asyncio.get_running_loop()
        for channel, state in list(self.channels.items()):
            if channel in asked_in or not state.unsure or loop.time() < state.history_retry_at:
                continue
            if await self._reconcile(channel, join=False):  # the bot stays out of it
                state.failures = 0
                if not state.adopted:
                    continue
                threshold = self.rt.settings.threshold
                moved = self.rt.store.requeue_posts_outside(asked_in, threshold)
                for post in moved:
                    self.moved.setdefault(post["item_id"], []).append(post)
                if moved:
                    logger.info(
                        "moved %d question(s) found in %s, no longer asked in, out of it; they"
                        " are asked again in %s (an answer on the old message still counts)",
                        len(moved),
                        channel,
                        ", ".join(asked_in),
                    )
                continue
            if loop.time() < state.history_retry_at:
                continue  # a 429: looked for again after its Retry-After (``_reconcile``)
            if state.history_refused is None:  # a retry may fix it
                state.failures += 1
                delay = self.retry_base * 2 ** min(state.failures - 1, MAX_DOUBLINGS)
                state.history_retry_at = loop.time() + min(delay, MAX_BACKOFF)
                continue
            items = sorted(state.unsure)
            for item_id in items:
                self.rt.store.end_post_attempt(item_id)
            state.unsure.clear()
            state.floors.clear()
            logger.warning(
                "cannot look in %s, no longer asked in, for %d question(s) whose post got no"
                " answer when the server stopped (%s): conversations.history said %s; they are"
                " asked again in %s, and if Slack had posted one there, its message keeps its"
                " buttons (an answer there still counts)",
                channel,
                len(items),
                ", ".join(items[:5]) + (" …" if len(items) > 5 else ""),
                state.history_refused,
                ", ".join(asked_in),
            )

    async def _reconcile(self, channel: str, *, join: bool = True) -> bool:
        """After posts whose answer was lost (timeout, reset, 5xx), look for those messages in
        the channel (by their metadata) and record the ones Slack did post, so no item is
        posted twice. What is not found once ``post_settle`` seconds have passed since its
        post is posted again as usual; until then it is looked for again.

        The history is read from the newest post Slack had given a ts here before the lost
        ones (``oldest``: they came after it), page after page (at most HISTORY_PAGES), until
        they are all found: one page of the newest 200 missed a lost post that 200 newer
        messages had pushed out of it, and the item was posted twice. A channel the bot is no
        longer in (Slack says ``not_in_channel``) is joined, then read; not with ``join``
        False (a channel no longer asked in: the workspace may have taken the bot out of it),
        where ``not_in_channel`` is a refusal. A refusal no retry changes (channel_not_found,
        missing_scope…) is kept in ``history_refused``. A 429 is one call (``no_rate_waits``):
        the channel looks again after its Retry-After (``history_retry_at``)."""
        state = self.channel_state(channel)
        state.history_refused = None
        try:
            try:
                messages = await self._history(channel)
            except SlackApiError as exc:
                if slack_said(exc) != "not_in_channel" or not join:
                    raise
                logger.warning("not in %s; joining it to look for a lost post", channel)
                await no_rate_waits(self.rt.client).conversations_join(channel=channel)
                messages = await self._history(channel)
        except SlackApiError as exc:
            error = slack_said(exc) or "unknown_error"
            status = exc.response.status_code
            asked = channel in self.question_channels()  # else said by _look_in_old_channels
            if status == 429:  # looked for again after its Retry-After, not the backoff's
                retry_after = _retry_after(exc)
                state.history_retry_at = asyncio.get_running_loop().time() + retry_after
                logger.warning(
                    "rate limited looking for lost posts in %s; looking again in %.0f s",
                    channel,
                    retry_after,
                )
            elif error == "missing_scope" and asked:
                self._lacks_history_scope(channel, slack_said(exc, "needed"))
            elif error in SLACK_TOKEN_REFUSED and asked:  # as for a post: the token
                self._token_refused(channel, error)
            if (
                slack_said(exc) is not None
                and status < 500
                and status != 429
                and error not in {*SLACK_TOKEN_REFUSED, *MAYBE_DONE, "ratelimited"}
            ):
                state.history_refused = error
            return False  # cannot tell yet; try again later
        except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError):
            return False  # cannot tell yet; try again next round
        if state.missing_scope:
            logger.warning("the history of %s can be read now (%s)", channel, state.missing_scope)
            state.missing_scope = None
        state.history_retry_at = 0.0
        state.adopted = set()
        attempts = {a["item_id"]: a for a in self.rt.store.post_attempts()}
        for message in messages:
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            item_id = payload.get("item_id")
            if item_id in state.unsure:
                logger.warning(
                    "item %s was posted after all (ts %s); recording it", item_id, message["ts"]
                )
                attempt = attempts.get(item_id) or {}
                shown = tuple(
                    attempt.get(k) for k in ("model_version", "predicted_label", "confidence")
                )
                reason = attempt.get("reason") or "uncertain"
                self._posted(channel, item_id, message["ts"], reason, shown, found=True)
                state.adopted.add(item_id)
        for item_id in sorted(state.unsure):
            attempt = attempts.get(item_id)
            if attempt is not None and not self._settled(attempt["attempted_at"]):
                continue  # a slow Slack may still store it: look again later
            self.rt.store.end_post_attempt(item_id)
            state.unsure.discard(item_id)
            state.floors.pop(item_id, None)
        if state.unsure:  # look again soon
            state.history_retry_at = asyncio.get_running_loop().time() + min(self.post_settle, 10.0)
        if state.adopted and isinstance(self.rt.redrawer, Redrawer):
            await self.rt.redrawer.soon()  # a message answered before it was found shows so
        return True

    async def _history(self, channel: str) -> list[dict[str, Any]]:
        """The messages of ``channel`` since the newest post made before its lost posts (all
        of them when no post here was known before them), newest first, with their
        metadata: page after page, until every lost post is found or the pages end (at most
        HISTORY_PAGES; beyond them, what was not found counts as not posted: logged)."""
        state = self.channel_state(channel)
        floors = [state.floors.get(item_id) for item_id in state.unsure]
        oldest = None if None in floors else min(floors, key=lambda ts: float(ts or 0))
        bounds = {"oldest": oldest} if oldest else {}
        messages: list[dict[str, Any]] = []
        cursor: str | None = None
        # one call a 429: its Retry-After is waited out on the round's clock (``_reconcile``),
        # not slept out inside the round, twice, every other channel waiting behind it
        client = no_rate_waits(self.rt.client)
        for _ in range(HISTORY_PAGES):
            page = await client.conversations_history(
                channel=channel,
                limit=HISTORY_PAGE,
                include_all_metadata=True,
                **bounds,
                **({"cursor": cursor} if cursor else {}),
            )
            messages += page.get("messages") or []
            found = {
                ((m.get("metadata") or {}).get("event_payload") or {}).get("item_id")
                for m in messages
            }
            if state.unsure <= found:
                return messages
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not page.get("has_more") or not cursor:
                return messages
        logger.warning(
            "looked for %d lost post(s) in the last %d messages of %s without finding them;"
            " older ones are not read, and they count as not posted",
            len(state.unsure - found),
            len(messages),
            channel,
        )
        return messages

    def _lacks_history_scope(self, channel: str, needed: str | None) -> None:
        """The app may not read this channel's history: say which scope is missing, once, and
        look again now and then (an admin may add it and reinstall while the bot runs)."""
        state = self.channel_state(channel)
        needed = needed or "channels:history, groups:history"
        state.history_retry_at = asyncio.get_running_loop().time() + BROKEN_RETRY
        if state.missing_scope == needed:
            return
        state.missing_scope = needed
        logger.error(
            "cannot read the history of %s to find %d question(s) whose post got no answer: %s. "
            "Until then other questions go out there, and those wait rather than risk being "
            "posted twice",
            channel,
            len(state.unsure),
            scope_fix(needed),
        )

    def _item_failed(self, item_id: str, error: str) -> None:
        """Slack refused this item's message (e.g. invalid_blocks): retry it a few times in
        later rounds, then set it aside as skipped so it cannot block the queue."""
        self.item_failures[item_id] = self.item_failures.get(item_id, 0) + 1
        if self.item_failures[item_id] >= MAX_ITEM_FAILURES:
            self.rt.store.set_aside(item_id, f"Slack refused its message: {error}")
            logger.error(
                "gave up posting item %s: Slack said %s %d times", item_id, error, MAX_ITEM_FAILURES
            )
        else:
            logger.warning("Slack refused item %s (%s); will retry it", item_id, error)

    async def _post_message(self, channel: str, question: blocks.Question) -> Any:
        """Post ``question``; refused as too long with "Other…" listing the labels (Slack's
        undocumented cap on a message's blocks), posted again at once with the type-ahead
        "Other…" (``smaller_after``), not left to fail until the item is set aside, as every
        question of its label set would."""
        try:
            return await self._post_or_join(channel, question)
        except SlackApiError as exc:
            smaller = smaller_after(self.rt, question, slack_said(exc))
            if smaller is None:
                raise
        return await self._post_or_join(channel, smaller)

    async def _post_or_join(self, channel: str, question: blocks.Question) -> Any:
        """chat.postMessage (a channel the bot is not in joined once). A 429 is one call: the
        channel waits for its Retry-After (``post``); the client's own retries slept it out,
        twice, inside the round, and every other channel's post waited behind it (Slack
        counts chat.postMessage per channel)."""
        client = no_rate_waits(self.rt.client)
        state = self.channel_state(channel)
        kwargs = {
            "channel": channel,
            "text": blocks.question_text(question),
            "blocks": blocks.question_blocks(question),
            "metadata": {
                "event_type": "hitl_question",
                "event_payload": {"item_id": question.item_id},
            },
        }
        try:
            posted = await client.chat_postMessage(**kwargs)
        except SlackApiError as exc:
            if slack_said(exc) != "not_in_channel" or state.joined:
                raise
        else:
            state.joined = False  # removed again later, it joins again
            return posted
        logger.warning("not in %s; joining it", channel)
        try:
            await client.conversations_join(channel=channel)
        except (SlackApiError, SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            # not marked joined: a join that failed (a Slack blip) is tried again next time
            raise JoinFailed(exc) from exc
        state.joined = True  # joined: a post that still says not_in_channel does not loop
        posted = await client.chat_postMessage(**kwargs)
        state.joined = False
        return posted

    async def archive_event(self, channel: str, by: str | None = None, at: object = None) -> None:
        """Slack's ``channel_archive`` event, sent at ``at`` (its envelope's ``event_time``).
        Slack sends an event again, minutes later, when its first delivery failed (a
        restart): a late one, older than the channel_unarchive seen since, is no news and is
        ignored; any other is checked with one ``conversations.info`` before posting stops
        (``channel_archived``), so a channel that is not archived keeps its questions
        coming. A check that fails leaves the event to say it."""
        if channel not in self.question_channels():
            return
        unarchived = self.unarchived_at.get(channel)
        if _seconds(at) is not None and unarchived is not None and _seconds(at) < unarchived:
            logger.info(
                "ignored a channel_archive event of %s sent before its channel_unarchive"
                " (Slack sent it again, late)",
                channel,
            )
            return
        try:
            info = await self.rt.client.conversations_info(channel=channel)
        except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.debug("conversations.info of %s failed (%s)", channel, type(exc).__name__)
        else:
            shown = info.get("channel")
            if isinstance(shown, dict) and shown.get("is_archived") is False:
                logger.info(
                    "ignored a channel_archive event of %s: Slack says it is not archived"
                    " (unarchived since; the event came late)",
                    channel,
                )
                return
        self.channel_archived(channel, by)

    def channel_archived(self, channel: str, by: str | None = None) -> None:
        """Slack says a question channel was archived (``channel_archive``): stop posting there
        and say so, in the log and `/hitl queue`, rather than wait on its open questions in
        silence (a full channel posts nothing, so no refused post would tell)."""
        if channel not in self.question_channels():
            return
        why = (
            f"the channel was archived{f' by {by}' if by else ''}; unarchive it, or route its "
            "labels to another channel (its open questions wait until then)"
        )
        self._stop_posting(channel, "is_archived", why, BROKEN_RETRY, restart=False)

    def channel_unarchived(self, channel: str, at: object = None) -> None:
        """The channel is back: post there again now, and redraw its messages that waited.
        ``at``: the event's ``event_time`` (an archive event sent before it is ignored)."""
        when = _seconds(at)
        if when is not None:
            self.unarchived_at[channel] = max(self.unarchived_at.get(channel, when), when)
        if isinstance(self.rt.redrawer, Redrawer):
            self.rt.redrawer.channel_works(channel)
        state = self.channels.get(channel)
        if state is None or state.broken != "is_archived":
            return
        state.broken = None
        state.retry_said = None
        state.next_attempt = 0.0
        logger.warning("%s was unarchived; posting there again", channel)
        self.wake()

    def channel_back(self, channel: str) -> None:
        """The redrawer drew a message in ``channel`` after the channel had refused the bot (it
        was invited back, unarchived): a channel stopped for the channel (``NO_RESTART``,
        tried again every BROKEN_RETRY) is posted to again now."""
        state = self.channels.get(channel)
        if state is None or state.broken not in NO_RESTART:
            return
        logger.info("the bot can write to %s again (it had stopped: %s)", channel, state.broken)
        state.next_attempt = 0.0
        self.wake()

    def _token_refused(self, channel: str, error: str) -> None:
        """Slack refused the bot token itself: no post goes out here until it works again,
        tried every ``SLACK_TOKEN_RETRY`` seconds (an admin fixing it expects it to work soon)."""
        why = f"Slack said {error}; fix SLACK_BOT_TOKEN (or reinstall the app)"
        self._stop_posting(channel, error, why, SLACK_TOKEN_RETRY)

    def _stop_posting(
        self, channel: str, error: str, why: str, retry: float, *, restart: bool = True
    ) -> None:
        """Nothing is posted to ``channel`` until ``retry`` seconds have passed (or a post there
        works again); said once, in the log and in `/hitl queue` (``broken``). ``restart``:
        whether a restart tries it sooner (False: the start-up check would refuse to start)."""
        state = self.channel_state(channel)
        if state.broken != error:
            every = "minute" if retry == 60 else f"{retry / 60:g} minutes"
            logger.error(
                "stopped posting to %s: %s (trying again every %s%s)",
                channel,
                why,
                every,
                ", or restart" if restart else "",
            )
        state.broken = error
        state.next_attempt = asyncio.get_running_loop().time() + retry

    def _back_off(self, channel: str, error: str) -> None:
        state = self.channel_state(channel)
        state.failures += 1
        state.last_error = error
        delay = min(self.retry_base * 2 ** min(state.failures - 1, MAX_DOUBLINGS), MAX_BACKOFF)
        state.next_attempt = asyncio.get_running_loop().time() + delay
        logger.warning("posting to %s failed (%s); retrying in %.1f s", channel, error, delay)


def last(
    resting: set[str], mine: list[dict[str, Any]], audits: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A channel's uncertain window (``mine``) and audit sample (``audits``) without the
    items whose question went unanswered lately (``Store.resting``) while there is something
    else to ask: an ignored question does not take its own freed place back while other
    items wait, and a queue of nothing else is still asked.

    Each pool falls back on its own. The window keeps its resting items when it holds
    nothing else, whatever the audit sample holds: that sample (100 drawn at random from
    every unlabeled item, those the model is sure of included) nearly always holds some
    other item of the channel, and an uncertain pick is never drawn from it, so looking
    across pools there left the channel asking nothing (HITL_AUDIT_RATE=0) or only audits
    for a HITL_QUESTION_TTL. The audit sample looks across both pools: it may hold nothing
    of the channel's but the resting item while the window holds others, and an audit pick
    would ask it again at once; it keeps the resting item only when neither pool has
    anything else."""
    mine_others = [it for it in mine if it["id"] not in resting]
    audit_others = [it for it in audits if it["id"] not in resting]
    return (
        mine_others or mine,
        audit_others if audit_others or mine_others else audits,
    )


def scope_fix(scope: str) -> str:
    """What to do about a missing OAuth scope, for the log and `/hitl queue`."""
    return (
        f"the app lacks the {scope} scope: add it under OAuth & Permissions → Bot Token Scopes "
        "(manifest.yml has it) and reinstall the app"
    )


def _seconds(value: object) -> float | None:
    """An event's ``event_time`` (Unix seconds) as a number; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _retry_after(exc: SlackApiError) -> float:
    headers = exc.response.headers or {}
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            with contextlib.suppress(TypeError, ValueError):
                return max(float(raw), 0.0)
    return 1.0
