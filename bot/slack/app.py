"""The Bolt app: listeners for answers, /hitl commands, the labeling modal and App Home.

Each listener parses, writes to the store, acks, then talks to Slack: an answer is committed
to SQLite before Slack gets its acknowledgement, and messages are redrawn from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import SLACK_TOKEN_REFUSED, slack_said
from bot.labelset import follow_renames, resolve_label
from bot.runtime import Runtime, answer_lost, no_rate_waits, open_window
from bot.slack import blocks, commands
from bot.slack.acks import signalling, unacked_listeners
from bot.slack.dispatch import Dispatcher
from bot.slack.guidelines import guidelines_view_off_loop
from bot.slack.holds import Holds
from bot.slack.modal import (
    NOT_ANSWERED,
    ChannelMembers,
    from_home,
    next_in_modal,
    not_answered,
    not_opened,
    open_labeling_modal,
    shown_in,
)
from bot.slack.questions import ITEM_REMOVED, label_set
from bot.slack.redraw import Redrawer
from bot.slack.review import (
    DECISION_SEARCH_ACTION,
    REVIEW_CALLBACK,
    decision_options,
    on_review_submit,
)
from bot.store import AnswerResult, DatabaseError, ReviewRules, database_problem
from bot.words import code_text

logger = logging.getLogger(__name__)

UNDO_WINDOW = timedelta(minutes=10)
# Seconds a click's write awaits this server's own label change (``Runtime.label_change``)
# that holds the write lock, from the click's listener on: its ack must still reach Slack
# within 3 s.
CLICK_WAITS = 2.5
SORRY = "Something went wrong on our side; it has been logged."


class _UnusedTokenWarning(logging.Filter):
    """Drops Bolt's "As you gave `client` as well, `token` will be unused": Bolt reads
    SLACK_BOT_TOKEN from the environment on its own and warns that it ignores it, which is what
    we want (the client passed in is the one to use); nothing for a person to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


BOLT_LOGGER = logging.getLogger("bot.bolt")
BOLT_LOGGER.addFilter(_UnusedTokenWarning())


Listener = Callable[..., Awaitable[None]]


class AppRateLimited(AsyncMiddleware):
    """Slack's ``app_rate_limited`` envelope: sent to every app, with no subscription, once it
    passes 30,000 events an hour in a workspace. It has no inner event, so no listener takes
    it; answered 200 (Slack counts anything else as a failed delivery, and may disable the
    subscriptions of an app that fails most) with one warning line: the events of that
    workspace are being dropped."""

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[Any]]
    ) -> BoltResponse | None:
        if req.body.get("type") != "app_rate_limited":
            return await next()
        logger.warning(
            "Slack is rate-limiting this app's events for team %s since %s: events past"
            " 30,000 an hour are dropped until the hour is over",
            req.body.get("team_id") or "?",
            _minute(req.body.get("minute_rate_limited")),
        )
        return BoltResponse(status=200, body="")


class EventRedeliveries(AsyncMiddleware):
    """An event is acted on once per server process. Slack delivers an event again (over HTTP
    with ``X-Slack-Retry-Num`` 1 to 3, in Socket Mode with the envelope's ``retry_attempt``; the
    same ``event_id``) when its first delivery was not acknowledged in time, though that one
    may have been acted on: a second ``app_uninstalled`` error line, the Home published again.
    A delivery whose ``event_id`` this process has already taken is answered 200 and not acted
    on, with a debug line; one it never saw (the first came before a restart) is acted on.
    The last ``KEEP`` event IDs are kept, far more than arrive between Slack's first delivery
    and its last retry (minutes apart) even at its 30,000 events an hour. Clicks and commands
    are not events: they are deduplicated in the store."""

    KEEP = 10_000

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self.seen: OrderedDict[str, None] = OrderedDict()

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[Any]]
    ) -> BoltResponse | None:
        event_id = req.body.get("event_id") if req.body.get("type") == "event_callback" else None
        if not isinstance(event_id, str) or not event_id:
            return await next()
        if event_id in self.seen:
            event = req.body.get("event") if isinstance(req.body.get("event"), dict) else {}
            logger.debug(
                "Slack delivered %s event %s again (retry %s, %s): acknowledged, not acted on"
                " twice",
                str(event.get("type") or "?")[:60],
                event_id[:60],
                str(_first(req.headers.get("x-slack-retry-num")) or "?")[:10],
                str(_first(req.headers.get("x-slack-retry-reason")) or "no reason given")[:60],
            )
            return BoltResponse(status=200, body="")
        self.seen[event_id] = None
        if len(self.seen) > self.keep:
            self.seen.popitem(last=False)
        try:
            response = await next()
        except BaseException:  # not taken: Slack's retry is acted on
            self.seen.pop(event_id, None)
            raise
        if response is not None and response.status >= 500:
            self.seen.pop(event_id, None)
        return response


def _first(values: object) -> object:
    """A header of a Bolt request: a list of values (the first), or a value."""
    return values[0] if isinstance(values, list | tuple) and values else values


def _minute(epoch: object) -> str:
    """``minute_rate_limited`` (Unix seconds) as a UTC minute; as given when it is not one."""
    if isinstance(epoch, int | float) and not isinstance(epoch, bool):
        with contextlib.suppress(OverflowError, OSError, ValueError):
            return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"minute {epoch!r}"


def slack_refused(exc: SlackApiError) -> str:
    """``Slack said E to METHOD``, and what to do where the error says (a log line after an
    ack, when nobody waits for an answer)."""
    error = slack_said(exc)
    method = str(getattr(exc.response, "api_url", "") or "").rsplit("/", 1)[-1] or "a call"
    line = f"Slack said {error} to {method}"
    if error in SLACK_TOKEN_REFUSED:
        return f"{line}; fix SLACK_BOT_TOKEN (or reinstall the app)"
    if error == "not_in_channel":
        return f"{line}; invite the bot there (/invite @hitl)"
    if error == "user_not_in_channel":
        return f"{line}: the person is not in that channel, so the note was not shown"
    if error == "user_not_found":
        gone = "that account is gone (deactivated, or of another workspace)"
        return f"{line}: {gone}, so it was not shown"
    if error == "missing_scope":
        needed = slack_said(exc, "needed") or "a scope"
        return f"{line}; the app lacks {needed}: add it under OAuth & Permissions, reinstall"
    return line


NOT_COUNTED = (
    "Only members of this workspace answer these questions, so your {what} was not counted"
    " (an admin can let other teams answer with HITL_ANSWER_TEAMS)."
)


class AnswerTeams:
    """Whose clicks and commands count: members of the Slack teams in HITL_ANSWER_TEAMS (``*``:
    anyone); unset, of the app's own workspace (``auth.test``'s team and, in Enterprise Grid,
    its org), or anyone for an org-wide Enterprise Grid install (its members sit in many
    workspaces). A person counts when their team is listed, or their Enterprise Grid org
    (``org``, see ``interaction_org``). A payload without the person's team (some Grid
    payloads) counts, as there is nothing to tell by, and so do the admins of HITL_ADMINS,
    each named by an ID that is unique across Slack. Someone of another team (a Slack Connect
    channel's other organisation) is logged once per team."""

    def __init__(self, rt: Runtime, auth: Mapping[str, Any]):
        self.rt = rt
        own = {auth.get("team_id"), auth.get("enterprise_id")} - {None, ""}
        self.default: tuple[str, ...] = (
            ("*",) if auth.get("is_enterprise_install") or not own else tuple(sorted(own))
        )
        self.logged: set[str] = set()

    def teams(self) -> tuple[str, ...]:
        """This workspace's (the default) and HITL_ANSWER_TEAMS's: the setting adds teams, it
        does not replace the app's own (naming a partner shut out the team itself)."""
        return tuple(dict.fromkeys((*self.default, *self.rt.settings.answer_teams)))

    def counts(
        self,
        user_id: str,
        team_id: object,
        what: str = "a click",
        org: tuple[str | None, bool] = (None, False),
    ) -> bool:
        """``org``: the Enterprise Grid org the payload names, and whether it is the person's
        (``interaction_org``; a command's ``enterprise_id`` is)."""
        if not team_id or not isinstance(team_id, str) or self.rt.is_admin(user_id):
            return True
        teams = self.teams()
        org_id, theirs = org
        if "*" in teams or team_id in teams or (theirs and org_id in teams):
            return True
        if team_id not in self.logged:
            self.logged.add(team_id)
            named = ", ".join(teams)
            if not self.rt.settings.answer_teams:
                named += ": this workspace, by default"
            if org_id in teams:  # listed, but not known to be theirs: do not say it is not
                logger.warning(
                    "%s from %s of team %s was not counted: that team is not in"
                    " HITL_ANSWER_TEAMS (%s); the request came through org %s, which is, but"
                    " Slack's payload does not say team %s belongs to it (in a Slack Connect"
                    " channel it names this app's org); if it does, add %s to HITL_ANSWER_TEAMS",
                    what,
                    user_id,
                    team_id,
                    named,
                    org_id,
                    team_id,
                    team_id,
                )
                return False
            of_org = f" (org {org_id})" if org_id and theirs else ""
            logger.warning(
                "%s from %s of team %s%s was not counted: only HITL_ANSWER_TEAMS (%s)"
                " answer; set HITL_ANSWER_TEAMS to count them",
                what,
                user_id,
                team_id,
                of_org,
                named,
            )
        return False


def interaction_org(body: Mapping[str, Any]) -> tuple[str | None, bool]:
    """The Enterprise Grid org a click's payload names (``team.enterprise_id``, or
    ``enterprise.id``), and whether it is the clicker's own.

    Only ``user.team_id`` describes the person (a Grid member's may be the org ``E…`` itself,
    which ``AnswerTeams`` compares as a team); ``team`` and ``enterprise`` describe where the
    click came from, which in a Slack Connect channel is this app's workspace and org whoever
    clicks. So the org is the clicker's only when ``team`` is the clicker's team: otherwise a
    partner of another organisation would count as a member of this app's org."""
    user = body.get("user") if isinstance(body.get("user"), dict) else {}
    team = body.get("team") if isinstance(body.get("team"), dict) else {}
    enterprise = body.get("enterprise")
    of_enterprise = enterprise.get("id") if isinstance(enterprise, dict) else enterprise
    org = team.get("enterprise_id") or of_enterprise
    if not isinstance(org, str) or not org:
        return None, False
    theirs = bool(team.get("id")) and team.get("id") == user.get("team_id")
    return org, theirs


class LabelChangeHolds(Exception):
    """A click's write waited ``CLICK_WAITS`` for this server's own label change, which still
    holds the write lock: refused as ``NotStored``, with its own line in the log."""


class NotStored(Exception):
    """A request whose write the database refused (a full disk, a read-only file, a lock held
    too long): it is not acknowledged; ``on_error`` answers Slack 503, so the person sees the
    click fail and can click again."""


def track_listener(rt: Runtime, listener: Listener) -> Listener:
    """Run a listener so that nothing it meets crashes the request.

    ``rt.background`` tracks it (listeners keep working after their ack: redraws, modals), so
    shutdown and tests can wait for it before the database closes. A payload that does
    not have the shape Slack sends is acknowledged and logged, not answered with a 500;
    a Slack error after the ack is logged. A database that refuses the write before the ack
    (a full disk) means nothing was stored: no ack (``NotStored``), one line in the log.
    ``build_app`` binds ``rt``: ``@tracked``.
    """

    @functools.wraps(listener)
    async def run(*args: Any, **kwargs: Any) -> None:
        task = asyncio.current_task()
        if task is not None:
            rt.background.track(task)
        if kwargs.get("ack") is not None:
            # the ack is sent when it is made
            kwargs["ack"] = signalling(kwargs["ack"], listener.__name__)
        ack = kwargs.get("ack")
        refused = False
        try:
            await listener(*args, **kwargs)
        except (DatabaseError, LabelChangeHolds) as exc:
            problem = (
                exc
                if isinstance(exc, LabelChangeHolds)
                else database_problem(rt.settings.db, exc, lost=rt.store.lost)
            )
            if ack is None or ack.response is not None:  # after the ack: what it told stands
                logger.error("%s: after the ack, the database refused a write: %s",
                             listener.__name__, problem)  # fmt: skip
                return
            refused = True
            from bot.store.core import NotSynced  # (local: the store's own error)

            logger.error(
                # a failed fsync: the click is committed, only not known to be on disk
                "%s: written but not known to be on disk, so not acknowledged (Slack shows the"
                " person it failed; its retry is stored once): %s"
                if isinstance(exc, NotSynced)
                else "%s: not stored, so not acknowledged (Slack shows the person it failed): %s",
                listener.__name__,
                problem,
            )
            raise NotStored(str(problem)) from None
        except SlackApiError as exc:
            logger.warning("%s: %s", listener.__name__, slack_refused(exc))
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            # After the ack (a redraw, an ephemeral note): the answer is stored; the
            # redrawer retries what Slack did not take.
            logger.warning("%s: Slack unreachable (%s)", listener.__name__, type(exc).__name__)
            Redrawer.of(rt).wake()
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            logger.warning(
                "%s: malformed payload (%s: %s)", listener.__name__, type(exc).__name__, exc
            )
        finally:
            if ack is not None and ack.response is None and not refused:
                await ack()
            if task is not None:
                rt.background.done(task)

    return run


def build_app(rt: Runtime, auth: Mapping[str, Any]) -> AsyncApp:
    """The Bolt app, for requests that are already known to come from Slack.

    ``bot.server`` checks the signature of every HTTP request before its body is parsed, and
    Socket Mode needs none, so Bolt's own check is off. ``auth`` is the ``auth.test`` answer
    ``bot.server`` got once at start: Bolt is told who the bot is through ``authorize`` and
    never calls ``auth.test`` itself (by default it would, inside the first request).
    """

    async def authorize(user_id: str | None) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=auth.get("enterprise_id"),
            team_id=auth.get("team_id"),
            bot_user_id=auth.get("user_id"),
            bot_id=auth.get("bot_id"),
            bot_token=rt.client.token,
            user_id=user_id,
        )

    app = AsyncApp(
        # Named: without a name Bolt calls inspect.stack() to take its caller's file name, which
        # reads the source of every frame on the stack (~20 ms, more under a deep caller).
        name="slack-hitl",
        # Without a token of its own, Bolt takes the one ``authorize`` returns for each request;
        # each request's client copies this one's base URL, timeout and retry handlers.
        client=AsyncWebClient(
            token=None,
            base_url=rt.client.base_url,
            timeout=rt.client.timeout,
            session=rt.client.session,  # the server's connections to Slack, kept alive
            retry_handlers=rt.client.retry_handlers,
            logger=rt.client.logger,
        ),
        authorize=authorize,
        signing_secret=rt.settings.slack_signing_secret or "",
        logger=BOLT_LOGGER,
        request_verification_enabled=False,
        # A request no listener takes goes to ``on_error`` (``unhandled``), not to Bolt's
        # warning with its multi-line "[Suggestion] @app.event(...)" code for developers.
        raise_error_for_unhandled_request=True,
        # Bolt drops the events it takes for the bot's own (by the user in the event): a
        # ``message_deleted`` of a question names the bot as its message's user. No listener
        # here acts on an event the bot itself caused (``on_message_deleted`` acts on that one).
        ignoring_self_events_enabled=False,
    )

    app.use(AppRateLimited())
    app.use(EventRedeliveries())
    tracked = functools.partial(track_listener, rt)
    teams = AnswerTeams(rt, auth)

    async def not_counted(ack: AsyncAck, body: dict, client: AsyncWebClient) -> bool:
        """True (acked, the clicker told, nothing stored) for a click from a team whose
        answers do not count (``AnswerTeams``)."""
        user = body["user"]
        if teams.counts(user["id"], user.get("team_id"), org=interaction_org(body)):
            return False
        await ack()
        await _tell(client, body, NOT_COUNTED.format(what="click"), rt, again=True)
        return True

    @app.action(blocks.LABEL_ACTION)
    @tracked
    async def on_label_button(ack: AsyncAck, body: dict, action: dict, client: AsyncWebClient):
        if await not_counted(ack, body, client):
            return
        try:
            item_id, label = blocks.decode_value(action.get("value"))
        except ValueError:
            await ack()
            await _tell(client, body, "That button is not one of mine any more.")
            return
        await _answer(rt, ack, body, action, client, item_id, label)

    @app.action(blocks.OTHER_ACTION)
    @app.action(blocks.OTHER_EXTERNAL_ACTION)
    @tracked
    async def on_other(ack: AsyncAck, body: dict, action: dict, client: AsyncWebClient):
        if await not_counted(ack, body, client):
            return
        item_id = blocks.item_id_from_block(action.get("block_id"))
        selected = action.get("selected_option") or {}
        label = selected.get("value") if isinstance(selected, dict) else None
        if item_id is None or not isinstance(label, str):
            await ack()
            return
        await _answer(rt, ack, body, action, client, item_id, label)

    @app.options(blocks.OTHER_EXTERNAL_ACTION)
    @tracked
    async def on_other_options(ack: AsyncAck, payload: dict):
        query = payload.get("value") if isinstance(payload.get("value"), str) else ""
        await ack(options=blocks.label_options(label_set(rt.settings, rt.store), query))

    @app.action(blocks.SKIP_ACTION)
    @tracked
    async def on_skip(ack: AsyncAck, body: dict, action: dict, client: AsyncWebClient):
        if await not_counted(ack, body, client):
            return
        try:
            item_id, _ = blocks.decode_value(action.get("value"))
        except ValueError:
            await ack()
            return
        await _answer(rt, ack, body, action, client, item_id, None)

    @app.action(blocks.GUIDELINES_ACTION)
    @tracked
    async def on_guidelines(ack: AsyncAck, body: dict, client: AsyncWebClient):
        await ack()
        guides = follow_renames(rt.settings.guidelines, rt.store.label_aliases())
        view = await guidelines_view_off_loop(label_set(rt.settings, rt.store), guides)
        if body.get("container", {}).get("type") == "view":  # over the labeling modal
            try:  # (a refusal there is logged: a modal's click has no response_url)
                await open_window(client, body["trigger_id"], view, push=True)
            except NOT_ANSWERED as exc:
                if isinstance(exc, SlackApiError):
                    raise
                said, _ = not_answered(exc, "guidelines", "click *Guidelines*", "views.push")
                logger.warning("on_guidelines: %s", said)
            return
        try:
            await open_window(client, body["trigger_id"], view)
        except SlackApiError as exc:  # said to the person, privately, under the question
            logger.warning("on_guidelines: %s", slack_refused(exc))
            note = not_opened(slack_said(exc), "guidelines", "click *Guidelines*")
            await commands.tell(body.get("response_url"), note, replace_original=False)
        except NOT_ANSWERED as exc:
            said, note = not_answered(exc, "guidelines", "click *Guidelines*")
            logger.warning("on_guidelines: %s", said)
            await commands.tell(body.get("response_url"), note, replace_original=False)

    @app.action(blocks.UNDO_ACTION)
    @tracked
    async def on_undo(ack: AsyncAck, body: dict, action: dict, client: AsyncWebClient):
        """The Undo of a decision: offered in the channel in an ephemeral note, in the
        labeling window above its next item; the same Undo, told where it was clicked."""
        in_modal = body.get("container", {}).get("type") == "view"

        async def respond(text: str, *, taken_back: bool = False) -> None:
            """The Undo note replaced by what came of it, by the project's response_url client
            (``commands.tell``: sent once, its 10 s timeout, a lost answer said maybe shown),
            with the payload Bolt's own respond() sent (text, replace_original). In the
            labeling window (no channel, no response_url) the window is redrawn with ``text``
            on top and without the offer, on the item undone while it is the person's to
            answer, else their next one; ``taken_back``: one answer less in this session."""
            if in_modal:
                await _tell(
                    client,
                    body,
                    text,
                    rt,
                    where=f"after the Undo on {item_id}",
                    first=item_id,
                    undo_clicked=True,
                    taken_back=taken_back,
                )
                return
            await commands.tell(
                body.get("response_url"), text, replace_original=True, response_type=None
            )

        if await not_counted(ack, body, client):
            return
        user_id = body["user"]["id"]
        try:
            item_id, _ = blocks.decode_value(action.get("value"))
        except ValueError:
            await ack()
            return
        since = (rt.clock() - UNDO_WINDOW).isoformat(timespec="milliseconds")
        votes = rt.settings.votes
        decision = blocks.decision_of(action.get("value"))
        undone = await _written(
            rt,
            lambda: rt.store.undo_resolution(
                item_id, user_id, since, votes_needed=votes, decision=decision
            ),
        )
        await ack()
        if undone:  # the label it had, a rename's new name too (not the button's)
            logger.info("user %s undid the label of item %s", user_id, item_id)
            if undone.reopened:
                again = " The question is open again."
            elif not undone.posted:  # decided in the labeling window: it had no question
                again = " The item waits in the queue to be asked again."
            else:  # unanswered past HITL_QUESTION_TTL, or moved to a channel asked in now
                again = (
                    " Its question had been taken back, so the item waits in the queue to be"
                    " asked again."
                )
            shown = blocks.name_mrkdwn(str(undone.label))
            await respond(f"Undone: {shown} is no longer the label.{again}", taken_back=True)
            await Redrawer.of(rt).soon()
            rt.wake_dispatcher()  # the item is back in the queue: it may be asked now
        elif rt.store.get_item(item_id) is None:  # deleted (`hitl delete`): no label to undo
            await respond(text=ITEM_REMOVED)
        elif undone.refused == "changed":  # an admin's decision is not the clicker's to erase
            who = blocks.person(undone.changed_by) if undone.changed_by else "an admin"
            did = "confirmed the label" if undone.kept else "changed the label to"
            await respond(
                text=f"Not undone: {who} has since {did} {blocks.name_mrkdwn(str(undone.label))};"
                " ask them if it should change again.",
            )
        elif undone.refused == "undone":  # a second click on the same Undo (a double click)
            where = (
                "the question is open again"
                if undone.reopened
                else "the item waits in the queue to be asked again"
            )
            # in the window: the drawing clicked counted the answer; its redraw is refused
            # (hash_conflict) when the first click's moved the window on, else it is the one
            await respond(f"Already undone: {where}.", taken_back=True)
        elif undone.refused == "decided_again":  # this Undo's decision was undone already
            await respond(
                "Already undone. The item was decided again since, as"
                f" {blocks.name_mrkdwn(str(undone.label))}; that decision stands (its own Undo"
                " can take it back)."
            )
        else:
            await respond(
                text="Too late to undo (10 minutes have passed, or someone else decided it).",
            )

    @app.action(blocks.START_LABELING_ACTION)
    @tracked
    async def on_start_labeling(ack: AsyncAck, body: dict, client: AsyncWebClient):
        await ack()
        user_id = body["user"]["id"]
        team_id, org = body["user"].get("team_id"), interaction_org(body)
        if not teams.counts(user_id, team_id, org=org):  # said on the Home
            await commands.publish_home(rt, client, user_id, NOT_COUNTED.format(what="click"))
            return
        try:
            await open_labeling_modal(rt, client, body["trigger_id"], user_id)
        except SlackApiError as exc:  # said on the Home itself: it has no channel to say it in
            logger.warning("on_start_labeling: %s", slack_refused(exc))
            note = not_opened(slack_said(exc), "labeling", "click *Start labeling*")
            await commands.publish_home(rt, client, user_id, note)
        except NOT_ANSWERED as exc:
            said, note = not_answered(exc, "labeling", "click *Start labeling*")
            logger.warning("on_start_labeling: %s", said)
            await commands.publish_home(rt, client, user_id, note)

    @app.view_closed(blocks.MODAL_CALLBACK)
    @app.view_submission(blocks.MODAL_CALLBACK)
    @tracked
    async def on_labeling_closed(ack: AsyncAck, body: dict, client: AsyncWebClient):
        """The labeling modal closed (*Done*, Escape; it has no submit button, a submission
        closes it too): every window asks for this (``notify_on_close``). The item it showed
        is no longer held for the person (``Holds``: other windows may show it). One opened
        from App Home has Home, still on screen, published again with the labels just given.
        Slack sends no ``app_home_opened`` when a modal closes over Home."""
        await ack()
        user_id = (body.get("user") or {}).get("id")
        shown = shown_in(body)
        if isinstance(user_id, str) and shown is not None:
            Holds.of(rt).release(user_id, shown)
        if from_home(body):
            await commands.publish_home(rt, client, body["user"]["id"])

    @app.view(REVIEW_CALLBACK)
    @tracked
    async def on_review_decision(ack: AsyncAck, body: dict, view: dict):
        await on_review_submit(rt, ack, body, view)

    @app.options(DECISION_SEARCH_ACTION)
    @tracked
    async def on_review_options(ack: AsyncAck, payload: dict, body: dict):
        """The review window's type-ahead (a very large label set): only admins review."""
        user = body.get("user") if isinstance(body.get("user"), dict) else {}
        if not rt.is_admin(user.get("id") or ""):
            await ack(options=[])
            return
        query = payload.get("value") if isinstance(payload.get("value"), str) else ""
        await ack(option_groups=decision_options(label_set(rt.settings, rt.store), query))

    @app.command("/hitl")
    @tracked
    async def on_command(ack: AsyncAck, command: dict, client: AsyncWebClient):
        user_id, team_id = command.get("user_id", ""), command.get("team_id")
        # A command's team_id and enterprise_id both name the workspace it was run in.
        org = (command.get("enterprise_id") or None, True)
        if not teams.counts(user_id, team_id, "a /hitl command", org=org):
            await ack(text=NOT_COUNTED.format(what="command"))
            return
        await commands.handle(rt, ack, command, client)

    @app.event("app_home_opened")
    @tracked
    async def on_home_opened(event: dict, client: AsyncWebClient):
        if event.get("tab") not in (None, "home"):
            return
        await commands.publish_home(rt, client, event["user"])

    @tracked
    async def on_archived(event: dict, body: dict) -> None:
        # a late redelivery (after the unarchive) is told by its time, or by Slack
        await Dispatcher.of(rt).archive_event(
            event.get("channel") or "", event.get("user"), body.get("event_time")
        )

    @tracked
    async def on_unarchived(event: dict, body: dict) -> None:
        Dispatcher.of(rt).channel_unarchived(event.get("channel") or "", body.get("event_time"))

    # A public channel, a private one; each name written out, as tests/test_manifest.py reads
    # them from here to check manifest.yml subscribes to every event the app acts on.
    app.event("channel_archive")(on_archived)
    app.event("group_archive")(on_archived)
    app.event("channel_unarchive")(on_unarchived)
    app.event("group_unarchive")(on_unarchived)

    @app.event("member_joined_channel")
    @tracked
    async def on_member_joined(event: dict) -> None:
        # Who may be served a private channel's items in the labeling window, kept current
        # between its asks of conversations.members (sent for channels the bot is in).
        ChannelMembers.of(rt).member_changed(
            str(event.get("channel") or ""), str(event.get("user") or ""), joined=True
        )

    @app.event("member_left_channel")
    @tracked
    async def on_member_left(event: dict) -> None:
        ChannelMembers.of(rt).member_changed(
            str(event.get("channel") or ""), str(event.get("user") or ""), joined=False
        )

    @app.event({"type": "message", "subtype": "message_deleted"})
    @tracked
    async def on_message_deleted(event: dict) -> None:
        # Sent only to an app subscribed to message events (message.channels,
        # message.groups): an open question's message deleted is checked at once, through
        # the redrawer's own test of a gone message (the event alone takes nothing back).
        # Other messages, and every other message event, are acknowledged and ignored.
        Redrawer.of(rt).message_deleted(
            str(event.get("channel") or ""), str(event.get("deleted_ts") or "")
        )

    @app.event("app_uninstalled")
    @tracked
    async def on_uninstalled(body: dict) -> None:
        other = other_installation(body, auth)
        if other:  # the same app installed elsewhere (another workspace, a staging one)
            logger.info(
                "Slack says this app was uninstalled from %s, another installation of it: this"
                " server's (%s) is not affected",
                other,
                own_installation(auth),
            )
            return
        logger.error(
            "Slack says this app was uninstalled from team %s: its bot token no longer works,"
            " so nothing is posted or redrawn; reinstall the app, set SLACK_BOT_TOKEN to its new"
            " Bot User OAuth Token and restart",
            body.get("team_id") or auth.get("team_id") or "?",
        )

    @app.event("tokens_revoked")
    @tracked
    async def on_tokens_revoked(event: dict, body: dict) -> None:
        tokens = event.get("tokens") if isinstance(event.get("tokens"), dict) else {}
        if not tokens.get("bot"):  # people's tokens: this app uses none
            logger.debug("Slack revoked user tokens of this app (it uses none): %s", tokens)
            return
        other = other_installation(body, auth, tokens.get("bot"))
        if other:  # another installation's bot token: this server's still works
            logger.info(
                "Slack says the bot token of another installation of this app was revoked (%s):"
                " this server's (%s) is not affected",
                other,
                own_installation(auth),
            )
            return
        logger.error(
            "Slack says this app's bot token was revoked in team %s: nothing is posted or"
            " redrawn; reinstall the app, set SLACK_BOT_TOKEN to its new Bot User OAuth Token"
            " and restart",
            body.get("team_id") or auth.get("team_id") or "?",
        )

    @app.error
    async def on_error(
        error: Exception, response: BoltResponse | None, request: AsyncBoltRequest | None = None
    ) -> None:
        """Listeners catch their own failures (see ``tracked``); what reaches here is Bolt
        routing a body not shaped like Slack's: a 400, logged without the body; a write the
        database refused before the ack (``NotStored``, logged there): a 503; and a request
        no listener takes (``unhandled``). In Socket Mode any answer but 200 is sent as no
        ack at all (slack_bolt's ``send_async_response``)."""
        if isinstance(error, BoltUnhandledRequestError):
            socket = request is not None and getattr(request, "mode", "http") == "socket_mode"
            late = unacked_listeners()  # taken, but not acked within Bolt's 3 s
            unhandled(error.body, response, socket=socket, late=late[0] if late else None)
            return
        if isinstance(error, NotStored):
            if response is not None:
                response.status = 503
                response.body = '{"error": "not stored: the database refused the write"}'
                response.headers["content-type"] = ["application/json"]
            return
        if isinstance(error, KeyError | IndexError | TypeError | ValueError | AttributeError):
            logger.warning("malformed Slack request: %s: %s", type(error).__name__, error)
            if response is not None:
                response.status = 400
                response.body = '{"error": "malformed request"}'
                response.headers["content-type"] = ["application/json"]
            return
        logger.error("request failed: %s", type(error).__name__, exc_info=error)

    return app


def own_installation(auth: Mapping[str, Any]) -> str:
    """This server's installation, as ``auth.test`` named it: its team (or org) and bot user."""
    where = auth.get("team_id") or auth.get("enterprise_id") or "?"
    return f"team {where}, bot user {auth.get('user_id') or '?'}"


def other_installation(
    body: Mapping[str, Any], auth: Mapping[str, Any], bot_users: object = None
) -> str:
    """What an ``app_uninstalled`` or ``tokens_revoked`` envelope names (its team, its bot
    user) when that is another installation of this app, not this server's (``auth``, the
    ``auth.test`` answer): the same app installed in another workspace sends its events to the
    same Request URL, signed with the same secret. Empty when it is this server's, or when the
    envelope does not say (then it is taken as this server's, as before).

    The bot user tells an installation best (a Grid org-wide install has one bot user in all
    its workspaces, a workspace install one of its own): an ``authorizations`` entry's
    ``user_id``, and for ``tokens_revoked`` the revoked bot users (``bot_users``); without
    one, the team (the org, for an org-wide install)."""
    own_team, own_org = auth.get("team_id"), auth.get("enterprise_id")
    own_user, org_wide = auth.get("user_id"), bool(auth.get("is_enterprise_install"))

    def ours(team: object, org: object, user: object) -> bool | None:
        """None: nothing to tell by."""
        if own_user and user:
            return user == own_user
        if org_wide and own_org and org:
            return org == own_org
        if own_team and team:
            return team == own_team
        return None

    users = [u for u in bot_users if isinstance(u, str)] if isinstance(bot_users, list) else []
    raw = body.get("authorizations")
    grants = [a for a in raw if isinstance(a, Mapping)] if isinstance(raw, list) else []
    team, org = body.get("team_id"), body.get("enterprise_id")
    if users and own_user:  # the revoked bot users: whether this server's is one says it all
        mine = own_user in users or auth.get("bot_id") in users
    else:
        said = [ours(a.get("team_id"), a.get("enterprise_id"), a.get("user_id")) for a in grants]
        said = [s for s in said if s is not None]
        mine = any(said) if said else ours(team, org, None) is not False
    if mine:
        return ""
    grant = grants[0] if grants else {}
    where = team or grant.get("team_id") or org or grant.get("enterprise_id") or "?"
    named = users or [a.get("user_id") for a in grants if a.get("user_id")]
    return f"team {where}" + "".join(f", bot user {u}" for u in dict.fromkeys(named))


def unhandled(
    body: object, response: BoltResponse | None, *, socket: bool = False, late: str | None = None
) -> None:
    """A request no listener takes. An event (one this app does not act on, such as
    ``member_left_channel`` or a thread reply, should an operator subscribe to it): 200 and a
    debug line, as Slack counts any other answer as a failed delivery, sends it again up to
    three times, and may turn off the subscriptions of an app that fails most. Anything else
    (a button or command of another app, an old message's action): Bolt's 404, in one line;
    in Socket Mode (``socket``) a 404 is sent as nothing at all: the envelope is not
    acknowledged, and the line says so. ``late``: the listener that took the request but did
    not ack within Bolt's 3 s (a slow disk, a long wait for the database): said as such, not
    as a request nothing takes."""
    body = body if isinstance(body, dict) else {}
    if body.get("type") == "event_callback":
        event = body.get("event") if isinstance(body.get("event"), dict) else {}
        kind = str(event.get("type") or "?")[:60]
        if event.get("subtype"):
            kind = f"{kind} ({str(event['subtype'])[:60]})"
        logger.debug("a %s event was acknowledged and ignored: nothing here acts on it", kind)
        if response is not None:
            response.status = 200
            response.body = ""
            response.headers["content-type"] = ["text/plain;charset=utf-8"]
        return
    kind = str(body.get("type") or ("command" if body.get("command") else "request"))[:60]
    status = response.status if response is not None else 404
    if late is not None:
        logger.warning(
            "%s did not acknowledge a Slack %s%s within Slack's 3 s, so the request %s;"
            " what it stores is kept (a click made again is stored once)",
            late,
            kind,
            f" ({_named(body)[:100]})" if _named(body) else "",
            "was not acknowledged (Socket Mode: Slack shows the person it failed)"
            if socket and status != 200
            else f"was answered {status} (Slack shows the person it failed)",
        )
        return
    logger.warning(
        "a Slack %s%s that this app does not handle %s",
        kind,
        f" ({_named(body)[:100]})" if _named(body) else "",
        "was not acknowledged (Socket Mode: Slack shows it failed once its 3 s are up)"
        if socket and status != 200
        else f"was answered {status}",
    )


def _named(body: dict) -> str:
    """What an unhandled request is for: its command, action or callback ID."""
    actions = body.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else None
    view = body.get("view")
    for name in (
        body.get("command"),
        body.get("action_id"),  # an options request (block_suggestion)
        action.get("action_id") if isinstance(action, dict) else None,
        body.get("callback_id"),  # a shortcut
        view.get("callback_id") if isinstance(view, dict) else None,
    ):
        if isinstance(name, str) and name:
            return name
    return ""


async def _answer(
    rt: Runtime,
    ack: AsyncAck,
    body: dict,
    action: dict,
    client: AsyncWebClient,
    item_id: str,
    label: str | None,
) -> None:
    """Store one answer, then ack, then redraw: the order that makes an ack durable. A click
    whose value names another item than the question it came from says (its block id
    ``q:ITEM``, its message's metadata, the labeling modal's ``private_metadata``) is ignored:
    Slack sends values as they were posted, so only an edited request can carry one."""
    user_id = body["user"]["id"]
    in_modal = body.get("container", {}).get("type") == "view"
    clicked = label
    asked: set[str] = set()  # the items the click's message or modal says it is about
    block_id = action.get("block_id")
    if isinstance(block_id, str) and (named := blocks.item_id_from_block(block_id)) is not None:
        if block_id != blocks.block_id_for(item_id):  # an id past 253 characters is cut
            asked.add(named)
    message = body.get("message")
    metadata = message.get("metadata") if isinstance(message, dict) else None
    payload = metadata.get("event_payload") if isinstance(metadata, dict) else None
    if isinstance(payload, dict) and isinstance(payload.get("item_id"), str):
        asked.add(payload["item_id"])
    view = body.get("view")
    if in_modal and isinstance(view, dict):
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            shown = json.loads(view.get("private_metadata") or "{}").get("item")
            if isinstance(shown, str):
                asked.add(shown)
    if asked - {item_id}:
        await ack()
        logger.warning(
            "ignored a click by %s: its value names item %r, its %s is about %r",
            user_id,
            item_id,
            "modal" if in_modal else "message",
            sorted(asked - {item_id})[0],
        )
        return

    def record() -> AnswerResult | None:
        """The answer stored, or None for a label no longer in the set. The label is read
        with the write: after a label change the click waited for, it is the new set's."""
        nonlocal label
        if clicked is not None:
            # A button drawn before a rename or merge counts for the label's successor.
            label = resolve_label(rt.settings, rt.store, clicked)
            if label is None:
                return None
        key = f"{item_id}:{user_id}:{label}:{action.get('action_ts') or body.get('trigger_id')}"
        with rt.store.synced_later():  # no fsync on the event loop...
            return rt.store.record_answer(
                item_id,
                user_id,
                label,
                source=_source(action, in_modal),
                dedupe_key=key,
                votes_needed=rt.settings.votes,
                skips_to_discard=rt.settings.skips_to_discard,
                review=ReviewRules(rt.settings.review_agreement, rt.settings.review_confidence),
                team_id=body["user"].get("team_id") or None,
            )

    result = await _written(rt, record)
    if result is None:
        await ack()
        shown = blocks.fit(code_text(clicked), 80)  # as written (a forged one: cut)
        note = f"`{shown}` is not in the label set any more; pick another."
        await _tell(client, body, note, rt, again=True)  # the same item, to pick another
        return
    await rt.store.synced()  # ...but the answer is on disk before the ack
    await ack()
    logger.info("answer from %s on item %s: %s", user_id, item_id, result.status)
    if result.status == "resolved":
        rt.labels_changed()  # a refresh of the working model may be due
    # the person's answer decided the item: theirs to undo for 10 minutes (``on_undo``)
    undoable = result.status == "resolved" and user_id in (
        result.tally.votes.get(result.label, []) if result.tally else []
    )
    # the decision its Undo undoes (and no later one: ``Store.undo_resolution``)
    made = rt.store.resolution(item_id) if undoable else None
    decision = made["decided_by"] if made else None
    note = ""
    try:
        if result.status == "unknown_item":
            note = ITEM_REMOVED
        elif result.status == "closed":  # kept as history, not counted: in the modal too
            decided = rt.store.resolution(item_id)
            what = f"labeled {blocks.name_mrkdwn(str(decided['label']))}" if decided else "skipped"
            note = f"This one was already decided ({what}); thanks anyway!"
            if not in_modal:  # its buttons were live: redrawn as the database has it
                container = body.get("container") or {}
                ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
                channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
                with contextlib.suppress(DatabaseError):  # a self-heal: the note goes all the same
                    rt.store.owe_redraw_of(channel, ts, item_id)  # the Redrawer's pass draws it
    finally:
        # The channel's message and the freed place first, whatever the person's own note,
        # Undo offer or window meets after (a 429 on chat.postEphemeral, slept out by the
        # client, held them for its Retry-After, others clicking a decided question's live
        # buttons meanwhile). A retry (Slack's, of a click not acked: its fsync failed) finds
        # the answer its first try committed; that try's redraw was left undone.
        try:
            if result.is_stored or result.status == "duplicate":
                redraw = asyncio.create_task(_redraw_soon(rt), name=f"hitl-redraw-{item_id}")
                rt.background.keep(redraw)  # coalesced by the Redrawer: one pass per change
        finally:  # the place the answer freed is filled whatever the redraw met
            rt.wake_dispatcher()
    doing = ""  # the call under way, said when its answer is lost
    try:
        if in_modal:
            counted = result.is_counted and result.status != "closed"
            doing = f"the labeling window of {user_id} may not show the next item"
            offer = (item_id, result.label or "", decision) if undoable else None
            repeat = False
            if result.status in ("repeated", "unchanged", "duplicate"):
                # The same answer again (a double click, Slack's retry) from a window drawn
                # before the answer it repeats: its drawing, if it is the one Slack keeps
                # (the first one's redraw refused or not there yet), counts that answer and
                # offers its Undo, as the first click's would.
                mine = rt.store.counted_answer(item_id, user_id)
                repeat = mine is not None and mine[1] == "modal"
                made = rt.store.resolution(item_id) if repeat else None
                if mine is not None and made is not None and made["decided_by"] == mine[0]:
                    offer = (item_id, made["label"], mine[0])
            await next_in_modal(
                rt, client, body, counted=counted, note=note, decided=offer, repeat=repeat
            )
        elif note:
            # One try under a 429 (not slept out, twice, inside the call): the message, redrawn
            # meanwhile, says it is decided or gone; a note a minute late says it too late, and
            # each retry is one more chat.postEphemeral into the limit. Logged, not shown.
            quick = no_rate_waits(client)
            await _tell(quick, body, note, where=f"after the answer on {item_id}")
        doing = ""  # the Undo offer says its own
        if undoable and not in_modal:  # the window offers it in its next drawing (above)
            await _offer_undo(client, body, item_id, result.label or "", decision)
    except SlackApiError as exc:
        if in_modal and slack_said(exc) == "hash_conflict":  # a second click on one drawing
            logger.info(  # (a double click): the first click's redraw already moved it on
                "after the answer on %s: the labeling window of %s had moved on already"
                " (hash_conflict: a second click on one drawing of it)",
                item_id,
                user_id,
            )
        else:
            logger.warning("after the answer on %s: %s", item_id, slack_refused(exc))
    except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        # reached Slack, which may have done it: not "unreachable" (``track_listener``)
        lost = answer_lost(exc)
        if lost is None or not doing:
            raise
        logger.warning("after the answer on %s: %s: %s", item_id, doing, lost)


async def _redraw_soon(rt: Runtime) -> None:
    """``Redrawer.soon`` after a click, in a task of its own (``rt.background`` keeps it), so
    that the channel's message is redrawn while the person's own note is still under way. The
    answer is stored: whatever the pass meets, the redrawer's loop draws it later."""
    try:
        await Redrawer.of(rt).soon()
    except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        logger.warning("the redraw after a click: Slack unreachable (%s)", type(exc).__name__)
        Redrawer.of(rt).wake()
    except Exception:  # noqa: BLE001 - a task of its own: nobody else would see it
        logger.exception("the redraw after a click failed; the redrawer's loop tries again")
        Redrawer.of(rt).wake()


T = TypeVar("T")


async def _written(rt: Runtime, write: Callable[[], T]) -> T:
    """``write()``, a click's write on the event loop's connection. While this server's own
    label change runs (``rt.label_change``) its transaction may hold the write lock, and
    SQLite's wait for it would hold the event loop (up to the loop's busy timeout, then a
    refusal): the write is tried without waiting, and when the lock is taken it awaits the
    change's end (up to ``CLICK_WAITS``: the ack still within Slack's 3 s), then is made.
    Raises ``LabelChangeHolds`` when the change is still writing then."""
    gate = rt.label_change
    if not gate.held:
        return write()
    started = time.monotonic()
    store = rt.store
    before = store.write_problem
    waits = store.busy_timeout()
    store.set_busy_timeout(0)
    try:
        return write()
    except DatabaseError as exc:
        if not (getattr(exc, "sqlite_errorname", "") or "").startswith("SQLITE_BUSY"):
            raise
        store.write_problem = before  # our own change's lock: nothing wrong with storing
    finally:
        store.set_busy_timeout(waits)
    if not await gate.ended(CLICK_WAITS - (time.monotonic() - started)):
        raise LabelChangeHolds(
            f"a label change in this server (/hitl labels) holds {rt.settings.db} while it"
            f" writes, still after {time.monotonic() - started:.1f} s; the click can be made"
            " again when it is done"
        )
    return write()


def _source(action: dict, in_modal: bool) -> str:
    if in_modal:
        return "modal"
    return "select" if action.get("type", "").endswith("select") else "button"


async def _offer_undo(
    client: AsyncWebClient, body: dict, item_id: str, label: str, decision: int | None
) -> None:
    channel = (body.get("channel") or {}).get("id") or body.get("container", {}).get("channel_id")
    if not channel:
        return
    saved = f"Saved {blocks.name_mrkdwn(label)}. Undo within 10 minutes if you change your mind."
    try:
        await client.chat_postEphemeral(
            channel=channel,
            user=body["user"]["id"],
            text=saved,
            blocks=blocks.undo_blocks(item_id, label, decision),
        )
    except (SlackApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        # not tried again (runtime.NOT_IDEMPOTENT): an ephemeral sent twice shows twice
        lost = answer_lost(exc)
        if lost is None:
            raise
        logger.warning(
            "the Undo offer on %s to %s may have been shown: %s", item_id, body["user"]["id"], lost
        )


async def _tell(
    client: AsyncWebClient,
    body: dict,
    text: str,
    rt: Runtime | None = None,
    *,
    where: str = "",
    again: bool = False,
    first: str | None = None,
    undo_clicked: bool = False,
    taken_back: bool = False,
) -> None:
    """An ephemeral note to the person who clicked, where there is a channel to put it; in the
    labeling modal (given ``rt``), the modal redrawn with the note on top (``again``: on the
    item it showed, the click not stored, while that is still theirs to answer; ``first``,
    ``undo_clicked``, ``taken_back``: an Undo's, as ``next_in_modal`` takes them). A second
    click on one drawing of the window (a double click) finds it moved on by the first
    (``hash_conflict``): one INFO line, the first click's drawing stays. When the call
    reached Slack and its answer was lost (``answer_lost``), the note may be shown: said in one
    line of the log (after ``where``, "after the answer on i1"), not sent again (twice, it
    would show twice). Not reached at all, it raises (``track_listener``: unreachable)."""
    user_id = body["user"]["id"]
    in_modal = body.get("container", {}).get("type") == "view"
    channel = (body.get("channel") or {}).get("id") or body.get("container", {}).get("channel_id")
    try:
        if rt is not None and in_modal:
            doing = f"the labeling window of {user_id} may not show the note"
            await next_in_modal(
                rt,
                client,
                body,
                counted=False,
                note=text,
                again=again,
                first=first,
                undo_clicked=undo_clicked,
                taken_back=taken_back,
            )
        elif channel:
            doing = f"the note to {user_id} may have been shown"
            await client.chat_postEphemeral(channel=channel, user=user_id, text=text)
    except SlackApiError as exc:
        lost = answer_lost(exc)  # a 5xx: chat.postEphemeral is not tried again
        if lost is None and in_modal and slack_said(exc) == "hash_conflict":
            logger.info(
                "%sthe labeling window of %s had moved on already (hash_conflict: a second"
                " click on one drawing of it)",
                f"{where}: " if where else "",
                user_id,
            )
            return
        if lost is None:
            logger.warning("could not tell %s: %s", user_id, slack_refused(exc))
            return
    except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        lost = answer_lost(exc)
        if lost is None:  # nothing reached Slack
            raise
    else:
        return
    logger.warning("%s%s: %s", f"{where}: " if where else "", doing, lost)
