"""The running bot's shared parts, handed to listeners and background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.http_retry import HttpRequest
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.store import Store
from model import ModelRegistry

if TYPE_CHECKING:
    from bot.learning.jobs import ChampionHolder
    from bot.learning.scoring import Scorer
    from bot.slack.redraw import Redrawer

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


def make_client(settings: Settings, *, retries: int = 2, timeout: float = 10) -> AsyncWebClient:
    """The Web API client: SLACK_API_URL as base, retrying rate limits (a 429 was not carried
    out), and 5xx and resets for calls that are safe to repeat (not ``NOT_IDEMPOTENT``)."""
    return AsyncWebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=timeout,
        retry_handlers=[
            _IdempotentConnectionErrorRetryHandler(max_retry_count=retries),
            AsyncRateLimitErrorRetryHandler(max_retry_count=retries),
            _IdempotentServerErrorRetryHandler(max_retry_count=retries),
        ],
    )


@dataclass
class Champion:
    """The model that scores items now (``classifier`` is a ``model.TextClassifier``)."""

    version: int
    classifier: Any
    created_at: str = ""
    n_train: int = 0


@dataclass
class ChannelState:
    """What the dispatcher knows about one question channel."""

    broken: str | None = None  # a permanent error: nothing is posted here until restart
    last_error: str | None = None
    failures: int = 0
    next_attempt: float = 0.0  # loop time before which nothing is posted (backoff, Retry-After)
    last_post: float = float("-inf")
    joined: bool = False
    unsure: set[str] = field(default_factory=set)  # items whose post got no clear answer
    adopted: set[str] = field(default_factory=set)  # of those, found posted after all
    missing_scope: str | None = None  # the scope reading its history needs and lacks
    history_retry_at: float = 0.0  # loop time before which the history is not read again


@dataclass
class Runtime:
    settings: Settings
    store: Store
    client: AsyncWebClient
    champion: Champion | None = None
    channels: dict[str, ChannelState] = field(default_factory=dict)
    wake_dispatcher: asyncio.Event = field(default_factory=asyncio.Event)
    redrawer: Redrawer | None = None  # owns the redraw state; set where the bot is built
    champion_holder: ChampionHolder | None = None  # owns the champion's loading; likewise
    scorer: Scorer | None = None  # owns the scoring of items; likewise
    retry_base: float = 1.0  # seconds; backoff doubles from here (tests make it small)
    post_interval: float = 1.0  # at most one post per second per channel
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    bot_user_id: str | None = None
    registry: ModelRegistry | None = None
    scheduler_alive: bool | None = None  # None: no scheduler in this process
    retrain_task: asyncio.Task | None = None
    fit_worker: Any = (
        None  # bot.learning.retrain.FitWorker in `hitl serve`: fits in a child process
    )
    background: set[asyncio.Task] = field(default_factory=set)  # listeners still at work

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait for listeners that are still working after their ack."""
        async with asyncio.timeout(timeout):
            while self.background:
                await asyncio.gather(*list(self.background), return_exceptions=True)

    def channel_state(self, channel: str) -> ChannelState:
        return self.channels.setdefault(channel, ChannelState())

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.settings.admins
