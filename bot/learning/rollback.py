"""The rollback job: make an earlier model version the champion again.

It has the retrain job's three steps under the same database lock (``bot.learning.retrain``):
``begin_rollback`` (quick, on the caller's thread) checks the version and takes the lock;
``compute_rollback`` (slow, in a worker thread, no database) loads and checks the file
(hundreds of MB) and marks it the champion; ``finish_rollback`` mirrors the versions into the
database and releases the lock. A retrain and a rollback, or two rollbacks, never interleave
their writes, so the registry and the models table always agree.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.learning.retrain import (
    LOCK,
    WRITE_FIX,
    WRITE_FIXES,
    BusyError,
    busy_reason,
    lock_owner,
    take_lock,
    write_problem,
)
from bot.runtime import Champion
from bot.store import Store
from model import ModelRegistry, ModelVersion, RegistryError

logger = logging.getLogger(__name__)

ROLLBACK_LOCK_TTL = timedelta(minutes=15)  # loading even a 500 MB model takes well under that


@dataclass
class RollbackPlan:
    version: int
    force: bool
    triggered_by: str
    owner: str
    run_id: int
    previous: int | None  # the champion before
    was: str = ""  # the version's status before (rejected, candidate, retired)
    warning: str = ""  # set when forced onto a version the gate rejected (names its scores)
    again: str = "`hitl rollback`"  # the command to run once the models folder is writable


@dataclass
class RolledBack:
    meta: ModelVersion
    champion: Champion
    versions: list[ModelVersion]  # every version after the rollback, to mirror into the db
    warning: str = ""


def begin_rollback(
    store: Store,
    registry: ModelRegistry,
    version: int,
    *,
    triggered_by: str,
    force: bool = False,
    now: datetime | None = None,
) -> RollbackPlan:
    """Quick, on the caller's thread: check the version's metadata and take the lock.

    Raises ``model.RegistryError`` (no such version, already champion, file deleted, rejected
    without ``force``) or :class:`BusyError`; nothing is changed then."""
    try:
        meta = registry.check_rollback(version, force=force)
    except RegistryError:
        # Asked again with the versions the database records (read only now, on a refusal):
        # a recorded version whose files are gone is told apart from one that never was.
        recorded = {int(m["version"]) for m in store.models()}
        meta = registry.check_rollback(version, force=force, recorded=recorded)
    warning = ""
    if meta.status in ("rejected", "candidate"):
        why = f": {meta.reason}" if meta.reason else ""
        warning = f"v{version} was {meta.status} ({meta.scores()}{why})"
    now = now or datetime.now(UTC)
    owner = lock_owner(f"rollback to v{version} by {triggered_by}")
    holder = take_lock(store, owner, now, ROLLBACK_LOCK_TTL)
    if holder is not None:
        raise BusyError(f"{busy_reason(holder)}; try again when it is done")
    try:  # an error here (the models folder gone, a full disk) must not keep the lock
        champion = registry.champion()
        run_id = store.start_run("rollback", triggered_by)
    except BaseException:
        store.release_lock(LOCK, owner)
        raise
    return RollbackPlan(
        version=version,
        force=force,
        triggered_by=triggered_by,
        owner=owner,
        run_id=run_id,
        previous=champion.version if champion else None,
        was=meta.status,
        warning=warning,
    )


def compute_rollback(registry: ModelRegistry, plan: RollbackPlan) -> RolledBack:
    """Slow, in a worker thread, no database: load and check the file once, then mark it the
    champion. Raises ``model.RegistryError`` when the file is missing, damaged or unsafe, or
    when the models folder cannot be written (read-only, a full disk): then in one line, as a
    retrain says it, not as the system's error naming a temporary file."""
    try:
        loaded = registry.rollback_loaded(plan.version, force=plan.force, by=plan.triggered_by)
    except OSError as exc:  # reads are the registry's own errors; this is a metadata write
        raise RegistryError(_write_failed(registry, plan, exc)) from exc
    champion = Champion(
        version=loaded.meta.version,
        classifier=loaded.classifier,
        created_at=loaded.meta.created_at,
        n_train=loaded.meta.n_train,
        trained=dict(loaded.meta.extra),
    )
    return RolledBack(loaded.meta, champion, registry.versions(), plan.warning)


def _write_failed(registry: ModelRegistry, plan: RollbackPlan, exc: OSError) -> str:
    """What a rollback whose metadata could not be written says. The version's own metadata
    is written first (``ModelRegistry.promote``): failing there, nothing changed; failing at
    the old champion's, the version is the champion all the same (the newest promotion)."""
    again = f"{plan.again.removesuffix('`')} {plan.version}`"
    champion = registry.champion()
    if champion is None or champion.version != plan.version:
        return write_problem(exc, registry.root, plan.previous, again)
    fix = WRITE_FIXES.get(exc.errno or 0, WRITE_FIX)
    return (
        f"v{plan.version} is the champion, but v{plan.previous}'s metadata in {registry.root}"
        f" could not be marked retired: {exc.strerror or exc} ({fix}; the next retrain or"
        " rollback marks it)"
    )


def finish_rollback(
    store: Store,
    plan: RollbackPlan,
    done: RolledBack | None,
    *,
    registry: ModelRegistry | None = None,
    error: str = "",
) -> None:
    """Mirror the versions into the database, close the run and release the lock. After a
    failure (``done`` None) the registry is read again: whatever it holds is the truth."""
    try:
        if done is not None:
            mirror_models(store, done.versions)
        elif registry is not None:
            mirror_models(store, registry.versions())
        detail = {"version": plan.version, "previous": plan.previous, "forced": bool(plan.warning)}
        if error:
            detail["reason"] = error
        if done is not None:  # where the labels were: those given since count by the order
            mark = store.label_mark()  # they were written in, not by the clock
            detail |= {"label_seq": mark.seq, "label_watermark": mark.at}  # (rolled_back_mark)
        store.finish_run(plan.run_id, "ok" if done is not None else "failed", detail)
    finally:
        store.release_lock(LOCK, plan.owner)
    if done is not None:
        logger.info(
            "%s rolled back to model v%d (was v%s)%s",
            plan.triggered_by,
            plan.version,
            plan.previous,
            f"; forced: {plan.warning}" if plan.warning else "",
        )


def mirror_models(store: Store, versions: list[ModelVersion]) -> None:
    """Make the models table agree with the registry (status and reasons of each version)."""
    known = {m["version"]: (m["status"], m["reason"]) for m in store.models()}
    for meta in versions:
        if known.get(meta.version) != (meta.status, " → ".join(meta.reasons())):
            store.record_model(meta.to_dict())


def rollback(
    store: Store,
    registry: ModelRegistry,
    version: int,
    *,
    force: bool = False,
    triggered_by: str = "cli",
) -> RolledBack:
    """Make ``version`` the champion again (the current one is retired), all on this thread
    (the CLI); the server runs the steps with the load in a worker thread."""
    plan = begin_rollback(store, registry, version, triggered_by=triggered_by, force=force)
    try:
        done = compute_rollback(registry, plan)
    except BaseException as exc:
        finish_rollback(store, plan, None, registry=registry, error=f"{type(exc).__name__}: {exc}")
        raise
    finish_rollback(store, plan, done)
    return done


async def rollback_off_loop(
    store: Store, registry: ModelRegistry, plan: RollbackPlan
) -> RolledBack:
    """:func:`rollback` for the server after :func:`begin_rollback`: the file is loaded in a
    worker thread; the database is written here, on the loop's thread."""
    try:
        done = await asyncio.to_thread(compute_rollback, registry, plan)
    except BaseException as exc:
        finish_rollback(store, plan, None, registry=registry, error=f"{type(exc).__name__}: {exc}")
        raise
    finish_rollback(store, plan, done)
    return done
