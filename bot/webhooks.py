"""Webhook deliveries: tell a producer when one of its items is resolved.

When an item with a ``callback_url`` resolves, the store writes a ``deliveries`` row in the
same transaction as the label (the outbox). ``deliver_due`` sends the due ones: a POST of
``{"id", "label", "votes", "resolved_at", "model_label"}`` signed with HITL_WEBHOOK_SECRET.
A 2xx answer delivers it; any other answer, a connection error or a timeout schedules a retry
with exponential backoff, until ``max_attempts``. Because the outbox is in the database, a
restart loses nothing: the next round picks up what is due.

The signature (header ``X-HITL-Signature``) is ``t=<unix seconds>,v1=<hex>``, where ``<hex>``
is the HMAC-SHA256, keyed with the secret, of ``"<t>."`` followed by the exact body bytes.
``verify`` checks one; the README shows the same check for receivers.

Time comes in as ``now`` (tests drive attempts by passing it); the background task
``run_deliveries`` calls ``deliver_due`` with the runtime's clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp

from bot.runtime import Runtime

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-HITL-Signature"
DELIVERY_HEADER = "X-HITL-Delivery"
BASE_DELAY = 10.0  # seconds before the first retry; doubles with each failure
MAX_DELAY = 3600.0
MAX_ATTEMPTS = 12  # about six hours of retries with the defaults
TIMEOUT = 10.0  # seconds a receiver has to answer (``answer_within``)
BATCH = 50
CONCURRENCY = 8
IDLE_TICK = 2.0  # seconds between looks at the outbox when nothing is due sooner
TOLERANCE = 300  # seconds a signature stays valid for ``verify``


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-HITL-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance: int = TOLERANCE) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and is at most ``tolerance`` seconds
    from ``now`` (which stops a captured request from being replayed later)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split(",v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(attempts: int, base: float = BASE_DELAY, max_delay: float = MAX_DELAY) -> float:
    """Seconds to wait after the ``attempts``-th failure: base, 2·base, 4·base, … up to a cap."""
    return min(base * 2 ** (attempts - 1), max_delay)


@dataclass
class DeliveryRound:
    """What one ``deliver_due`` call did, by delivery id."""

    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return len(self.delivered) + len(self.retrying) + len(self.failed)


async def deliver_due(
    rt: Runtime,
    *,
    now: datetime | None = None,
    session: aiohttp.ClientSession | None = None,
    base: float = BASE_DELAY,
    max_attempts: int = MAX_ATTEMPTS,
    answer_within: float = TIMEOUT,
    limit: int = BATCH,
) -> DeliveryRound:
    """Send every delivery due at ``now`` (default: the runtime's clock), concurrently."""
    done = DeliveryRound()
    secret = rt.settings.webhook_secret
    if not secret:
        return done
    now = (now or rt.clock()).astimezone(UTC)
    lease = now + timedelta(seconds=answer_within + 60)
    claimed = rt.store.claim_due_deliveries(_iso(now), _iso(lease), limit)
    if not claimed:
        return done
    jobs = []
    for delivery in claimed:
        payload = rt.store.webhook_payload(delivery["item_id"])
        if payload is None:  # undone since: the next resolution queues a new delivery
            rt.store.finish_delivery(
                delivery["id"], "cancelled", error="the item was reopened before delivery"
            )
            done.cancelled.append(delivery["id"])
            continue
        jobs.append((delivery, payload))
    if not jobs:
        return done

    own_session = session is None
    session = session or aiohttp.ClientSession()
    limiter = asyncio.Semaphore(CONCURRENCY)

    async def send_one(delivery: dict, payload: dict) -> str | None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "slack-hitl",
            SIGNATURE_HEADER: sign(secret, body, int(now.timestamp())),
            DELIVERY_HEADER: str(delivery["id"]),
        }
        async with limiter:
            return await _post(session, delivery["url"], body, headers, answer_within)

    try:
        errors = await asyncio.gather(*(send_one(d, p) for d, p in jobs))
    finally:
        if own_session:
            await session.close()

    for (delivery, _), error in zip(jobs, errors, strict=True):
        delivery_id, attempts = delivery["id"], delivery["attempts"]
        if error is None:
            rt.store.finish_delivery(delivery_id, "delivered")
            done.delivered.append(delivery_id)
            logger.info("webhook %d for item %s delivered", delivery_id, delivery["item_id"])
        elif attempts >= max_attempts:
            rt.store.finish_delivery(delivery_id, "failed", error=error)
            done.failed.append(delivery_id)
            logger.warning(
                "webhook %d for item %s failed %d times, giving up: %s",
                delivery_id,
                delivery["item_id"],
                attempts,
                error,
            )
        else:
            retry_at = now + timedelta(seconds=backoff(attempts, base))
            rt.store.finish_delivery(
                delivery_id, "pending", error=error, next_attempt_at=_iso(retry_at)
            )
            done.retrying.append(delivery_id)
            logger.warning(
                "webhook %d for item %s failed (attempt %d): %s; retrying at %s",
                delivery_id,
                delivery["item_id"],
                attempts,
                error,
                _iso(retry_at),
            )
    return done


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict, answer_within: float
) -> str | None:
    """POST once; None on a 2xx answer, else what went wrong. Redirects are not followed."""
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=answer_within),
            allow_redirects=False,
        ) as response:
            if 200 <= response.status < 300:
                return None
            return f"HTTP {response.status}"
    except TimeoutError:
        return f"no answer within {answer_within:g} s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"[:300]


async def run_deliveries(rt: Runtime, *, base: float = BASE_DELAY, tick: float = IDLE_TICK) -> None:
    """Background task: send what is due, then wait until the next delivery falls due (or
    ``tick`` seconds, to notice new ones)."""
    if not rt.settings.webhook_secret:
        logger.info("HITL_WEBHOOK_SECRET is not set: webhook deliveries are off")
        return
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                done = await deliver_due(rt, session=session, base=base)
                if done.attempted + len(done.cancelled) >= BATCH:
                    continue  # more may be due already
                wait = _seconds_until_next(rt, tick)
            except Exception:  # noqa: BLE001 - the worker must outlive any one failure
                logger.exception("webhook round failed")
                wait = tick
            await asyncio.sleep(wait)


def _seconds_until_next(rt: Runtime, tick: float) -> float:
    due = rt.store.next_delivery_at()
    if due is None:
        return tick
    wait = (datetime.fromisoformat(due) - rt.clock().astimezone(UTC)).total_seconds()
    return min(max(wait, 0.05), tick)


def _iso(moment: datetime) -> str:
    """The store's time format: UTC ISO-8601 with milliseconds (sorts as text)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")
