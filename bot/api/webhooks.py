"""Webhook deliveries: tell a producer when one of its items is resolved.

When an item with a ``callback_url`` resolves, the store writes a ``deliveries`` row in the
same transaction as the label (the outbox); so does taking back a label the producer may have
been told of (an Undo, ``hitl labels remove``), and an item's wait for people ending without a
label (set aside by Skips, left to the model: ``Store._queue_settled``). ``deliver_due`` sends
the due ones: a POST of
the item as it is when the delivery's first attempt goes, ``{"id", "label", "votes",
"resolved_at", "model_label", "status"}`` (``label`` null once taken back), signed with
HITL_WEBHOOK_SECRET. Those bytes are kept (m048) and every retry sends them again; an item's
deliveries go in the order they were queued, the next waiting while an older one is pending
(due, backing off or under way), so what changed since a first attempt is told after it.
A 2xx answer delivers it; any other answer, a connection error or a timeout schedules a retry
with exponential backoff, counted from when the attempt ended (a timeout's retry waits its
backoff after the timeout), until ``max_attempts``. Each attempt carries the delivery's
``key`` (m046: random, never handed out again, unlike the row's id) as ``X-HITL-Delivery``,
the same on every retry, for receivers to dedupe on; the log names a delivery by it too.
Because the outbox is in the database, a restart loses nothing: the next round picks up what
is due. The server's worker (``run_deliveries``) does not go a round at a time: it keeps up to
CONCURRENCY sends under way, at most PER_RECEIVER to one receiver and one to an item, and
claims the next due as each ends, so a receiver that does not answer holds its own
PER_RECEIVER slots, not the others'.

The signature (header ``X-HITL-Signature``) is ``t=<unix seconds>,v1=<hex>``, where ``<hex>``
is the HMAC-SHA256, keyed with the secret, of ``"<t>."`` followed by the exact body bytes.
``verify`` checks one; the README shows the same check for receivers.

Webhooks go to public addresses only. ``Destinations.url_problem`` refuses a ``callback_url``
whose host is written as an internal address (loopback, private, link-local, multicast,
reserved or unspecified, in any form the system resolver reads, such as ``2130706433``) or is
an internal name (``localhost``, ``*.internal``, a single label): the API checks it when the
item arrives, and the sender again before each attempt. The sender's ``GuardedResolver`` checks
every address a name resolves to, and the connection goes to the checked addresses, so DNS
cannot swap a public address for an internal one later. HITL_WEBHOOK_ALLOW names the hosts and
networks that may be reached anyway. A refused delivery fails at once; it is not retried.

Time comes in as ``now`` (tests drive attempts by passing it); the background task
``run_deliveries`` calls ``deliver_due`` with the runtime's clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from bot.labelset import not_in_force
from bot.runtime import Runtime
from bot.store import DatabaseError, database_problem

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-HITL-Signature"
DELIVERY_HEADER = "X-HITL-Delivery"
BASE_DELAY = 10.0  # seconds before the first retry; doubles with each failure
MAX_DELAY = 3600.0
MAX_ATTEMPTS = 12  # 11 waits of 10 s doubling to MAX_DELAY: about 3.4 hours of retries
TIMEOUT = 10.0  # seconds a receiver has to answer (``answer_within``)
BATCH = 50
CONCURRENCY = 8
PER_RECEIVER = 4  # sends to one receiver at once: one that hangs holds half the slots, no more
IDLE_TICK = 2.0  # seconds between looks at the outbox when nothing is due sooner
TOLERANCE = 300  # seconds a signature stays valid for ``verify``
CLOCK_SLACK = 5.0  # seconds a due time may be beyond what this clock schedules (``_catch_up``)
REOPENED = "the item was reopened before delivery"  # a cancelled delivery's ``last_error``


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
    given = parts.get("v1", "")
    if not given.isascii():  # hmac.compare_digest raises on text that is not ASCII
        return False
    expected = sign(secret, body, timestamp).split(",v1=", 1)[1]
    return hmac.compare_digest(expected, given)


# -- where webhooks may go ------------------------------------------------------------------

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Checked in this order: 0.0.0.0 is also private, and 169.254.169.254 link-local before private.
_KINDS = (
    ("is_unspecified", "an unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_reserved", "a reserved address"),
    ("is_site_local", "a site-local address"),  # IPv6 fec0::/10: deprecated, still routed inside
    ("is_private", "a private address"),
)
# Names that only mean something inside a network (RFC 6761, 6762, 8375; ICANN's .internal).
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".localdomain")
# A host the C resolver would read as an IPv4 address: 2130706433, 0x7f.1, 127.1, 0177.0.0.1.
_NUMERIC_HOST = re.compile(r"^[0-9][0-9a-fx.]*$")
ALLOW_HINT = "webhooks only go to public addresses unless the server's HITL_WEBHOOK_ALLOW names it"


class RefusedDestination(OSError):
    """A webhook destination that is internal and not in HITL_WEBHOOK_ALLOW."""


def _bare(host: str) -> str:
    return host.lower().rstrip(".").removeprefix("[").removesuffix("]")


def literal_address(host: str) -> Address | None:
    """The address ``host`` is written as, read the way the system resolver reads it (so
    ``2130706433`` and ``0x7f.1`` are 127.0.0.1); an IPv4-mapped IPv6 address is its IPv4
    address, as is the IPv4 address inside a 6to4 one. None for a name."""
    try:
        address: Address = ipaddress.ip_address(host)
    except ValueError:
        if not _NUMERIC_HOST.match(host):
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv6 address that carries an IPv4 one (mapped ::ffff:…, 6to4 2002:…) reaches it:
        # judged as that address (Python counts 6to4 as global whatever it wraps).
        wrapped = address.ipv4_mapped or address.sixtofour
        if wrapped is not None:
            return wrapped
    return address


def address_kind(address: Address) -> str | None:
    """Why webhooks may not go to ``address`` ("a loopback address", …); None when public."""
    for attribute, kind in _KINDS:
        if getattr(address, attribute, False):  # is_site_local is IPv6's only
            return kind
    return None if address.is_global else "a non-public address"


@dataclass(frozen=True)
class Destinations:
    """Where webhooks may go: public addresses, and what HITL_WEBHOOK_ALLOW names (host names,
    which may resolve to anything, and networks)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def allowing(cls, allow: Iterable[str]) -> Destinations:
        hosts: set[str] = set()
        networks: list[Network] = []
        for entry in allow:
            try:
                networks.append(ipaddress.ip_network(_bare(entry), strict=False))
            except ValueError:
                hosts.add(_bare(entry))
        return cls(frozenset(hosts), tuple(networks))

    def is_named(self, host: str) -> bool:
        return _bare(host) in self.hosts

    def address_problem(self, address: Address) -> str | None:
        if any(address in network for network in self.networks):
            return None
        return address_kind(address)

    def url_problem(self, url: str) -> str | None:
        """Why ``url`` may not be called, judged on its host as written ("127.0.0.1, a
        loopback address"); None when it may go on to name resolution."""
        written = urlsplit(url).hostname or ""
        try:
            host = _bare(yarl.URL(url).raw_host or written)  # what aiohttp will connect to
        except ValueError:  # e.g. a name IDNA cannot encode
            return f"{written}, not a valid host name"
        if host in self.hosts:
            return None
        address = literal_address(host)
        if address is not None:
            kind = self.address_problem(address)
            shown = str(address)
        elif host == "localhost" or host.endswith(_INTERNAL_SUFFIXES) or "." not in host:
            kind, shown = "an internal host name", host
        else:
            return None
        if kind is None:
            return None
        return f"{written if _bare(written) == shown else f'{written} ({shown})'}, {kind}"


class GuardedResolver(AbstractResolver):
    """Resolves names with ``dns`` (the system resolver by default) and refuses the name when
    any address it resolves to is internal; the connection then goes to the checked addresses
    only. Names in the allow-list resolve to whatever they resolve to."""

    def __init__(self, destinations: Destinations, dns: AbstractResolver | None = None):
        self.destinations = destinations
        self.dns = dns or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.dns.resolve(host, port, family)
        if self.destinations.is_named(host):
            return results
        for result in results:
            address = literal_address(result["host"].split("%", 1)[0])
            kind = (
                "not an IP address"
                if address is None
                else self.destinations.address_problem(address)
            )
            if kind is not None:
                raise RefusedDestination(f"{_bare(host)} resolves to {address}, {kind}")
        return results

    async def close(self) -> None:
        await self.dns.close()


def guarded_session(
    destinations: Destinations, dns: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """An HTTP session whose connections only reach addresses ``destinations`` allows."""
    resolver = GuardedResolver(destinations, dns)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver))


def backoff(attempts: int, base: float = BASE_DELAY, max_delay: float = MAX_DELAY) -> float:
    """Seconds to wait after the ``attempts``-th failure: base, 2·base, 4·base, … up to a cap."""
    return min(base * 2 ** (attempts - 1), max_delay)


@dataclass
class DeliveryRound:
    """What one ``deliver_due`` call did, by delivery id."""

    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # gave up, or refused (an internal address)
    cancelled: list[int] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return len(self.delivered) + len(self.retrying) + len(self.failed)


async def deliver_due(
    rt: Runtime,
    *,
    now: datetime | None = None,
    session: aiohttp.ClientSession | None = None,
    dns: AbstractResolver | None = None,
    base: float = BASE_DELAY,
    max_attempts: int = MAX_ATTEMPTS,
    answer_within: float = TIMEOUT,
    limit: int = BATCH,
) -> DeliveryRound:
    """Send every delivery due at ``now`` (default: the runtime's clock), concurrently: one
    round of up to ``limit``, at most PER_RECEIVER to one receiver, CONCURRENCY at once; it
    returns when all of them are done (tests drive attempts with it; the server's worker,
    ``run_deliveries``, claims more as each send ends instead).

    ``session`` must come from ``guarded_session`` (by default one is made for this round,
    resolving names with ``dns``, the system resolver unless given)."""
    done = DeliveryRound()
    secret = rt.settings.webhook_secret
    if not secret:
        return done
    now = (now or rt.clock()).astimezone(UTC)
    lease = now + timedelta(seconds=answer_within + 60)
    _catch_up(rt, now, base, answer_within + 60)
    claimed = rt.store.claim_due_deliveries(_iso(now), _iso(lease), limit, PER_RECEIVER)
    jobs, cancelled = _with_payloads(rt, claimed, done)
    rt.store.finish_deliveries(cancelled, _first_bodies(jobs))
    if not jobs:
        return done

    destinations = Destinations.allowing(rt.settings.webhook_allow)
    own_session = session is None
    session = session or guarded_session(destinations, dns)
    limiter = asyncio.Semaphore(CONCURRENCY)
    attempt = _Attempt(rt, session, destinations, secret, base, max_attempts, answer_within)

    async def send_one(delivery: dict, body: bytes) -> None:
        if (refused := attempt.refused(delivery)) is not None:
            attempt.record(done, delivery, refused, now)
            return
        async with limiter:
            await attempt.send(done, delivery, body, now)

    try:
        await asyncio.gather(*(send_one(d, p) for d, p in jobs))
    finally:
        if own_session:
            await session.close()
    return done


def _with_payloads(
    rt: Runtime, claimed: list[dict], done: DeliveryRound
) -> tuple[list[tuple[dict, bytes]], list[tuple[int, str, str | None]]]:
    """Each claimed delivery with the body it sends, and the outcomes of those with nothing
    to tell, cancelled: for the caller to record, all in one transaction
    (``Store.finish_deliveries``). A retry sends the bytes its first attempt sent (m048): one
    X-HITL-Delivery key, one body; what changed since goes in the item's next delivery, after
    it. A first attempt (or a retry of a row attempted before m048) tells the item as it is now
    (``Store.webhook_payload``); the caller stores those bodies (``_first_bodies``) before
    they go."""
    jobs: list[tuple[dict, bytes]] = []
    cancelled: list[tuple[int, str, str | None]] = []
    out = None
    for delivery in claimed:
        if delivery.get("body") is not None:
            jobs.append((delivery, bytes(delivery["body"])))
            continue
        out = not_in_force(rt.settings, rt.store) if out is None else out
        payload = rt.store.webhook_payload(delivery["item_id"], sending=delivery["id"], out=out)
        if payload is None:  # undone since: the next resolution queues a new delivery
            cancelled.append((delivery["id"], "cancelled", REOPENED))
            continue
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        jobs.append(({**delivery, "first": True}, body))
    done.cancelled.extend(delivery_id for delivery_id, _, _ in cancelled)
    return jobs, cancelled


def _first_bodies(jobs: Iterable[tuple[dict, bytes]]) -> list[tuple[int, bytes]]:
    """The bodies of ``jobs`` not stored yet (their first attempt): (delivery id, body)."""
    return [(delivery["id"], body) for delivery, body in jobs if delivery.get("first")]


@dataclass
class _Attempt:
    """How one delivery is sent and its outcome stored."""

    rt: Runtime
    session: aiohttp.ClientSession
    destinations: Destinations
    secret: str
    base: float
    max_attempts: int
    answer_within: float

    def refused(self, delivery: dict) -> RefusedDestination | None:
        """Why ``delivery`` may not go where it goes (judged on its URL as written)."""
        problem = self.destinations.url_problem(delivery["url"])
        return None if problem is None else RefusedDestination(problem)

    async def send(self, done: DeliveryRound, delivery: dict, body: bytes, now: datetime) -> None:
        """Send ``delivery`` claimed at ``now`` (its ``body``: ``_with_payloads``) and record
        how it ended. Its retry waits from when the attempt ended: ``now`` plus the time the
        attempt took on the runtime's clock (a timeout's retry was due ``backoff`` after the
        claim, straight after the timeout). The signature's time is this attempt's."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "slack-hitl",
            SIGNATURE_HEADER: sign(self.secret, body, int(now.timestamp())),
            DELIVERY_HEADER: delivery["key"],
        }
        began = self.rt.clock()
        error = await _post(self.session, delivery["url"], body, headers, self.answer_within)
        ended = now + max(self.rt.clock() - began, timedelta(0))  # a clock set back: now
        # Recorded as soon as it is known, not when the round's slowest receiver is done: a
        # delivery the receiver took is not sent again after a restart during the round.
        self.record(done, delivery, error, ended)

    def record(
        self,
        done: DeliveryRound,
        delivery: dict,
        error: str | RefusedDestination | None,
        now: datetime,
    ) -> None:
        _record(self.rt, done, delivery, error, now, self.base, self.max_attempts)


class _Sender:
    """The server's sending: up to CONCURRENCY sends under way, at most PER_RECEIVER of them
    to one receiver (host and port), and one at a time for one item; as each ends, its slot
    goes to the next delivery due (``take_due``). A receiver that does not answer holds only
    its own PER_RECEIVER slots for ``answer_within``, never anyone else's."""

    def __init__(self, attempt: _Attempt) -> None:
        self.attempt = attempt
        self.sending: dict[asyncio.Task, dict] = {}  # each send under way: its delivery

    def receivers(self) -> dict[str, int]:
        busy: dict[str, int] = {}
        for delivery in self.sending.values():
            busy[delivery["receiver"]] = busy.get(delivery["receiver"], 0) + 1
        return busy

    def take_due(self) -> int:
        """Claim what is due now, as many as the free slots hold (none to a receiver with
        PER_RECEIVER sends under way, none for an item with one), and start sending them.
        Only reads and writes the database: nothing here waits for a receiver. Returns how
        many it claimed (sent, refused or cancelled). Those it ends without sending (refused,
        cancelled: at most CONCURRENCY) are recorded in one transaction; the caller yields
        to the event loop before it claims again, so a backlog of them is worked through a
        batch per turn of the loop, never all at once."""
        done = DeliveryRound()
        free = CONCURRENCY - len(self.sending)
        if free <= 0:
            return 0
        rt, answer_within = self.attempt.rt, self.attempt.answer_within
        now = rt.clock().astimezone(UTC)
        lease = now + timedelta(seconds=answer_within + 60)
        _catch_up(rt, now, self.attempt.base, answer_within + 60)
        claimed = rt.store.claim_due_deliveries(
            _iso(now),
            _iso(lease),
            free,
            PER_RECEIVER,
            busy=self.receivers(),
            busy_items={d["item_id"] for d in self.sending.values()},
        )
        jobs, ended = _with_payloads(rt, claimed, done)
        refused: list[tuple[dict, str]] = []
        sends: list[tuple[dict, bytes]] = []
        for delivery, body in jobs:
            if (problem := self.attempt.refused(delivery)) is not None:
                refused.append((delivery, _refusal(problem)))
            else:
                sends.append((delivery, body))
        ended += [(d["id"], "failed", reason) for d, reason in refused]
        # cancelled and refused, and the first attempts' bodies: one transaction, before any
        # of them is sent (a retry sends what the first attempt did)
        rt.store.finish_deliveries(ended, _first_bodies(sends))
        for delivery, body in sends:
            task = asyncio.create_task(self._send(delivery, body, now))
            self.sending[task] = delivery
        for delivery, reason in refused:
            logger.warning(
                "webhook %s for item %s %s", delivery["key"], delivery["item_id"], reason
            )
        return len(claimed)

    async def _send(self, delivery: dict, body: bytes, now: datetime) -> None:
        try:
            await self.attempt.send(DeliveryRound(), delivery, body, now)
        except DatabaseError as exc:  # its outcome not stored: sent again when its lease ends
            rt = self.attempt.rt
            logger.error(
                "webhook %s for item %s: its outcome is not stored (%s); it is sent again"
                " when its claim ends",
                delivery["key"],
                delivery["item_id"],
                database_problem(rt.settings.db, exc, lost=rt.store.lost),
            )
        except Exception:  # noqa: BLE001 - one send must not end the worker
            logger.exception("webhook %s for item %s failed", delivery["key"], delivery["item_id"])

    async def one_ends(self, seconds: float) -> None:
        """Wait until a send ends (its slot is free) or ``seconds`` pass."""
        if not self.sending:
            await asyncio.sleep(seconds)
            return
        ended, _ = await asyncio.wait(
            list(self.sending), timeout=seconds, return_when=asyncio.FIRST_COMPLETED
        )
        for task in ended:
            self.sending.pop(task, None)

    def forget_ended(self) -> None:
        for task in [t for t in self.sending if t.done()]:
            del self.sending[task]

    async def stop(self) -> None:
        """Cancel the sends under way (each is sent again when its claim ends)."""
        tasks = list(self.sending)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.sending.clear()


def _catch_up(rt: Runtime, now: datetime, base: float, lease: float) -> None:
    """After the wall clock stepped back (one that ran ahead, set right by NTP), make due now
    each pending delivery due later than this clock can have scheduled it: a retry waits
    ``backoff(attempts)`` at most (never over MAX_DELAY), a claim's lease ``lease`` seconds.
    Due at its stored time, a retry due in 10 s waited for the clock to catch up (an hour
    after a step back of an hour). Looked at in a process's first round and when the clock
    reads earlier than in the round before (``Store.pull_forward_deliveries``)."""
    latest = [
        _iso(now + timedelta(seconds=max(lease, backoff(attempts, base)) + CLOCK_SLACK))
        for attempts in range(MAX_ATTEMPTS + 1)
    ]
    pulled = rt.store.pull_forward_deliveries(_iso(now), latest)
    if pulled:
        logger.warning(
            "webhook deliveries due later than any retry of theirs waits (the clock stepped"
            " back?) are due now: %d",
            pulled,
        )


def _record(
    rt: Runtime,
    done: DeliveryRound,
    delivery: dict,
    error: str | RefusedDestination | None,
    now: datetime,
    base: float,
    max_attempts: int,
) -> None:
    """Store what one attempt came to: delivered, refused, given up, or due again later
    (``backoff`` after ``now``, when the attempt ended). The log names the delivery by its
    ``key``, what its receiver saw as X-HITL-Delivery."""
    delivery_id, attempts, key = delivery["id"], delivery["attempts"], delivery["key"]
    if error is None:
        rt.store.finish_delivery(delivery_id, "delivered")
        done.delivered.append(delivery_id)
        logger.info("webhook %s for item %s delivered", key, delivery["item_id"])
    elif isinstance(error, RefusedDestination):
        reason = _refusal(error)
        rt.store.finish_delivery(delivery_id, "failed", error=reason)
        done.failed.append(delivery_id)
        logger.warning("webhook %s for item %s %s", key, delivery["item_id"], reason)
    elif attempts >= max_attempts:
        rt.store.finish_delivery(delivery_id, "failed", error=error)
        done.failed.append(delivery_id)
        logger.warning(
            "webhook %s for item %s failed %d times, giving up: %s",
            key,
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
            "webhook %s for item %s failed (attempt %d): %s; retrying at %s",
            key,
            delivery["item_id"],
            attempts,
            error,
            _iso(retry_at),
        )


def _refusal(error: RefusedDestination) -> str:
    """What a refused delivery's ``last_error`` says."""
    return f"refused: {error}; {ALLOW_HINT}"[:300]


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict, answer_within: float
) -> str | RefusedDestination | None:
    """POST once; None on a 2xx answer, else what went wrong (a ``RefusedDestination`` when
    the name resolved to an internal address). Redirects are not followed."""
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
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, RefusedDestination):
            return exc.os_error
        return f"{type(exc).__name__}: {exc}"[:300]
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"[:300]


async def run_deliveries(rt: Runtime, *, base: float = BASE_DELAY, tick: float = IDLE_TICK) -> None:
    """Background task: keep up to CONCURRENCY sends under way (at most PER_RECEIVER to one
    receiver), claiming what is due as each ends; with nothing to claim, wait until a send
    ends or the next delivery falls due (or ``tick`` seconds, to notice new ones)."""
    if not rt.settings.webhook_secret:
        logger.info("HITL_WEBHOOK_SECRET is not set: webhook deliveries are off")
        return
    destinations = Destinations.allowing(rt.settings.webhook_allow)
    async with guarded_session(destinations) as session:
        sender = _Sender(
            _Attempt(
                rt,
                session,
                destinations,
                rt.settings.webhook_secret,
                base,
                MAX_ATTEMPTS,
                TIMEOUT,  # read now, not when this module was loaded (tests set it)
            )
        )
        said: str | None = None  # the database's problem last said (once while it lasts)
        try:
            while True:
                sender.forget_ended()
                try:
                    claimed = sender.take_due()
                    # Nothing claimed while sends are under way: what is due waits for a
                    # busy receiver's slot (a send that ends wakes this), or comes new.
                    wait = tick if not claimed and sender.sending else _seconds_until_next(rt, tick)
                except DatabaseError as exc:  # its lock held by another process, its disk
                    problem = str(database_problem(rt.settings.db, exc, lost=rt.store.lost))
                    if problem != said:
                        logger.error(
                            "webhook deliveries wait: %s (said once while it lasts)", problem
                        )
                    said = problem
                    await sender.one_ends(tick)
                    continue
                except Exception:  # noqa: BLE001 - the worker must outlive any one failure
                    logger.exception("webhook round failed")
                    await sender.one_ends(tick)
                    continue
                if said is not None:
                    logger.info("webhook deliveries go on: the database answers again")
                    said = None
                if claimed and len(sender.sending) < CONCURRENCY:
                    # More may be due already, and slots are free: claimed again after one
                    # turn of the event loop. A pass that sent nothing (refused, cancelled)
                    # waits for nothing, and a backlog of them would otherwise hold the loop
                    # (clicks, /healthz) until all of it was recorded.
                    await asyncio.sleep(0)
                    continue
                await sender.one_ends(wait)
        finally:
            await sender.stop()


def _seconds_until_next(rt: Runtime, tick: float) -> float:
    due = rt.store.next_delivery_at()
    if due is None:
        return tick
    wait = (datetime.fromisoformat(due) - rt.clock().astimezone(UTC)).total_seconds()
    return min(max(wait, 0.05), tick)


def _iso(moment: datetime) -> str:
    """The store's time format: UTC ISO-8601 with milliseconds (sorts as text)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")
