"""Keeps each question message true to the database.

Every change to an item bumps its post's ``redraw_seq``; ``Redrawer.pending`` draws the message
from the database with ``chat.update`` and records what it drew. A failed update leaves the
post pending, and the background ``Redrawer.run`` tries again with backoff, so the message ends
up right even when Slack fails for a while.

An error that no retry can fix is given up at once, with one log line: a message Slack refuses
(``invalid_blocks``…), a channel the bot is no longer in. The message keeps its last drawing;
the next change to its item tries again. A token Slack no longer accepts is said once and
waited out: the messages stay pending, tried again with backoff (at most every 5 minutes),
and are drawn once the token works again (an admin fixes it, or reinstalls the app).

A change made outside the server (`hitl labels rename|set|remove …` while `hitl serve` runs)
bumps the posts in the database, but no click tells the server: every ``IDLE_TICK`` the
background loop asks SQLite whether another connection committed since its last pass
(``PRAGMA data_version``, no table read) and makes a pass if one did.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError, SlackObjectFormationError

from bot.api.metrics import count_slack_error
from bot.errors import SLACK_TOKEN_REFUSED, SLACK_TOKEN_RETRY
from bot.runtime import Runtime, wait_until_woken
from bot.slack import blocks
from bot.slack.questions import build_question, label_set

logger = logging.getLogger(__name__)

GONE = {"message_not_found", "channel_not_found", "cant_update_message", "is_archived"}
# Permanent: for this message (it cannot be drawn so), for its channel, or for every call.
MESSAGE_REFUSED = {
    "invalid_blocks",
    "invalid_blocks_format",
    "msg_too_long",
    "msg_blocks_too_long",
    "no_text",
    "edit_window_closed",
}
CHANNEL_REFUSED = {"not_in_channel"}
TOKEN_REFUSED = {
    *SLACK_TOKEN_REFUSED,
    "missing_scope",
    "not_allowed_token_type",
    "team_access_not_granted",
}
MAX_BACKOFF = 300.0
GIVE_UP_AFTER = 3  # "message gone" answers in a row before a message is left as it is
IDLE_TICK = 5.0  # seconds between looks for changes another connection committed


class Redrawer:
    """Owns the redraw state: one pass at a time, a click during a pass asks for one more, the
    count of "message gone" answers per post, and the event that wakes the background loop.
    Held as ``rt.redrawer``."""

    def __init__(self, rt: Runtime, *, retry_base: float = 1.0) -> None:
        self.rt = rt
        self.retry_base = retry_base  # seconds; the backoff after a failed pass doubles from here
        self.lock = asyncio.Lock()
        self.drawn = asyncio.Condition()  # notified after each pass
        self.again = False  # a change arrived during the pass in progress
        self.gone: dict[int, int] = {}  # post id -> "message gone" answers in a row
        self.woken = asyncio.Event()
        self.idle_tick = IDLE_TICK
        self.seen_version: int | None = None  # the database's data_version at the last pass
        self.token_refused: str | None = None  # what Slack said of the bot token, until it works

    @classmethod
    def of(cls, rt: Runtime) -> Redrawer:
        """The redrawer ``rt`` holds."""
        if not isinstance(rt.redrawer, cls):
            raise RuntimeError("the runtime was built without a redrawer")
        return rt.redrawer

    def wake(self) -> None:
        """Ask the background loop (``run``) for a pass now."""
        self.woken.set()

    async def soon(self) -> None:
        """Bring the messages up to date after a change, coalescing with a pass in progress.

        While a pass is running, a click only asks it to go round once more: under a burst of
        clicks each busy message is redrawn once per pass with its latest state, not once per
        click (``chat.update`` is a Tier 3 method, and every redraw costs the event loop).
        """
        if self.lock.locked():
            self.again = True
            return
        if await self.pending():
            self.wake()  # the background loop retries with backoff

    async def pending(self) -> int:
        """Redraw every post whose message is behind the database; return how many failed.

        Passes repeat while changes arrive during one (``soon``), and stop after a failed
        pass: retrying is the background loop's job, with backoff."""
        async with self.lock:
            while True:
                self.again = False
                failed = await self._pass()
                if failed or not self.again:
                    break
        async with self.drawn:
            self.drawn.notify_all()
        return failed

    async def all_drawn(self) -> None:
        """Wait until every message matches the database (checked after each pass)."""
        store = self.rt.store
        async with self.drawn:
            await self.drawn.wait_for(lambda: not store.posts_to_redraw())

    async def run(self) -> None:
        """Background task: redraw when woken, retry failures with exponential backoff, and
        every ``idle_tick`` look for changes another connection (the CLI) committed."""
        delay = self.retry_base
        failed = 0
        while True:
            self.woken.clear()
            if failed or self.seen_version != self.rt.store.data_version():
                failed = await self.pending()
            timeout = delay if failed else self.idle_tick
            # a refused token is tried as often as the dispatcher tries it (every minute)
            cap = SLACK_TOKEN_RETRY if self.token_refused else MAX_BACKOFF
            delay = min(delay * 2, cap) if failed else self.retry_base
            await wait_until_woken(self.woken, timeout)
            if self.woken.is_set():
                self.seen_version = None  # woken: a pass whatever the version says

    async def _pass(self) -> int:
        rt, gone = self.rt, self.gone
        failed = 0
        self.seen_version = rt.store.data_version()
        posts = rt.store.posts_to_redraw()
        labels = label_set(rt.settings, rt.store) if posts else []
        refused_channels: dict[str, tuple[str, int]] = {}  # channel -> (error, messages given up)
        for n, post in enumerate(posts):
            if post["channel"] in refused_channels:
                error, count = refused_channels[post["channel"]]
                refused_channels[post["channel"]] = (error, count + 1)
                rt.store.mark_drawn(post["id"], post["redraw_seq"])
                continue
            question = build_question(rt.store, rt.settings, post["item_id"], labels)
            if question is None:
                rt.store.mark_drawn(post["id"], post["redraw_seq"])
                continue
            try:
                await rt.client.chat_update(
                    channel=post["channel"],
                    ts=post["ts"],
                    text=blocks.question_text(question),
                    blocks=blocks.question_blocks(question),
                )
            except SlackObjectFormationError as exc:  # built here: Slack was never asked
                self._give_up(post, f"its blocks could not be built ({exc})")
                continue
            except SlackApiError as exc:
                error = exc.response.get("error") or "unknown_error"
                count_slack_error("chat.update", error)
                if error in TOKEN_REFUSED:
                    if self.token_refused != error:
                        self.token_refused = error
                        logger.error(
                            "cannot redraw %d message(s): Slack said %s for the bot token; fix "
                            "SLACK_BOT_TOKEN or the app's scopes (reinstall the app). They are "
                            "drawn once the token works again",
                            len(posts) - n,
                            error,
                        )
                    return failed + len(posts) - n  # every call would say the same: wait
                if error in CHANNEL_REFUSED:
                    rt.store.mark_drawn(post["id"], post["redraw_seq"])
                    refused_channels[post["channel"]] = (error, 1)
                    continue
                if error in MESSAGE_REFUSED:
                    self._give_up(post, f"Slack said {error}")
                    continue
                gone_count = gone.get(post["id"], 0) + 1 if error in GONE else 0
                if gone_count >= GIVE_UP_AFTER:
                    logger.warning(
                        "message for item %s in %s is gone (%s); not redrawing it",
                        post["item_id"],
                        post["channel"],
                        error,
                    )
                    rt.store.mark_drawn(post["id"], post["redraw_seq"])
                    gone.pop(post["id"], None)
                else:
                    if gone_count:
                        gone[post["id"]] = gone_count  # Slack may say so only for a while
                    logger.warning("chat.update for item %s failed: %s", post["item_id"], error)
                    failed += 1
                continue
            except (TimeoutError, SlackClientError, OSError, aiohttp.ClientError) as exc:
                logger.warning("chat.update for item %s failed: %s", post["item_id"], exc)
                count_slack_error("chat.update", type(exc).__name__)
                failed += 1
                continue
            gone.pop(post["id"], None)
            rt.store.mark_drawn(post["id"], post["redraw_seq"])
            if self.token_refused:
                logger.warning("Slack accepts the bot token again; redrawing the messages")
                self.token_refused = None
        for channel, (error, count) in refused_channels.items():
            logger.error(
                "gave up redrawing %d message(s) in %s: Slack said %s (invite the bot back with "
                "/invite @hitl); they keep their last drawing until their items change again",
                count,
                channel,
                error,
            )
        return failed

    def _give_up(self, post: dict, why: str) -> None:
        """This message cannot be drawn so: leave it as it is, and say so once."""
        self.gone.pop(post["id"], None)
        self.rt.store.mark_drawn(post["id"], post["redraw_seq"])
        logger.error(
            "gave up redrawing the message of item %s in %s: %s; it keeps its last drawing until "
            "the item changes again",
            post["item_id"],
            post["channel"],
            why,
        )
