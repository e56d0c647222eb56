"""The learning loop inside `hitl serve`: the nightly schedule, admin retrains and rollbacks,
reports, the refreshes of the working model during the day, and keeping the champion in
memory in step with the database (the CLI may retrain or roll back while the server runs: the
champion watch notices that within CHAMPION_CHECK_SECONDS, however full the queue, and serves
the new champion once its file is loaded).

Two models: the *champion* is the gated one, promoted by a retrain with its report and kept
in the registry. The *working model* is the champion refitted in the fit worker every
HITL_REFRESH_EVERY new labels, so the next questions come from a model that knows today's
answers; it lives in memory only (never in the registry, so rollback and prune never see
it), and its version is minus the number of labels read (one below that if a refresh of
other labels, in this server or one before it, took it: the database keeps them, m038;
``RefreshPlan.version``). A refresh holds out the audit
answers given since the champion was trained and replaces the model that scores the queue
only when it gets at least as many of them right as the champion (the cheap gate); then it
both asks (orders the queue) and answers (``/api/predict``, auto-labels), as every item has
one stored prediction. A promotion or rollback ends the working model; a rejected retrain
leaves it in place.

The reports go to HITL_REPORT_CHANNEL through the ``ReportOutbox``: one Slack refuses during
an outage is held (in memory) and posted once Slack answers again, in order, each once.

Over ~400 lines: the schedule, the champion holder and watch, and the refresh share the
``Trainer``'s fit worker and lock; the report outbox is held by the ``Trainer``, and its loop
starts and stops with the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import eventloop
from bot.config import Settings, cron_trigger
from bot.errors import SLACK_TOKEN_REFUSED, StoreError, slack_said
from bot.learning import reports, retrain, stopping
from bot.learning.retrain import FitWorker, Outcome, Plan, Refreshed
from bot.learning.rollback import RollbackPlan, RolledBack, rollback_off_loop
from bot.learning.scoring import scorer_of
from bot.runtime import Champion, Runtime, no_rate_waits, retry_after, wait_until_woken
from bot.store import DatabaseError, Store, database_problem
from model import ModelRegistry

logger = logging.getLogger(__name__)

# How often the champion watch asks the database which version is the champion: one SELECT of
# the small models table, so it can ask every second. A champion changed from the CLI is noticed
# within this, then served once its file is loaded (a few MiB: a second or so; the first model
# of a server that started with none also imports scikit-learn, a few seconds on a busy machine).
CHAMPION_CHECK_SECONDS = 1.0


def make_trigger(settings: Settings) -> CronTrigger:
    """HITL_RETRAIN_CRON in HITL_TIMEZONE, parsed by APScheduler."""
    return cron_trigger(settings.retrain_cron, ZoneInfo(settings.timezone))


def is_missed(trigger: CronTrigger, last_started: datetime | None, now: datetime) -> bool:
    """True when a scheduled time passed since the last retrain started (the server was down)."""
    if last_started is None:
        return False
    due = trigger.get_next_fire_time(None, last_started)
    return due is not None and due <= now


def check_database_file(rt: Runtime) -> bool:
    """Whether the server's database file is still at its path (``Store.check_file``: one
    stat). The first time it is found deleted, moved away or replaced, one ERROR line says so
    and what to do; from then on the store refuses writes, which would go into a file nobody
    will read again, and ``/healthz`` answers 503. The champion watch asks every second."""
    problem = rt.store.check_file()
    if problem is not None:
        logger.error(
            "%s: from now on it refuses writes (they would be lost) and /healthz answers 503;"
            " put the database back at %s (or move what is left there away to start afresh)"
            " and restart hitl serve",
            problem,
            rt.settings.db,
        )
    return rt.store.lost is None


@dataclass(eq=False)
class ChampionWatch:
    """Checks every ``every`` seconds whether the database names another champion than the
    one in memory (a `hitl retrain` or `hitl rollback` from the CLI) and loads it. A check
    that finds none reads one row (``Store.champion_version``), so it can run often. It runs
    on its own, so a queue with every channel full (the dispatcher idle) does not delay it.

    Each check first looks whether the database file is still there (``check_database_file``);
    once it is not, there is nothing to follow. A check the model files fail (the models folder
    deleted or moved) is said in one line, once until it changes, not with a traceback a
    second."""

    rt: Runtime
    every: float = CHAMPION_CHECK_SECONDS
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Condition = field(default_factory=asyncio.Condition)
    started: int = 0
    finished: int = 0
    task: asyncio.Task | None = None
    problem: str | None = None  # why the last check failed, said once

    async def run(self) -> None:
        while True:
            self.wake.clear()
            self.started += 1
            try:
                if check_database_file(self.rt):
                    await follow_champion(self.rt)
                    if self.problem is not None:
                        logger.info("checking for a new champion works again")
                    self.problem = None
            except OSError as exc:  # the model files: a models folder deleted or moved
                self._say(exc)
            except DatabaseError as exc:  # the database: damaged, its disk failing
                self._say_database(exc)
            except Exception:  # noqa: BLE001 - the watch must outlive one failed check
                logger.exception("checking for a new champion failed")
            async with self.done:
                self.finished = self.started
                self.done.notify_all()
            await wait_until_woken(self.wake, self.every)

    def _say(self, exc: OSError) -> None:
        champion = self.rt.champion
        serving = f"keeps serving v{champion.version}" if champion else "has no model"
        problem = f"{exc.strerror or type(exc).__name__}: {exc.filename or exc}"
        if problem != self.problem:
            logger.error(
                "checking for a new champion failed (%s); the server %s: if the models folder"
                " was moved or deleted, put it back or restart hitl serve",
                problem,
                serving,
            )
        self.problem = problem

    def _say_database(self, exc: DatabaseError) -> None:
        """A check the database failed, in one line (``database_problem``: what it means and
        what to do), once until it changes: a damaged file fails every check, a second apart."""
        problem = str(database_problem(self.rt.settings.db, exc, lost=self.rt.store.lost))
        if problem != self.problem:
            logger.error("checking for a new champion failed: %s", problem)
        self.problem = problem

    async def check_now(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Wake the watch and wait until a check that began after this call is done."""
        target = self.started + 1
        self.wake.set()
        async with asyncio.timeout(timeout), self.done:
            await self.done.wait_for(lambda: self.finished >= target)


@dataclass(eq=False)
class ChampionHolder:
    """Owns the champion's loading state for one runtime: a lock so one model loads at a
    time, the version last synced, and the champion watch while one runs. Held as
    ``rt.champion_holder`` and created where the runtime is built (bot/server.py)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    synced_for: int | None = None
    watch: ChampionWatch | None = None

    @classmethod
    def of(cls, rt: Runtime) -> ChampionHolder:
        """The champion holder ``rt`` holds."""
        if not isinstance(rt.champion_holder, cls):
            raise RuntimeError("the runtime was built without a champion holder")
        return rt.champion_holder


@dataclass(eq=False)
class Trainer:
    """Owns the retraining in one running bot: the worker that fits off the event loop (a
    child process in `hitl serve`; None: a worker thread), the retrain running in the
    background after an admin asked for it, whether the nightly scheduler is alive (None:
    no scheduler in this process), and the refreshes of the working model: the fit lock
    (one fit at a time, retrain or refresh), the refresh under way, the label count the
    model now scoring was fitted at, and the last refresh. Held as ``rt.trainer``; created
    with the runtime, bound to it by ``bind``."""

    worker: FitWorker | None = None
    task: asyncio.Task | None = None
    scheduler_alive: bool | None = None
    rt: Runtime | None = None
    fit_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    refresh_task: asyncio.Task | None = None
    again: bool = False  # labels came while a refresh ran: check once more after it
    # Resolved items when the labels of the model that scores were read (None: not known yet,
    # a champion just loaded or promoted: the next check reads it, ``refresh``)
    fitted_at: int | None = None
    refresh_versions: set[int] = field(default_factory=set)  # of the refreshes fitted so far
    last_refresh: Refreshed | None = None
    refreshes: int = 0  # refreshes fitted (adopted or not)
    refresh_failures: int = 0  # refreshes failed in a row (``refresh_failed``)
    refresh_retry_at: int | None = None  # resolved items the next refresh waits for after one
    retraining: int = 0  # retrains begun in this process and not finished
    # A retrain begun (run recorded running, lock taken) whose task has not taken it up yet:
    # one the server's stop cancels before it runs is ended by ``stop_begun``
    begun: Plan | None = None
    fits_running: int = 0
    most_fits_at_once: int = 0
    closing: bool = False  # the server is stopping: no refresh starts or runs again
    folder_problem: str | None = None  # why the models folder was unreadable, said once
    locked_by: str | None = None  # another process's retrain the last refresh waited for
    busy_said: str | None = None  # why a refresh could not write (the database busy), said once
    database_said: str | None = None  # why a refresh could not read the database, said once
    # This server's refreshes' owner of the database's refresh lock (``retrain.REFRESH_LOCK``),
    # one for the server: a lock a failed release left is taken again by the next refresh
    refresh_owner: str = field(default_factory=lambda: retrain.lock_owner(retrain.REFRESH_OWNER))
    idle: asyncio.Condition = field(default_factory=asyncio.Condition)
    outbox: ReportOutbox | None = None  # the reports Slack refused for a while (``ReportOutbox``)
    waker: asyncio.Task | None = None  # wakes the nightly scheduler (``start_scheduler``)

    @classmethod
    def of(cls, rt: Runtime) -> Trainer:
        """The trainer ``rt`` holds."""
        if not isinstance(rt.trainer, cls):
            raise RuntimeError("the runtime was built without a trainer")
        return rt.trainer

    def bind(self, rt: Runtime) -> Trainer:
        self.rt = rt
        return self

    def wake(self) -> None:
        """People resolved items: start a refresh if one is due (returns at once)."""
        if self.rt is None or self.rt.settings.refresh_every <= 0 or self.closing:
            return
        if self.refresh_task is not None and not self.refresh_task.done():
            self.again = True
            return
        self.refresh_task = eventloop.background(self._refreshing(), name="hitl-refresh")

    async def _refreshing(self) -> None:
        assert self.rt is not None
        try:
            while True:
                self.again = False
                try:
                    done = await refresh(self.rt)
                except retrain.FitStopped:  # the server stops: not a failure, nothing to say
                    logger.info("a refresh was stopped: the server is stopping")
                    break
                except Exception as exc:  # noqa: BLE001 - later labels try again (backoff)
                    self.refresh_failed(exc)
                else:
                    if done is not None:  # it fitted: the next refresh waits the usual step
                        self.refresh_failures, self.refresh_retry_at = 0, None
                        self.database_said = None
                if not self.again or self.closing:  # closing: the store may be closed next
                    break
        finally:
            async with self.idle:
                self.idle.notify_all()

    def refresh_failed(self, exc: Exception) -> None:
        """A refresh failed: one line with why, and refreshes back off. The next one waits for
        twice its usual step of new labels, twice that after another failure in a row (up to
        REFRESH_BACKOFF_MOST times), until one fits again: else every click past the step
        would start a refresh that fails the same way (a fit out of memory, each forking two
        children). A traceback only for a failure of no known cause, first in a row."""
        assert self.rt is not None
        self.refresh_failures += 1
        times = 2 ** min(self.refresh_failures, REFRESH_BACKOFF_MOST)
        step = refresh_step(self.rt.settings.refresh_every, self.fitted_at or 0) * times
        try:
            now = labels_now(self.rt)
        except Exception:  # noqa: BLE001 - the database failing too: from the labels fitted
            now = self.fitted_at or 0
        self.refresh_retry_at = now + step
        if isinstance(exc, DatabaseError):  # the database (damaged, its disk failing), not the
            # fit: the store's words for it (what to do), in one line, once while it lasts
            problem = str(database_problem(self.rt.settings.db, exc, lost=self.rt.store.lost))
            if problem != self.database_said:
                logger.error("refreshing the working model failed: %s", problem)
            self.database_said = problem
            return
        known = isinstance(exc, retrain.FitDied | retrain.RefreshFailed | MemoryError)
        why = str(exc) if known else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, MemoryError):  # (its str is mostly empty) as the fit's own says it
            why = retrain.out_of_memory(f"MemoryError: {exc}" if str(exc) else "MemoryError")
        logger.warning(
            "refreshing the working model failed: %s; refreshes wait until %d more labels"
            " (%d resolved items)%s",
            why.rstrip(),
            step,
            self.refresh_retry_at,
            ", twice as many after each failure in a row" if self.refresh_failures == 1 else "",
            exc_info=not known and self.refresh_failures == 1,
        )

    async def settled(self, timeout: float = 120.0) -> None:  # noqa: ASYNC109
        """Wait until no refresh is running or due to run (tests, benchmarks)."""
        async with asyncio.timeout(timeout), self.idle:
            await self.idle.wait_for(lambda: self.refresh_task is None or self.refresh_task.done())

    @contextlib.asynccontextmanager
    async def fitting(self):  # noqa: ANN201
        """Hold the fit lock and count the fit (``most_fits_at_once`` stays 1)."""
        async with self.fit_lock:
            self.fits_running += 1
            self.most_fits_at_once = max(self.most_fits_at_once, self.fits_running)
            try:
                yield
            finally:
                self.fits_running -= 1

    def say_folder(self, problem: str | None, champion: Champion | None) -> None:
        """A refresh found the models folder unreadable (moved or deleted under the server):
        one line, once until it changes. The refresh goes on from the champion in memory."""
        if problem is not None and problem != self.folder_problem:
            logger.warning(
                "the models folder cannot be read (%s): refreshes go on from v%s, the model in"
                " memory, but a retrain or rollback needs the folder: put it back",
                problem,
                champion.version if champion else None,
            )
        self.folder_problem = problem

    def retrain_running(self) -> bool:
        return self.retraining > 0 or (self.task is not None and not self.task.done())

    def waits_for_lock(self, plan: retrain.RefreshPlan) -> bool:
        """Whether the refresh ``plan`` was read for is skipped because another retrain or
        rollback (the CLI's, from cron say) holds the database's retrain lock: it takes
        precedence, and two fits at once are the memory peak a small server cannot have. Said
        once per holder; the next label tries again."""
        return self.waits_for(plan.locked_by)

    def waits_for(self, holder: str | None) -> bool:
        """``waits_for_lock`` for ``holder`` (None: nobody holds the lock)."""
        if holder is not None and holder != self.locked_by:
            logger.info(
                "a refresh waits: %s (it holds the retrain lock); the next label tries again",
                retrain.busy_reason(holder),
            )
        self.locked_by = holder
        return holder is not None


# A refresh refits every label, so its cost grows with them, while what a step of
# HITL_REFRESH_EVERY answers adds shrinks against them: 25 answers barely move a model fitted on
# 150,000 imported labels, whose fit takes 284 s of CPU and 1.4 GB (RESULTS, "Vocabulary
# growth"). So the step is also at least this share of the labels last fitted (1 %: from 2,500
# labels on with the default 25; 1,500 answers at 150,000), which keeps a refresh's CPU per
# answer bounded instead of one fit following another all day.
REFRESH_GROWTH = 0.01

# After a failed refresh the next waits for twice the step of new labels, doubled again after
# each failure in a row, at most 2**REFRESH_BACKOFF_MOST times (``Trainer.refresh_failed``).
REFRESH_BACKOFF_MOST = 6


def refresh_step(every: int, fitted: int) -> int:
    """New labels a refresh waits for after one on ``fitted`` labels: HITL_REFRESH_EVERY, or
    REFRESH_GROWTH of ``fitted`` when that is more."""
    return max(every, math.ceil(fitted * REFRESH_GROWTH))


def labels_now(rt: Runtime) -> int:
    """Resolved items less the gold ones (``Store.resolved_to_train``: cheap)."""
    return int(rt.store.resolved_to_train())


def read_refresh_plan(
    served: Store,
    settings: Settings,
    registry: ModelRegistry | None,
    champion: Champion | None,
    taken: Collection[int] = (),
) -> retrain.RefreshPlan:
    """Every label a refresh trains on, read on a connection of this thread's own
    (``Store.apart``): the read grows with the labels, so it runs in a worker thread, never on
    the event loop. ``taken``: the versions of the refreshes fitted before."""
    with served.apart() as store:
        return retrain.begin_refresh(store, settings, registry, champion, taken=taken)


async def _read_plan(rt: Runtime, champion: Champion | None) -> retrain.RefreshPlan:
    """``read_refresh_plan`` in a worker thread, its version not one of an earlier refresh."""
    trainer = Trainer.of(rt)
    taken = frozenset(trainer.refresh_versions)
    plan = await asyncio.to_thread(
        read_refresh_plan, rt.store, rt.settings, rt.registry, champion, taken
    )
    trainer.say_folder(plan.folder_problem, champion)
    return plan


def _busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (another process held its write lock
    past the wait) or the store's refusal (``StoreError``: the file is gone)."""
    if isinstance(exc, StoreError):
        return True
    name = getattr(exc, "sqlite_errorname", "") or ""
    return isinstance(exc, DatabaseError) and (
        name.startswith("SQLITE_BUSY") or "database is locked" in str(exc)
    )


def _take_fit(served: Store, plan: retrain.RefreshPlan, owner: str, ttl: timedelta) -> str | None:
    """In a worker thread, on a connection of its own (``Store.apart``): record the plan's
    version (``Store.take_refresh_version``), then take the refresh lock. Returns who keeps
    the refresh from fitting (``retrain.take_refresh_lock``; no lock is taken then). In that
    order, a write refused leaves no lock behind; a version recorded for a refresh that did
    not fit is taken again only by a fit on the same labels, the same model."""
    with served.apart() as store:
        store.take_refresh_version(plan.version, plan.digest)
        return retrain.take_refresh_lock(store, owner, datetime.now(UTC), ttl)


async def _begin_fit(rt: Runtime, plan: retrain.RefreshPlan) -> bool:
    """``_take_fit`` off the loop: True when the refresh may fit. False when another process
    holds a lock (``Trainer.waits_for``) or the database refused the write because another
    process is writing to it (said once until a write goes through): the next label tries
    again, and no failure is counted (``Trainer.refresh_failed`` is for failed fits)."""
    trainer = Trainer.of(rt)
    last = trainer.last_refresh.seconds if trainer.last_refresh else None
    ttl = retrain.refresh_lock_ttl(last)
    try:
        holder = await asyncio.to_thread(_take_fit, rt.store, plan, trainer.refresh_owner, ttl)
    except (StoreError, DatabaseError) as exc:
        if not _busy(exc):
            raise
        why = f"{type(exc).__name__}: {exc}" if isinstance(exc, DatabaseError) else str(exc)
        if why != trainer.busy_said:
            logger.warning(
                "a refresh waits: the database is busy (another process is writing to it: %s);"
                " the next label tries again",
                why,
            )
        trainer.busy_said = why
        return False
    trainer.busy_said = None
    return not trainer.waits_for(holder)


async def _end_fit(rt: Runtime) -> None:
    """Release the refresh lock after the fit (off the loop). A release the database refuses
    leaves the row to this server's next refresh (the same owner takes it again), and a CLI
    retrain waits for it no longer than it expires: said in one line."""
    owner = Trainer.of(rt).refresh_owner

    def release() -> None:
        with rt.store.apart() as store:
            store.release_lock(retrain.REFRESH_LOCK, owner)

    try:
        await asyncio.to_thread(release)
    except Exception as exc:  # noqa: BLE001 - the fit's own outcome (or error) is what counts
        logger.warning(
            "could not release the refresh lock (%s: %s); a `hitl retrain` from the CLI waits"
            " for it until it expires, or this server's next refresh takes and releases it",
            type(exc).__name__,
            exc,
        )


async def _record_check(rt: Runtime, done: Refreshed, champion: Champion | None) -> None:
    """Store a fitted refresh's stop check (``stopping.record``), off the loop: at every label
    it was planned on (held-out audit answers too), as a retrain counts; with the champion it
    was refreshed from, and whether a promotion or rollback made while it fitted dropped it
    (not the model served then: ``Store._served``). A database that refuses the write (another
    process writing to it past the wait) loses the check, said in one line: the refresh is
    adopted all the same, and the next one records its own."""
    assert done.stop is not None
    dropped = rt.champion is not champion
    base = champion.version if champion else None

    def write() -> None:
        with rt.store.apart() as store:
            stopping.record(store, done.stop, kind="refresh", version=done.version,
                            n_train=done.n_read, base_version=base, dropped=dropped)  # fmt: skip

    try:
        await asyncio.to_thread(write)
    except (StoreError, DatabaseError) as exc:
        logger.warning(
            "could not store refresh r%d's stop check (%s: %s); the refresh goes on without it",
            -done.version,
            type(exc).__name__,
            exc,
        )


def refresh_due(trainer: Trainer, every: int, resolved: int) -> bool:
    """Whether ``resolved`` items are a step (``refresh_step``) past those the model that
    scores was fitted at; True while that is not known yet (the plan's read tells)."""
    fitted = trainer.fitted_at
    return fitted is None or resolved - fitted >= refresh_step(every, fitted)


async def refresh(rt: Runtime) -> Refreshed | None:
    """Refit the working model when HITL_REFRESH_EVERY labels (or REFRESH_GROWTH of the labels
    it was fitted on, when more: ``refresh_step``) came since the model that scores the queue
    was fitted, gate it, and have the queue re-scored with it (``Scorer.rescore``). Skipped while a
    retrain runs (it takes precedence; it brings in the labels it read at its start, and the
    trainer checks again when it ends, for those answered during its fit), and while another
    process (`hitl retrain` or `hitl rollback` from the CLI) holds the database's retrain lock
    (``Trainer.waits_for_lock``: the next label tries again). While it fits it holds the
    database's refresh lock (``retrain.REFRESH_LOCK``), so a `hitl retrain` from the CLI waits
    for it (``retrain.wait_for_refresh``). Its writes run off the event loop; a database
    another process holds past the wait skips it in one line (``_begin_fit``) or, after the
    fit, loses only its stop check (``_record_check``). Returns the refresh, or None when none
    was due.

    Both sides count resolved items, less the gold ones (``labels_now``: answers to gold
    questions are no labels to learn from, so they make no refresh due): ``fitted_at`` is the
    count read with a refresh's labels, not the labels it trained on: resolved items that never
    train (items under a retired label, repeats of a gold text) would keep
    the two apart for good, and past a step every answer would start a full refit. For a
    champion (loaded at start, promoted, rolled back to) the count at its training is not
    stored: the first check reads the labels and takes the resolved items then less the
    labels resolved after the champion's newest one (``RefreshPlan.since_champion``), so a
    restarted server refits at once when the labels given since the champion call for it,
    and never for resolved items the champion did not train on either. A champion a rollback
    made champion again counts from that rollback (its run, recorded), not from its own
    read: the labels the rolled-back model learned from do not make a refresh due at once
    (it still fits every label when it comes, as a retrain does)."""
    trainer = Trainer.of(rt)
    every = rt.settings.refresh_every
    if every <= 0 or trainer.retrain_running() or rt.store.lost is not None:
        return None  # (a lost database: its worker's connection would create a new one)
    fewer = (trainer.fitted_at or 0) - labels_now(rt)
    if fewer > 0:  # labels deleted since (`hitl delete`, DELETE /api/items): the step counts
        trainer.fitted_at -= fewer  # from the labels left, not from more than there are now
        if trainer.refresh_retry_at is not None:
            trainer.refresh_retry_at -= fewer
    if not refresh_due(trainer, every, labels_now(rt)):
        return None
    if trainer.refresh_retry_at is not None and labels_now(rt) < trainer.refresh_retry_at:
        return None  # backing off after a failed refresh (``Trainer.refresh_failed``)
    champion = rt.champion
    plan = None
    if trainer.fitted_at is None:  # the champion's count, from the labels it lacks (a read:
        plan = await _read_plan(rt, champion)  # the fit lock stays free for a retrain)
        if trainer.waits_for_lock(plan):  # another process retrains: nothing was read
            return None
        if rt.champion is not champion:  # loaded meanwhile (the CLI): read again for it
            trainer.again = True
            return None
        if trainer.fitted_at is None:
            trainer.fitted_at = plan.resolved - plan.since_champion
        if not refresh_due(trainer, every, plan.resolved):
            return None
    async with trainer.fitting():
        if trainer.retrain_running() or not refresh_due(trainer, every, labels_now(rt)):
            return None  # a retrain came first, and fitted these labels
        if trainer.fitted_at is None:  # a champion came meanwhile: its count first
            trainer.again = True
            return None
        if plan is None or rt.champion is not champion or plan.resolved != labels_now(rt):
            champion = rt.champion
            plan = await _read_plan(rt, champion)
            if trainer.waits_for_lock(plan):  # another process retrains: nothing was read
                return None
            if rt.champion is not champion or trainer.fitted_at is None:
                trainer.again = True  # a champion loaded during the read: its count first
                return None
        # The refresh lock is taken for the fit (a `hitl retrain` from the CLI waits for it),
        # and the version recorded with what it is fitted on, before anything is scored under
        # it: a later server's refresh of other labels takes another (``begin_refresh``). Both
        # written off the loop; a database another process writes to past the wait skips the
        # refresh (one line): the next label tries again.
        held = await _begin_fit(rt, plan)
        if held is not True:
            return None
        before, trainer.fitted_at = trainer.fitted_at, plan.resolved
        trainer.refresh_versions.add(plan.version)  # the next refresh gets another
        model = champion.classifier if champion else None
        try:
            if trainer.worker is not None:
                done = await trainer.worker.refresh(plan, model)
            else:
                done = await asyncio.to_thread(retrain.compute_refresh, plan, model)
            if done.failed:  # the fit raised (out of memory, say): said, and refreshes back off
                raise retrain.RefreshFailed(done.reason.removeprefix("not refreshed: "))
        except BaseException:
            if rt.champion is champion:  # nothing fitted: the next answer tries again. Not
                trainer.fitted_at = before  # over a rollback's or promotion's count (None)
            raise
        finally:
            await _end_fit(rt)
    trainer.refreshes += 1
    trainer.last_refresh = done
    if done.stop is not None:  # every fitted update counts for when to stop, adopted or not
        await _record_check(rt, done, champion)
    if rt.champion is not champion:
        logger.info("dropped a refresh: the champion changed while it fitted")
        return done
    logger.info(
        "refresh r%d on %d labels (%.1f s): %s", -done.version, done.n_train, done.seconds,
        done.reason,
    )  # fmt: skip
    if not done.passed or done.classifier is None:
        return done
    rt.working = Champion(
        version=done.version,
        classifier=done.classifier,
        created_at=rt.clock().isoformat(timespec="seconds"),
        n_train=done.n_train,
        n_read=done.n_read,
    )
    # The queue re-ordered by the refreshed model: in the background in `hitl serve` (at a
    # million items the walk takes minutes, and the next refresh must not wait for it; the
    # dispatcher's next round re-scores the items it chooses among: ``fresh_window``).
    await scorer_of(rt).rescore()
    rt.wake_dispatcher()
    return done


def adopt_champion(rt: Runtime, champion: Champion | None) -> None:
    """Serve ``champion`` now (a retrain promoted it, a rollback loaded it): no reload. The
    working model ends: the next refresh starts from this champion."""
    rt.champion = champion
    _end_working(rt)
    ChampionHolder.of(rt).synced_for = champion.version if champion else None


def _end_working(rt: Runtime) -> None:
    """The working model ends. The resolved items the new champion was trained at are read
    at the next check (``refresh``): its ``n_train`` counts training rows, not those. After
    a rollback (this server's or the CLI's) they count from the rollback, which its run
    records (``Store.rolled_back_mark``), so a restarted server counts the same."""
    rt.working = None
    if isinstance(rt.trainer, Trainer):
        rt.trainer.fitted_at = None


def warm_scoring(rt: Runtime) -> None:
    """Start `hitl serve`'s scoring children now (``ScoringWorker.warm``), so that the first
    request after a model arrives does not wait for one. Blocks while the fork server imports
    the model code (seconds, the first time): on the event loop only before the server listens;
    else in a worker thread, while nothing scores (see ``sync_champion``)."""
    scorer = scorer_of(rt)
    for worker in (scorer.worker, scorer.walk_worker):
        if worker is not None and not worker.closed:
            worker.warm()


async def sync_champion(rt: Runtime) -> bool:
    """Reload the champion when the database names another one (a CLI retrain or rollback).

    One load at a time per runtime (a model file can be hundreds of MB): a second caller
    waits for it and then finds nothing to do. Returns True when a new champion was loaded."""
    if rt.registry is None:
        return False
    state = ChampionHolder.of(rt)
    async with state.lock:
        version = rt.store.champion_version()
        current = rt.champion.version if rt.champion else None
        if version is None or version in (current, state.synced_for):
            state.synced_for = version
            return False
        loading = asyncio.to_thread(retrain.load_champion, rt.registry)
        if rt.model is None:
            # The server's first model: its scoring children were never started (nothing to
            # score), and the first one starts the fork server, which imports scikit-learn.
            # Start them beside the load (both import it: side by side on two cores), in a
            # thread, as nothing scores yet; else the first /api/predict would wait seconds.
            champion, warmed = await asyncio.gather(
                loading, asyncio.to_thread(warm_scoring, rt), return_exceptions=True
            )
            if isinstance(warmed, Exception):  # the first request tries again, and says why
                logger.warning("could not start the scoring process ahead: %s", warmed)
            if isinstance(champion, BaseException):
                raise champion
        else:
            champion = await loading
        rt.champion = champion
        _end_working(rt)
        state.synced_for = version  # even if it fell back to an older file: not again
    logger.info("champion is now v%s", champion.version if champion else None)
    return True


async def follow_champion(rt: Runtime) -> bool:
    """``sync_champion``; when it loaded a new champion, the queue is re-ordered by it and the
    dispatcher woken. Returns True when a new champion was loaded."""
    if not await sync_champion(rt):
        return False
    await scorer_of(rt).rescore()
    rt.wake_dispatcher()
    return True


async def run_rollback(rt: Runtime, plan: RollbackPlan) -> RolledBack:
    """Finish a rollback begun with ``rollback.begin_rollback``: load and check the file in a
    worker thread, mirror the database, serve the model, re-score the queue."""
    assert rt.registry is not None
    done = await rollback_off_loop(rt.store, rt.registry, plan)
    async with ChampionHolder.of(rt).lock:  # after any reload already under way, never before it
        adopt_champion(rt, done.champion)
    if rt.model is not None:
        await scorer_of(rt).rescore()
    rt.wake_dispatcher()
    return done


async def run_retrain(
    rt: Runtime, triggered_by: str, *, force: bool = False, plan: Plan | None = None
) -> Outcome:
    """Retrain, swap in a promoted champion, re-score the queue and post the report."""
    assert rt.registry is not None

    def swap(champion: retrain.Champion) -> None:
        adopt_champion(rt, champion)

    trainer = Trainer.of(rt)
    started: Plan | Outcome | None = plan
    if started is None:  # the lock first: a second retrain is told at once that one runs
        started = await begin_retrain(rt, triggered_by, force=force)
    if isinstance(started, Outcome):
        outcome = started
    else:
        if trainer.begun is started:
            trainer.begun = None  # taken up: its end is this task's from here
        trainer.retraining += 1  # a refresh due meanwhile is skipped: this fit brings it in
        try:
            # the fit lock: after a refresh under way, never beside it
            # A failure on its way (its model files cannot be written: a full disk, a read-only
            # folder; or a bug) is a failed outcome, logged in one line: its report tells the
            # admins (``raise_failures=False``); the admin who asked waits for it.
            async with stopped_by_shutdown(rt, started.run_id):
                taken_up = False
                try:
                    async with trainer.fitting():
                        taken_up = True  # ``retrain.retrain`` records its end, whatever comes
                        outcome = await retrain.retrain(
                            rt.store,
                            rt.settings,
                            rt.registry,
                            champion=rt.champion,
                            triggered_by=triggered_by,
                            force=force,
                            on_champion=swap,
                            plan=started,
                            worker=trainer.worker,
                            scorer=scorer_of(rt),
                            raise_failures=False,
                        )
                except BaseException as exc:
                    # stopped as it waited for the fit lock (a refresh fitting): its run was
                    # left running and the lock held, after a clean exit
                    if not taken_up:
                        await _give_up_begun(rt, started, exc)
                    raise
        finally:
            trainer.retraining -= 1
        trainer.wake()  # labels answered during the fit are not in it: a refresh may be due
    rt.wake_dispatcher()
    quiet = triggered_by.startswith("schedule") and outcome.status in ("busy", "nothing_new")
    if not quiet:  # a night with nothing new is recorded in runs, not announced
        await _post_outcome(rt, outcome)
    return outcome


async def _post_outcome(rt: Runtime, outcome: Outcome) -> None:
    """A retrain's report, named in the log by its time and version (or status)."""
    what = f"the retrain report of {report_time(rt)}" + (
        f" (v{outcome.version})" if outcome.version is not None else f" ({outcome.status})"
    )
    text = reports.retrain_text(outcome, admins=rt.settings.admins, timezone=rt.settings.timezone)
    await post_report(rt, text, what)


STOPPED_REPORT = (
    "Retrain stopped: the server was shutting down before it finished. Run `/hitl retrain`"
    " again once it is back."
)


@contextlib.asynccontextmanager
async def stopped_by_shutdown(rt: Runtime, run_id: int | None = None):  # noqa: ANN201
    """Around a retrain: when the server's stop ends it (its fit worker closed, the task
    cancelled), say so in the report channel (within 5 s: the server is stopping), as the
    admin was promised a result; the run is recorded "stopped: the server was shutting down".
    One stopped as its fit wrote its model files recorded them (``retrain.FitStopped``): its
    report is the retrain's own. One stopped once its end had recorded it promoted or
    rejected (run ``run_id``: the end's thread is waited for, ``retrain._at_end``) says that
    (``_ended_at_stop``), not that it stopped."""
    try:
        yield
    except (asyncio.CancelledError, retrain.FitStopped) as exc:
        if Trainer.of(rt).closing:
            written = exc.computed if isinstance(exc, retrain.FitStopped) else None
            if written is not None:
                report, what = _post_outcome(rt, written.outcome), "the retrain report"
            else:
                what = f"the retrain-stopped report of {report_time(rt)}"
                text = _ended_at_stop(rt, run_id) or STOPPED_REPORT
                report = post_report(rt, text, what)
            await _post_while_stopping(report, what, STOPPED_REPORT_SECONDS)
        raise


def _ended_at_stop(rt: Runtime, run_id: int | None) -> str | None:
    """What run ``run_id`` recorded when the server's stop came as its end was being written
    (its thread went on to the end): promoted or rejected, in one line; None when it was not
    recorded so (stopped, failed, still running) or cannot be read (one row read)."""
    if run_id is None:
        return None
    try:
        rows = list(rt.store.db["runs"].rows_where("id = ?", [run_id], limit=1))
    except Exception:  # noqa: BLE001 - unreadable: the retrain-stopped report, as before
        return None
    if not rows or rows[0]["status"] not in ("promoted", "rejected"):
        return None
    status = rows[0]["status"]
    try:
        version = json.loads(rows[0]["detail"] or "{}").get("version")
    except ValueError:
        version = None
    named = f"Retrain v{version}" if version is not None else "The retrain"
    then = (
        "it is the champion the server serves once it is back"
        if status == "promoted"
        else "the champion stays"
    )
    return (
        f"{named} was {status} as the server stopped ({then}); its report was not posted:"
        " `/hitl accuracy` shows it once the server is back."
    )


STOPPED_REPORT_SECONDS = 5.0  # the server is stopping: a report's post gets this long


async def _give_up_begun(rt: Runtime, plan: Plan, exc: BaseException) -> None:
    """End retrain ``plan`` (begun, never fitted) as stopped: ``retrain.give_up_begun``."""
    assert rt.registry is not None
    worker = Trainer.of(rt).worker
    await retrain.give_up_begun(rt.store, plan, exc, worker, rt.registry, rt.champion)


async def _stopped_before_taken_up(rt: Runtime, plan: Plan, exc: BaseException) -> None:
    """A retrain begun that the server's stop ended before its task took it up (the
    listener's read cancelled past the stop's drain, or its task cancelled before it ran):
    its run recorded stopped, the lock released, and, as the admin was promised a result,
    the retrain-stopped report posted (within 5 s)."""
    await _give_up_begun(rt, plan, exc)
    if Trainer.of(rt).closing:
        what = f"the retrain-stopped report of {report_time(rt)}"
        report = post_report(rt, STOPPED_REPORT, what)
        await _post_while_stopping(report, what, STOPPED_REPORT_SECONDS)


async def stop_begun(rt: Runtime) -> None:
    """At the server's stop, once its tasks have ended: a retrain begun whose task was
    cancelled before it ran (``Trainer.begun``) is ended as stopped and said, as one that ran
    is (``_stopped_before_taken_up``)."""
    trainer = Trainer.of(rt)
    plan, trainer.begun = trainer.begun, None
    if plan is not None:
        await _stopped_before_taken_up(rt, plan, asyncio.CancelledError())


async def _post_while_stopping(
    report: Coroutine[Any, Any, None], what: str, seconds: float
) -> None:
    """Post ``report`` within ``seconds``, even if the server's stop cancels the task meanwhile
    (it cancels the retrain's task once the fit worker is closed, and waits for it): a post
    cancelled halfway was a report lost. Past ``seconds`` (Slack does not answer), it is given
    up, said in one line."""
    post = eventloop.background(report, name="hitl-report-at-stop")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not post.done() and (left := deadline - loop.time()) > 0:
        with contextlib.suppress(asyncio.CancelledError):  # the stop's cancel: bounded here
            await asyncio.wait([post], timeout=left)
    if not post.done():
        post.cancel()
        logger.warning(
            "could not post %s: Slack did not answer within %.0f s; not posted: the server is"
            " stopping (%s)",
            what,
            seconds,
            READ_IT,
        )
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait([post])
    if not post.cancelled() and (error := post.exception()) is not None:
        logger.warning("could not post %s as the server stopped: %r", what, error)


def read_retrain_plan(
    served: Store, settings: Settings, registry: ModelRegistry, triggered_by: str, force: bool
) -> Plan | Outcome:
    """``retrain.begin`` (the lock, the run, every label the retrain trains on) on a
    connection of this thread's own: the read grows with the labels, so it runs in a worker
    thread, never on the event loop. Refused (``StoreError``) once the server's file was
    deleted or replaced: a retrain would create an empty database at its path."""
    with served.apart() as store:
        return retrain.begin(store, settings, registry, triggered_by=triggered_by, force=force)


async def begin_retrain(rt: Runtime, triggered_by: str, *, force: bool = False) -> Plan | Outcome:
    """Take the lock and read the training data off the event loop (see ``read_retrain_plan``)."""
    assert rt.registry is not None
    begun = asyncio.ensure_future(
        asyncio.to_thread(
            read_retrain_plan, rt.store, rt.settings, rt.registry, triggered_by, force
        )
    )
    try:
        return await asyncio.shield(begun)
    except asyncio.CancelledError as exc:
        # The server's stop (its drain's time out) cancelled the caller; the thread cannot be
        # stopped and records the run and takes the lock all the same: its plan is ended here
        # (it was left running, the lock held), before the server closes its database.
        while not begun.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([begun])
        if not begun.cancelled() and begun.exception() is None:
            if isinstance(plan := begun.result(), Plan):
                await _stopped_before_taken_up(rt, plan, exc)
        raise


async def start_retrain(rt: Runtime, triggered_by: str, *, force: bool = False) -> Outcome | None:
    """Begin a retrain now (takes the lock, reads the labels off the event loop) and finish
    it in the background.

    Returns the outcome as soon as it is known when there is nothing to do (busy, nothing
    new), else None once the retrain is under way.
    """
    started = await begin_retrain(rt, triggered_by, force=force)
    if isinstance(started, Outcome):
        return started
    trainer = Trainer.of(rt)
    trainer.begun = started  # until its task takes it up (``stop_begun``)
    trainer.task = eventloop.background(
        run_retrain(rt, triggered_by, force=force, plan=started), name="hitl-retrain"
    )
    # A refresh counts this task as a retrain under way until it is done: check again then.
    trainer.task.add_done_callback(lambda _task: trainer.wake())
    return None


# A report (a retrain's result, a retrain the server's stop ended) that Slack refuses for a
# reason that passes (a 5xx, internal_error, ratelimited, no connection: an outage) is held in
# memory and posted again once Slack answers, in order, each once (``ReportOutbox``). A server
# that stops first loses it (said when it is held, and at the stop).
REPORTS_KEPT = 10  # reports held at most; beyond, the oldest is dropped (said)
# The backoff of the dispatcher's channels and the redrawer's messages (their MAX_BACKOFF;
# bot.learning may not import bot.slack, and tests/bot/test_report_outbox.py keeps them equal),
# doubling from the dispatcher's retry_base.
REPORT_MAX_BACKOFF = 300.0
# Answers after which Slack may have posted the report all the same (the dispatcher's
# MAYBE_DONE): before posting it again, the channel's history is searched for it.
REPORT_MAYBE_DONE = frozenset(
    {"internal_error", "fatal_error", "request_timeout", "service_unavailable"}
)
REPORT_EVENT = "hitl_report"  # the metadata event_type of a report (its event_payload: its key)
READ_IT = "`hitl models` and `hitl accuracy` show what it said"


def report_time(rt: Runtime) -> str:
    """Now, as a report is named in the log ("the retrain report of 2026-12-05 03:40 UTC")."""
    zone = ZoneInfo(rt.settings.timezone)
    return rt.clock().astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


@dataclass(eq=False)
class HeldReport:
    """One report on its way to the report channel, and its backoff once Slack refused it."""

    text: str
    what: str  # how the log names it: "the retrain report of 2026-12-05 03:40 UTC (v2)"
    key: str = field(default_factory=lambda: uuid.uuid4().hex)  # its metadata, to find it
    error: str | None = None  # what its first refusal said (None: never refused)
    failures: int = 0
    due: float = 0.0  # the outbox's clock; not tried before
    unsure: bool = False  # a refusal after which Slack may have posted it: look for it first


@dataclass(frozen=True)
class _Refusal:
    said: str  # "Slack said internal_error", "no answer from Slack (ServerDisconnectedError)"
    error: str  # "internal_error", "ServerDisconnectedError"
    passes: bool  # a retry may work (an outage, a rate limit)
    maybe_done: bool = False  # Slack may have posted it all the same
    wait: float | None = None  # a 429's Retry-After
    needed: str | None = None  # missing_scope: the scope


def _refusal(exc: Exception) -> _Refusal:
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200) or 200
        error = slack_said(exc) or f"HTTP {status}"
        said = f"Slack said {error}"
        if status == 429 or error == "ratelimited":
            wait = retry_after(exc.response) if getattr(exc.response, "headers", None) else None
            return _Refusal(said, error, passes=True, wait=wait)
        if status >= 500 or error in REPORT_MAYBE_DONE:
            return _Refusal(said, error, passes=True, maybe_done=True)
        return _Refusal(said, error, passes=False, needed=slack_said(exc, "needed"))
    name = type(exc).__name__
    # a connection never made reached nothing; any other lost answer may follow a post
    return _Refusal(
        f"no answer from Slack ({name})",
        name,
        passes=True,
        maybe_done=not isinstance(exc, aiohttp.ClientConnectorError),
    )


def _refused_fix(refusal: _Refusal) -> str:
    """What to do about a refusal no retry can fix (as the dispatcher's lines say it)."""
    error = refusal.error
    if error == "is_archived":
        return "unarchive it, or set HITL_REPORT_CHANNEL to another channel and restart"
    if error == "channel_not_found":  # a private channel the bot is not in says so too
        return (
            "invite the bot to it (/invite @hitl), or set HITL_REPORT_CHANNEL to another"
            " channel and restart"
        )
    if error == "not_in_channel":
        return "invite the bot to it (/invite @hitl)"
    if error in SLACK_TOKEN_REFUSED:
        return "fix SLACK_BOT_TOKEN (or reinstall the app)"
    if error == "missing_scope":
        return (
            f"the app lacks the {refusal.needed or 'chat:write'} scope: add it under OAuth &"
            " Permissions → Bot Token Scopes (manifest.yml has it) and reinstall the app"
        )
    return "it is not retried"


class ReportOutbox:
    """Posts the reports to HITL_REPORT_CHANNEL in the order they were written, each once.

    One Slack refuses for a reason that passes is held, with the backoff of the dispatcher's
    channels (doubling from its ``retry_base`` up to ``REPORT_MAX_BACKOFF``; a 429 waits for
    its Retry-After), and the reports written after it wait behind it. Its refusal is said
    once, and its post once it goes through. A refusal no retry can fix (an archived channel,
    a refused token, a missing scope) drops it with one line that says what to fix. At most
    ``kept`` reports are held: beyond, the oldest is dropped, said with where to read it.

    Held in memory (``Trainer.outbox``): the background loop (``run``) starts with the
    nightly scheduler and stops with it (``start_scheduler``, ``stop_scheduler``); what is
    still held then is said lost. Without that loop (``init_app(run_background=False)``), a
    held report goes with the next report posted, once due."""

    def __init__(self, rt: Runtime, *, kept: int = REPORTS_KEPT) -> None:
        self.rt = rt
        self.kept = kept
        self.clock: Callable[[], float] = time.monotonic  # seconds, for the backoff
        self.queue: deque[HeldReport] = deque()
        self.lock = asyncio.Lock()  # one sender at a time: the loop, a new report
        self.sending: HeldReport | None = None
        self.woken = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.history_said: str | None = None  # why the history could not be read, said once

    @classmethod
    def of(cls, rt: Runtime) -> ReportOutbox:
        """The outbox of ``rt``'s trainer (made at first use)."""
        trainer = Trainer.of(rt)
        if trainer.outbox is None:
            trainer.outbox = cls(rt)
        return trainer.outbox

    @property
    def retry_base(self) -> float:
        """Seconds; the dispatcher's (``init_app``'s retry_base), else 1."""
        return float(getattr(self.rt.dispatcher, "retry_base", 1.0))

    def add(self, text: str, what: str) -> HeldReport:
        """Queue a report behind those held; beyond ``kept``, drop the oldest (said)."""
        report = HeldReport(text, what)
        self.queue.append(report)
        while len(self.queue) > self.kept:
            oldest = next(r for r in self.queue if r is not self.sending)
            self.queue.remove(oldest)
            logger.warning(
                "dropped %s, held since Slack refused it (%s): more than %d reports waited; %s",
                oldest.what,
                oldest.error,
                self.kept,
                READ_IT,
            )
        return report

    def next_due(self) -> float | None:
        """The clock at which the oldest held report is due (None: none is held)."""
        return self.queue[0].due if self.queue else None

    def wake(self) -> None:
        self.woken.set()

    async def send(self, *, now: bool = False) -> int:
        """Post the reports in order while the oldest is due (``now``: backoff or not); stop
        at the first Slack refuses for a while. Returns how many are held."""
        async with self.lock:
            while self.queue:
                report = self.queue[0]
                if not now and report.due > self.clock():
                    break
                channel = self.rt.settings.effective_report_channel
                if not channel:
                    self.queue.clear()
                    break
                self.sending = report
                found = False
                try:
                    found = report.unsure and await self._found(channel, report)
                    if not found:
                        await self._post(channel, report)
                except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                    refusal = _refusal(exc)
                    if refusal.passes:
                        if self._hold(report, channel, refusal):
                            break
                        continue  # the server stops: each is tried once, not held
                    self._remove(report)
                    self._refused(report, channel, refusal)
                    continue
                except Exception:  # noqa: BLE001 - held, with backoff: never a tight loop
                    logger.exception("posting %s failed", report.what)
                    if self._hold(report, channel, _Refusal("an error", "error", passes=True)):
                        break
                    continue
                finally:
                    self.sending = None
                self._remove(report)
                if found:
                    logger.warning(
                        "%s was posted after all (Slack's answer to it was lost: %s); not posted"
                        " again",
                        report.what,
                        report.error,
                    )
                elif report.error is not None:
                    logger.warning(
                        "posted %s that Slack refused at first (%s)", report.what, report.error
                    )
            return len(self.queue)

    async def _post(self, channel: str, report: HeldReport) -> None:
        """chat.postMessage; a public channel the bot is not in yet it joins once
        (``channels:join``, as the question channels), else the report would be lost. A 429
        is one call, held for its Retry-After (``_hold``): the client's own retries slept it
        out twice inside ``send``, its lock held and the retrain that wrote it waiting."""
        client = no_rate_waits(self.rt.client)
        kwargs = {
            "channel": channel,
            "text": report.text,
            "mrkdwn": True,
            "metadata": {"event_type": REPORT_EVENT, "event_payload": {"report": report.key}},
        }
        try:
            await client.chat_postMessage(**kwargs)
        except SlackApiError as exc:
            if slack_said(exc) != "not_in_channel":
                raise
            logger.warning("not in %s, the report channel; joining it", channel)
            await client.conversations_join(channel=channel)
            await client.chat_postMessage(**kwargs)

    async def _found(self, channel: str, report: HeldReport) -> bool:
        """Whether Slack posted ``report`` after all (its answer was lost): the channel's
        recent history, by the report's metadata. A history Slack refuses to show (a scope)
        is said once, and the report is posted again: twice is better than never."""
        try:
            history = await self.rt.client.conversations_history(
                channel=channel, limit=100, include_all_metadata=True
            )
        except SlackApiError as exc:
            refusal = _refusal(exc)
            if refusal.passes:
                raise
            if self.history_said != refusal.error:
                logger.warning(
                    "cannot look for a report whose answer was lost in %s (%s): posting it"
                    " again, it may show twice",
                    channel,
                    refusal.said,
                )
                self.history_said = refusal.error
            return False
        for message in history.get("messages", []):
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("report") == report.key:
                return True
        return False

    def _remove(self, report: HeldReport) -> None:
        with contextlib.suppress(ValueError):  # dropped meanwhile (more than ``kept``)
            self.queue.remove(report)

    def _hold(self, report: HeldReport, channel: str, refusal: _Refusal) -> bool:
        """Back ``report`` off, or, while the server stops, drop it (said): False."""
        report.unsure = report.unsure or refusal.maybe_done
        report.failures += 1
        delay = refusal.wait
        if delay is None:
            delay = min(self.retry_base * 2 ** (report.failures - 1), REPORT_MAX_BACKOFF)
        report.due = self.clock() + delay
        trainer = self.rt.trainer
        if isinstance(trainer, Trainer) and trainer.closing:
            self._remove(report)
            logger.warning(
                "could not post %s to %s: %s; not posted: the server is stopping (%s)",
                report.what,
                channel,
                refusal.said,
                READ_IT,
            )
            return False
        if report.error is None:  # said once; its post is said too
            report.error = refusal.error
            logger.warning(
                "could not post %s to %s: %s; held, posted when Slack answers again (lost if"
                " the server stops first)",
                report.what,
                channel,
                refusal.said,
            )
        self.wake()
        return True

    def _refused(self, report: HeldReport, channel: str, refusal: _Refusal) -> None:
        fix = _refused_fix(refusal)
        level = logging.WARNING if fix == "it is not retried" else logging.ERROR
        logger.log(
            level,
            "could not post the report to %s: %s; %s (%s is not posted: %s)",
            channel,
            refusal.said,
            fix,
            report.what,
            READ_IT,
        )

    async def run(self) -> None:
        """Background task: post the held reports when their backoff ends."""
        while True:
            self.woken.clear()
            due = self.next_due()
            floor = 0.0
            if due is not None and due <= self.clock():
                try:
                    await self.send()
                except Exception:  # noqa: BLE001 - the loop must outlive one failed pass
                    logger.exception("posting the held reports failed")
                    floor = REPORT_MAX_BACKOFF  # never a tight loop
            due = self.next_due()
            wait = None if due is None else max(due - self.clock(), floor)
            await wait_until_woken(self.woken, wait)

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = eventloop.background(self.run(), name="hitl-report-outbox")

    def stop(self) -> None:
        """The server stops: end the loop; what is still held is lost, said in one line."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self.queue:
            logger.warning(
                "%d report(s) Slack refused are not posted: the server stops (%s); %s",
                len(self.queue),
                ", ".join(r.what for r in self.queue),
                READ_IT,
            )
            self.queue.clear()


async def post_report(rt: Runtime, text: str, what: str = "a report") -> None:
    """Post a report to HITL_REPORT_CHANNEL, behind any Slack refused for a while
    (``ReportOutbox``: held, posted again when Slack answers). ``what`` names it in the log."""
    if not rt.settings.effective_report_channel:
        return
    outbox = ReportOutbox.of(rt)
    outbox.add(text, what)
    # while the server stops, each waiting report gets its one last try now
    await outbox.send(now=Trainer.of(rt).closing)


async def scheduled_retrain(rt: Runtime) -> None:
    """The nightly job. The retrain runs in a task of its own, held as ``Trainer.task`` (as an
    admin's is), so the server's stop waits for it to record its run and post its report
    before Slack's session and the database close; the scheduler's stop cancels only this
    job's wait for it (APScheduler cancels the jobs under way: a CancelledError it logged as
    an ERROR with its traceback)."""
    trainer = Trainer.of(rt)
    task = eventloop.background(_nightly(rt), name="hitl-nightly-retrain")
    if trainer.task is None or trainer.task.done():  # else an admin's retrain runs: it is busy
        trainer.task = task
        task.add_done_callback(lambda _task: trainer.wake())  # a refresh waited for it
    with contextlib.suppress(asyncio.CancelledError):  # the scheduler stops: the server's stop
        await asyncio.shield(task)  # waits for the retrain (``bot.server``), not this job


async def _nightly(rt: Runtime) -> None:
    try:
        await run_retrain(rt, "schedule")
    except (asyncio.CancelledError, retrain.FitStopped):
        # The server's stop ended it: its run is recorded as stopped (one line, ``finish``) and
        # the retrain-stopped report posted (``stopped_by_shutdown``); not a failed night.
        return
    except StoreError as exc:  # the database file was lost (Store.apart): one line, no trace
        logger.error("the nightly retrain did not run: %s", exc)
    except Exception:  # noqa: BLE001 - the scheduler must survive a failed night
        logger.exception("scheduled retrain failed")


# How often the scheduler looks at the wall clock even when its timer is far off. APScheduler's
# AsyncIOScheduler waits for the next run time with ``loop.call_later``, on the monotonic clock:
# a wall clock stepped forward (NTP) or a machine suspended overnight (the monotonic clock stops
# while it sleeps) left the timer counting the old wait, and the nightly retrain ran late by the
# whole jump (a 03:00 run after a suspend from 22:00 to 07:00: at 16:00). Woken this often, a
# run time the clock jumped past runs within this of the jump ("once, late, as soon as it sees
# it"). A wake compares the job's next run time with the clock (no I/O; APScheduler's DEBUG
# lines about it show only at -vvv), so it can come often; under a minute, the cron's unit.
SCHEDULER_WAKE_SECONDS = 10.0


async def _keep_waking(scheduler: AsyncIOScheduler, every: float) -> None:
    """Wake ``scheduler`` every ``every`` seconds (see SCHEDULER_WAKE_SECONDS) while it runs."""
    while True:
        await asyncio.sleep(every)
        if scheduler.running:
            scheduler.wakeup()


def start_scheduler(rt: Runtime) -> AsyncIOScheduler:
    """Run the nightly retrain inside the server (APScheduler, one instance at a time), woken
    every SCHEDULER_WAKE_SECONDS to see a run time the wall clock jumped past, and the champion
    watch (``stop_scheduler`` stops them)."""
    state = ChampionHolder.of(rt)
    if state.watch is None:
        state.watch = ChampionWatch(rt)
        state.watch.task = eventloop.background(state.watch.run(), name="hitl-champion-watch")
    scheduler = AsyncIOScheduler(timezone=ZoneInfo(rt.settings.timezone))
    scheduler.add_job(
        scheduled_retrain,
        make_trigger(rt.settings),
        args=[rt],
        id="retrain",
        max_instances=1,
        # a run time passed unseen (the machine suspended, the wall clock set forward, the
        # loop's monotonic timer late after a resume) runs once, late, however late: nights
        # missed in a row are one run (coalesce), as ``catch_up`` does at start
        coalesce=True,
        misfire_grace_time=None,
    )
    scheduler.start()
    trainer = Trainer.of(rt)
    trainer.scheduler_alive = True
    if trainer.waker is not None:
        trainer.waker.cancel()
    trainer.waker = eventloop.background(
        _keep_waking(scheduler, SCHEDULER_WAKE_SECONDS), name="hitl-scheduler-wake"
    )
    ReportOutbox.of(rt).start()  # the reports Slack refused for a while: posted when it answers
    return scheduler


async def catch_up(rt: Runtime, now: datetime) -> Outcome | None:
    """At start: run the retrain the server missed while it was down, once."""
    last = rt.store.last_run("retrain")
    last_started = datetime.fromisoformat(last["started_at"]) if last else None
    if not is_missed(make_trigger(rt.settings), last_started, now):
        return None
    logger.warning("the server missed a scheduled retrain; running it now")
    return await run_retrain(rt, "schedule (missed while down)")


def stop_scheduler(rt: Runtime, scheduler: AsyncIOScheduler) -> None:
    with contextlib.suppress(Exception):
        scheduler.shutdown(wait=False)
    trainer = Trainer.of(rt)
    trainer.scheduler_alive = False
    if trainer.waker is not None:
        trainer.waker.cancel()
        trainer.waker = None
    ReportOutbox.of(rt).stop()
    state = ChampionHolder.of(rt)
    if state.watch is not None:
        if state.watch.task is not None:
            state.watch.task.cancel()
        state.watch = None
