"""The retrain job: resolved labels → candidate → decision → registry → re-scored queue.

``begin`` (quick, on the caller's thread) takes the database lock, checks whether anything is
new and reads the training data; ``compute`` (slow, in a worker thread, no database) fits,
evaluates, decides and writes the model files; ``finish`` records the outcome. ``retrain``
runs the three and then re-scores the queue when a new champion was promoted. The CLI and the
server both use it, and the lock in the database keeps them from retraining at once.

A rollback (``bot.learning.rollback``) takes the same lock, so a retrain and a rollback
never interleave their writes. ``FitWorker`` fits in a child process for the server.

Its length (~530 lines) is the three steps, the report's outcome record and ``FitWorker``
(the child process the server fits in, with its memory limit and error mapping): one job
whose steps share the outcome type; rollback already lives in its own module.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import faulthandler
import hashlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.errors import HitlError
from bot.learning import quality, stopping
from bot.learning.children import awaitable, child_context
from bot.learning.scoring import Scorer, score_items
from bot.learning.scoring_worker import exit_with_parent, terminate
from bot.runtime import Champion
from bot.store import DatabaseError, DatabaseRefused, LabelMark, Store, database_problem
from bot.store.core import process_gone, process_started
from bot.store.erasure import deleted_after
from bot.store.gold import GOLD_WAITING
from bot.store.lock import other_server
from bot.words import count
from model import InsufficientDataError, ModelError, ModelRegistry, ModelVersion, RegistryError
from model.evaluation import class_sizes, n_splits_for
from model.selection import text_key

if TYPE_CHECKING:
    from model import TextClassifier
    from model.training import GoldMiss

logger = logging.getLogger(__name__)

LOCK = "retrain"  # taken by retrains and rollbacks alike
LOCK_TTL = timedelta(hours=2)  # another machine's holder's lock expires after this
Progress = Callable[[int, int], None]


class BusyError(HitlError):
    """Another retrain or rollback holds the lock."""


def lock_owner(what: str) -> str:
    """The lock's owner: what holds it, where, and a unique id (``retrain by cli on
    host:pid:id:started``; ``started`` tells this process from a later one given its pid)."""
    pid = os.getpid()
    owner = f"{what} on {socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}"
    started = process_started(pid)
    return f"{owner}:{started}" if started else owner


def holder_alive(holder: str) -> bool | None:
    """Whether the lock's owner (``… on host:pid:id[:started]``) is a process of this
    machine that is still running: True while it runs, False once it is gone (killed, the
    machine restarted, or its pid now another process's), None for another machine's
    process or an owner of another form, which cannot be seen from here."""
    _, _, where = holder.rpartition(" on ")
    host, _, rest = where.partition(":")
    pid, _, rest = rest.partition(":")
    started = rest.partition(":")[2]
    if host != socket.gethostname() or not pid.isdecimal():
        return None  # another machine's process, or an owner of another form: trust the lock
    return not process_gone(f"{host}:{pid}" + (f":{started}" if started else ""))


def take_lock(store: Store, owner: str, now: datetime, ttl: timedelta) -> str | None:
    """Take the retrain lock for ``ttl``; return the holder when it is busy.

    A holder on this machine holds the lock while its process runs, expired or not (a
    retrain may outlast ``ttl``, and the clock may jump forward, as when a VM resumes from
    suspend), and not a moment after it is gone. A holder on another machine cannot be
    seen from here: its lock is trusted until it expires, after ``ttl``. A lock a retrain
    could not release (a full disk refused the write) is held by nobody: that retrain has
    ended, although its process runs. This process knows its own (``ENDED_OWNERS``); another
    process (`hitl retrain` from cron beside `hitl serve`) by the mark beside the database
    (``_ended_marks``), and records that run's end as failed when it takes the lock over (the
    server records its reason once it can: ``record_left``)."""
    marks = _ended_marks(store)
    ended: list[str] = []
    alive = _holds_rule(store, marks, ended)
    holder = store.acquire_lock(
        LOCK,
        owner,
        iso_time(now),
        iso_time(now + ttl),
        holder_alive=alive,
        runs=("retrain", "rollback"),
    )
    if holder is None:  # taken: the one lock row is ``owner``'s now
        ENDED_OWNERS.difference_update({e for e in ENDED_OWNERS if e[0] == store.path})
        taken = {_owner_key(held) for held in ended}
        for key, (mark, run_id) in marks.items():
            if key in taken and (store.path, run_id) not in UNRECORDED:  # another process's
                with contextlib.suppress(Exception):  # said "its process is gone": it is not
                    store.finish_run(run_id, "failed", {"status": "failed", "reason": ENDED_AWAY})
            with contextlib.suppress(OSError):  # the lock is ``owner``'s: every mark is stale
                mark.unlink()
    return holder


def _holds_rule(
    store: Store, marks: dict[str, tuple[Path, int]], ended: list[str]
) -> Callable[[str], bool | None]:
    """``take_lock``'s rule for whether a holder still holds the retrain lock: not one whose
    retrain has ended (``ENDED_OWNERS``, ``marks``; appended to ``ended``), else while its
    process runs (``holder_alive``)."""

    def alive(held: str) -> bool | None:
        if (store.path, held) in ENDED_OWNERS or _owner_key(held) in marks:
            ended.append(held)
            return False
        return holder_alive(held)

    return alive


def busy_now(store: Store, triggered_by: str, now: datetime | None = None) -> Outcome | None:
    """The "busy" outcome ``begin`` would give now, by ``take_lock``'s rule; None when the
    retrain lock is free. One read, takes nothing: `hitl retrain` asks before it loads the
    champion (seconds on a busy machine), so a refusal is at once; ``begin`` still decides."""
    now = now or datetime.now(UTC)
    alive = _holds_rule(store, _ended_marks(store), [])
    holder = store.lock_holder(LOCK, iso_time(now), holder_alive=alive)
    return None if holder is None else Outcome("busy", busy_reason(holder), triggered_by)


# A retrain of another process whose end it could not record, as ``take_lock`` records it.
ENDED_AWAY = (
    "retrain failed: hitl serve could not record its end (the database refused the write, as"
    " on a full disk); its report in the channel says why"
)
ENDED_MARK = ".retrain-ended."  # ``<db>.retrain-ended.<run id>.<owner key>``: ``_mark_ended``


def _owner_key(owner: str) -> str:
    return hashlib.sha256(owner.encode("utf-8")).hexdigest()[:16]


def _mark_ended(store: Store, owner: str, run_id: int) -> None:
    """Tell other processes that this process's retrain ``owner`` (run ``run_id``) has ended
    although its lock could not be released (``ENDED_OWNERS``): an empty file beside the
    database, which a full disk still takes (no data: a name, in a folder that has one);
    ``take_lock`` (another `hitl retrain`, a rollback) reads it. Nothing when it cannot be
    made: the server's next retrain or refresh frees the lock (``record_left``)."""
    if store.path is None:
        return
    db = Path(store.path).resolve()
    mark = db.with_name(f"{db.name}{ENDED_MARK}{run_id}.{_owner_key(owner)}")
    with contextlib.suppress(OSError):
        os.close(os.open(mark, os.O_WRONLY | os.O_CREAT, 0o600))


def _ended_marks(store: Store) -> dict[str, tuple[Path, int]]:
    """The marks beside ``store``'s database (``_mark_ended``), by their owner's key: each
    file and its run."""
    if store.path is None:
        return {}
    db = Path(store.path).resolve()
    prefix, found = f"{db.name}{ENDED_MARK}", {}
    try:
        with os.scandir(db.parent) as entries:
            for entry in entries:
                run, _, key = entry.name.removeprefix(prefix).partition(".")
                if entry.name.startswith(prefix) and run.isdecimal() and key:
                    found[key] = (Path(entry.path), int(run))
    except OSError:
        return {}
    return found


# This process's retrains whose end the database refused to record (its disk full, as their
# model files' was): the owners of the locks they could not release, which ``take_lock`` takes
# over, and their runs (id -> detail), which the next ``begin`` records as failed; each by the
# database it belongs to (its path: a process may run several, as the tests and the demo do).
ENDED_OWNERS: set[tuple[Path | None, str]] = set()
UNRECORDED: dict[tuple[Path | None, int], dict[str, Any]] = {}


def left_unrecorded(store: Store) -> bool:
    """Whether a retrain of ``store``'s database in this process left its end unrecorded."""
    return any(key[0] == store.path for key in (*UNRECORDED, *ENDED_OWNERS))


def record_left(store: Store) -> None:
    """Record as failed the runs of this process's retrains whose end a full disk refused
    (``UNRECORDED``) and release the locks they could not (``ENDED_OWNERS``), once the
    database takes writes again: by the next retrain (``begin``) or refresh of the working
    model (``begin_refresh``), so a `hitl retrain` from cron is not refused meanwhile."""
    for (db, left), detail in list(UNRECORDED.items()):
        if db == store.path:
            store.finish_run(left, "failed", detail)
            UNRECORDED.pop((db, left), None)
    marks = _ended_marks(store) if any(db == store.path for db, _ in ENDED_OWNERS) else {}
    for db, owner in list(ENDED_OWNERS):
        if db == store.path:
            store.release_lock(LOCK, owner)
            ENDED_OWNERS.discard((db, owner))
            with contextlib.suppress(OSError, KeyError):  # other processes need it no more
                marks[_owner_key(owner)][0].unlink()


def busy_reason(holder: str) -> str:
    """``a rollback to v1 by <@U1> is already running (host:pid:id)`` from the lock's owner."""
    what, _, where = holder.rpartition(" on ")
    where = ":".join(where.split(":")[:3])  # the process's start stamp says nothing to people
    return f"a {what or 'retrain'} is already running ({where})"


# `hitl serve` holds this lock while a refresh of the working model fits (``take_refresh_lock``),
# so that a `hitl retrain` from the CLI (cron) waits for it (``wait_for_refresh``) instead of
# fitting beside it: two full fits at once are the memory peak a small server cannot have. The
# server's own retrain never looks at it (its fit lock keeps its fits apart).
REFRESH_LOCK = "refresh"
REFRESH_OWNER = "refresh of the working model by hitl serve"
# The refresh's lock expires (for a holder on another machine; and the CLI waits at most until
# then) after twice the last refresh's fit, and never sooner than this.
REFRESH_LOCK_LEAST = timedelta(minutes=5)
REFRESH_WAIT_MOST = timedelta(minutes=30)  # the CLI waits no longer for a refresh, however slow


def elsewhere(owner: str) -> bool | None:
    """``holder_alive``, but False for this process's own owner: its own retrain, rollback or
    refresh is the ``Trainer``'s to tell (its fit lock)."""
    where = owner.rpartition(" on ")[2].split(":")
    if where[0] == socket.gethostname() and where[1:2] == [str(os.getpid())]:
        return False
    return holder_alive(owner)


def refresh_lock_ttl(last_seconds: float | None) -> timedelta:
    """How long a refresh's lock is taken for: twice the last refresh's fit, at least
    REFRESH_LOCK_LEAST."""
    return max(REFRESH_LOCK_LEAST, timedelta(seconds=2 * (last_seconds or 0)))


def take_refresh_lock(store: Store, owner: str, now: datetime, ttl: timedelta) -> str | None:
    """Take the refresh lock for a refresh's fit; return who keeps it from fitting instead
    (nothing is taken then): another process's retrain or rollback holding the retrain lock
    (read after the refresh lock is taken: a `hitl retrain` that takes the retrain lock at
    the same time sees this one, ``wait_for_refresh``, so one of them waits), or another
    server's refresh. ``release_lock(REFRESH_LOCK, owner)`` after the fit."""
    holder = store.acquire_lock(
        REFRESH_LOCK, owner, iso_time(now), iso_time(now + ttl), holder_alive=elsewhere
    )
    if holder is not None:
        return holder
    holder = store.lock_holder(LOCK, iso_time(now), holder_alive=elsewhere)
    if holder is not None:
        store.release_lock(REFRESH_LOCK, owner)
    return holder


def wait_for_refresh(
    store: Store,
    say: Callable[[str], None],
    *,
    most: timedelta = REFRESH_WAIT_MOST,
    poll: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """`hitl retrain` from the CLI, with the retrain lock taken: while `hitl serve`'s refresh
    of the working model fits (it holds the refresh lock; a holder whose process is gone
    holds nothing, as with ``take_lock``), wait for it to finish, said in one line; at most
    until the lock expires (the refresh's expected end, ``refresh_lock_ttl``) and never more
    than ``most``; then go on, said too."""
    start = clock()
    said = False
    while True:
        now = clock()
        holder = store.lock_holder(REFRESH_LOCK, iso_time(now), holder_alive=holder_alive)
        if holder is None:
            return
        where = holder.rpartition(" on ")[2].split(":")
        pid = where[1] if len(where) > 1 else "?"
        if where[0] != socket.gethostname():
            pid = f"{pid} on {where[0]}"
        until = _moment(store.lock_until(REFRESH_LOCK)) or start
        deadline = min(start + most, max(until, start + timedelta(minutes=2)))
        if now >= deadline:
            say(
                f"hitl serve's refresh of the working model is still fitting (pid {pid}) after"
                f" {int((now - start).total_seconds() // 60)} min; retraining beside it"
            )
            return
        if not said:
            say(f"waiting for hitl serve's refresh of the working model to finish (pid {pid})")
            said = True
        sleep(min(poll, max((deadline - now).total_seconds(), 0.01)))


@dataclass
class Outcome:
    """What one retrain did; ``status``: promoted, rejected, failed, nothing_new or busy."""

    status: str
    reason: str
    triggered_by: str
    forced: bool = False
    version: int | None = None
    previous_version: int | None = None
    n_labels: int = 0
    n_new: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    previous_metrics: dict[str, Any] = field(default_factory=dict)
    rescored: int = 0
    rescoring: bool = False  # the queue is being re-scored in the background (`hitl serve`)
    queue_before: dict[str, int] = field(default_factory=dict)
    queue_after: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # the fit and the gate (re-scoring the queue after: rescore_seconds)
    rescore_seconds: float = 0.0
    pruned: list[int] = field(default_factory=list)  # versions whose model files were deleted
    n_missing: int = 0  # labels still needed before training can start (0: enough)
    stopping: dict[str, Any] = field(default_factory=dict)  # StopStatus.as_dict, for the report
    streak: dict[str, Any] = field(default_factory=dict)  # a rejected one's stopping.Streak
    # Rejected on the gold questions: the first of those it got wrong (``gold_misses``: id,
    # gold, answer; ``team_answers`` adds the team's), how many in all, and on how many gold
    # questions most of the team's answers differ from the gold label.
    gold_missed: list[dict[str, Any]] = field(default_factory=list)
    n_gold_missed: int = 0
    n_gold_disputed: int = 0
    asked: bool = True  # some labels answer questions asked because the model was unsure
    why: str = ""  # why it trained besides new labels ("the pipeline changed: a → b")

    @property
    def promoted(self) -> bool:
        return self.status == "promoted"


@dataclass
class Plan:
    run_id: int
    owner: str
    triggered_by: str
    force: bool
    texts: list[str]
    labels: list[str]
    champion_mask: list[bool] | None
    watermark: dict[str, Any]
    n_new: int
    label_set: list[str] | None
    pipeline: str | None
    previous: ModelVersion | None
    started: float
    keep_models: int = 5
    stop: stopping.StopPlan | None = None  # read by ``retrain`` off the event loop
    uniform: list[bool] | None = None  # per label: not asked for uncertainty (learning curve)
    next_version: int = 1  # above every version the database records (files may be lost)
    # The gold questions (texts and labels in force) none of ``texts`` repeats: held-out data
    # the new labels did not define, on which the gate also compares the two models.
    gold_texts: list[str] = field(default_factory=list)
    gold_labels: list[str] = field(default_factory=list)
    gold_ids: list[str] = field(default_factory=list)  # their items, for the report
    # A label the champion was trained under -> its name now (a rename or merge since):
    # its answers on the gold questions are read under the label set of now.
    aliases: dict[str, str] = field(default_factory=dict)
    # When the training rows were read: gold made by then trained no model of this plan (the
    # next retrain's gold check asks this model only those: ``held_out_gold``).
    read_at: str = ""
    # The items of ``texts``, and where the record of deletions stood before they were read
    # (``deleted_after``): one `hitl delete` deleted while the retrain ran is in the model's
    # vocabulary, which is then not kept (``withdraw``).
    item_ids: list[str] = field(default_factory=list)
    deleted_mark: int = 0
    # Where the label set's changes stood before the rows were read (``label_set_mark``): the
    # next retrain counts the labels merged since as new by it, not by the clock.
    label_set_mark: dict[str, Any] = field(default_factory=dict)
    why: str = ""  # why it trains besides new labels: ``pipeline_change``


@dataclass
class Computed:
    outcome: Outcome
    meta: ModelVersion | None = None
    retired: list[ModelVersion] = field(default_factory=list)
    stop: stopping.StopCheck | None = None
    # Failed on its way (the fit died, the disk filled, the server stopped), not for the
    # labels: its run keeps no watermark, so the next retrain tries the same labels again.
    crashed: bool = False


def registry_for(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings.models_dir)


def iso_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


# Raise when quality.training_rows changes what trains (2: gold never does; 3: Dawid-Skene
# keeps to the labels an item's votes gave, and an admin's confirmation pins a label; 4: nor
# does an item whose text repeats a gold text, and the folds hold a text's repeats together).
TRAINING_RULES = 4


def begin(
    store: Store,
    settings: Settings,
    registry: ModelRegistry,
    *,
    triggered_by: str,
    force: bool = False,
    now: datetime | None = None,
    wait: Callable[[Store], None] | None = None,
) -> Plan | Outcome:
    """Take the lock and read the labels, or say why there is nothing to do. Whatever goes
    wrong once the lock is taken (the models folder gone, a full disk) ends the run as failed
    and releases the lock before the error is raised: a later retrain is not refused.
    ``wait``: called with the lock taken, before anything is read (the CLI's waits for a
    refresh that fits in `hitl serve`: ``wait_for_refresh``)."""
    now = now or datetime.now(UTC)
    owner = lock_owner(f"retrain by {triggered_by}")
    holder = take_lock(store, owner, now, LOCK_TTL)
    if holder is not None:
        return Outcome("busy", busy_reason(holder), triggered_by)
    run_id = None
    try:
        record_left(store)  # a full disk refused their end: now
        if wait is not None:
            wait(store)
        run_id = store.start_run("retrain", triggered_by)
        if not registry.root.is_dir():  # deleted or moved while `hitl serve` runs
            outcome = Outcome("failed", missing_folder(registry), triggered_by)
            store.finish_run(run_id, "failed", asdict(outcome))  # no watermark: not the labels
            store.release_lock(LOCK, owner)
            return outcome
        return _plan(store, settings, registry, run_id, owner, triggered_by, force)
    except BaseException as exc:
        _give_back(store, run_id, owner, exc)
        raise


def missing_folder(registry: ModelRegistry | Path) -> str:
    """Why a retrain cannot start when the models folder is gone, and the fix."""
    name = (registry.root if isinstance(registry, ModelRegistry) else registry).name
    return (
        f"the models folder {name} (beside the database) is missing: was it deleted or moved? "
        f"Put it back, or create an empty {name} to start a new model, then retrain again"
    )


def gone_under_a_server(settings: Settings) -> str | None:
    """Why `hitl retrain` must not start: the models folder is missing while a `hitl serve`
    runs on the database, so it was deleted or moved under that server, which refuses its own
    retrains then (``begin``). Creating the folder anew would promote an ungated first model
    and orphan the champion the database records; ``missing_folder`` says what to do. With no
    server running, a missing folder is a database restored without it: the retrain trains a
    new model, as `hitl models` advises."""
    if settings.models_dir.is_dir() or other_server(settings.db) is None:
        return None
    return missing_folder(settings.models_dir)


def _give_back(store: Store, run_id: int | None, owner: str, exc: BaseException) -> None:
    """End the run as failed and release the lock after ``exc`` (which the caller raises)."""
    reason = f"retrain failed: {type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception):  # a full disk may refuse this too; the lock matters
        if run_id is not None:
            store.finish_run(run_id, "failed", {"status": "failed", "reason": reason})
    try:
        store.release_lock(LOCK, owner)
    except Exception:  # noqa: BLE001 - the caller's error is the one to raise
        logger.exception("could not release the retrain lock after: %s", reason)


def known_versions(store: Store) -> dict[int, str]:
    """The model versions the database records, with their status."""
    return {int(m["version"]): m["status"] for m in store.models()}


def models_to_mend(registry: ModelRegistry, known: Mapping[int, str]) -> bool:
    """Whether a retrain must train although no label is new: the champion's model file is
    missing or damaged (``vN.json`` intact; a server serves an older version meanwhile), or
    the models folder is older than the database (restored from an older backup: the database
    records versions above any in it, so the folder's champion is an older model than the one
    the database names). `hitl models` advises a retrain then (``reports.lost_models``). Reads
    the champion's file."""
    versions, unreadable = registry.scan()
    held = max([*(v.version for v in versions), *unreadable], default=0)
    if known and max(known) > held:
        return True
    champion = next((v for v in versions if v.status == "champion"), None)
    if champion is None or champion.pruned_at:
        return False
    try:
        return registry.file_problem(champion.version) is not None
    except RegistryError:
        return False  # its metadata changed meanwhile: the next run sees it


def _plan(
    store: Store,
    settings: Settings,
    registry: ModelRegistry,
    run_id: int,
    owner: str,
    triggered_by: str,
    force: bool,
) -> Plan | Outcome:
    # What training reads, and by which rules: a version whose rules differ (before gold
    # stopped training, say) recorded another watermark, so its last run is not "nothing new".
    # And with which pipeline (HITL_PIPELINE): with no label new, one that fits another model
    # than the champion's trains a gated candidate, once (``_tried_already``).
    pipeline = configured_pipeline(settings)
    marks = {**store.labels_watermark(), "training_rules": TRAINING_RULES}
    if outside := store.labels_outside(settings.labels):  # their items do not train: a label
        marks["outside"] = sorted(label for label, _ in outside)  # let in again trains anew
    watermark = {**marks, "pipeline": pipeline}
    last = store.last_run("retrain", RUNS_THAT_READ)
    tried_on = _tried_on_these(store, marks)  # the pipelines tried on these labels
    same_labels = bool(tried_on)  # the last run read them
    previous = registry.champion()
    known = known_versions(store)
    # The database records models but none is champion in the folder (restored without its
    # model files, or its champion's metadata damaged): train, or nothing would ever serve.
    lost = previous is None and bool(known)
    if not force and not lost and same_labels and models_to_mend(registry, known):
        lost = True  # the champion's file, or the folder, would stay as it is: train
    tried = _tried_already(pipeline, previous, tried_on)
    if not force and not lost and same_labels and tried is not None:
        return _nothing_new(store, run_id, owner, triggered_by, watermark, last, tried)
    read_at = store.now()  # before the read: gold made since may be among the rows
    change_mark = store.label_set_mark()  # before it too: a merge since is new to the next
    deleted_mark, _ = deleted_after(store.db, None)  # before it too
    rows = quality.training_rows(store, settings)
    if not force and not lost and same_labels:  # another name: the same model on these rows?
        tried = _tried_already(pipeline, previous, tried_on, len(rows))
        if tried is not None:
            return _nothing_new(store, run_id, owner, triggered_by, watermark, last, tried)
    changed = pipeline_change(previous, pipeline, len(rows))
    keys = [text_key(r[1]) for r in rows]
    too_few = why_too_few([r[2] for r in rows], keys)
    if too_few is not None:  # no fit, no background work: the caller can answer at once
        outcome = Outcome(
            "failed",
            f"too few labels to train: {too_few[0]}",
            triggered_by,
            previous_version=previous.version if previous else None,
            n_labels=len(rows),
            n_missing=too_few[1],
        )
        store.finish_run(run_id, "failed", {"watermark": watermark, **asdict(outcome)})
        store.release_lock(LOCK, owner)
        return outcome
    # The labels written after the champion's training read (by the count of label writes,
    # or by time for a model from before it): the gate refits the champion without them.
    after = store.labels_after(read_mark(previous.extra, store)) if previous else set()
    mask = [r[0] not in after for r in rows] if previous else None
    # New to the report: those, and the labels a merge moved to another class since the
    # champion's read (kept out of ``after``: the champion's refit still has them, renamed),
    # by the label set's changes it saw (its ``label_set_mark``), not by the clock; by its
    # read's time for a model from before that was recorded.
    merged = (
        store.merged_after(
            str(previous.extra.get("gold_read_at") or previous.created_at),
            previous.extra.get("label_set_mark"),
        )
        if previous
        else set()
    )
    n_new = sum(1 for r in rows if r[0] in after or r[0] in merged) if previous else len(rows)
    gold_ids, gold_texts, gold_labels = (
        held_out_gold(
            store,
            set(keys),
            previous.extra.get("gold_read_at") or previous.created_at,
            settings.labels,
        )
        if previous
        else ([], [], [])
    )
    return Plan(
        run_id=run_id,
        owner=owner,
        triggered_by=triggered_by,
        force=force,
        texts=[r[1] for r in rows],
        labels=[r[2] for r in rows],
        champion_mask=mask,
        watermark=watermark,
        n_new=n_new,
        label_set=store.stored_labels() or list(settings.labels) or None,
        pipeline=settings.pipeline,
        previous=previous,
        started=time.perf_counter(),
        keep_models=settings.keep_models,
        uniform=store.drawn_uniformly(r[0] for r in rows),
        aliases=store.label_aliases(),
        next_version=max(known, default=0) + 1,
        gold_texts=gold_texts,
        gold_labels=gold_labels,
        gold_ids=gold_ids,
        read_at=read_at,
        item_ids=[r[0] for r in rows],
        deleted_mark=deleted_mark,
        label_set_mark=change_mark,
        why=changed or "",
    )


def configured_pipeline(settings: Settings) -> str:
    """The pipeline a retrain fits: HITL_PIPELINE, else the model library's default (the name
    a model's metadata records as its ``pipeline_name``)."""
    if settings.pipeline:
        return settings.pipeline
    from model.names import DEFAULT_PIPELINE

    return DEFAULT_PIPELINE


def pipeline_kind(name: str, n_labels: int) -> str:
    """The configuration pipeline ``name`` fits on ``n_labels`` labels: ``word_char_auto`` is
    ``word_char_lr_balanced`` up to ``AUTO_LR_MAX_SAMPLES`` labels and ``word_char_sgd`` above
    (``model.classifier._word_char_auto``); every other name is its own."""
    if name != "word_char_auto":
        return name
    from model.names import AUTO_LR_MAX_SAMPLES

    return "word_char_sgd" if n_labels > AUTO_LR_MAX_SAMPLES else "word_char_lr_balanced"


def pipeline_change(previous: ModelVersion | None, pipeline: str, n_labels: int) -> str | None:
    """Why a candidate of ``pipeline`` on ``n_labels`` labels is another kind of model than the
    champion ``previous``, when it is: "the pipeline changed: word_char_auto → word_lr". The
    same name is no change (``word_char_auto`` choosing SGD past 2,000 labels is the setting
    doing its job), nor is another name that fits what the champion's did on its labels."""
    if previous is None or previous.pipeline_name == pipeline:
        return None
    if pipeline_kind(pipeline, n_labels) == pipeline_kind(previous.pipeline_name, previous.n_train):
        return None
    return f"the pipeline changed: {previous.pipeline_name} → {pipeline}"


# The runs whose watermark tells what the labels were when they read them.
RUNS_THAT_READ = ("promoted", "rejected", "failed", "nothing_new")


def _tried_on_these(store: Store, marks: Mapping[str, Any]) -> list[str | None]:
    """The pipelines the retrain runs tried on the labels ``marks`` tells (the watermark but
    its pipeline), newest first: those of the runs since the labels last changed, back to
    the run that promoted the champion (included; the gate of an earlier run compared with
    another champion); None for a run from before runs recorded their pipeline (it fitted the
    champion's). Empty when the last run read other labels (or none was made). Every
    pipeline, not only the last run's: a server with HITL_PIPELINE=word_lr and a cron
    `hitl retrain` without it take turns, and word_lr, rejected on these labels, is not
    trained again on them."""
    tried: list[str | None] = []
    upgrade: int | None = None
    runs = store.runs_newest_first("retrain", RUNS_THAT_READ)
    with contextlib.closing(runs):
        for run in runs:
            mark = run["detail"].get("watermark")
            if not isinstance(mark, dict):
                break  # a run that read no labels (the models folder gone): not known
            mark = {k: v for k, v in mark.items() if k != "pipeline"}
            if "seq" not in mark:  # recorded before m034 counted label writes
                if upgrade is None:
                    upgrade = store.label_count_at_upgrade()
                mark["seq"] = upgrade
            if mark != marks:
                break
            pipeline = run["detail"]["watermark"].get("pipeline")
            tried.append(pipeline if isinstance(pipeline, str) else None)
            if run["status"] == "promoted":
                break
    return tried


def _tried_already(
    pipeline: str,
    previous: ModelVersion | None,
    tried: Sequence[str | None],
    n_labels: int | None = None,
) -> str | None:
    """With no label new since the last run (``tried``: the pipelines the runs since the
    labels last changed tried on them, newest first, ``_tried_on_these``; None for one
    recorded before runs recorded it: the champion's), whether a candidate of ``pipeline``
    would be a model already made, the champion's or a run's since (rejected, say): None
    when not (it trains), else what the "nothing new" adds ("" for the champion's pipeline).
    By name; with ``n_labels`` (the rows read), by what the names fit too (``pipeline_kind``)."""
    if previous is None:  # no champion: the runs failed (too few labels, say)
        return "" if any(name in (None, pipeline) for name in tried) else None
    if pipeline == previous.pipeline_name:
        return ""
    names = [name or previous.pipeline_name for name in tried]

    def which(at: int) -> str:
        return "the last run" if at == 0 else "an earlier run"

    if pipeline in names:
        return f"; {which(names.index(pipeline))} tried {pipeline} on them"
    if n_labels is None:
        return None
    if pipeline_change(previous, pipeline, n_labels) is None:
        return (
            f"; {pipeline} fits the same model as v{previous.version}'s"
            f" {previous.pipeline_name} on them"
        )
    for at, name in enumerate(names):
        if pipeline_kind(pipeline, n_labels) == pipeline_kind(name, n_labels):
            return f"; {which(at)} tried {name} on them, the same model as {pipeline}"
    return None


def _nothing_new(
    store: Store,
    run_id: int,
    owner: str,
    triggered_by: str,
    watermark: dict[str, Any],
    last: Mapping[str, Any] | None,
    tried: str,
) -> Outcome:
    """End the run as "nothing new" (no label since the last run, its pipeline tried: ``tried``
    says how when not the champion's) and release the lock."""
    n_labels = watermark["n_labels"]
    outcome = Outcome(
        "nothing_new",
        f"nothing new: no labels since the last run ({count(n_labels, 'label')}){tried}",
        triggered_by,
        n_labels=n_labels,
        n_missing=(last or {}).get("detail", {}).get("n_missing") or 0,
    )
    store.finish_run(run_id, "nothing_new", {"watermark": watermark, **asdict(outcome)})
    store.release_lock(LOCK, owner)
    return outcome


def held_out_gold(
    store: Store, trained: set[str], champion_made: str, configured: Sequence[str] = ()
) -> tuple[list[str], list[str], list[str]]:
    """The gold questions' ids, texts and labels, under the label set in force (a retired label's
    left out: no model may answer it; so is a label the set never had, ``configured``:
    HITL_LABELS, ``bot.labelset.not_in_force``), that neither model trained on: for the
    champion, those it cannot have seen when its training rows were read (``champion_made``: its
    ``gold_read_at``, or its creation, to the second, for a model made before that was kept;
    ``Store.gold_labels``: an item decided before and made gold after, as `hitl export` then
    `hitl import --gold` does, trained it, and it would answer from memory and hold every
    later candidate back; new gold counts at once); for the candidate, those whose text
    (``text_key``) is not among its ``trained`` keys. The champion's memory counts by text
    too (``champion_memory``): a gold item whose text it trained on under another id (the
    reviewer's sheet imported without ids, after it) is left out, or the champion answers it
    from memory and the candidate, which training keeps off gold texts, holds back every later
    one. Reads every gold item (and, with gold made since the champion, every label): off the
    event loop, as the rest of ``begin``."""
    gold = store.gold_labels(unseen_by=champion_made)
    if not gold:
        return [], [], []
    aliases = store.label_aliases()
    # a retired label's gold, and one of a label the set in force never had: no model answers it
    retired = store.labels_not_in_force(configured)
    texts = store._texts_of(sorted(gold))  # the Store's own read by ids (no public one)
    rows = [
        (item, texts[item], aliases.get(label, label))
        for item, label in sorted(gold.items())
        if item in texts
    ]
    kept = [row for row in rows if row[2] not in retired and text_key(row[1]) not in trained]
    if kept:
        remembered = champion_memory(store, champion_made, {text_key(t) for _, t, _ in kept})
        kept = [row for row in kept if text_key(row[1]) not in remembered]
    return [i for i, _, _ in kept], [t for _, t, _ in kept], [lb for _, _, lb in kept]


def _moment(at: str | None) -> datetime | None:
    """An ISO time of the store (milliseconds) or the registry (seconds) as an aware datetime,
    so the two compare (None when unreadable)."""
    try:
        moment = datetime.fromisoformat(at) if at else None
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def champion_memory(store: Store, champion_made: str, keys: set[str]) -> set[str]:
    """Of ``keys`` (gold questions' ``text_key``), those the champion whose training rows were
    read at ``champion_made`` can have trained on under another id: the text of an item
    labelled by then and not gold then (``Store.training_data``; or labelled then made gold
    since: ``Store.gold_labels``), unless a gold item had that text by then (training left
    its repeats out: ``quality.gold_repeats``; so a gold sheet read before the champion is
    asked of it). When an item was made gold is its creation (``add_gold`` stores a new item
    and its gold row at once; no Store method reads the gold row's own time): an item stored
    earlier, not labelled by then, and marked gold since counts as gold by then, which can keep
    a question the champion saw. Reads every label only when a question's text became gold
    after the champion."""
    made = _moment(champion_made)
    if made is None or not keys:
        return set()
    every = store.gold_labels()
    texts = store._texts_of(sorted(every))  # the Store's own read by ids (no public one)
    # labelled by then and made gold since (``gold_labels(unseen_by=)`` leaves them out): that
    # very item trained the champion, so it was not gold then whenever it was stored
    trained_by_id = every.keys() - store.gold_labels(unseen_by=champion_made).keys()
    late: set[str] = set()  # keys asked that became gold after the champion's read
    early: set[str] = set()  # keys gold by then: their repeats did not train the champion
    for item, text in texts.items():
        found = store.get_item(item) if item not in trained_by_id else None
        created = _moment(found["created_at"]) if found else None
        key = text_key(text)
        if created is not None and created <= made:
            early.add(key)
        elif key in keys:
            late.add(key)
    wanted = late - early
    if not wanted:
        return set()
    seen = {
        key for item in trained_by_id if item in texts and (key := text_key(texts[item])) in wanted
    }
    for _, text, _, resolved in store.training_data():
        when = _moment(resolved)
        if when is not None and when <= made and (key := text_key(text)) in wanted:
            seen.add(key)
    return seen


GOLD_SHOWN = 5  # gold questions a rejection on gold names


def gold_misses(misses: Sequence[GoldMiss], ids: Sequence[str]) -> list[dict[str, Any]]:
    """The first ``GOLD_SHOWN`` gold questions the candidate got wrong (``GoldCheck.misses``:
    those the champion got right first), with their item ids, for the report."""
    return [
        {"id": ids[m.index], "gold": m.label, "answer": m.answer}
        for m in misses[:GOLD_SHOWN]
        if m.index < len(ids)
    ]


def team_answers(store: Store, outcome: Outcome) -> None:
    """Add the team's answers to the gold questions ``outcome`` names (how many, how many of
    them the candidate's answer), and count the gold questions on which most of the team's
    answers differ from the gold label: a team that now labels otherwise than the gold labels
    say is scored wrong on them. Reads each gold item's answers (``Store.tally``)."""
    for miss in outcome.gold_missed:
        votes = store.tally(miss["id"]).votes
        miss["team"] = sum(len(users) for users in votes.values())
        miss["team_answer"] = len(votes.get(miss["answer"], []))
    aliases = store.label_aliases()
    disputed = 0
    for item, label in store.gold_labels().items():
        votes = store.tally(item).votes
        total = sum(len(users) for users in votes.values())
        if total and 2 * len(votes.get(aliases.get(label, label), [])) < total:
            disputed += 1
    outcome.n_gold_disputed = disputed


async def team_answers_apart(store: Store, outcome: Outcome) -> None:
    """``team_answers`` in a worker thread on a connection of its own (it reads every gold
    question's answers: off the event loop); on the caller's connection for a memory store."""
    if store.path is None:
        team_answers(store, outcome)
        return

    def read() -> None:
        with store.apart() as own:
            team_answers(own, outcome)

    await asyncio.to_thread(read)


def why_too_few(labels: Sequence[str], keys: Sequence[str] | None = None) -> tuple[str, int] | None:
    """Why ``labels`` are too few to train on and how many more are needed, or None when
    they are enough. The rule is the model's own (``n_splits_for``, which training uses;
    with ``keys``, the ``text_key`` of each label's text, a text and its near-duplicates
    count once, as the folds hold them out together): the count is the fewest labels of new
    texts, for classes already seen or new ones, it then accepts."""
    groups = None if keys is None else list(keys)
    try:
        n_splits_for(labels, groups)
    except InsufficientDataError as exc:
        return str(exc), _fewest_to_add(sorted(class_sizes(labels, groups).values()))
    return None


def _is_enough(counts: Sequence[int]) -> bool:
    try:
        n_splits_for([str(i) for i, n in enumerate(counts) for _ in range(n)])
    except InsufficientDataError:
        return False
    return True


def _fewest_to_add(counts: list[int], limit: int = 16) -> int:
    """Breadth-first over class sizes: each step adds one label to a class of some size (or
    to a new class), until the rule accepts them. Only sizes matter, so the steps are few."""
    frontier = {tuple(counts)}
    for added in range(limit):
        if any(_is_enough(state) for state in frontier):
            return added
        frontier = {
            tuple(sorted([*state[:i], state[i] + 1, *state[i + 1 :]]))
            for state in frontier
            for i in {state.index(size) for size in set(state)}
        } | {tuple(sorted([*state, 1])) for state in frontier}
    return limit


class Abandoned(HitlError):
    """The caller gave up on this retrain (Ctrl-C) before its model files were written."""


class Abandon:
    """Between the caller and a ``compute`` running in a thread: the caller may give the
    retrain up until the model files start being written, and not after (they are written
    to the end, and the outcome recorded), so the registry and the database always agree."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._writing = False
        self.finished = threading.Event()  # set when compute has returned or raised
        self.result: Computed | BaseException | None = None

    def begin_writing(self) -> bool:
        """In ``compute``: may the files be written (the retrain was not given up)?"""
        with self._lock:
            self._writing = not self._abandoned
            return self._writing

    def give_up(self) -> bool:
        """In the caller: give the retrain up; False when its files are being written."""
        with self._lock:
            self._abandoned = not self._writing
            return self._abandoned


UNDECIDED = "never decided: the retrain that trained it was stopped before it decided"


def _take_back(registry: ModelRegistry, meta: ModelVersion, *, whole: bool = False) -> bool:
    """After the decision on the version ``compute`` just saved could not be stored (a full
    disk), or the database could not record it (``_not_kept``: ``whole``). One marked champion
    (its promotion's retirement of the old champion failed after it), or any with ``whole``, is
    deleted, its metadata first, then its model file: an unlink needs no room, and nothing else
    names the version (the database records it after ``compute``). When the old champion's
    metadata is as it was (the registry's writes are whole or none, and retiring it is a
    promotion's last write), the folder names the old champion, as the database and the
    running server do. Else (a candidate never marked, one rejected) its model file goes (tens
    of MB left on the disk the report asks to free, while it said "nothing else was
    changed"), and its metadata stays, marked pruned once the file's room is free: the next
    retrain rejects a candidate left so (``UNDECIDED``). False when a mark of champion is left
    (its metadata could not be deleted)."""
    try:
        marked = registry.get(meta.version).status == "champion"
    except (RegistryError, OSError):
        marked = False  # unreadable: no reader takes it for the champion
    if not (marked or whole):
        with contextlib.suppress(RegistryError, OSError):  # the room is freed all the same
            registry.drop_file(meta.version)
        return True
    for name in (f"v{meta.version}.json", meta.model_file):
        try:
            (registry.root / name).unlink(missing_ok=True)
        except OSError:
            return not marked or name == meta.model_file  # the metadata went: nothing names it
    return True


def compute(
    plan: Plan,
    registry: ModelRegistry,
    champion: Champion | None,
    progress: Progress | None = None,
    abandon: Abandon | None = None,
) -> Computed:
    """Fit, evaluate, decide and store the model files. Touches no database: thread-safe."""
    from model.classifier import DEFAULT_PIPELINE  # the fit worker's imports
    from model.training import decide, train_candidate

    outcome = Outcome(
        "failed",
        "",
        plan.triggered_by,
        n_labels=len(plan.labels),
        n_new=plan.n_new,
        previous_version=plan.previous.version if plan.previous else None,
        previous_metrics=dict(plan.previous.metrics) if plan.previous else {},
        asked=plan.uniform is None or not all(plan.uniform),
        why=plan.why,
    )
    candidate = train_candidate(
        plan.texts,
        plan.labels,
        pipeline_name=plan.pipeline or DEFAULT_PIPELINE,
        label_set=plan.label_set,
        progress=progress,
    )
    if not candidate.is_trained or candidate.classifier is None:
        outcome.reason = candidate.reason
        return Computed(outcome)
    stop = None
    if plan.stop is not None:  # when to stop: the candidate on the stop set, its curve
        stop = stopping.compute_stop(
            plan.stop,
            candidate.classifier,
            plan.texts,
            plan.labels,
            plan.pipeline,
            plan.uniform,
            held_out=(candidate.oof_confidence, candidate.oof_right),  # accuracy now's map
        )
    decision = decide(  # with the gold questions: both models answer them, here in the worker
        candidate,
        champion.classifier if champion else None,
        champion_mask=plan.champion_mask if champion else None,
        gold=(plan.gold_texts, plan.gold_labels) if plan.gold_texts else None,
        champion_names=plan.aliases,
    )
    promote = decision.promote or plan.force
    reason = decision.reason
    if not promote and decision.gold is not None and decision.gold.worse:
        outcome.gold_missed = gold_misses(decision.gold.misses, plan.gold_ids)
        outcome.n_gold_missed = len(decision.gold.misses)
    # the report says it was forced whenever it was, even when the gate would pass it too
    nothing = " with no new label" if not plan.n_new else ""
    if plan.force and not decision.promote:
        outcome.forced = True
        reason = f"forced by {plan.triggered_by}{nothing} although not better ({decision.reason})"
    elif plan.force and champion is None:  # a first model is promoted with no gate
        reason = f"forced by {plan.triggered_by}{nothing}; {reason.removeprefix('promoted: ')}"
    elif plan.force:
        passed = reason.removeprefix("promoted: ")
        reason = f"forced by {plan.triggered_by}{nothing}; the gate passes it too: {passed}"
    metrics = candidate.evaluation.as_dict() if candidate.evaluation else {}
    if abandon is not None and not abandon.begin_writing():
        raise Abandoned("the retrain was given up before its model was stored")
    versions = registry.versions()
    before = {v.version: v.status for v in versions}
    for left in versions:  # one retrain at a time: a candidate is a killed one's
        if left.status == "candidate":
            registry.reject(left.version, UNDECIDED)
    # Saved with no reason: the decision's is written with its status, in one write, so a
    # process killed in between leaves a candidate with no reason, never one that says
    # "promoted" (the next retrain rejects it: UNDECIDED).
    meta = registry.save(
        candidate.classifier,
        n_train=candidate.n_train,
        metrics=metrics,
        extra={
            "label_watermark": plan.watermark["newest"],
            "label_seq": plan.watermark["seq"],  # the count of label writes its read saw
            "champion_macro_f1": decision.champion_macro_f1,
            "gold_check": decision.gold.as_dict() if decision.gold else None,
            "gold_read_at": plan.read_at,  # gold made by then never trained this model
            "label_set_mark": plan.label_set_mark,  # the label set's changes its read saw
            "fit_seconds": round(candidate.fit_seconds, 2),
            "triggered_by": plan.triggered_by,
        },
        at_least=plan.next_version,
    )
    try:
        meta = (
            registry.promote(meta.version, reason)
            if promote
            else registry.reject(meta.version, reason)
        )
        if not promote:  # a promotion prunes once it is kept (``retrain``: its champion before
            outcome.pruned = registry.prune(plan.keep_models)  # it stays until then)
    except Exception as exc:  # a full disk cut it short: the champion stays the champion, and
        if not _take_back(registry, meta):  # the version nothing records is not left behind
            exc.champion_left = meta.version  # type: ignore[attr-defined] - ``write_problem``
        raise
    retired = [v for v in registry.versions() if before.get(v.version) != v.status]
    outcome.status = "promoted" if promote else "rejected"
    outcome.reason = reason
    outcome.version = meta.version
    outcome.metrics = metrics
    return Computed(outcome, meta, retired, stop)


@dataclass
class RefreshPlan:
    """A refresh of the working model: every label, less the audit answers given since the
    champion was trained (held out: the gate compares the refresh with the champion on
    them). ``version`` is the working model's id, minus the number of labels read; when an
    earlier refresh (of this server, or of one before it: the database records each version
    taken with its ``digest``, m038) already had that id fitted on other labels (as many
    labels, not the same ones: a relabel, a label retired while others came), the next one
    below that none had, so each fit has its own and the items the earlier one scored are
    scored again (the scorer tells stored predictions apart by version alone). A refit of the
    same labels is the same model and keeps the id. ``resolved`` is the count of resolved items
    read with the labels (what HITL_REFRESH_EVERY counts: ``jobs.refresh``), and
    ``since_champion`` how many of the labels came after the champion's newest one."""

    version: int
    texts: list[str]
    labels: list[str]
    held_texts: list[str]
    held_labels: list[str]
    label_set: list[str] | None
    pipeline: str | None
    base: int | None  # the champion's version (None: no champion yet)
    stop: stopping.StopPlan | None = None
    uniform: list[bool] | None = None  # per label: not asked for uncertainty (learning curve)
    # Why the models folder could not be read (moved or deleted under the server), if so:
    # the refresh goes on from the champion in memory, and the trainer says it once.
    folder_problem: str | None = None
    resolved: int = 0
    since_champion: int = 0
    n_read: int = 0  # the labels read: held out or trained on (-version unless taken)
    # A label the champion was trained under -> its name now (a rename or merge since): its
    # answers on the held-out audits are read under the label set of now.
    aliases: dict[str, str] = field(default_factory=dict)
    # What the model is fitted on (``fit_digest``): the version it takes is recorded with it
    # (m038), so a refresh of other labels never takes it again, even in a later server.
    digest: str = ""
    # Another process's retrain or rollback holding the database's retrain lock (its owner):
    # the refresh is skipped, nothing else was read (``begin_refresh``).
    locked_by: str | None = None

    def fit_digest(self) -> str:
        """A digest of what the fit depends on: the pipeline, the label set, the texts and
        labels in order, and the code that fits them (slack-hitl's and scikit-learn's
        versions, ``TRAINING_RULES``). Equal digests are the same model."""
        import hashlib
        from importlib import metadata

        def version_of(name: str) -> str:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                return ""

        digest = hashlib.sha256()
        head = [self.pipeline or "", *(self.label_set or [])]
        head += [version_of("slack-hitl"), version_of("scikit-learn"), str(TRAINING_RULES)]
        digest.update("\x1d".join(head).encode("utf-8", "surrogatepass") + b"\x1c")
        for text, label in zip(self.texts, self.labels, strict=True):
            digest.update(f"{text}\x1f{label}\x1e".encode("utf-8", "surrogatepass"))
        return digest.hexdigest()


@dataclass
class Refreshed:
    """A refresh's fit and its gate: on the held-out audit answers, how many the refresh
    and the champion got right. ``classifier`` is None when the labels are too few."""

    version: int
    base: int | None
    n_train: int
    classifier: TextClassifier | None = None
    n_read: int = 0  # the labels its plan read (trained on or held out)
    reason: str = ""
    held: int = 0
    correct: int = 0
    champion_correct: int | None = None
    seconds: float = 0.0
    stop: stopping.StopCheck | None = None
    # The fit raised (out of memory, say), as against too few labels: the refresh failed,
    # and refreshes back off (``jobs.Trainer.refresh_failed``)
    failed: bool = False

    @property
    def passed(self) -> bool:
        """The gate: not worse than the champion on the held-out audit answers (no champion,
        or no audit answer held out, is no evidence of worse)."""
        if self.classifier is None:
            return False
        return self.champion_correct is None or self.correct >= self.champion_correct

    def gate_text(self) -> str:
        if self.champion_correct is None:
            return "no champion to compare with"
        return (
            f"{self.correct}/{self.held} held-out audit answers right"
            f" (champion v{self.base}: {self.champion_correct}/{self.held})"
        )


def begin_refresh(
    store: Store,
    settings: Settings,
    registry: ModelRegistry | None,
    champion: Champion | None,
    *,
    taken: Collection[int] = (),
) -> RefreshPlan:
    """Read the labels for a refresh (on the caller's thread: the connection is its own).
    With a champion, the audit answers resolved after its training are held out. A refresh
    needs no model file (it refits in memory): a models folder moved or deleted under the
    server does not stop it (``trained_until``). ``taken``: the versions of the refreshes
    fitted before in this process; the database keeps those of every refresh with what each
    was fitted on (m038), so the new one gets another unless it is fitted on the same labels
    (``RefreshPlan.version``).

    While another process's retrain or rollback holds the database's retrain lock (the CLI's
    `hitl retrain`, from cron say; this process's own are the ``Trainer``'s to tell), nothing
    is read: the plan names the holder (``locked_by``) and the refresh is skipped (a retrain
    takes precedence). ``since_champion`` counts the labels given since the champion became
    champion: since its training read, or, when a rollback made it champion again, since that
    rollback (``Store.rolled_back_mark``): the labels the rolled-back model learned from do not
    make a refresh due at once."""
    if left_unrecorded(store):  # a failed retrain's end a full disk refused: room now?
        with contextlib.suppress(Exception):  # not yet: the next one tries again
            record_left(store)
    holder = store.lock_holder(LOCK, iso_time(datetime.now(UTC)), holder_alive=elsewhere)
    if holder is not None:
        return RefreshPlan(
            version=0, texts=[], labels=[], held_texts=[], held_labels=[], label_set=None,
            pipeline=settings.pipeline, base=champion.version if champion else None,
            locked_by=holder,
        )  # fmt: skip
    with store.snapshot():  # the count, the labels and those since the champion agree: an
        # answer stored between two of these reads made the count one low (a refresh came a
        # label early, and the trainer's count of labels fitted at was one short)
        resolved = int(store.resolved_to_train())  # what ``jobs.labels_now`` counts
        rows = quality.training_rows(store, settings)
        held: set[str] = set()
        problem = None
        since_champion = len(rows)
        if champion is not None:
            since, problem = trained_until(registry, champion, store)
            held = store.audit_answered_since(since)
            adopted = store.rolled_back_mark(champion.version)
            if adopted is not None:  # champion again since a rollback: the labels given since
                since = adopted  # (by the count of label writes it recorded)
            if since.seq is not None or since.at:  # the labels written after its read
                after = store.labels_after(since)  # (relabelled ones too)
                since_champion = sum(r[0] in after for r in rows)
            else:  # not known (a model from before the watermark): the labels it lacks
                since_champion = max(len(rows) - champion.n_train, 0)
    train = [r for r in rows if r[0] not in held]
    kept = [r for r in rows if r[0] in held]
    plan = RefreshPlan(
        version=0,
        texts=[r[1] for r in train],
        labels=[r[2] for r in train],
        held_texts=[r[1] for r in kept],
        held_labels=[r[2] for r in kept],
        label_set=store.stored_labels() or list(settings.labels) or None,
        pipeline=settings.pipeline,
        base=champion.version if champion else None,
        stop=stopping.read_stop_plan(store, refresh_labels=len(rows)),
        uniform=store.drawn_uniformly(r[0] for r in train),
        folder_problem=problem,
        resolved=resolved,
        since_champion=since_champion,
        n_read=len(rows),
        aliases=store.label_aliases(),
    )
    plan.digest = plan.fit_digest()
    # minus the labels read, or the next number below that no refresh fitted on other labels
    # took (in this process or, recorded, an earlier server: the scorer skips an item stored
    # under the version, so its old scores would claim to be this model's)
    version = -len(rows)
    while True:
        had = store.refresh_version_digest(version)
        if had == plan.digest or (had is None and version not in taken):
            break
        version -= 1
    plan.version = version
    return plan


def trained_until(
    registry: ModelRegistry | None, champion: Champion, store: Store
) -> tuple[LabelMark, str | None]:
    """Where ``champion``'s training read the labels (its metadata's ``label_seq`` and
    ``label_watermark``: ``read_mark``; the empty mark when unknown), and why the models
    folder could not be read, if so. The metadata read with the champion's file
    (``Champion.trained``) says it, the folder gone or not; without it (a champion made in
    memory) the folder's, and with the folder unreadable the time the champion was made
    stands in: no label resolved after it was in its training, so the audit answers resolved
    since are still unseen by both models (to the second: a label in that second may count
    as new)."""
    problem, meta = None, None
    try:
        meta = registry.champion() if registry is not None else None
    except OSError as exc:  # the folder moved or deleted under the server
        problem = f"{exc.strerror or type(exc).__name__}: {exc.filename or exc}"
    if champion.trained is not None:
        return read_mark(champion.trained, store), problem
    if problem is not None:
        return LabelMark(at=_end_of_second(champion.created_at)), problem
    return (read_mark(meta.extra, store) if meta else LabelMark()), None


def read_mark(extra: Mapping[str, Any], store: Store) -> LabelMark:
    """The ``LabelMark`` a model's metadata records: the count of label writes its training
    read saw (``label_seq``; a model from before m034 has none, and read at most the labels
    there were when it began counting: ``label_count_at_upgrade``) and its newest label's
    time ("" when not recorded: then its count alone, as a model from before the watermark
    was told by its number of labels; see ``begin_refresh``)."""
    seq = extra.get("label_seq")
    at = str(extra.get("label_watermark") or "")
    if not isinstance(seq, int) or isinstance(seq, bool):
        seq = store.label_count_at_upgrade() if at else None
    return LabelMark(seq=seq, at=at)


def _end_of_second(at: str | None) -> str:
    """A model's time (to the second) as the store writes times (milliseconds), at the end of
    its second: compared as text, "…:46+00:00" came before every label of that second
    ("…:46.123+00:00"), so the labels a champion made in that second trained on counted as
    given since it (the refresh came early, by how many; the full suite under load hit it)."""
    moment = _moment(at)
    if moment is None:
        return at or ""
    if moment.microsecond == 0 and "." not in (at or ""):
        moment = moment.replace(microsecond=999_000)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def compute_refresh(plan: RefreshPlan, champion: TextClassifier | None) -> Refreshed:
    """Fit the working model on ``plan`` (no cross-validation: the gate is the held-out audit
    answers) and score it and ``champion`` on those. Touches no database or file."""
    from model.classifier import DEFAULT_PIPELINE, TextClassifier  # the fit worker's

    started = time.perf_counter()
    out = Refreshed(
        plan.version, plan.base, len(plan.labels), held=len(plan.held_labels), n_read=plan.n_read
    )
    try:
        classifier = TextClassifier(plan.pipeline or DEFAULT_PIPELINE).fit(
            plan.texts, plan.labels, label_set=plan.label_set
        )
    except ModelError as exc:
        out.reason = f"not refreshed: {exc}"
        out.seconds = time.perf_counter() - started
        return out
    except MemoryError:
        out.reason, out.failed = "not refreshed: " + out_of_memory("MemoryError"), True
        out.seconds = time.perf_counter() - started
        return out
    except Exception as exc:  # noqa: BLE001 - a failing fit leaves the model before in place
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        out.reason, out.failed = f"not refreshed: fitting failed with {detail}", True
        out.seconds = time.perf_counter() - started
        return out
    out.classifier = classifier
    if plan.stop is not None:
        out.stop = stopping.compute_stop(
            plan.stop, classifier, plan.texts, plan.labels, plan.pipeline, plan.uniform
        )
    if champion is not None:
        truth = plan.held_labels
        guesses = classifier.predict(plan.held_texts) if truth else []
        before = (
            [plan.aliases.get(str(g), str(g)) for g in champion.predict(plan.held_texts)]
            if truth
            else []
        )
        out.correct = sum(g == t for g, t in zip(guesses, truth, strict=True))
        out.champion_correct = sum(g == t for g, t in zip(before, truth, strict=True))
    out.seconds = time.perf_counter() - started
    out.reason = "refreshed" if out.passed else "kept the model before: " + out.gate_text()
    return out


FIT_NICENESS = 10  # a fit yields the CPU to the bot: a click's ack comes before a retrain


def _background(server: int, abandon: ChildAbandon | None = None) -> None:
    """Run in the fit's child: lower its priority so the server's acks win the cores, and
    exit if the server (pid ``server``) is killed. A crash in C (a segfault) prints the
    child's stack on the server's stderr, as the server's own would. ``abandon``: shared
    with the server, which may give the fit up (``compute_in_child``)."""
    global _CHILD_ABANDON  # noqa: PLW0603 - this child's one fit
    _CHILD_ABANDON = abandon
    with contextlib.suppress(RuntimeError, OSError, ValueError):
        faulthandler.enable()
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: no os.nice
        os.nice(FIT_NICENESS)
    exit_with_parent(server)


class ChildAbandon:
    """``Abandon`` between the server and the fit's child process, in shared memory (given to
    the child when it starts): the server gives the retrain up when it stops (``FitWorker``:
    its task cancelled, the worker closed), and from then on the child writes no model file,
    even one forked or fitting on after the stop (else it wrote and promoted its version
    after the server recorded the run as stopped: the models folder named a champion the
    database did not). Once the child has begun writing, the server cannot give it up: it
    waits for the files (``WRITE_WAIT_SECONDS``) and records them."""

    FITTING, GIVEN_UP, WRITING = 0, 1, 2

    def __init__(self, context: Any) -> None:
        self.state = context.Value("b", self.FITTING)  # with its own lock

    def _move(self, to: int) -> bool:
        with self.state.get_lock():
            if self.state.value == self.FITTING:
                self.state.value = to
            return self.state.value == to

    def begin_writing(self) -> bool:
        """In the child (``compute``): may the files be written (the fit was not given up)?"""
        return self._move(self.WRITING)

    def give_up(self) -> bool:
        """In the server: give the fit up; False when its files are being written."""
        return self._move(self.GIVEN_UP)


_CHILD_ABANDON: ChildAbandon | None = None  # in a fit's child: its ``ChildAbandon``


def compute_in_child(
    fit: Callable[..., Computed], plan: Plan, registry: ModelRegistry, champion: Champion | None
) -> Computed:
    """``fit`` (``compute``, as the server's module names it) in the fit's child, which the
    server may give up until its files are being written (``ChildAbandon``)."""
    return fit(plan, registry, champion, None, _CHILD_ABANDON)


# Seconds a fit the server's stop found writing its model files (a save and a promotion: a
# second or two, longer for a model of hundreds of MB) is waited for, from the stop's cancel of
# the retrain's task, so that the run records what the models folder holds. Past it the child
# is terminated: the registry's writes are ordered so that a write cut short leaves nothing
# promoted the database does not name. The server's stop waits 10 s for its tasks
# (``bot.server``'s ``asyncio.wait(tasks, timeout=10)``) and the retrain's report then gets
# ``jobs.STOPPED_REPORT_SECONDS`` (5 s): this wait, the run's record and the report fit in it.
WRITE_WAIT_SECONDS = 4.0


class FitDied(HitlError):
    """A fit's child process ended without a result, twice: killed (the kernel's OOM killer,
    a ``kill -9``), out of memory (a MemoryError outside the fit's own handling: while it
    read its task, say), or it raised before it could answer (an import that fails: the code
    changed on disk under a running server). Also a fit whose child answered MemoryError."""


# A fit's child that ran out of memory outside the fit's own handling (model/training.py
# catches a MemoryError while fitting; one while the child reads its task, the labels and
# the champion, comes before that) exits with this code (ENOMEM), not Python's 1, which
# would read as an error in the code (``died_reason``).
OUT_OF_MEMORY_EXIT = 12

LIGHTER = "lower the load, e.g. HITL_PIPELINE=word_lr, or give the server more memory"


def out_of_memory(what: str | None) -> str:
    """The words the CLI's fit uses for a MemoryError (model/training.py: "not trained: ran
    out of memory while fitting (MemoryError)"), with ``what`` ran out, and the fix."""
    return f"ran out of memory while fitting{f' ({what})' if what else ''}; {LIGHTER}"


def died_reason(times: int, code: int | None) -> str:
    """Why the fit failed, from its child's exit code: OUT_OF_MEMORY_EXIT is a MemoryError in
    the child, and a SIGKILL (-9) is what the kernel's OOM killer sends; another positive
    code is a Python error, whose traceback the child printed to the server's log."""
    died = f"the fit's process died {times} times before it finished"
    if code == OUT_OF_MEMORY_EXIT:
        return f"{died}: it " + out_of_memory("the fit's process: MemoryError")
    died = f"{died} (exit code {code})"
    if code == -signal.SIGKILL:
        return (
            f"{died}: it was killed by SIGKILL, as the kernel's out-of-memory killer does: it"
            " likely " + out_of_memory(None)
        )
    if code is not None and code > 0:
        return (
            f"{died}: the fit raised an error (see the log above for its traceback; e.g. the"
            " code changed under a running server: restart it)"
        )
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"{died}: it was killed by {signal.Signals(-code).name}"
    return f"{died}; was it killed for lack of memory?"


def _out_of_memory_exits(target: Callable[..., Any], *args: Any) -> None:
    """A fit's child: run ``target`` (the process pool's worker loop) and exit with
    OUT_OF_MEMORY_EXIT on a MemoryError it lets through (one while it unpickles its task),
    where Python would print a traceback (more memory) and exit with 1."""
    try:
        target(*args)
    except MemoryError:
        os._exit(OUT_OF_MEMORY_EXIT)


class _FitContext:
    """``child_context()`` whose processes run their target in ``_out_of_memory_exits``
    (the process pool's ``mp_context``: everything else is the context's own)."""

    def __init__(self, base: Any) -> None:
        self._base = base

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def Process(  # noqa: N802 - multiprocessing's name
        self, *, target: Callable[..., Any], args: tuple = (), **kwargs: Any
    ) -> Any:
        return self._base.Process(target=_out_of_memory_exits, args=(target, *args), **kwargs)


class ChildDied(BrokenProcessPool):
    """A fit's child ended without a result; ``exitcode`` as ``multiprocessing`` gives it."""

    def __init__(self, exitcode: int | None) -> None:
        super().__init__(f"exit code {exitcode}")
        self.exitcode = exitcode


class RefreshFailed(HitlError):
    """A refresh's fit raised (``Refreshed.failed``): its reason, for the one line the trainer
    says before refreshes back off."""


class FitStopped(HitlError):
    """The fit worker was closed (the server is stopping) while a fit ran. ``computed``: the
    retrain's child had begun writing its model files when the stop came; they are written,
    and are what the run records (``retrain``)."""

    def __init__(self, message: str, computed: Computed | None = None) -> None:
        super().__init__(message)
        self.computed = computed


def _end_forked(done: asyncio.Future, executor: ProcessPoolExecutor) -> None:
    """A fit stopped while its child was forked: end the child once the fork is done (its
    outcome read: a pool closed meanwhile refused the call, nothing to end)."""
    if not done.cancelled():
        done.exception()
    _end(executor)


def _end(executor: ProcessPoolExecutor) -> None:
    """``terminate`` the fit's child, unless that was done already (``FitWorker.close``)."""
    if getattr(executor, "_processes", None) is not None:
        terminate(executor)


class FitWorker:
    """Runs ``compute`` in a child process, for the server.

    In a thread, TF-IDF featurisation holds the GIL for most of a long fit and every click's
    ack waits for it; a child process leaves the event loop its own core. It can also be
    stopped: shutdown terminates a fit in progress instead of waiting minutes for it.

    Each fit gets a child of its own (forked by the fork server, which imported the fit's
    code once), which ends with the fit and gives its memory back. The child runs in a
    ``ProcessPoolExecutor`` of one process: a child that dies mid-fit fails the fit
    (``multiprocessing.Pool`` never answers for a task whose process died, and the fit lock
    would be held for good: no refresh or retrain again). A fit whose child died is run once
    more in a new child before it fails with ``FitDied``.
    """

    RETRIES = 1  # fits run again after their child died

    def __init__(self) -> None:
        self._executor: ProcessPoolExecutor | None = None  # the fit running now, if any
        self._abandon: ChildAbandon | None = None  # and what it shares with its child
        self._submitting: asyncio.Future | None = None  # and its fork, until done
        self._lock: asyncio.Lock | None = None  # one fit at a time
        self.handed = 0  # fits handed to a child so far
        self.died = 0  # children that died mid-fit
        self.closed = False
        self._handed = asyncio.Condition()

    def child_pids(self) -> list[int]:
        """The pid of the child fitting now (none between fits)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return [p.pid for p in list(processes.values()) if p.pid is not None]

    async def wait_handed(self, n: int, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Wait until ``n`` fits have been handed to a child (tests pause it there)."""
        async with asyncio.timeout(timeout), self._handed:
            await self._handed.wait_for(lambda: self.handed >= n)

    async def run(self, plan: Plan, registry: ModelRegistry, champion: Champion | None) -> Computed:
        return await self._call(compute_in_child, (compute, plan, registry, champion))

    async def refresh(self, plan: RefreshPlan, champion: TextClassifier | None) -> Refreshed:
        return await self._call(compute_refresh, (plan, champion))

    async def _call(self, function: Callable[..., Any], args: tuple) -> Any:
        """Run ``function(*args)`` in a new child (one fit at a time)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            for attempt in range(self.RETRIES + 1):
                try:
                    return await self._in_child(function, args)
                except MemoryError:  # the child's answer (or sending it the task): no retry
                    if self.closed:
                        raise FitStopped("the fit was stopped: the server is stopping") from None
                    raise FitDied("the fit " + out_of_memory("MemoryError")) from None
                except BrokenProcessPool as exc:
                    if self.closed:
                        raise FitStopped("the fit was stopped: the server is stopping") from exc
                    self.died += 1
                    code = exc.exitcode if isinstance(exc, ChildDied) else None
                    if attempt == self.RETRIES:
                        raise FitDied(died_reason(self.RETRIES + 1, code)) from None
                    why = "ran out of memory: MemoryError" if code == OUT_OF_MEMORY_EXIT else exc
                    logger.warning("a fit's process died (%s); fitting again in a new one", why)
        raise AssertionError("unreachable")

    async def _in_child(self, function: Callable[..., Any], args: tuple) -> Any:
        if self.closed:
            raise BrokenProcessPool("the fit worker is closed")
        context = child_context()
        abandon = ChildAbandon(context)
        executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=_FitContext(context),  # type: ignore[arg-type] - a context
            initializer=_background,
            initargs=(os.getpid(), abandon),
        )
        submitting = asyncio.ensure_future(asyncio.to_thread(executor.submit, function, *args))
        self._executor, self._abandon, self._submitting = executor, abandon, submitting
        try:
            try:  # the child is forked here, a round trip to the fork server: off the loop
                future = await asyncio.shield(submitting)
            except RuntimeError as exc:  # closed meanwhile: "cannot schedule new futures"
                raise BrokenProcessPool("the fit worker is closed") from exc
            except asyncio.CancelledError:
                # Stopped while the child is forked: it is given up (it writes nothing), and
                # ended once the fork is done (the pool holds its lock until then).
                abandon.give_up()
                submitting.add_done_callback(lambda done: _end_forked(done, executor))
                raise
            if self.closed:  # closed while it was forked: ``close`` left the child to this
                abandon.give_up()
                _end(executor)
                raise BrokenProcessPool("the fit worker is closed")
            processes = list(executor._processes.values())  # noqa: SLF001 - for the exit code
            async with self._handed:
                self.handed += 1
                self._handed.notify_all()
            waiter = awaitable(future)
            try:
                # shielded: the stop's cancel of this task must not cancel ``waiter`` (a task
                # cancels the future it awaits), which ``_written`` still awaits
                return await asyncio.shield(waiter)
            except BrokenProcessPool as exc:
                # The pool fails the future before its manager thread reaps the child: read
                # the exit code after that thread ends. Two threads reading one forkserver
                # child's status race for its 4 bytes, and the loser records "exit code 255".
                await asyncio.to_thread(executor.shutdown, wait=True)
                codes = [p.exitcode for p in processes]
                raise ChildDied(codes[0] if codes else None) from exc
            except asyncio.CancelledError:
                if abandon.give_up():  # the fit is abandoned: its child writes nothing
                    waiter.cancel()  # its outcome goes nowhere (no "never retrieved" line)
                    _end(executor)
                    raise
                written = await self._written(waiter, executor)
                if written is None:
                    raise
                raise FitStopped("the fit was stopped while it wrote its model", written) from None
        finally:
            if self._executor is executor:
                self._executor, self._abandon, self._submitting = None, None, None
            if submitting.done():
                executor.shutdown(wait=False, cancel_futures=True)  # the child ends, idle

    @staticmethod
    async def _written(waiter: asyncio.Future, executor: ProcessPoolExecutor) -> Any:
        """A fit stopped while its child writes the model files: its result once written
        (within WRITE_WAIT_SECONDS), so that the run records them; None: not in time (the
        child is terminated), or the child failed. ``waiter`` is the child's call, not
        cancelled by the stop (``_in_child`` awaited it shielded)."""
        try:
            async with asyncio.timeout(WRITE_WAIT_SECONDS):
                return await asyncio.shield(waiter)
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - the stop goes on
            waiter.cancel()
            _end(executor)
            return None

    def close(self) -> None:
        """Stop the child at once: a fit in progress is given up (its child writes nothing)
        and its run marked failed. A child already writing its model files is let finish
        them (seconds): its caller records them (``_in_child``). A child being forked is
        ended once it is (``_in_child``): the pool holds its lock until then."""
        self.closed = True
        executor, self._executor = self._executor, None
        abandon, self._abandon = self._abandon, None
        submitting, self._submitting = self._submitting, None
        if executor is None or not (abandon is None or abandon.give_up()):
            return
        if submitting is None or submitting.done():
            terminate(executor)  # a stopped child is resumed first, or it would never exit


def erased_while_training(store: Store, plan: Plan) -> set[str]:
    """The items ``plan`` trained on that `hitl delete` deleted since it read them (moving
    ``plan.deleted_mark`` on: a later look reads only what was deleted after this one)."""
    plan.deleted_mark, gone = deleted_after(store.db, plan.deleted_mark)
    return gone.intersection(plan.item_ids) if gone else set()


def withdraw(registry: ModelRegistry, plan: Plan, computed: Computed, erased: set[str]) -> Computed:
    """``computed``'s model was trained on ``erased``, items `hitl delete` deleted while the
    retrain ran: its vocabulary may keep their words, and no delete named it (it was not
    recorded yet). It is rejected and its model file deleted; promoted, the champion before it
    is the champion again (``reinstate``: a promotion of its own, so a kill in between leaves
    it, not the withdrawn one, served; none before it: none). The retrain fails, saying to run
    it again (it then trains without them). A promoted model whose champion before it has no
    file any more stays champion, and its reason says to retrain. Metadata only (no model is
    loaded): quick."""
    meta = computed.meta
    assert meta is not None
    outcome = computed.outcome
    shown = ", ".join(repr(i[:60]) for i in sorted(erased)[:3]) + (" …" if len(erased) > 3 else "")
    deleted = (
        f"{count(len(erased), 'item')} it trained on ({shown})"
        f" {'was' if len(erased) == 1 else 'were'} deleted while it ran (hitl delete)"
    )
    # the versions the decision changed, as they are now: not this one (recorded as rejected)
    retired = {v.version: v for v in computed.retired if v.version != meta.version}
    previous = plan.previous.version if plan.previous is not None else None
    if meta.status == "champion" and previous is not None:
        try:
            retired[previous] = registry.reinstate(previous)  # first: never none
        except RegistryError:  # its file is gone: nothing to go back to but no model at all
            outcome.reason = (
                f"{outcome.reason}; but {deleted}, and v{previous}'s file is gone, so v"
                f"{meta.version} stays champion: run the retrain again, it trains without them"
            )
            return computed
    elif meta.status == "champion":
        outcome.previous_version = None  # the first model: none stays
        registry.set_status(meta.version, "retired")  # a champion cannot be rejected
    reason = (
        f"{deleted}, so its model v{meta.version} is not kept (its file is deleted): run the"
        " retrain again, it trains without them"
    )
    rejected = registry.discard(meta.version, reason)
    outcome.status = "failed"
    outcome.reason = reason
    outcome.forced = False
    outcome.pruned = sorted({*outcome.pruned, meta.version})
    computed.stop = None  # the caller's: no stop check is recorded for a model not kept
    return Computed(outcome, rejected, list(retired.values()), None, crashed=True)


def finish(
    store: Store, plan: Plan, computed: Computed, registry: ModelRegistry | None = None
) -> Outcome:
    """Mirror the model versions into the database, close the run and release the lock, in
    one transaction: all of it is recorded, or none when the database refuses a write (its
    disk full once the model files took the room: ``retrain`` then takes the model back,
    ``_not_kept``). With ``registry``, a model trained on an item deleted since is withdrawn
    (``withdraw``): looked up in the transaction that records it, so a delete after it finds
    it (and names it)."""
    with store._immediate():
        if registry is not None and computed.meta is not None and not computed.meta.pruned_at:
            if erased := erased_while_training(store, plan):
                computed = withdraw(registry, plan, computed, erased)
        for meta in computed.retired:
            store.record_model(meta.to_dict())
        if computed.meta is not None:
            store.record_model(computed.meta.to_dict())
        outcome = computed.outcome
        outcome.seconds = round(time.perf_counter() - plan.started, 2)
        detail = {"watermark": plan.watermark, **asdict(outcome)}
        if computed.crashed:  # not the labels' fault: the next retrain tries them again
            del detail["watermark"]
        detail.pop("metrics", None)  # kept in the models table
        store.finish_run(plan.run_id, outcome.status, detail)
        store.release_lock(LOCK, plan.owner)
    # "retrain v3 promoted: …"; one that made no model, "retrain failed: …" (not "vNone")
    what = "retrain" if outcome.version is None else f"retrain v{outcome.version}"
    reason = outcome.reason.removeprefix(f"retrain {outcome.status}: ")
    logger.info(
        "%s %s: %s (n=%d, %.1f s)", what, outcome.status, reason, outcome.n_labels, outcome.seconds
    )
    return outcome


def load_champion(registry: ModelRegistry) -> Champion | None:
    """The champion from disk (a tampered or unreadable file falls back to an older one)."""
    loaded = registry.load_champion()
    if loaded is None:
        return None
    return Champion(
        version=loaded.meta.version,
        classifier=loaded.classifier,
        created_at=loaded.meta.created_at,
        n_train=loaded.meta.n_train,
        trained=dict(loaded.meta.extra),
    )


def sweep_leftovers(registry: ModelRegistry) -> list[str]:
    """At start: the temporary files a write killed with the last process left (see
    ``ModelRegistry.sweep``), which would else wait for the next retrain's save. A folder that
    cannot be read is left to ``models_problem`` to tell."""
    try:
        return registry.sweep()
    except OSError:
        return []


def recover_champion(registry: ModelRegistry, named: int | None) -> Champion | None:
    """At start, when the models folder has no champion but the database names ``named``: a
    promotion killed between its two writes (before they were ordered new champion first) left
    the old champion retired and the new one a candidate. ``named``, retired with its file
    intact, is made the champion again (one WARNING says so) and returned; else None."""
    if named is None or registry.champion() is not None:
        return None
    try:
        meta = registry.get(named)
        if meta.status != "retired" or meta.pruned_at:
            return None
        loaded = registry.promote_loaded(named, "champion again: a cut-short promotion left none")
    except RegistryError:
        return None  # its file is damaged or gone: `models_problem` says what to do
    logger.warning(
        "no champion in %s (a promotion was cut short): v%d, the champion the database names,"
        " is the champion again",
        registry.root,
        named,
    )
    return Champion(
        version=named,
        classifier=loaded.classifier,
        created_at=loaded.meta.created_at,
        n_train=loaded.meta.n_train,
        trained=dict(loaded.meta.extra),
    )


async def retrain(
    store: Store,
    settings: Settings,
    registry: ModelRegistry,
    *,
    champion: Champion | None,
    triggered_by: str,
    force: bool = False,
    progress: Progress | None = None,
    on_champion: Callable[[Champion], None] | None = None,
    plan: Plan | None = None,
    worker: FitWorker | None = None,
    scorer: Scorer | None = None,
    rescore_progress: Progress | None = None,
    raise_failures: bool = True,
) -> Outcome:
    """Run a whole retrain; the fit and the re-scoring happen off the event loop (through
    ``scorer``, the running bot's, when given: in `hitl serve` its background walk re-scores the
    queue after the retrain ends, as after a refresh, so neither its report nor the next
    refresh waits minutes for a walk over a large backlog).

    A retrain that fails on its way (its model files cannot be written: a full disk, a
    read-only folder; or an error of no known cause) is recorded as failed, with a reason that
    says what to do (``failure_reason``), and the error is raised (the CLI says it in one
    line). With ``raise_failures=False`` (`hitl serve`, whose report must tell the admins) it
    is logged in one line (an error of no known cause with its traceback) and returned as the
    failed outcome instead. A stop (Ctrl-C, the server's stop) is always raised.

    So is one whose model the database cannot record (``finish`` fails: the disk full once the
    model files took the room): its model is not kept (``_not_kept``), so the models folder,
    the database and the server keep the same champion. One promoted and recorded whose stop
    check cannot be recorded, or whose new champion cannot score the waiting items, stays
    promoted: `hitl serve` says so in its report (the CLI raises ``ScoringStopped``).

    Its end's writes run in a worker thread on a connection of their own (``_at_end``), so
    another process holding the database's write lock makes them wait, not the event loop;
    ``finish`` waits twice (``END_TRIES``) before the model is given up."""
    again = "`hitl retrain`" if raise_failures else "`/hitl retrain`"
    if plan is None:
        started = begin(store, settings, registry, triggered_by=triggered_by, force=force)
        if isinstance(started, Outcome):
            return started
        plan = started
    abandon = Abandon()
    try:
        if plan.stop is None:  # the stop set (a draw reads every item id): off the event loop
            plan.stop = await asyncio.to_thread(stopping.read_stop_plan_at, settings.db)
        if worker is not None:
            computed = await worker.run(plan, registry, champion)
        else:
            computed = await _fit_in_thread(abandon, plan, registry, champion, progress)
    except FitDied as exc:  # the champion stays; the report says why
        computed = Computed(Outcome("failed", f"retrain failed: {exc}", triggered_by), crashed=True)
    except BaseException as exc:
        why = failure_reason(exc, worker, registry, champion, again)
        computed = Computed(Outcome("failed", why, triggered_by), crashed=True)
        if isinstance(exc, FitStopped) and exc.computed is not None:
            computed = exc.computed  # stopped as its child wrote the files: what they hold
        elif worker is None and not abandon.give_up():  # its files are being written: record
            abandon.finished.wait()  # them (seconds), or the database and registry disagree
            if isinstance(abandon.result, Computed):
                computed = abandon.result
        await _at_end(store, _end_failed, plan, computed, registry)  # off the event loop
        if raise_failures or not isinstance(exc, Exception) or isinstance(exc, FitStopped):
            raise
        _say_failed(exc, computed.outcome)
        return computed.outcome
    # the CLI's Ctrl-C (not `hitl serve`'s stop, which lets the end finish): no more tries of
    # ``finish`` after the one under way
    no_more_tries = threading.Event()
    outcome, refused = await _at_end(
        store, _end_fitted, plan, computed, registry, again, no_more_tries,
        on_stop=no_more_tries.set if raise_failures else None,
    )  # fmt: skip
    if refused is not None:  # nothing recorded (a full disk, a lock held long): not kept
        if raise_failures:
            raise refused
        _say_failed(refused, outcome)
        return outcome
    await _at_end(store, _after_end, registry, plan, computed, outcome)
    if outcome.gold_missed and outcome.status == "rejected":  # what the team answered there
        await team_answers_apart(store, outcome)
    if outcome.promoted:
        try:
            await _take_up(
                store, settings, registry, outcome, on_champion, scorer, rescore_progress
            )
        except Exception as exc:
            if raise_failures:
                raise ScoringStopped(outcome) from exc  # promoted and recorded all the same
            _scoring_stopped(store, outcome, exc)
    return outcome


async def give_up_begun(
    store: Store,
    plan: Plan,
    exc: BaseException,
    worker: FitWorker | None,
    registry: ModelRegistry,
    champion: Champion | None,
) -> Outcome:
    """End a retrain that ``begin`` began (its run recorded running, the lock taken) but that
    ``retrain`` never took up: the server's stop came while it waited for the fit lock (a
    refresh fitting), or before its task ran at all. Recorded as ``retrain`` records a stop
    (failed, "stopped: the server was shutting down"), off the event loop (``_at_end``), and
    the lock released: it was left running, the lock held, after a clean exit."""
    why = failure_reason(exc, worker, registry, champion, "`/hitl retrain`")
    computed = Computed(Outcome("failed", why, plan.triggered_by), crashed=True)
    await _at_end(store, _end_failed, plan, computed, registry)
    return computed.outcome


def _known(exc: BaseException) -> bool:
    """An error of a known cause, said in one line with no traceback: the disk (a full one,
    a read-only folder) or the database refusing a write."""
    return isinstance(exc, OSError | DatabaseRefused)


def _problem_of(store: Store, exc: BaseException) -> str:
    """``exc`` in one line: a database error in the store's words (what to do)."""
    if isinstance(exc, DatabaseError) and store.path is not None:
        return str(database_problem(store.path, exc, lost=store.lost))
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {exc}"


def _scoring_stopped(store: Store, outcome: Outcome, exc: Exception) -> None:
    """`hitl serve`: a retrain promoted and recorded, whose new champion then could not be
    taken up or score the waiting items (``_take_up``: a full disk, say). It stays promoted (the
    champion watch serves it from the database's record); the report says so, and the log in
    one line (an error of no known cause with its traceback)."""
    problem = _problem_of(store, exc)
    before = f"v{outcome.previous_version}'s" if outcome.previous_version else "no"
    outcome.reason += (
        f"; but scoring the waiting items with it stopped ({problem}): those not scored yet"
        f" keep {before} scores until the server scores them"
    )
    outcome.rescoring = False
    logger.error(
        "retrain v%s promoted, but scoring the waiting items stopped: %s",
        outcome.version, problem, exc_info=None if _known(exc) else exc,
    )  # fmt: skip


def _unkeep(registry: ModelRegistry, plan: Plan, computed: Computed) -> str | None:
    """The models folder's part of ``_not_kept`` (file work, for a worker thread): the
    version ``compute`` stored, which nothing records now, is deleted (``_take_back``), and the
    champion before it is the champion again when its promotion retired it (``reinstate``;
    when there is no room even for that, a restart does: ``recover_champion``). What the
    folder keeps, for the reason; None when no model was stored."""
    meta = computed.meta
    if meta is None:
        return None
    previous = plan.previous.version if plan.previous is not None else None
    if not _take_back(registry, meta, whole=True):
        return (
            f"v{meta.version}'s promotion was cut short: the models folder may name it the"
            " champion, which a restart would serve; the database keeps "
            + (f"v{previous}" if previous is not None else "no champion")
        )
    kept = "so it is not kept: its files were deleted and "
    if previous is None:
        return kept + "no model was stored"
    try:
        if registry.champion() is None:  # the promotion retired it: it is the champion again
            registry.reinstate(previous)
    except (RegistryError, OSError):
        return (
            f"{kept}v{previous} stays the champion (the models folder names it again when the"
            " server starts)"
        )
    return kept + f"v{previous} stays the champion"


def _recorded(store: Store, version: int) -> bool:
    """Whether the database records ``version`` although ``finish`` raised: an error may come
    after its COMMIT (one whose fsync failed while its pages are in the log, which SQLite's
    recovery replays), and a version the database names keeps its files. One row read (a read
    needs no room and waits for no lock); False when even that fails (``finish``'s error is
    then taken as what it says: nothing recorded)."""
    try:
        return store.has_model(version)
    except Exception:  # noqa: BLE001 - unreadable: as before, its COMMIT is what failed
        return False


def _recorded_all_the_same(store: Store, computed: Computed, error: Exception) -> Outcome:
    """``finish`` raised ``error`` after the database recorded the model (``_recorded``): the
    retrain goes on as recorded (its files stay, the champion it promoted is taken up), said in
    one line (an error of no known cause with its traceback)."""
    outcome = computed.outcome
    if outcome.status == "failed":  # withdrawn in ``finish``: no stop check for it
        computed.stop = None
    logger.warning(
        "retrain v%s %s and recorded (its model files are kept), although the database then"
        " reported an error: %s",
        outcome.version, outcome.status, _problem_of(store, error),
        exc_info=None if _known(error) else error,
    )  # fmt: skip
    return outcome


# Tries of ``finish`` when another process holds the database's write lock past the busy
# timeout of the connection it runs on (``_at_end``: 10 s, ``Store.apart``): the fit took
# minutes, and in a worker thread one more wait costs no request anything, so a `hitl delete`
# or `hitl import` that holds the lock a little long does not throw the finished model away.
END_TRIES = 2

# How often ``_at_end``'s wait for its thread wakes the event loop, so that a Ctrl-C the
# kernel handed to another thread is seen (seconds; a wake costs microseconds).
WAKE_TICK = 0.25


async def _at_end(
    store: Store, work: Callable[..., Any], *args: Any, on_stop: Callable[[], None] | None = None
) -> Any:
    """``work(own, *args)`` in a worker thread on a connection of its own (``Store.apart``),
    as the start of a retrain and a refresh's writes run: the end's writes (``finish`` and those
    after it) wait for another process's write lock there, with that connection's busy timeout
    (10 s), never on the event loop of `hitl serve`, whose wait (2 s, LOOP_BUSY_TIMEOUT_MS)
    holds every request (a click answered past Slack's 3 s). On the caller's connection for a
    memory store, and when no connection of its own can be opened (the server's file lost:
    the served one refuses the writes, as it did before).

    The server's stop (the retrain's task cancelled) does not cut it short: the thread cannot
    be stopped, so it is waited for (bounded by its connection's busy timeouts) before the
    cancel goes on. Nothing writes after the server closes its store and lock, and the run's
    record is final when ``jobs.stopped_by_shutdown`` reads it for its report. ``on_stop`` is
    called at the stop (the CLI's Ctrl-C: ``_finish_trying`` tries no more after the try under
    way, so the end waits one busy timeout at most, not END_TRIES of them, and a model it could
    not record is not kept, which the command's one line says). The wait wakes each
    WAKE_TICK: `asyncio.run`'s Ctrl-C handler runs only once the event loop wakes, and a
    SIGINT the kernel hands to the end's thread wakes nothing (asyncio sets no wakeup fd for
    that handler), so a loop asleep until the thread ends saw the Ctrl-C only after every try."""
    if store.path is None:
        return work(store, *args)

    def run() -> tuple[bool, Any]:
        try:
            own = store.apart()
        except Exception:  # noqa: BLE001 - the served connection says why, in its words
            return False, None
        with own:
            return True, work(own, *args)

    ended = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while not ended.done():  # awake each WAKE_TICK: a Ctrl-C is seen as the thread waits
            await asyncio.wait([ended], timeout=WAKE_TICK)
        opened, result = ended.result()
    except asyncio.CancelledError:
        if on_stop is not None:
            on_stop()
        while not ended.done():  # the stop: the thread's writes end before the store closes
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([ended])
        if not ended.cancelled() and (error := ended.exception()) is not None:
            logger.warning(
                "a retrain's end failed as the server stopped: %s", _problem_of(store, error)
            )
        raise
    return result if opened else work(store, *args)


def _locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked": another process held its write lock
    past the busy timeout."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return isinstance(exc, DatabaseError) and (
        name.startswith("SQLITE_BUSY") or "database is locked" in str(exc)
    )


def _finish_trying(
    store: Store,
    plan: Plan,
    computed: Computed,
    registry: ModelRegistry,
    no_more_tries: threading.Event | None = None,
) -> Outcome:
    """``finish``, tried again (END_TRIES in all) while another process held the write lock
    past the busy timeout: its BEGIN IMMEDIATE was refused, so nothing of it ran (a look at
    the deletions that moved ``plan.deleted_mark`` may have withdrawn the model: not tried
    again then). Not tried again either once ``no_more_tries`` is set (the CLI's Ctrl-C)."""
    for tries_left in range(END_TRIES - 1, -1, -1):
        mark = plan.deleted_mark
        try:
            return finish(store, plan, computed, registry)
        except DatabaseError as exc:
            stopped = no_more_tries is not None and no_more_tries.is_set()
            if not tries_left or not _locked(exc) or plan.deleted_mark != mark or stopped:
                raise
            logger.info(
                "retrain v%s: the database is locked by another process; waiting once more to"
                " record it",
                computed.outcome.version,
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _end_fitted(
    store: Store,
    plan: Plan,
    computed: Computed,
    registry: ModelRegistry,
    again: str,
    no_more_tries: threading.Event | None = None,
) -> tuple[Outcome, Exception | None]:
    """A fitted retrain's end (``_at_end``: in a worker thread, on a connection of its own):
    a model trained on items deleted since is withdrawn (``withdraw``), and ``finish`` records
    it (``_finish_trying``). When the database refuses (its disk full once the model files took
    the room, its lock held past the waits) and did not record the model after all
    (``_recorded``), the model is not kept (``_unkeep``, ``_not_kept``). The outcome, and the
    error that kept it from the database (None: recorded)."""
    try:
        if computed.meta is not None and not computed.meta.pruned_at:  # deleted while trained
            if erased := erased_while_training(store, plan):
                computed = withdraw(registry, plan, computed, erased)
        return _finish_trying(store, plan, computed, registry, no_more_tries), None
    except Exception as exc:  # noqa: BLE001 - nothing recorded (a full disk): not kept
        if computed.meta is not None and _recorded(store, computed.meta.version):
            return _recorded_all_the_same(store, computed, exc), None  # its files stay
        kept = _unkeep(registry, plan, computed)
        return _not_kept(store, registry, plan, computed, exc, kept, again), exc


def _end_failed(store: Store, plan: Plan, computed: Computed, registry: ModelRegistry) -> None:
    """A retrain that failed on its way: its end recorded (``_at_end``), or, when the database
    refuses that too (its disk full as the model files' was), recorded once it can
    (``_not_recorded``: the report needs no disk; it says so)."""
    try:
        finish(store, plan, computed, registry)
    except Exception as error:  # noqa: BLE001 - the database's disk full too: the report says it
        _not_recorded(store, plan, computed.outcome, error)


def _after_end(
    store: Store, registry: ModelRegistry, plan: Plan, computed: Computed, outcome: Outcome
) -> None:
    """What follows a recorded retrain (``_at_end``: in a worker thread, on a connection of its
    own): a promotion's prune (``_prune_kept``), a rejection's streak (its report says since
    when the champion stands) and the stop check (``stopping.record``; one the database
    refuses is said in one line: the model is recorded, it stays)."""
    if outcome.status == "promoted":  # recorded: the files beyond HITL_KEEP_MODELS go now
        _prune_kept(store, registry, plan, outcome)  # (the champion before it stayed)
    if outcome.status == "rejected":
        outcome.streak = asdict(stopping.streak(store))
    if computed.stop is None:
        return
    try:
        stopping.record(
            store, computed.stop, kind="retrain", version=outcome.version,
            n_train=outcome.n_labels,
        )  # fmt: skip
        status = stopping.stop_status(store)
        outcome.stopping = status.as_dict() if status else {}
    except Exception as exc:  # noqa: BLE001 - the model is recorded: it stays; said once
        logger.warning(
            "retrain v%s: its stop check could not be recorded (%s); the next retrain's is",
            outcome.version, _problem_of(store, exc),
            exc_info=None if _known(exc) else exc,
        )  # fmt: skip


def _prune_kept(store: Store, registry: ModelRegistry, plan: Plan, outcome: Outcome) -> None:
    """A promotion the database recorded: the model files beyond HITL_KEEP_MODELS are deleted
    (``prune``) only now, and the run's record names them (``finish`` wrote it before). Before
    ``finish``, a database that then refused the new model left no model at all with
    HITL_KEEP_MODELS=0: the champion before it pruned, the new one taken back (``_unkeep``).
    One that fails (a full disk refuses a metadata write) is said in one line: the model is
    recorded, and the next retrain's prune deletes them. File work and one write: for a worker
    thread (``_after_end``)."""
    try:
        outcome.pruned = registry.prune(plan.keep_models)
    except Exception as exc:  # noqa: BLE001 - the model stays; said once
        logger.warning(
            "retrain v%s: the model files beyond HITL_KEEP_MODELS (%d) could not be deleted"
            " (%s); the next retrain deletes them",
            outcome.version, plan.keep_models, _problem_of(store, exc),
            exc_info=None if _known(exc) else exc,
        )  # fmt: skip
        return
    if not outcome.pruned:
        return
    try:
        store.add_run_detail(plan.run_id, pruned=outcome.pruned)
    except Exception as exc:  # noqa: BLE001 - the files are gone all the same; said once
        logger.warning(
            "retrain v%s: its run could not record which model files it deleted (%s): %s",
            outcome.version, _problem_of(store, exc),
            ", ".join(f"v{v}" for v in outcome.pruned),
        )  # fmt: skip


@contextlib.contextmanager
def _not_waiting(store: Store, after: BaseException) -> Iterator[None]:
    """The writes inside, which follow one the database refused (``after``): they do not wait
    for its write lock again (``busy_timeout`` 0 meanwhile). Another process that held it past
    the busy timeout (``finish`` tried twice) almost surely holds it still, and each wait
    delays the report by as much; a write refused so is recorded later (``_not_recorded``).
    Unchanged after an error that is not the database's."""
    if not isinstance(after, DatabaseError):
        yield
        return
    try:
        waited = store.busy_timeout()
        store.set_busy_timeout(0)
    except Exception:  # noqa: BLE001 - the writes inside meet it too, and say it
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            store.set_busy_timeout(waited)


def _not_kept(
    store: Store,
    registry: ModelRegistry,
    plan: Plan,
    computed: Computed,
    error: Exception,
    kept: str | None,
    again: str,
) -> Outcome:
    """A retrain whose model the database could not record (``finish`` failed: its disk full
    once the model files took the room) fails: ``finish`` recorded none of it, and the models
    folder took the model back (``_unkeep``: ``kept``). The report says so and tells the
    admins; the run ends failed, recorded now or, when the database refuses that too, once it
    can (``_not_recorded``). With no model stored, the outcome is the one ``compute`` gave."""
    if computed.meta is None or kept is None:
        _not_recorded(store, plan, computed.outcome, error)
        return computed.outcome
    version = computed.meta.version
    where = "the database"
    if not isinstance(error, DatabaseError):  # a model file's write (a prune, a withdrawal)
        where = f"the models folder {registry.root}"
    outcome = Outcome(
        "failed",
        f"v{version} could not be recorded in {where} ({_problem_of(store, error)}), {kept};"
        f" then {again} again",
        plan.triggered_by,
        n_labels=computed.outcome.n_labels,
        n_new=computed.outcome.n_new,
        previous_version=plan.previous.version if plan.previous is not None else None,
        why=computed.outcome.why,
    )
    try:
        with _not_waiting(store, error):  # refused already: not a second busy timeout
            finish(store, plan, Computed(outcome, crashed=True))
    except Exception as refused:  # noqa: BLE001 - as it refused the model: recorded later
        _not_recorded(store, plan, outcome, refused, said=True)
    return outcome


def _not_recorded(
    store: Store, plan: Plan, outcome: Outcome, error: Exception, *, said: bool = False
) -> None:
    """After ``finish`` of a failed retrain failed (a full disk refuses the database's writes
    as it did the model files'): its reason says so (unless it ``said`` it already), the lock
    is released if the database takes that, else this process's next retrain takes it over
    (``ENDED_OWNERS``), and so does another process's (``_mark_ended``), and this process's
    next retrain or refresh records the run as failed (``UNRECORDED``, ``record_left``):
    nothing waits for a restart once there is room again."""
    if not said:
        outcome.reason += f"; the database could not record it either ({error})"
    outcome.seconds = round(time.perf_counter() - plan.started, 2)
    detail = asdict(outcome)
    detail.pop("metrics", None)
    UNRECORDED[store.path, plan.run_id] = detail
    try:
        with _not_waiting(store, error):  # refused already: not another busy timeout
            store.release_lock(LOCK, plan.owner)
    except Exception:  # noqa: BLE001 - the same full disk: the next retrain here takes it
        ENDED_OWNERS.add((store.path, plan.owner))
        _mark_ended(store, plan.owner, plan.run_id)  # and another process's


def failure_reason(
    exc: BaseException,
    worker: FitWorker | None,
    registry: ModelRegistry,
    champion: Champion | None,
    again: str = "`hitl retrain`",
) -> str:
    """A failed retrain's reason. One the server's stop ended (its fit worker closed, the
    task cancelled) says so, not just "CancelledError: " (the exception's name stays, last).
    One that could not write its model files says what to do (``write_problem``)."""
    if worker is not None and worker.closed:
        return f"stopped: the server was shutting down ({type(exc).__name__})"
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return f"stopped before it finished ({type(exc).__name__})"
    if isinstance(exc, FileNotFoundError) and not registry.root.is_dir():  # moved, deleted
        return missing_folder(registry)
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:  # not a write either: an import
        # (scikit-learn's, mapping its libraries) or a thread with no memory left, under a limit
        return (
            f"ran out of memory ({type(exc).__name__}: {exc.strerror or exc}); give hitl more"
            " memory (its limit: `ulimit -v`, or the container's); what was stored is kept"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):  # not a write
        limit = "`ulimit -n`, or LimitNOFILE= in its systemd unit"
        if exc.errno == errno.ENFILE:
            limit = "the system's: `sysctl fs.file-max`"
        return (
            f"retrain failed: {exc.strerror or exc}: hitl is at its limit of open files;"
            f" raise it ({limit}), then {again} again"
        )
    if isinstance(exc, OSError):
        return write_problem(exc, registry.root, champion.version if champion else None, again)
    return f"retrain failed: {type(exc).__name__}: {exc}"


# Why a model file could not be written, by errno: what to do about it (else: WRITE_FIX).
WRITE_FIXES = {
    errno.EROFS: "make the models folder writable",
    errno.EACCES: "make the models folder writable",
    errno.EPERM: "make the models folder writable",
    errno.EIO: "check the disk",
}
WRITE_FIX = "free space or raise the file-size limit"


def write_problem(
    exc: OSError, root: Path, champion: int | None, again: str = "`hitl retrain`"
) -> str:
    """A retrain whose model files could not be written (a full disk, a file-size limit, a
    read-only models folder), in one line: which file or folder, why, what was kept and what
    to do ("cannot write a model file in …: No space left on device; v2 stays the champion and
    nothing else was changed (free space or raise the file-size limit, then `hitl retrain`
    again)"). The registry's writes are atomic and a failed save leaves nothing behind
    (``ModelRegistry.save``). A temporary file's name says nothing: its folder is named."""
    kept = (
        f"v{champion} stays the champion and nothing else was changed"
        if champion is not None
        else "no model was stored"
    )
    left = getattr(exc, "champion_left", None)  # a promotion cut short, and not taken back
    if left is not None:
        kept = (
            f"v{left}'s promotion was cut short: the models folder may name it the champion,"
            f" which a restart would serve; the database keeps "
            + (f"v{champion}" if champion is not None else "no champion")
        )
    named = exc.filename if isinstance(exc.filename, str) else None
    if named is None or Path(named).name.startswith("."):
        where = f"a model file in {root}"
    else:
        where = named
    fix = WRITE_FIXES.get(exc.errno or 0, WRITE_FIX)
    return f"cannot write {where}: {exc.strerror or exc}; {kept} ({fix}, then {again} again)"


def _say_failed(exc: Exception, outcome: Outcome) -> None:
    """`hitl serve`'s log line for a retrain that failed on its way (its report tells the
    admins): one line; an error of no known cause (not the model files' OSError) with its
    traceback, as a bug to report."""
    logger.error(
        "retrain failed: %s", outcome.reason.removeprefix("retrain failed: "),
        exc_info=None if _known(exc) else exc,
    )  # fmt: skip


class ScoringStopped(HitlError):
    """A retrain promoted and recorded its model, then scoring the waiting items with it
    failed (a full disk, say): ``outcome`` is the retrain's, ``__cause__`` the failure."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(
            f"v{outcome.version} is the champion, but scoring the waiting items stopped"
        )
        self.outcome = outcome


async def _take_up(
    store: Store,
    settings: Settings,
    registry: ModelRegistry,
    outcome: Outcome,
    on_champion: Callable[[Champion], None] | None,
    scorer: Scorer | None,
    rescore_progress: Progress | None,
) -> None:
    """After a promotion: load the new champion, hand it over and re-score the queue."""
    new = await asyncio.to_thread(load_champion, registry)
    if new is None:
        return
    if on_champion is not None:
        on_champion(new)
    outcome.queue_before = _queue(store)
    scoring_started = time.perf_counter()
    rescored = await (
        scorer.rescore()
        if scorer is not None
        else score_items(
            store, new, settings.threshold, settings.strategy, progress=rescore_progress
        )
    )
    if rescored is None:  # the running bot's walk re-scores the queue in the background
        outcome.rescoring = True
    else:
        outcome.rescored = rescored
        outcome.rescore_seconds = round(time.perf_counter() - scoring_started, 2)
        outcome.queue_after = _queue(store)


async def _fit_in_thread(abandon: Abandon, *args: Any) -> Computed:
    """``compute(*args, abandon)`` in a daemon thread. A fit cannot be interrupted; given up
    (Ctrl-C in `hitl retrain`), the caller returns at once and the process may exit without
    waiting minutes for it (``asyncio.to_thread``'s executor is joined at exit): the thread
    stores nothing after ``Abandon.give_up``."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Computed] = loop.create_future()

    def deliver(result: Computed | BaseException) -> None:
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            abandon.result = compute(*args, abandon)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            abandon.result = exc
        abandon.finished.set()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(deliver, abandon.result)

    threading.Thread(target=run, name="hitl-retrain-fit", daemon=True).start()
    return await future


def _queue(store: Store) -> dict[str, int]:
    """The queue as the retrain report gives it: the items waiting for people as `/hitl
    stats`, `/hitl queue` and App Home count them (``Store.waiting_count``: the gold questions
    not asked yet among them, ``gold``, which the model does not score; not those held back
    while their gold label is retired, nor the questions open in Slack), and those left to
    the model."""
    counts = store.count_items()
    return {
        "for_people": store.waiting_count(),
        "gold": counts.get(GOLD_WAITING, 0) - store.gold_held_back(),
        "for_model": counts["auto"],
    }
