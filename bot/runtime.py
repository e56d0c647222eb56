"""The running bot's shared parts, handed to listeners and background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import HttpRequest, HttpResponse
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.config import Settings
from bot.store import Store
from model import ModelRegistry

if TYPE_CHECKING:
    from model import TextClassifier

logger = logging.getLogger(__name__)


async def wait_until_woken(event: asyncio.Event, timeout: float | None) -> None:  # noqa: ASYNC109
    """Wait for ``event`` or ``timeout`` seconds. Uses ``asyncio.timeout``, not ``wait_for``:
    on Python 3.11 ``wait_for`` can swallow a cancellation that races with the event, and a
    background loop would then outlive shutdown."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


# Calls that create something: sent twice, they create it twice. A 5xx or a dropped
# connection after the request went out may come after Slack did the work, so they are not
# retried blindly; the dispatcher looks a lost post up by its metadata instead
# (bot/slack/dispatch.py).
NOT_IDEMPOTENT = frozenset(
    {
        "chat.postMessage",
        "chat.postEphemeral",
        "chat.scheduleMessage",
        "chat.meMessage",
        "files.completeUploadExternal",
        "files.upload",
    }
)


def api_method(request: HttpRequest) -> str:
    """The Web API method a request calls ("chat.postMessage"), from its URL."""
    return urlsplit(request.url).path.rstrip("/").rsplit("/", 1)[-1]


class _IdempotentConnectionErrorRetryHandler(AsyncConnectionErrorRetryHandler):
    """Retries resets and refused connections, but a not-idempotent call only when the
    connection was never made (nothing reached Slack)."""

    async def _can_retry_async(self, *, state, request, response=None, error=None) -> bool:
        if api_method(request) in NOT_IDEMPOTENT:
            return isinstance(error, aiohttp.ClientConnectorError)
        return await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )


class _IdempotentServerErrorRetryHandler(AsyncServerErrorRetryHandler):
    """Retries 500/503, except for a not-idempotent call (Slack may have done it)."""

    async def _can_retry_async(self, *, state, request, response=None, error=None) -> bool:
        if api_method(request) in NOT_IDEMPOTENT:
            return False
        return await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )


# Calls that spend a trigger_id, which Slack takes for 3 s after the click or command.
TRIGGER_BOUND = frozenset({"views.open", "views.push"})
TRIGGER_LIFE = 3.0


def retry_after(response: HttpResponse) -> float | None:
    """A 429's ``Retry-After`` in seconds (1 when missing, as slack_sdk waits then); None
    when it is not a number."""
    for name, values in response.headers.items():
        if name.lower() == "retry-after":
            try:
                return float(values[0] if isinstance(values, list) else values)
            except (IndexError, TypeError, ValueError):
                return None
    return 1.0


class _TriggerAwareRateLimitErrorRetryHandler(AsyncRateLimitErrorRetryHandler):
    """Waits out a 429's ``Retry-After`` and calls again, but a call that spends a trigger_id
    (``TRIGGER_BOUND``) only once, and only when the wait (Retry-After, plus up to a second
    slack_sdk adds) ends within the trigger's 3 s: later, Slack can only answer
    ``expired_trigger_id``. The caller tells the person to try again instead (a new
    command, a new click), at once rather than after the wait."""

    async def _can_retry_async(self, *, state, request, response=None, error=None) -> bool:
        if not await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        ):
            return False
        if api_method(request) not in TRIGGER_BOUND:
            return True
        wait = retry_after(response) if response is not None else None
        return state.current_attempt == 0 and wait is not None and wait + 1 < TRIGGER_LIFE


async def open_window(client: AsyncWebClient, trigger_id: str, view: Any, *, push: bool = False):
    """``views.open`` (``views.push`` with ``push``) of ``view``: Slack's answer, or None when
    the window is open but its answer was lost. A 5xx or a dropped connection is tried again
    (``make_client``), and when the first try had opened the window, Slack answers the second
    ``exchanged_trigger_id``: a trigger is spent once, and only by the call its click or
    command makes, so that answer says the window is open. Said in one line of the log, and
    not to the person (told to open it again, they would have two). Other refusals raise."""
    method = "views.push" if push else "views.open"
    try:
        if push:
            return await client.views_push(trigger_id=trigger_id, view=view)
        return await client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as exc:
        data = getattr(exc.response, "data", None)
        if not isinstance(data, dict) or data.get("error") != "exchanged_trigger_id":
            raise
    logger.info("%s: the window is open (an earlier try of the same call opened it)", method)
    return None


def answer_lost(exc: BaseException) -> str | None:
    """How a call's answer was lost after the call reached Slack, which may then have done it
    (a message shown, a file shared): "Slack answered HTTP 500" (a 5xx), "the connection
    dropped after the request was sent (ServerDisconnectedError)", "no answer within the
    client's timeout (TimeoutError)". None when Slack answered (its refusal stands) or was
    never reached (no connection made: nothing was sent)."""
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return None
    if isinstance(exc, TimeoutError):
        return f"no answer within the client's timeout ({type(exc).__name__})"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return f"the connection dropped after the request was sent ({type(exc).__name__})"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, SlackApiError) and isinstance(status, int) and status >= 500:
        return f"Slack answered HTTP {status}"
    return None


class _AnswerLostSeen(AsyncRetryHandler):
    """Never retries: first in one call's retry handlers (``update_window``), it notes whether
    a try of the call reached Slack and lost its answer (``answer_lost``), so that Slack may
    have done it before the try that followed."""

    def __init__(self) -> None:
        super().__init__(max_retry_count=0)
        self.seen = False

    async def can_retry_async(self, *, state, request, response=None, error=None) -> bool:
        if error is not None:
            self.seen = self.seen or answer_lost(error) is not None
        elif response is not None and response.status_code >= 500:
            self.seen = True
        return False


async def update_window(client: AsyncWebClient, view_id: str | None, view_hash: str | None, view):
    """``views.update`` of the window ``view_id`` as drawn when its hash was ``view_hash``:
    Slack's answer. A 5xx or a dropped connection is tried again (``make_client``), and when
    the first try had redrawn the window, Slack answers the second ``hash_conflict``: the hash
    it checks is the one that try changed. Then the window shows ``view`` (or a newer one, if
    the person acted in between); said in one line of the log, and the answer is
    ``{"view": {"id": view_id}}``, with no hash: a later redraw of it goes unchecked. Other
    refusals, and a ``hash_conflict`` with no try lost before it, raise."""
    lost = _AnswerLostSeen()
    watched = copy.copy(client)
    watched.retry_handlers = [lost, *client.retry_handlers]
    try:
        return await watched.views_update(view_id=view_id, hash=view_hash, view=view)
    except SlackApiError as exc:
        data = getattr(exc.response, "data", None)
        said = data.get("error") if isinstance(data, dict) else None
        if not lost.seen or said != "hash_conflict":
            raise
    logger.info("views.update: the window is redrawn (an earlier try of the same call redrew it)")
    return {"view": {"id": view_id}}


class _SentOnlyOnceRetryHandler(AsyncConnectionErrorRetryHandler):
    """Tries a POST again only when the connection was never made: a ``response_url`` post
    whose connection dropped after it was sent may have been shown, and twice is worse."""

    async def _can_retry_async(self, *, state, request, response=None, error=None) -> bool:
        return isinstance(error, aiohttp.ClientConnectorError) and await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )


def response_url_retries() -> list[AsyncRetryHandler]:
    """The retry handlers of a ``response_url``'s client (``AsyncWebhookClient``): slack_sdk's
    own try again after any reset, and a reply in a person's channel showed twice when the
    first had reached Slack. Once, and only when nothing reached Slack."""
    return [_SentOnlyOnceRetryHandler(max_retry_count=1)]


# Who counts a Web API call that failed: ``(method, error)``, error being Slack's code
# ("ratelimited") or the exception's name ("ClientConnectorError"). The core cannot import
# the metrics (an edge): ``bot.api.metrics`` adds its counter here when imported.
SLACK_ERROR_LISTENERS: list[Callable[[str, str], None]] = []


class _CountErrors(AsyncRetryHandler):
    """Never retries: last in the client's handlers, it sees each call's final answer (the
    ones before it retry, and then it is not asked) and tells ``SLACK_ERROR_LISTENERS`` of
    a failure, whatever the method and whoever called it (the listeners' clients share these
    handlers): the one place Slack errors are counted."""

    def __init__(self, base_url: str) -> None:
        super().__init__(max_retry_count=0)
        self.base_url = base_url

    async def can_retry_async(self, *, state, request, response=None, error=None) -> bool:
        if error is not None:
            failed: str | None = type(error).__name__
        elif response is None:
            failed = None
        elif isinstance(response.body, dict) and response.body.get("ok") is False:
            failed = str(response.body.get("error") or "unknown_error")
        else:
            failed = "unknown_error" if response.status_code >= 400 else None
        if failed is not None:
            # a file's upload URL (files.getUploadURLExternal's) is no method: one name for it
            url = request.url
            method = api_method(request) if url.startswith(self.base_url) else "file_upload"
            for listener in SLACK_ERROR_LISTENERS:
                listener(method, failed)
        return False


class NotSlackJson(SlackApiError):
    """A Web API method answered HTTP 200 with a text body, not Slack's JSON (a proxy's or a
    captive portal's page): slack_sdk's own check of the answer read ``ok`` from the text and
    raised AttributeError, which no caller expects (a round failed with a traceback, a
    click's redraw was said to be a malformed payload). Raised instead by ``JsonAnswers`` as
    the ``SlackApiError`` every caller handles: ``slack_said`` is None for it, as for the
    other answers that are not Slack's JSON (``bot.errors.slack_said``); its ``response``
    has the status, the headers and the start of the text. Slack may or may not have had the
    call: a post is looked for as a lost one is."""


class JsonAnswers(AsyncRetryHandler):
    """Never retries: first in the client's retry handlers (``make_client``), it turns an
    HTTP 200 answer of a Web API method (a URL under ``base_url``) whose body is text into
    ``NotSlackJson``. A file's upload URL answers text (``OK - 123``): not a method, left
    as it is."""

    def __init__(self, base_url: str) -> None:
        super().__init__(max_retry_count=0)
        self.base_url = base_url

    async def can_retry_async(self, *, state, request, response=None, error=None) -> bool:
        if (
            error is None
            and response is not None
            and response.status_code == 200
            and isinstance(response.data, str)
            and response.data
            and request.url.startswith(self.base_url)
        ):
            answer = AsyncSlackResponse(
                client=None,
                http_verb=request.method,
                api_url=request.url,
                req_args={},
                data=response.data[:SHOWN_TEXT],  # type: ignore[arg-type]
                headers=response.headers,
                status_code=response.status_code,
            )
            method = request.url.rstrip("/").rsplit("/", 1)[-1]
            raise NotSlackJson(f"{method} answered HTTP 200 without Slack's JSON", answer)
        return False


SHOWN_TEXT = 200  # characters of a text answer ``NotSlackJson`` keeps


SLACK_TIMEOUT = 10.0  # seconds for one Web API call


def make_client(
    settings: Settings,
    *,
    retries: int = 2,
    timeout: float = SLACK_TIMEOUT,
    session: aiohttp.ClientSession | None = None,
) -> AsyncWebClient:
    """The Web API client: SLACK_API_URL as base, retrying rate limits (a 429 was not carried
    out; a trigger_id's call only within the trigger's life), and 5xx and resets for calls
    that are safe to repeat (not ``NOT_IDEMPOTENT``). Every call's failure, after those
    retries, is counted (``SLACK_ERROR_LISTENERS``).

    With ``session`` (see ``slack_session``) the calls share its connections and its timeout;
    without, each call opens a connection of its own and closes it, as slack_sdk does.
    """
    return AsyncWebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=timeout,
        session=session,
        retry_handlers=[
            JsonAnswers(settings.slack_api_url),  # first: a 200 page is no answer to retry
            _IdempotentConnectionErrorRetryHandler(max_retry_count=retries),
            _TriggerAwareRateLimitErrorRetryHandler(max_retry_count=retries),
            _IdempotentServerErrorRetryHandler(max_retry_count=retries),
            _CountErrors(settings.slack_api_url),  # last: sees only the final answers
        ],
    )


def one_try(client: AsyncWebClient, *, wait_rate_limits: bool = True) -> AsyncWebClient:
    """``client`` whose calls are each one try: a dropped connection or a 5xx is not tried
    again (``make_client``'s client does, twice, after 0.5 s and 1 s and their jitter), for a
    caller that repeats on its own clock (``bot.slack.connect``'s attempts at start: each
    logged attempt was three tries and ~3 s). A rate limit's Retry-After is waited out (Slack
    said how long), unless ``wait_rate_limits`` is False: a call made inside a redraw pass,
    whose lock is held, gets the 429 and waits on its own clock. Everything else (token, base
    URL, session, timeout, the error count) is the client's own."""
    dropped: tuple[type, ...] = (AsyncConnectionErrorRetryHandler, AsyncServerErrorRetryHandler)
    if not wait_rate_limits:
        dropped += (AsyncRateLimitErrorRetryHandler,)
    single = copy.copy(client)
    single.retry_handlers = [h for h in client.retry_handlers if not isinstance(h, dropped)]
    return single


def no_rate_waits(client: AsyncWebClient) -> AsyncWebClient:
    """``client`` whose calls do not wait out a 429's ``Retry-After`` (``make_client``'s
    sleeps it, twice, inside the call), every other retry kept: for a caller that others wait
    on and that waits a 429 out on its own clock: the redrawer's calls, made with its lock held
    (a 429 holds every ``chat.update`` until its Retry-After, ``bot.slack.redraw``), the
    dispatcher's posts (the channel waits, the others post), the report outbox's (held), App
    Home's views.publish (every publish held, then one per person: ``HomePublisher``); and a
    click's "already decided" and "item removed" notes (``bot.slack.app``: one try, dropped
    under a 429, the message redrawn says it)."""
    single = copy.copy(client)
    single.retry_handlers = [
        h for h in client.retry_handlers if not isinstance(h, AsyncRateLimitErrorRetryHandler)
    ]
    return single


def slack_session(timeout: float = SLACK_TIMEOUT) -> aiohttp.ClientSession:
    """The connections a server's Web API calls share (kept alive between calls: a click's
    note to its author no longer costs a TCP connect and close). Create it on the running
    loop; the server closes it at shutdown."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))


def model_name(version: int | None) -> str:
    """``v3`` for a registry version, ``r315`` for a working model (a refresh on 315 labels,
    stored as version -315), ``no model`` for None."""
    if version is None:
        return "no model"
    return f"r{-version}" if version < 0 else f"v{version}"


@dataclass
class Champion:
    """The model that scores items now."""

    version: int
    classifier: TextClassifier
    created_at: str = ""
    n_train: int = 0
    n_read: int = 0  # a refresh (working model): the labels it read, held-out audits included
    # Its metadata's ``extra`` as read with its file (``label_seq``, ``label_watermark``: where
    # its training read the labels), so a refresh knows it with the models folder gone.
    trained: dict[str, Any] | None = None


class Wakeable(Protocol):
    """A background loop that others may wake when there is work for it: the dispatcher
    (``bot.slack.dispatch.Dispatcher``) when items or a new champion may fill a channel, the
    trainer (``bot.learning.jobs.Trainer``) when people resolved items (a refresh may be due)."""

    def wake(self) -> None: ...


@dataclass(eq=False)
class Background:
    """Owns the listener tasks still at work after their ack (redraws, modals, charts), so
    that shutdown and tests can wait for them before the database closes."""

    tasks: set[asyncio.Task] = field(default_factory=set)

    def track(self, task: asyncio.Task) -> None:
        self.tasks.add(task)

    def done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)

    def keep(self, task: asyncio.Task) -> None:
        """Track ``task`` until it ends."""
        self.track(task)
        task.add_done_callback(self.done)

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait for listeners that are still working after their ack. Past ``timeout`` every
        task still kept is cancelled, those started while it waited too (a window's redraw
        made by a listener it was waiting for), until none is left; then TimeoutError."""
        try:
            async with asyncio.timeout(timeout):
                # only the tasks not done: one that has ended but whose ``done`` has not run
                # yet (it runs at the loop's next turn) would make gather return at once, from
                # Python 3.12 without yielding to the loop, and this spin for ever, timeout and
                # all (the loop never turned to run either)
                while left := [t for t in self.tasks if not t.done()]:
                    await asyncio.gather(*left, return_exceptions=True)
            self.tasks.difference_update([t for t in self.tasks if t.done()])
        except TimeoutError:
            me = asyncio.current_task()
            # a cancelled task may start another as it ends: cancelled too, until none is left
            while left := [t for t in self.tasks if t is not me and not t.done()]:
                for task in left:
                    task.cancel()
                await asyncio.gather(*left, return_exceptions=True)
            raise


@dataclass(eq=False)
class LabelChange:
    """Whether this server's own label-set change (`/hitl labels merge|rename|retire|add`) is
    under way: it writes in a worker thread, in one transaction that grows with the label's
    items (seconds at hundreds of thousands), and a write on the event loop meanwhile would
    wait for its lock inside SQLite, the loop held, then be refused. While it runs the
    dispatcher skips its rounds, and a click whose write finds the lock taken awaits
    ``ended`` instead (``bot.slack.app``). Held by ``bot.slack.commands.labels``."""

    running: int = 0  # changes under way (two admins may change the set at once)
    _ended: asyncio.Event | None = None

    @property
    def held(self) -> bool:
        return self.running > 0

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Held while the change runs; on the event loop."""
        if self.running == 0:
            self._ended = asyncio.Event()
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            if self.running == 0 and self._ended is not None:
                self._ended.set()

    async def ended(self, within: float) -> bool:
        """Wait, at most ``within`` seconds, for no change to be under way; whether none is.
        A change that starts as the one waited for ends (two admins' changes back to back) is
        waited for too, in the time left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                while self.held and self._ended is not None:
                    await self._ended.wait()  # a new change makes a new event (``holding``)
        return not self.held


@dataclass(eq=False)
class Runtime:
    """What listeners, routes and background tasks share in one running bot.

    It holds the core (settings, store, Web API client, registry, the champion) and a
    reference to each owner of mutable state, never that state itself. The owners live in the
    layer that uses them and are set where the bot is built (``bot.server.init_app``); the
    core knows them only as far as it calls them. Each owner's class reads its slot back,
    checked, with ``Owner.of(rt)``:

    - ``dispatcher``: ``bot.slack.dispatch.Dispatcher``, the question channels' state; the
      API and the learning loop only ``wake()`` it;
    - ``redrawer``: ``bot.slack.redraw.Redrawer``, the redraw state;
    - ``champion_holder``: ``bot.learning.jobs.ChampionHolder``, the champion's loading;
    - ``trainer``: ``bot.learning.jobs.Trainer``, the fit worker, the retrain under way,
      the refreshes of the working model and the nightly scheduler; others only ``wake()``
      it when people resolved items;
    - ``scorer``: ``bot.learning.scoring.Scorer``, the scoring of items (read it with
      ``scorer_of(rt)``, which makes one where the runtime was built without);
    - ``background``: the listeners still at work after their ack;
    - ``homes``: ``bot.slack.commands.HomePublisher``, the App Home publishes a 429 holds
      (made on first use, ``HomePublisher.of(rt)``);
    - ``typical``: ``bot.learning.typical.TypicalOrder``, TypiClust's order for a young
      model (HITL_TYPICAL_UNTIL), made on first use;
    - ``label_change``: whether this server's own label-set change is writing (``LabelChange``);
    - ``typeahead_label_sets``: the label sets whose "Other…" is the type-ahead, learnt from
      Slack's refusals (``bot.slack.questions.smaller_after``), shared by posts and redraws.
    """

    settings: Settings
    store: Store
    client: AsyncWebClient
    champion: Champion | None = None
    working: Champion | None = None  # the champion refitted since it was trained (see ``model``)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    bot_user_id: str | None = None
    registry: ModelRegistry | None = None
    background: Background = field(default_factory=Background)
    dispatcher: Wakeable | None = None
    redrawer: object | None = None
    champion_holder: object | None = None
    trainer: Wakeable | None = None
    scorer: object | None = None
    homes: object | None = None
    typical: object | None = None
    label_change: LabelChange = field(default_factory=LabelChange)
    # label sets whose questions Slack refused as too long with "Other…" inline: their
    # questions and redraws use the type-ahead (``bot.slack.questions.smaller_after``)
    typeahead_label_sets: set[tuple[str, ...]] = field(default_factory=set)

    @property
    def model(self) -> Champion | None:
        """The model that scores the queue, so asks the questions and answers the producer
        API: the working model (a refresh since the last gated retrain, negative version) when
        there is one, else the champion."""
        return self.working or self.champion

    def model_roles(self) -> dict[str, int | None]:
        """Versions: the gated ``champion``, the ``working`` model (a refresh, negative), and
        the model that ``asks`` the questions and ``answers`` the producer API (the same one:
        each item keeps one prediction). None: no such model."""
        serving = self.model.version if self.model else None
        return {
            "champion": self.champion.version if self.champion else None,
            "working": self.working.version if self.working else None,
            "asks": serving,
            "answers": serving,
        }

    def labels_changed(self) -> None:
        """People resolved items: a refresh of the working model may be due."""
        if self.trainer is not None:
            self.trainer.wake()

    def wake_dispatcher(self) -> None:
        """There may be something to post now (new items, a new champion, a free slot)."""
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.settings.admins
