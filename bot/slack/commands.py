"""`/hitl` subcommands and the App Home: each answers ephemerally, well within 3 seconds.

A subcommand whose answer is read from data that grows (`/hitl stats`, `accuracy`,
`leaderboard`) reads it in a worker thread and answers with it if it is ready within
``ACK_WITHIN``; otherwise it acknowledges with ``WORKING`` and the answer follows by the
command's ``response_url`` (``answer_when_read``), as `/hitl retrain` and `rollback` do.

``TABLE`` (at the end) lists every subcommand once: its name, usage and help line, its handler
and whether only admins may run it. The help text, the admin check, dispatch and
``SUBCOMMANDS`` are derived from it, so in code a new subcommand is a handler here and one row
in ``TABLE``; tests then ask for it in manifest.yml's usage hint and in the README.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from slack_bolt.async_app import AsyncAck
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.models.blocks import Block, MarkdownTextObject, SectionBlock
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.config import Settings
from bot.errors import StoreError, slack_said, without_folders
from bot.learning import quality, reports
from bot.learning.jobs import run_rollback, start_retrain
from bot.learning.retrain import BusyError
from bot.learning.rollback import begin_rollback
from bot.learning.scoring import scorer_of
from bot.learning.stopping import stop_status
from bot.learning.typical import typical_until
from bot.runtime import (
    Runtime,
    answer_lost,
    no_rate_waits,
    response_url_retries,
    retry_after,
    wait_until_woken,
)
from bot.slack import blocks
from bot.slack.dispatch import Dispatcher, scope_fix
from bot.slack.labels import FORMS as LABEL_CHANGES
from bot.slack.labels import label_words, labels_reply
from bot.slack.modal import NOT_ANSWERED, not_answered, not_opened, open_labeling_modal
from bot.slack.redraw import CHANNEL_REFUSED, Redrawer, channel_problem
from bot.slack.review import open_review
from bot.store import DatabaseError, Store, database_problem
from bot.words import code_text, count, person
from model import ModelError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One `/hitl` command as a handler gets it: the words after the subcommand's name, and
    what it needs to answer (``ack`` within 3 seconds; ``client`` for anything more)."""

    rt: Runtime
    ack: AsyncAck
    client: AsyncWebClient
    command: dict
    args: list[str]
    rest: str = ""  # the text after the subcommand's name, whole (unescaped, stripped)

    @property
    def user_id(self) -> str:
        return self.command.get("user_id", "")


Handler = Callable[[Call], Awaitable[None]]


@dataclass(frozen=True)
class Subcommand:
    """A row of ``TABLE``. Its help line is `/hitl name` `args` — summary (admins; options)."""

    name: str
    summary: str
    handler: Handler
    admins_only: bool = False
    args: str = ""  # shown after the name, e.g. "VERSION"
    options: str = ""  # shown in brackets after the summary

    @property
    def help_line(self) -> str:
        usage = f"`/hitl {self.name}`" + (f" `{self.args}`" if self.args else "")
        notes = "; ".join(n for n in ("admins" if self.admins_only else "", self.options) if n)
        return f"• {usage} — {self.summary}" + (f" ({notes})" if notes else "")


def picking_text(rt: Runtime, until: int) -> str:
    """How the next questions are chosen, so a team knows why they look random (or not);
    ``until``: HITL_TYPICAL_UNTIL in labels (``typical_until``: with ``auto`` it reads the
    label set, so `/hitl queue` reads it with its counts, off the loop)."""
    model, settings = rt.model, rt.settings
    if model is None:
        return "*Picking:* at random: there is no model yet (`/hitl retrain` makes the first)"
    if model.n_train < settings.warm_up:
        return (
            f"*Picking:* at random while the model is young: it has {model.n_train:,} of the"
            f" {settings.warm_up:,} labels it needs before its doubts pick the questions"
            " (HITL_WARM_UP)"
        )
    audits = f", {settings.audit_rate:.0%} random audits" if settings.audit_rate else ""
    if model.n_train < until:
        return (
            "*Picking:* the typical items of the groups no label covers yet (TypiClust) while"
            f" the model is young: it has {model.n_train:,} of the {until:,}"
            f" labels it needs before its doubts pick the questions (HITL_TYPICAL_UNTIL){audits}"
        )
    return f"*Picking:* the model's closest calls first ({settings.strategy}){audits}"


@dataclass(frozen=True)
class QueueCounts:
    """What `/hitl queue` reads from the database: the items waiting, the questions open by
    channel, those taken back unanswered in the last 7 days by channel, and the labels a
    model needs before its closest calls pick the questions (``typical_until``)."""

    waiting: int
    open: dict[str, int]
    expired: dict[str, int]
    typical_until: int


def queue_counts(store: Store, settings: Settings) -> QueueCounts:
    expired = store.expired_counts(days=7) if settings.question_ttl > 0 else {}
    until = typical_until(settings, store)
    return QueueCounts(store.waiting_count(), store.open_post_counts(), expired, until)


async def queue(call: Call) -> None:
    """The counts grow with the questions taken back (each one's answers are read): read in a
    worker thread, on a connection of its own (``answer_when_read``); the channels' states
    are the dispatcher's, in memory."""
    rt = call.rt

    def read() -> QueueCounts:
        with rt.store.apart() as store:
            return queue_counts(store, rt.settings)

    await answer_when_read(
        call, asyncio.to_thread(read), lambda counts: Answer(queue_text(rt, counts))
    )


def queue_text(rt: Runtime, counts: QueueCounts | None = None) -> str:
    read = counts if counts is not None else queue_counts(rt.store, rt.settings)
    waiting, open_counts, expired = read.waiting, read.open, read.expired
    dispatcher = Dispatcher.of(rt)
    lines = [f"*Waiting:* {blocks.count(waiting, 'item')}", picking_text(rt, read.typical_until)]
    for channel in dispatcher.question_channels():
        state = dispatcher.channel_state(channel)
        line = f"<#{channel}>: {open_counts.get(channel, 0):,} of {rt.settings.max_open:,} open"
        if expired.get(channel):  # nobody answered them for HITL_QUESTION_TTL hours
            line += f" · {expired[channel]:,} taken back unanswered in the last 7 days"
        if state.broken:
            line += f" · ⛔ not posting: {state.broken}"
            if state.broken in CHANNEL_REFUSED:  # and what to do, as the start-up check says
                line += ": " + channel_problem(state.broken).replace(f" ({state.broken})", "")
        elif state.last_error:
            line += f" · ⚠️ last error: {state.last_error} (retrying)"
        if state.missing_scope:
            line += f" · ⛔ cannot find lost posts: {scope_fix(state.missing_scope)}"
        lines.append(line)
    return "\n".join(lines)


def leaderboard_text(store: Store, week: str) -> str:
    """Who labeled most, this week and all time (skips shown beside, not ranked: skipping does
    not climb the board; all time from the counts kept per person)."""
    week_board = [(u, n, s) for u, n, s in store.labels_by_user(week) if n][:10]
    all_board = [(u, n, s) for u, n, s in store.labels_by_user() if n][:10]
    if not all_board:
        return "No labels yet. `/hitl label` to be the first on the board!"

    def board(rows: list[tuple[str, int, int]]) -> str:
        return "\n".join(
            f"{['🥇', '🥈', '🥉'][i] if i < 3 else f'{i + 1}.'} {person(user)}"
            f" — {count(n, 'label')}" + (f" ({count(s, 'skip')})" if s else "")
            for i, (user, n, s) in enumerate(rows)
        )

    return (
        f"*This week* (labels)\n{board(week_board) or 'nobody has labeled an item yet'}\n\n"
        f"*All time* (labels)\n{board(all_board)}"
    )


async def leaderboard(call: Call) -> None:
    """The week's labels are read from every answer of the week (its index has no label):
    in a worker thread, on a connection of its own (``Store.apart``)."""
    rt = call.rt
    _, week = reports.period_starts(rt.settings, rt.clock())
    served = rt.store

    def read() -> str:
        with served.apart() as store:
            return leaderboard_text(store, week)

    await answer_when_read(call, asyncio.to_thread(read), lambda text: Answer(text))


def model_line(rt: Runtime) -> str:
    """Which model asks the questions and answers the producer API, and the champion."""
    champion, working = rt.champion, rt.working
    if working is not None:
        # one count, the one its name bears: the labels it read (``RefreshPlan.version``); of
        # those, the audit answers given since the champion was trained are held out of its
        # fit to gate it (``Refreshed.n_train`` is the rest). Not "today's": the champion may
        # be many rejected retrains old.
        read = working.n_read or -working.version  # its name's count, unless that was taken
        held = read - working.n_train
        gate = (
            f", {held:,} of them {'an audit answer' if held == 1 else 'audit answers'} held out"
            f" to check it against v{champion.version}"
            if champion and held > 0
            else ""
        )
        what = (
            f"champion v{champion.version}, trained on {champion.n_train:,} labels, refreshed"
            f" with the labels given since it was trained: {read:,} labels in all{gate}"
            if champion
            else f"no champion yet; the first model, on {read:,} labels"
        )
        name = f"r{-working.version}"
        return f"{name} asks and answers ({what}; the working model until the next retrain)"
    if champion is None:
        return "no model yet: answers train the first one"
    return f"v{champion.version}, trained on {champion.n_train:,} labels; it asks and answers"


async def home(rt: Runtime, user_id: str, note: str = "") -> View:
    """``user_id``'s App Home; with ``note`` on top (what they must know of their last click
    there: App Home has no channel for an ephemeral message, nor a response_url).

    Its numbers are read in a worker thread on a connection of their own (``Store.apart``): the
    week's answers by person grow with the week's answers, and the person's gold answers are
    found among every counted answer. Raises ``StoreError`` once the database file is lost."""
    _, week = reports.period_starts(rt.settings, rt.clock())
    served, line = rt.store, model_line(rt)

    def read() -> blocks.HomeStats:
        with served.apart() as store:
            own = quality.own_gold(store, user_id, rt.settings.labels)
            stop = stop_status(store)
            return blocks.HomeStats(
                user_id=user_id,
                your_all=store.labels_since(None, user_id),
                your_week=store.labels_since(week, user_id),
                leaderboard=[(u, n, s) for u, n, s in store.labels_by_user(week) if n][:10],
                model_line=line + ("\n" + "\n".join(stop.lines()) if stop else ""),
                queue_waiting=store.waiting_count(),
                # as `/hitl stats` counts them: every question in Slack that takes answers,
                # a split waiting in /hitl review too (it holds no HITL_MAX_OPEN place, so
                # `/hitl queue` and hitl_posts_open leave it out, but its buttons take votes)
                queue_open=store.count_items()["posted"],
                gold_line=quality.gold_line(own) if own is not None else None,
            )

    view = blocks.home_view(await asyncio.to_thread(read))
    if note:
        view.blocks = [SectionBlock(text=MarkdownTextObject(text=blocks.fit(note))), *view.blocks]
    return view


async def publish_home(rt: Runtime, client: AsyncWebClient, user_id: str, note: str = "") -> None:
    """Show ``user_id`` their App Home (``home``), through the runtime's ``HomePublisher``:
    at once, or once a rate limit's Retry-After is over."""
    await HomePublisher.of(rt).publish(client, user_id, note)


class HomePublisher:
    """App Home's views.publish calls, held together through a rate limit.

    Slack counts views.publish per workspace: at a 9 a.m. burst (everyone opening Home) a 429
    would meet each caller. Its calls wait no Retry-After inside the call (``no_rate_waits``):
    a 429 holds every publish until ``due`` on ``clock`` (seconds), and each person's latest
    (their note with it) waits in ``waiting``; the task ``run`` publishes them, once each, when
    the hold is over (a Home is read from the database when it is sent: the counts of then).
    Each event's listener returns at once meanwhile (its ack was sent before). Held as
    ``rt.homes``; the server stops its task (``stop``) when it stops."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.clock: Callable[[], float] = time.monotonic
        self.due: float | None = None  # the clock before which no views.publish is made
        self.waiting: dict[str, str] = {}  # user id -> the note of their latest publish held
        self.woken = asyncio.Event()
        self.task: asyncio.Task | None = None

    @classmethod
    def of(cls, rt: Runtime) -> HomePublisher:
        """The publisher ``rt`` holds (made on first use)."""
        if not isinstance(rt.homes, cls):
            rt.homes = cls(rt)
        return rt.homes

    def is_held(self) -> bool:
        return self.due is not None and self.due > self.clock()

    def wake(self) -> None:
        """Have ``run`` look at the clock again (a test moves it)."""
        self.woken.set()

    async def publish(self, client: AsyncWebClient, user_id: str, note: str = "") -> None:
        """Publish ``user_id``'s Home now, or, while a 429 holds, with the others after it."""
        if self.is_held():
            self.waiting[user_id] = note  # their latest: the one before is not published
            return
        self.waiting.pop(user_id, None)  # this one is newer than the one held
        await self._send(client, user_id, note)

    async def _send(self, client: AsyncWebClient, user_id: str, note: str) -> None:
        """Once the database file is lost there is nothing true to show: one line in the log,
        and the Home they saw last stays. views.publish is the same Home each time: a 5xx or a
        dropped connection is tried again (``make_client``); a timeout is not, and its lost
        answer is one line: the Home may be the one before, and it is published again when
        they open it. A 429 holds it, and every publish, until its Retry-After."""
        try:
            view = await home(self.rt, user_id, note)
        except StoreError as exc:
            logger.error("App Home of %s not shown: %s", user_id, exc)
            return
        try:
            await no_rate_waits(client).views_publish(user_id=user_id, view=view)
        except SlackApiError as exc:
            if getattr(exc.response, "status_code", 200) != 429:
                raise  # Slack's refusal: said by the caller (``track_listener``, ``run``)
            self.waiting.setdefault(user_id, note)  # a newer one held meanwhile is the latest
            self._hold(retry_after(exc.response) or 1.0)  # type: ignore[arg-type]
        except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            lost = answer_lost(exc)
            if lost is None:  # not reached: said as such (``track_listener``)
                raise
            logger.warning(
                "App Home of %s may not have been published: %s; it is published again the"
                " next time they open it",
                user_id,
                lost,
            )

    def _hold(self, wait: float) -> None:
        held = self.is_held()
        self.due = max(self.due if held and self.due is not None else 0.0, self.clock() + wait)
        if not held:
            logger.warning(
                "Slack rate-limited views.publish: App Homes are published in %.0f s, once"
                " each, the latest",
                wait,
            )
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.run(), name="hitl-homes")

    async def run(self) -> None:
        """Publish the Homes held, one after another, once the hold is over; a new 429 holds
        the rest again. Ends when none waits."""
        while self.waiting:
            self.woken.clear()
            if self.due is not None and self.is_held():
                await wait_until_woken(self.woken, self.due - self.clock())
                continue
            user_id = next(iter(self.waiting))
            note = self.waiting.pop(user_id)
            try:
                await self._send(self.rt.client, user_id, note)
            except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                said = slack_said(exc) if isinstance(exc, SlackApiError) else None
                logger.warning(
                    "App Home of %s not published: %s; it is published again the next time"
                    " they open it",
                    user_id,
                    f"Slack said {said}" if said else (str(exc) or type(exc).__name__),
                )
            except Exception:  # noqa: BLE001 - the others held must still be published
                logger.exception("App Home of %s not published", user_id)
        if self.due is not None and not self.is_held():
            logger.warning("views.publish goes on: the App Homes held were sent")
            self.due = None

    def stop(self) -> asyncio.Task | None:
        """The server stops: the task to cancel, if running; the Homes still held are said in
        one line (each is published again when its person opens Home)."""
        if self.waiting:
            logger.warning(
                "%s not published at shutdown (Slack rate-limited views.publish); each is"
                " published again the next time its person opens it",
                count(len(self.waiting), "App Home"),
            )
        self.waiting.clear()
        task, self.task = self.task, None
        return task


VERSIONS_IN_SLACK = "`/hitl accuracy` lists the recent versions under *Trend*"
ROLLBACK_USAGE = (
    f"Usage: `/hitl rollback VERSION [--force]`, e.g. `/hitl rollback 3`; {VERSIONS_IN_SLACK}."
)


def retrain_usage(word: str) -> str:
    """The one line a `/hitl retrain` with a word it does not take gets: which word, and the
    usage, as `/hitl rollback` answers one (``ROLLBACK_USAGE``)."""
    return (
        f"`/hitl retrain` takes no `{code_text(word)}`: nothing was started. Usage:"
        " `/hitl retrain`, or `/hitl retrain --force` to train even with nothing new and promote"
        " the model even if not better."
    )


def in_slack(reason: str) -> str:
    """A model registry's reason as Slack says it: Slack has no `hitl models` (and an admin in
    Slack often has no shell on the bot's machine); `/hitl accuracy` shows the versions."""
    return reason.replace("(see `hitl models`)", f"({VERSIONS_IN_SLACK})")


SORRY = "Something went wrong on our side; it has been logged."


async def rollback(call: Call) -> None:
    """Check and take the lock at once, ack, then load the model file off the event loop
    (hundreds of MB: tens of seconds) and report by ``response_url``."""
    rt, ack, user_id, args = call.rt, call.ack, call.user_id, call.args
    response_url = call.command.get("response_url")
    words = [a for a in args if a.lower() not in ("--force", "force")]
    force = len(words) != len(args)
    digits = words[0].lstrip("v") if len(words) == 1 else ""
    if not (digits.isascii() and digits.isdigit()):  # "²" and "٣" are digits int() refuses
        await ack(text=ROLLBACK_USAGE)
        return
    version = int(digits)
    assert rt.registry is not None
    try:
        plan = begin_rollback(
            rt.store, rt.registry, version, triggered_by=f"<@{user_id}>", force=force
        )
    except (ModelError, BusyError) as exc:
        await ack(text=f"Cannot roll back: {in_slack(str(exc))}")
        return
    plan.again = "`/hitl rollback`"  # what a models folder it cannot write says to run again
    warning = f"⚠️ {plan.warning}. Rolling back to it anyway (--force)… " if plan.warning else ""
    start = warning or f"Rolling back to v{version}… "
    await ack(text=f"{start}I'll tell you here when it is done.")
    try:
        done = await run_rollback(rt, plan)
    except ModelError as exc:
        logger.warning("rollback to v%d by %s failed: %r", version, user_id, exc.__cause__ or exc)
        await tell(response_url, f"Cannot roll back: {in_slack(str(exc))}")
        return
    except Exception:
        logger.exception("rollback to v%d by %s failed", version, user_id)
        await tell(response_url, SORRY)
        return
    text = f"Model v{version} is the champion again (rolled back by <@{user_id}>)."
    if plan.warning:
        what = "the gate had rejected it" if plan.was == "rejected" else "it was never promoted"
        text += f" ⚠️ Forced: {what} ({done.meta.scores()})."
    await tell(response_url, text)


RESPONSE_URL_TIMEOUT = 10.0
"""Seconds a reply by ``response_url`` (``tell``) waits for Slack's answer."""


async def tell(
    response_url: str | None,
    text: str,
    layout: Sequence[Block] | None = None,
    *,
    replace_original: bool | None = None,
    response_type: str | None = "ephemeral",
) -> bool:
    """An ephemeral reply to the person who ran the command, after its ack (``layout``: the
    same as blocks, ``text`` then being the notification's), or who clicked (a click's
    ``response_url``; ``replace_original`` False: under the message, not instead of it; True,
    with ``response_type`` None, the message itself redrawn as it was, as an Undo's). Sent
    once: not again after a connection dropped once it was sent (``response_url_retries``).
    Whether Slack said it took it (False too when its answer was lost: it may be shown)."""
    if not response_url:
        logger.warning("no response_url to report to: %s", text)
        return False
    try:
        client = AsyncWebhookClient(
            response_url, timeout=RESPONSE_URL_TIMEOUT, retry_handlers=response_url_retries()
        )
        sent = await client.send(
            text=text, blocks=layout, response_type=response_type, replace_original=replace_original
        )
    except (SlackApiError, SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        lost = answer_lost(exc)
        if lost is None:  # no connection made: nothing reached Slack
            logger.warning("could not answer by response_url: %s", type(exc).__name__)
            return False
    else:
        if sent.status_code == 200:
            return True
        lost = f"Slack answered HTTP {sent.status_code}" if sent.status_code >= 500 else None
        if lost is None:  # 404: expired (30 minutes) or used up (5 answers)
            logger.warning("could not answer by response_url: Slack said %s", sent.status_code)
            return False
    # it reached Slack and its answer was lost: it may be shown, and sent again it shows twice
    logger.warning("the answer by response_url may have been shown: %s; not sent again", lost)
    return False


ACK_WITHIN = 1.5
"""Seconds a subcommand waits for an answer read in a worker thread before it acknowledges
with ``WORKING`` and sends the answer by ``response_url`` when it is read. Slack shows the
person an error when a command is not acknowledged within 3 s of its request, network
included; these reads grow with the data (`/hitl stats`' agreement took 9 s over 38,000 items
with two or more answers, `/hitl accuracy` 2.7 s at 200,000 posts)."""

WORKING = "Working on it… the answer will be here in a moment."


@dataclass(frozen=True)
class Answer:
    """What a subcommand answers: ``text`` (the notification's, when there are ``blocks``)."""

    text: str
    blocks: Sequence[Block] | None = None


async def answer_when_read(
    call: Call, reading: Awaitable[T], answer: Callable[[T], Answer]
) -> tuple[T, bool] | None:
    """Answer ``call`` with ``answer(result)`` of ``reading`` (a read in a worker thread): in the
    ack when it is read within ``ACK_WITHIN``, else by the command's ``response_url`` after an
    ack that says it is coming (``WORKING``). A failure before the ack goes to the caller as
    before (``handle`` says a lost database in a line); after it, the person is told by the
    ``response_url`` in one line, and the log has it. Returns (the result, whether it was
    answered by the ack), or None when the read failed after the ack."""
    task = asyncio.ensure_future(reading)
    done, _ = await asyncio.wait({task}, timeout=ACK_WITHIN)
    if done:
        result = task.result()  # a failure: raised before the ack, as before
        said = answer(result)
        await call.ack(text=said.text, blocks=said.blocks)
        return result, True
    name = (call.command.get("text") or "").split(maxsplit=1)[0].lower()
    response_url = call.command.get("response_url")
    await call.ack(text=WORKING)
    started = time.monotonic()
    try:
        result = await task
    except (StoreError, DatabaseError) as exc:  # its file lost (``Store.apart``), a full disk
        problem = exc if isinstance(exc, StoreError) else database_problem(call.rt.settings.db, exc)
        logger.error("/hitl %s: %s", name, problem)
        said = str(problem)
        if not call.rt.is_admin(call.user_id):  # the server's folders for admins only
            said = without_folders(said, call.rt.settings.db)
        await tell(response_url, f"Not now: {said}")
        return None
    except Exception:
        logger.exception("/hitl %s by %s failed after its ack", name, call.user_id)
        await tell(response_url, SORRY)
        return None
    said = answer(result)
    logger.info(
        "/hitl %s read in %.1f s (its ack waits %.1f s): answered by its response_url",
        name,
        ACK_WITHIN + time.monotonic() - started,
        ACK_WITHIN,
    )
    await tell(response_url, said.text, said.blocks)
    return result, False


async def attach_chart(
    client: AsyncWebClient, report: reports.AccuracyReport, user_id: str
) -> None:
    """Send the accuracy chart to the person who asked, in their direct messages with the bot
    (the text is their private reply; a file shared in the channel would be public). Slack
    has no private file in a channel, and an image block needs a public URL, which an app
    behind Socket Mode lacks. Needs files:write and im:write; without them the text is all."""
    if not user_id:
        return
    try:
        granted = await client.auth_test()
        scopes = (
            granted.headers.get("x-oauth-scopes") or granted.headers.get("X-OAuth-Scopes") or ""
        ).split(",")
        if "files:write" not in scopes:
            return
        if "im:write" not in scopes:
            logger.warning("no accuracy chart sent: %s", scope_fix("im:write"))
            return
        opened = await client.conversations_open(users=user_id)
        png = await asyncio.to_thread(reports.chart_png, report)
        await client.files_upload_v2(
            channel=opened["channel"]["id"],
            content=png,
            filename=f"hitl-accuracy-v{report.version}.png",
            title=f"Model v{report.version}: accuracy by version and by labels",
            initial_comment=f"Your `/hitl accuracy` chart (model v{report.version})",
        )
    except (SlackApiError, SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        # files.completeUploadExternal shares the file: not tried again (NOT_IDEMPOTENT)
        lost = answer_lost(exc)
        method = str(getattr(getattr(exc, "response", None), "api_url", "") or "")
        if lost is not None and (method == "" or method.endswith("completeUploadExternal")):
            logger.warning("the accuracy chart for %s may have been sent: %s", user_id, lost)
        elif isinstance(exc, SlackApiError):
            logger.warning("could not send the accuracy chart: %s", exc)
        else:
            logger.warning("could not send the accuracy chart: %s", type(exc).__name__)


def answer_with(text_of: Callable[[Runtime], str]) -> Handler:
    """A handler whose whole answer is ``text_of(rt)``."""

    async def handler(call: Call) -> None:
        await call.ack(text=text_of(call.rt))

    return handler


async def label(call: Call) -> None:
    """The modal serves the items of the channel it was run in."""
    await call.ack()
    trigger, channel = call.command["trigger_id"], call.command.get("channel_id")
    try:
        await open_labeling_modal(call.rt, call.client, trigger, call.user_id, channel)
    except SlackApiError as exc:
        await window_refused(call, exc, "labeling", "label")
    except NOT_ANSWERED as exc:
        await window_unanswered(call, exc, "labeling", "label")


def loading_note(rt: Runtime, report: reports.AccuracyReport | None) -> str:
    """What `/hitl accuracy` adds when its report is of a champion this server does not serve
    yet: one made by `hitl retrain` or `hitl rollback` from the CLI, which the champion watch
    loads within a second or so (``/healthz`` names it once loaded). Else the one reply named
    two champions: "*Model v2*" above, "champion v1" on the line of the model serving."""
    if report is None or report.damaged is not None:  # a fallback: the server's too
        return ""
    served = rt.champion.version if rt.champion else None
    if report.version == served:
        return ""
    return (
        f"; v{report.version} became the champion outside this server (`hitl retrain` or"
        " `hitl rollback`) and asks and answers once this server has loaded it (within"
        " seconds)"
    )


async def accuracy(call: Call) -> None:
    """The report reads the answers to every question its model asked (``live_accuracy``) and
    every version's metadata: in a worker thread (``answer_when_read``)."""
    rt = call.rt

    async def no_model() -> None:
        return None

    reading = (
        reports.accuracy_report_off_loop(rt.store, rt.registry, rt.clock())
        if rt.registry
        else no_model()
    )

    def answer(report: reports.AccuracyReport | None) -> Answer:
        # the model's line as it is when the answer is given (a refresh may come meanwhile)
        line = model_line(rt) + loading_note(rt, report)
        return Answer(reports.accuracy_text(report) + f"\n*Asking and answering now:* {line}")

    answered = await answer_when_read(call, reading, answer)
    report = answered[0] if answered else None
    if report is not None and len(report.trend) > 0:
        await attach_chart(call.client, report, call.user_id)


def unknown_item(shown: str) -> str:
    """`/hitl review ID` for an id no item has. The id is the one the item came with (Slack's
    questions do not show it); `hitl export` would list only the labeled ones."""
    return (
        f"No item with id `{shown}`. `/hitl review ID` takes the id an item was imported with"
        " (`hitl import`'s id column) or sent to the API with; `/hitl review` alone opens the"
        " items waiting in review."
    )


async def review(call: Call) -> None:
    """An id is the whole rest of the text: ids may hold spaces (`hitl import`, the API)."""
    item_id = call.rest or None
    if item_id is not None and call.rt.store.get_item(item_id) is None:
        shown = code_text(item_id[:80])
        await call.ack(text=unknown_item(shown))
        return
    await call.ack()
    try:
        await open_review(call.rt, call.client, call.command["trigger_id"], item_id)
    except SlackApiError as exc:
        await window_refused(call, exc, "review", "review")
    except NOT_ANSWERED as exc:
        await window_unanswered(call, exc, "review", "review")


async def window_refused(call: Call, exc: SlackApiError, window: str, name: str) -> None:
    """Slack refused ``views.open`` for `/hitl name` after the command was acknowledged (an
    expired trigger, a rate limit): the person is told so by the command's ``response_url``,
    which outlives the trigger (30 minutes), and the log has the error."""
    error = slack_said(exc)
    logger.warning("/hitl %s by %s: Slack said %s to views.open", name, call.user_id, error)
    again = f"run `/hitl {name}`"
    await tell(call.command.get("response_url"), not_opened(error, window, again))


async def window_unanswered(call: Call, exc: BaseException, window: str, name: str) -> None:
    """``views.open`` for `/hitl name` got no answer (``not_answered``): one line in the log,
    and the person is told by the command's ``response_url`` what to do."""
    said, told = not_answered(exc, window, f"run `/hitl {name}`")
    logger.warning("/hitl %s by %s: %s", name, call.user_id, said)
    await tell(call.command.get("response_url"), told)


async def stats(call: Call) -> None:
    """The answers of the day and week by person grow with them, and agreement (and gold
    accuracy) read every vote: all are read off the loop on one connection of their own, in
    the walks' scoring child under `hitl serve` (their numpy work holds the GIL: in a worker
    thread it held the loop), else in a worker thread (``reports.stats_off_loop``), and
    answered by the ``response_url`` when not read within ``ACK_WITHIN``. A non-admin is not
    shown the Dawid–Skene estimates, so they are not computed for one (seconds of EM on a
    large team, ``quality.SETTLE_WORK``)."""
    rt = call.rt
    admin = rt.is_admin(call.user_id)  # each person sees their own in App Home

    def answer(read: tuple[str, list[str]]) -> Answer:
        counts, sections = read
        # each line of the counts a block of its own: the day's and the week's answers of a
        # team of 40 or more each fill most of a block's 3,000 characters, and one cut of
        # the three would take the items line out of what Slack shows
        shown = [*counts.split("\n"), *sections]
        return Answer("\n\n".join([counts, *sections]), blocks.report_blocks(shown))

    worker = getattr(rt.scorer, "walk_worker", None)
    read = reports.stats_off_loop(rt.store, rt.settings, rt.clock(), admin=admin, worker=worker)
    await answer_when_read(call, read, answer)


async def labels(call: Call) -> None:
    """`/hitl labels`: read, or change, in a worker thread on a connection of its own (a merge
    or rename relabels every item of the label, a retire sends them to review: 1.8 s for
    67,000 items), answered in the ack when done within ``ACK_WITHIN``, else by the
    ``response_url``; then the scorer and the redrawer take the new set. A change holds
    ``rt.label_change`` while it runs: its transaction holds the write lock, so the loop's
    writes keep off it (clicks await its end, the dispatcher skips its rounds and is woken
    after it)."""
    rt = call.rt

    def change() -> tuple[str, bool]:
        with rt.store.apart() as store:
            return labels_reply(store, rt.settings, call.user_id, call.args)

    async def changed() -> tuple[str, bool]:
        if not call.args or call.args[0].lower() not in LABEL_CHANGES:
            return await asyncio.to_thread(change)  # a read: it takes no write lock
        with rt.label_change.holding():
            try:
                return await asyncio.to_thread(change)
            finally:
                rt.wake_dispatcher()  # the rounds it skipped meanwhile

    done = await answer_when_read(call, changed(), lambda said: Answer(said[0]))
    if done is not None and done[0][1]:
        # the stored predictions go under the new set (the scorer's pass), now rather than at
        # its next look at the change count (LABEL_SET_TICK)
        scorer_of(call.rt).wake()
        await Redrawer.of(call.rt).soon()


async def retrain(call: Call) -> None:
    """Ack at once, then take the lock and read the labels in a worker thread (the read grows
    with the labels: over a minute at 16,000, far past Slack's 3 s). What is known before
    the fit (a retrain already running, nothing new, a lost database) is told by the command's
    ``response_url``; the result is posted in the report channel when the retrain is done."""
    rt, user_id = call.rt, call.user_id
    response_url = call.command.get("response_url")
    # a word other than --force (a typo, "—force" from a smart-dash keyboard) is refused, not
    # dropped: a retrain started unforced by a mistyped --force would be rejected as not better
    others = [a for a in call.args if a.lower() not in ("--force", "force")]
    if others:
        await call.ack(text=retrain_usage(others[0]))
        return
    force = bool(call.args)
    where = rt.settings.effective_report_channel
    forced = (
        " (forced: it trains even with nothing new and is promoted even if not better)"
        if force
        else ""
    )
    await call.ack(
        text=f"Retraining{forced}: checking for new labels; I'll post the result in <#{where}>"
        " when it is done."
    )
    try:
        outcome = await start_retrain(rt, f"<@{user_id}>", force=force)
    except (StoreError, DatabaseError) as exc:  # its file lost (``Store.apart``), a full disk
        problem = exc if isinstance(exc, StoreError) else database_problem(rt.settings.db, exc)
        logger.error("/hitl retrain: %s", problem)
        await tell(response_url, f"Not now: {problem}")
        return
    except Exception:
        logger.exception("retrain by %s failed to start", user_id)
        await tell(response_url, SORRY)
        return
    if outcome is not None:
        await tell(response_url, reports.retrain_text(outcome, timezone=rt.settings.timezone))


TABLE: tuple[Subcommand, ...] = (
    Subcommand("help", "this help", answer_with(lambda rt: HELP)),
    Subcommand("label", "label items one after another in a window", label),
    Subcommand(
        "stats",
        "answers today and this week, the state of the items, and how far people agree",
        stats,
    ),
    Subcommand(
        "queue",
        "what waits, how questions are picked, what is open in each channel, posting errors",
        queue,
    ),
    Subcommand(
        "leaderboard",
        "who labeled most, this week and all time (skips shown beside, not ranked)",
        leaderboard,
    ),
    Subcommand("accuracy", "how good the current model is", accuracy),
    Subcommand(
        "review",
        "decide the items in review (split votes, low agreement, the model disagreeing, "
        "missed gold answers, retired labels), or relabel or remove any item's label by its id",
        review,
        admins_only=True,
        args="[ITEM_ID]",
    ),
    Subcommand(
        "labels",
        "the label set; add, rename, merge or retire a label",
        labels,
        admins_only=True,
        args="[add|rename|merge|retire …]",
    ),
    Subcommand(
        "retrain",
        "retrain the model now",
        retrain,
        admins_only=True,
        options="`--force` trains even with nothing new and promotes it even if not better",
    ),
    Subcommand(
        "rollback",
        "make an earlier model the champion again",
        rollback,
        admins_only=True,
        args="VERSION",
        options="`--force` for one the gate rejected",
    ),
)
"""Every `/hitl` subcommand, in the order of the help and of the manifest's usage hint."""

BY_NAME = {sub.name: sub for sub in TABLE}
SUBCOMMANDS = tuple(BY_NAME)
ADMIN_ONLY = frozenset(sub.name for sub in TABLE if sub.admins_only)
HELP = "*slack-hitl* asks you about items the model is unsure of. Commands:\n" + "\n".join(
    sub.help_line for sub in TABLE
)


def unescape(text: str) -> str:
    """A command's text as typed: Slack sends ``&``, ``<`` and ``>`` as ``&amp;``, ``&lt;`` and
    ``&gt;`` (its "Escaping text" rule), and nothing else escaped. Undone once, ``&amp;`` last,
    so that a typed ``&lt;`` (sent as ``&amp;lt;``) stays ``&lt;``."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


SLACK_WAITS = 3.0
"""Seconds Slack (and Bolt, ``ack_timeout``) waits for a command's ack."""


class TimedAck:
    """A command's ``ack`` that notes in the log an ack made too late: Bolt gave up waiting
    at 3 s, answered Slack 404 and logged the command as one "this app does not handle"
    (``bot.slack.app.unhandled``), and the person saw Slack's error; this line says which
    command it was and how late."""

    def __init__(self, ack: AsyncAck, name: str) -> None:
        self._ack = ack
        self._name = name
        self._started = time.monotonic()

    @property
    def response(self) -> Any:
        return getattr(self._ack, "response", None)

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        late = time.monotonic() - self._started
        if late > SLACK_WAITS:
            logger.warning(
                "/hitl %s was acknowledged after %.1f s, past Slack's %.0f s: Slack had shown"
                " the person an error (the 404 logged for this command as one this app does"
                " not handle)",
                self._name,
                late,
                SLACK_WAITS,
            )
        return await self._ack(*args, **kwargs)


async def handle(rt: Runtime, ack: AsyncAck, command: dict, client: AsyncWebClient) -> None:
    text = unescape(command.get("text") or "").strip()
    words = text.split()
    rest = text.split(maxsplit=1)[1].strip() if len(words) > 1 else ""
    name = words[0].lower() if words else "help"
    ack = TimedAck(ack, name)  # type: ignore[assignment]
    user_id = command.get("user_id", "")
    sub = BY_NAME.get(name)
    if sub is None:
        await ack(text=f"I don't know `{code_text(name)}`.\n\n{HELP}")
        return
    if sub.admins_only and not rt.is_admin(user_id):
        logger.warning("refused /hitl %s for %s: not an admin", name, user_id)
        admins = ", ".join(f"<@{a}>" for a in rt.settings.admins) or "none are set (HITL_ADMINS)"
        await ack(text=f"Only admins can use `/hitl {name}`. Admins: {admins}")
        return
    # `/hitl labels`: a label with spaces in quotes is one word (the others split on spaces)
    args = label_words(rest) if name == "labels" else words[1:]
    try:
        await sub.handler(Call(rt, ack, client, command, args, rest))
    except StoreError as exc:  # its database file was lost (``Store.apart``): say so, in a line
        logger.error("/hitl %s: %s", name, exc)
        if getattr(ack, "response", None) is None:  # not acknowledged yet
            said = str(exc) if rt.is_admin(user_id) else without_folders(str(exc), rt.settings.db)
            await ack(text=f"Not now: {said}")  # the server's folders for admins only
