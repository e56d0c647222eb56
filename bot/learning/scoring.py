"""Between the store and model/: scoring unlabeled items and choosing what to ask next.

Scoring has one owner per runtime, the :class:`Scorer` (``rt.scorer``). It scores an item
once per model version and strategy however many callers ask at the same time: ``/api/predict``
and ``/api/items`` have it score their own items before they answer; the dispatcher, the API
and a promotion or rollback wake it, and it walks the unlabeled items in bounded chunks from
where its last walk stopped. Each step reads one chunk on the event loop's thread (the SQLite
connection belongs to it) from an index, hands the texts to the model in a worker thread, and
writes the predictions in short transactions (WRITE_BATCH each), so nothing on the loop grows
with the backlog. A new model's walk goes on from where the last one was, to the end and round
from the start (:class:`_Walk`): refreshes come every few dozen answers, and at a million items
a walk takes minutes, so a walk that began again at the oldest item for each new model would
re-score the oldest items all day and never reach the newest.

A change of the label set (`hitl labels`, `/hitl labels`) touches no item row: the scorer puts
the stored predictions under the set in force (``Store.restate_predictions``: a retired label's
model-decided items wait for people again, a label added back takes its items back) when the
change count moves from the one it last did so at, and once at start. The pass runs before a
walk's next chunk, a short transaction at a time with the loop's other work between (as the
walk's writes), and the background run reads the count every LABEL_SET_TICK seconds (a change
by `hitl labels` in another process wakes nothing here).

The priority that orders the queue is computed here, from the model's full probabilities,
by ``model.selection.priority`` under ``HITL_STRATEGY``, and stored with the strategy's name:
an item scored under another strategy (or model version) is scored again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot import eventloop
from bot.config import Settings
from bot.labelset import (
    RESTATE_CHANGES,
    RESTATE_CHUNK,
    channel_for,
    not_in_force,
    routes_in_force,
)
from bot.learning.scoring_worker import (
    ScoringOutOfMemory,
    ScoringWorker,
    memory_limit,
    predict_texts,
    ran_out,
)
from bot.learning.typical import typical_until
from bot.runtime import Champion, Runtime, wait_until_woken
from bot.store import DatabaseError, Store, database_problem
from bot.store.labelset import NotInForce, top_in_force, without
from model import selection

logger = logging.getLogger(__name__)

SCORE_CHUNK = 500  # items per step: one bounded read, one model call, short writes
WRITE_BATCH = 50
"""Predictions written per transaction, the event loop's turn between two. At a million items a
prediction's write costs ~0.1 ms (its row and the queue's index, pages all over a large file):
500 in one go held the loop ~37 ms (at times 55-110), 50 hold it ~4 ms (at most 10-26;
``benchmarks/walk_writes.py``)."""
RESCORES = 2
"""How many times ``Scorer.score_ids`` scores its items again when the model that answers was
replaced while it scored them (a refresh, a promotion, a rollback): then it answers with the
last model that scored them, so a model replaced all the time cannot hold a request forever."""
LABEL_SET_TICK = 5.0  # seconds: how often the idle background run reads the change count


class Scorer:
    """Owns the scoring of unlabeled items for one runtime: which items are being scored
    right now (so no two callers score one item for the same model and strategy), how far
    the walk over the unlabeled items got, and the event that wakes its background run.

    ``champion`` and ``settings`` are read at every step, so a new champion or strategy is
    used from the next chunk on; ``on_scored`` is called after each chunk of the background
    walk (the server wakes the dispatcher there)."""

    def __init__(
        self,
        store: Store,
        *,
        champion: Callable[[], Champion | None],
        settings: Callable[[], Settings],
        chunk: int = SCORE_CHUNK,
        on_scored: Callable[[], None] | None = None,
        on_redraw: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.champion = champion
        self.settings = settings
        self.chunk = chunk
        self.on_scored = on_scored
        self.on_redraw = on_redraw  # question messages wait to be redrawn (the redrawer's wake)
        # The model version the open questions asked before the first model were scored by
        # (``_score_early_questions``): once per model, not at every walk.
        self.early_scored_for: int | None = None
        self.wake_event = asyncio.Event()
        self.walking = asyncio.Lock()  # one walk at a time
        self.in_flight: dict[tuple[int, str, str], asyncio.Future[None]] = {}
        self.walk: _Walk | None = None  # where the walk over the unlabeled items is
        self.n_scored = 0  # items written since start
        self.batches: deque[_Batch] = deque()  # score_ids' items waiting for the model
        self.batcher: asyncio.Task[None] | None = None
        self.worker: ScoringWorker | None = None  # `hitl serve`: the model in a child process
        self.walk_worker: ScoringWorker | None = None  # `hitl serve`: the walks' child, niced
        self.walks_in_background = False  # ``run`` is running: ``rescore`` wakes it
        # The label set change count the stored predictions were last put under (None: not
        # yet, at start) and the pass under way (its change count, the last rowid it did).
        self.restated_at: int | None = None
        self.restating: tuple[int, int] | None = None
        self.n_restated = 0  # items whose prediction a pass changed since start
        # The set in force (its labels) whose outside labels (never in it: ``not_in_force``)
        # the stored predictions were last taken out of (None: not yet, at start), and the
        # pass under way (that set, the last rowid it did).
        self.outside_done: frozenset[str] | None = None
        self.outside_at: tuple[frozenset[str], int] | None = None
        # The HITL_THRESHOLD the waiting items' auto/queued statuses were last put under by
        # the server's background run (None: not known yet, read from the store at start,
        # ``rethreshold_due``), and the pass under way (that threshold, the last rowid it did).
        self.thresholded: float | None = None
        self.thresholding: tuple[float, int] | None = None
        self.n_rethresholded = 0  # items the pass under way moved
        # While scoring runs out of memory, the line said (once): why it cannot run, until a
        # model call works again (``/healthz``, ``/metrics`` and the dispatcher read it).
        self.out_of_memory: str | None = None

    @classmethod
    def for_runtime(cls, rt: Runtime) -> Scorer:
        return cls(
            rt.store,
            champion=lambda: rt.model,  # the working model when there is one
            settings=lambda: rt.settings,
            on_scored=rt.wake_dispatcher,
            on_redraw=lambda: _wake_redrawer(rt),
        )

    def wake(self) -> None:
        """Ask the background run to walk the items not scored yet (returns at once)."""
        self.wake_event.set()

    async def run(self) -> None:
        """Background task: walk whenever woken."""
        self.walks_in_background = True
        while True:
            self.wake_event.clear()
            await self.background_walk()
            await self._idle()

    async def background_walk(self) -> None:
        """One background walk (``catch_up``) and its passes. A database that refuses a write
        (another process holds its write lock past the wait, a full disk) is one warning line
        saying why, not a traceback: the next wake goes on where the walk stopped."""
        try:
            await self.catch_up(background=True)
        except ScoringOutOfMemory:
            pass  # said once while it lasts (``out_of_memory``); a wake tries again
        except DatabaseError as exc:
            problem = database_problem(self.settings().db, exc, lost=self.store.lost)
            logger.warning("scoring paused: %s; it goes on at its next wake", problem)
        except Exception:  # noqa: BLE001 - the scorer must outlive a failing model
            champion = self.champion()
            logger.exception("scoring with model v%s failed", champion and champion.version)

    async def _idle(self) -> None:
        """Until woken, or until the label set changed: its count is read every
        LABEL_SET_TICK seconds (one read of a small table)."""
        while not self.wake_event.is_set():
            await wait_until_woken(self.wake_event, LABEL_SET_TICK)
            try:
                if self.restate_due():
                    return
            except Exception:  # noqa: BLE001 - a database gone: the next walk says so
                logger.debug("reading the label set's change count failed", exc_info=True)

    def restate_due(self) -> bool:
        """Whether the stored predictions wait to be put under the label set in force: its
        change count is not the one the last pass was done at (at start: the one the last
        pass over this database marked, ``Store.mark_restated``; a label set never changed
        needs no pass)."""
        count = self.store.label_set_change_count()
        if self.restated_at is None:
            self.restated_at = self.store.restated_change_count()
        return count != self.restated_at

    async def restate(self, *, max_chunks: int | None = None, background: bool = False) -> int:
        """Put the stored predictions under the label set in force (``restate_due``), a step
        of RESTATE_CHUNK items at a time (``Store.restate_predictions``: one short transaction
        each, at most RESTATE_CHANGES writes), the loop's other work between two; with
        ``max_chunks``, stop after that many (``restating`` says where to go on). A change
        made during the pass starts it again from the oldest item. Returns the steps run."""
        chunks = 0
        while self.restate_due():
            if max_chunks is not None and chunks >= max_chunks:
                break
            count = self.store.label_set_change_count()
            at = self.restating[1] if self.restating and self.restating[0] == count else 0
            threshold = self.settings().threshold
            changed, last = self.store.restate_predictions(
                at, RESTATE_CHUNK, threshold, RESTATE_CHANGES
            )
            chunks += 1
            self.n_restated += changed
            if last is None:
                self.store.mark_restated(count)
                self.restated_at, self.restating = count, None
                logger.info("predictions put under the label set in force (change %d)", count)
            else:
                self.restating = (count, last)
            if changed and background and self.on_scored is not None:
                self.on_scored()  # items decided by the model may wait for people now
            await asyncio.sleep(0)
        while (out := self.outside_due()) is not None and out.kept is not None:
            if max_chunks is not None and chunks >= max_chunks:
                break
            at = self.outside_at[1] if self.outside_at and self.outside_at[0] == out.kept else 0
            changed, last = self.store.restate_outside(
                self.settings().labels,
                at,
                RESTATE_CHUNK,
                self.settings().threshold,
                RESTATE_CHANGES,
            )
            chunks += 1
            self.n_restated += changed
            if last is None:
                self.outside_done, self.outside_at = out.kept, None
                logger.info("predictions put under the label set in force (labels outside it)")
            else:
                self.outside_at = (out.kept, last)
            if changed and background and self.on_scored is not None:
                self.on_scored()
            await asyncio.sleep(0)
        # The server's run: the statuses go under the HITL_THRESHOLD it runs with (at start,
        # when it is not the one they were made under, ``rethreshold_due``; an auto item below
        # it waits for people, a queued one at or above it is left to the model:
        # ``Store.rethreshold_step``), in steps as the passes above.
        while background and (threshold := self.rethreshold_due()) is not None:
            if max_chunks is not None and chunks >= max_chunks:
                break
            going = self.thresholding
            if going is None or going[0] != threshold:
                self.store.begin_rethreshold(threshold)  # stopped midway: run again
                going = self.thresholding = (threshold, 0)
            changed, last = self.store.rethreshold_step(going[1], RESTATE_CHUNK, threshold)
            chunks += 1
            self.n_rethresholded += changed
            if last is None:
                if self.n_rethresholded:
                    logger.info(
                        "%d waiting item(s) put under HITL_THRESHOLD=%s (below it: to people;"
                        " at or above it: to the model)",
                        self.n_rethresholded,
                        threshold,
                    )
                self.store.end_rethreshold(threshold)
                self.thresholded, self.thresholding, self.n_rethresholded = threshold, None, 0
            else:
                self.thresholding = (threshold, last)
            if changed and self.on_scored is not None:
                self.on_scored()  # items decided by the model may wait for people now
            await asyncio.sleep(0)
        return chunks

    def rethreshold_due(self) -> float | None:
        """The HITL_THRESHOLD the waiting items' statuses wait to be put under, None when they
        are under it: at start, the one the last pass over this database completed under
        (``Store.statuses_threshold``: none recorded, a database from before, or a pass
        stopped midway, runs it once); then the one this run's last pass completed under."""
        threshold = self.settings().threshold
        if self.thresholded is None:
            self.thresholded = self.store.statuses_threshold()
        return threshold if threshold != self.thresholded else None

    def outside_due(self) -> NotInForce | None:
        """The labels not in force, when the stored predictions may still name one that the
        set never had (``Store.restate_outside``): at start, and after the set in force
        changed. None when they are under it: no fixed set (the imported labels), the pass
        done for this set, or no label outside it that a prediction could name (none of the
        decided items, none of the model's classes: one read of the per-label counts)."""
        out = not_in_force(self.settings(), self.store)
        if out.kept is None or out.kept == self.outside_done:
            return None
        if self.outside_at is None or self.outside_at[0] != out.kept:
            champion = self.champion()
            aliases = self.store.label_aliases()
            classes = getattr(champion.classifier, "classes", ()) if champion else ()
            known = {aliases.get(str(c), str(c)) for c in classes}
            never = self.store.labels_never_in_force(self.settings().labels)
            if not self.store.labels_outside(self.settings().labels) and not any(
                label in never for label in known
            ):
                self.outside_done = out.kept  # nothing can name a label outside it
                return None
        return out

    async def score_ids(self, ids: Iterable[str], *, tell_new: bool = False) -> int:
        """Score these items now, those of them the champion has not scored under the
        strategy yet, and wait for any of them another caller is scoring; return how many of
        them this call had scored. The work grows with ``ids`` only. ``tell_new``: the items
        this call writes that were never scored (``new``) and that the model is sure of get
        their ``auto`` webhook (``POST /api/items``, whose answer says no status; an
        ``/api/predict`` answer says ``auto`` itself).

        Calls that come while a batch is being scored are scored together in the next one
        (up to ``chunk`` items): one model call and one write for many requests, and one
        worker thread at a time competing with the event loop.

        The model that answers may be replaced while the items are scored (a refresh, a
        promotion, a rollback loaded from the CLI): its predictions are stale and not written,
        and the items are scored again with the new one (those of them it has not scored
        yet), up to RESCORES times. The last time, the predictions are written even if the
        model changed again (``_score_now``'s ``keep``: only where no other model's are).
        If the model changed during every try, the items still without any prediction (their
        last try waited for another caller's step, which a model change left unwritten) are
        scored once more by this call with the model serving then, whoever else scores them,
        and kept: so a request never answers as if there were no model while one is loaded."""
        wanted = list(dict.fromkeys(ids))
        scored: set[str] = set()
        for attempt in range(1 + RESCORES):
            champion = self.champion()
            if champion is None:
                break
            strategy = self.settings().strategy
            keep = attempt == RESCORES
            scored.update(
                await self._score_ids_with(champion, strategy, wanted, keep=keep, tell=tell_new)
            )
            if self.champion() is champion:
                break
        else:  # the model changed during each try: one more call for the unpredicted ones
            if (champion := self.champion()) is not None:
                strategy = self.settings().strategy
                for start in range(0, len(wanted), self.chunk):
                    # by id: those the serving model has not scored (none, normally), then
                    # of those the ones without any prediction, one point read each
                    rows = [
                        (item_id, text)
                        for item_id, text in self.store.unscored_of(
                            wanted[start : start + self.chunk], champion.version, strategy
                        )
                        if (item := self.store.get_item(item_id)) is not None
                        and item["model_version"] is None
                    ]
                    if not rows:
                        continue
                    tell = {item_id for item_id, _ in rows} if tell_new else set()
                    if await self._score_now(champion, strategy, rows, keep=True, tell=tell):
                        scored.update(item_id for item_id, _ in rows)
        return len(scored)

    async def _score_ids_with(
        self,
        champion: Champion,
        strategy: str,
        wanted: list[str],
        *,
        keep: bool,
        tell: bool = False,
    ) -> list[str]:
        """``score_ids`` with one model: the ids this call had written. ``keep``: its batches
        are written even if the model is replaced while they are scored; ``tell``: its items
        left to the model when first scored are told so (``score_ids``' ``tell_new``)."""
        done: list[str] = []
        for start in range(0, len(wanted), self.chunk):
            rows = self.store.unscored_of(
                wanted[start : start + self.chunk], champion.version, strategy
            )
            mine, waits = self._claim(champion, strategy, rows)
            if not mine:
                await _wait_for(waits)
                continue
            batch = self._batch_for(champion, strategy, len(mine))
            batch.rows += mine
            batch.keep |= keep
            if tell:
                batch.tell.update(item_id for item_id, _ in mine)
            for item_id, _ in mine:
                self.in_flight[(champion.version, strategy, item_id)] = batch.done
            written, *_ = await _wait_for([batch.done, *waits])
            if isinstance(written, BaseException):
                raise written
            if written:
                done += [item_id for item_id, _ in mine]
        return done

    def _batch_for(self, champion: Champion, strategy: str, n: int) -> _Batch:
        """The batch waiting to be scored with room for ``n`` more items (a new one queued
        after the others if none has); one task scores the queued batches in turn."""
        if self.batches and self.batches[-1].fits(champion, strategy, n, self.chunk):
            return self.batches[-1]
        batch = _Batch(champion, strategy, asyncio.get_running_loop().create_future())
        self.batches.append(batch)
        if self.batcher is None or self.batcher.done():
            self.batcher = eventloop.background(self._score_batches(), name="hitl-score-batches")
        return batch

    async def _score_batches(self) -> None:
        while self.batches:
            batch = self.batches.popleft()
            try:
                written = await self._score_now(
                    batch.champion, batch.strategy, batch.rows, keep=batch.keep, tell=batch.tell
                )
            except Exception as exc:  # noqa: BLE001 - each caller logs it in its own context
                _settle(batch.done, exception=exc)
            else:
                _settle(batch.done, written)
            finally:
                self._release(batch.champion, batch.strategy, batch.rows)

    async def catch_up(
        self,
        *,
        max_chunks: int | None = None,
        background: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Walk the unlabeled items, scoring those the model (and strategy) has not scored yet,
        one bounded chunk at a time; return how many were written. A walk for a new model
        starts where the last one was and goes round (:class:`_Walk`). With ``max_chunks``,
        stop after that many chunks (and wake the background run for the rest), or return at
        once if a walk is under way. ``progress(scored, waiting)`` after each chunk (the CLI's
        bar: minutes at a million items)."""
        if max_chunks is not None and self.walking.locked():
            return 0
        async with self.walking:
            # The label set changed: the stored predictions go under it first.
            chunks = await self.restate(max_chunks=max_chunks, background=background)
            if any(x is not None for x in (self.restating, self.outside_at, self.thresholding)):
                self.wake()  # the background run goes on with the pass
                return 0
            await self._score_early_questions()
            done = 0
            counts = self.store.count_items() if progress is not None else {}
            waiting = counts.get("new", 0) + counts.get("queued", 0) + counts.get("auto", 0)
            while (champion := self.champion()) is not None:
                strategy = self.settings().strategy
                walk = self.walk = _Walk.next(self.walk, (champion.version, strategy))
                rows, last = self.store.unscored_chunk(*walk.key, walk.at, self.chunk)
                if last is None:
                    if walk.wrap():
                        continue  # on from the oldest item to where this walk began
                    break
                written = await self._score(champion, strategy, rows, walking=True)
                if not rows:
                    await asyncio.sleep(0)  # a chunk with nothing to score: let others run
                done += written
                if progress is not None:
                    progress(min(done, waiting), waiting)
                if self.champion() is champion and self.settings().strategy == strategy:
                    walk.advance(last)  # else the next model's walk takes this chunk again
                if written and background and self.on_scored is not None:
                    self.on_scored()
                chunks += 1
                if max_chunks is not None and chunks >= max_chunks:
                    self.wake()
                    break
        if progress is not None:
            progress(waiting, waiting)
        if done:
            logger.info("scored %d items", done)
        return done

    async def _score_early_questions(self) -> None:
        """The open questions asked before the first model said "No model yet" until
        answered, however many models came since (the walk reads only the waiting items): a
        new model scores their items and has their messages redrawn with its guess."""
        champion = self.champion()
        if champion is None or self.early_scored_for == champion.version:
            return
        ids = self.store.pre_model_questions()
        if ids and await self.score_ids(ids) and self.store.redraw_pre_model_questions(ids):
            if self.on_redraw is not None:
                self.on_redraw()
        # The other open questions' items too: their messages keep the guess they were asked
        # with, but GET /api/items/{id} gives the serving model's prediction, as
        # /api/predict (which scores them) and /healthz say, not the one of the model that
        # asked them, however many promotions ago.
        if ids := self.store.open_question_items():
            await self.score_ids(ids)
        self.early_scored_for = champion.version

    async def rescore(self) -> int | None:
        """Score the items a new model has not scored yet: in the background where ``run``
        walks (`hitl serve`: returns None at once, so a refresh does not wait minutes for a
        walk over a large backlog before the next can start), else now, to the end, returning
        how many were written."""
        if self.walks_in_background:
            self.wake()
            return None
        return await self.catch_up()

    async def _score(
        self,
        champion: Champion,
        strategy: str,
        rows: Sequence[tuple[str, str]],
        *,
        walking: bool = False,
    ) -> int:
        """Score ``rows`` (id, text) now, except those another caller is scoring for the same
        model and strategy (wait for those); ``walking``: a step of a walk, which yields the
        CPU to the items a request waits for (``walk_worker``)."""
        mine, waits = self._claim(champion, strategy, rows)
        written = 0
        if mine:
            done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            for item_id, _ in mine:
                self.in_flight[(champion.version, strategy, item_id)] = done
            try:
                written = await self._score_now(champion, strategy, mine, walking=walking)
            finally:
                self._release(champion, strategy, mine)
                _settle(done, written)
        if waits:
            await _wait_for(waits)
        return written

    def _claim(
        self, champion: Champion, strategy: str, rows: Sequence[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], set[asyncio.Future[int]]]:
        """Split ``rows`` into those nobody is scoring (for this model and strategy) and the
        futures of those someone is. The caller marks its own as in flight before its next
        await, and the read that found the rows had none in between either: so each item is
        scored once."""
        version, busy = champion.version, self.in_flight
        waits = {busy[(version, strategy, i)] for i, _ in rows if (version, strategy, i) in busy}
        mine = [(i, t) for i, t in dict(rows).items() if (version, strategy, i) not in busy]
        return mine, waits

    def _release(self, champion: Champion, strategy: str, rows: list[tuple[str, str]]) -> None:
        for item_id, _ in rows:
            self.in_flight.pop((champion.version, strategy, item_id), None)

    async def _score_now(
        self,
        champion: Champion,
        strategy: str,
        rows: list[tuple[str, str]],
        *,
        walking: bool = False,
        keep: bool = False,
        tell: Collection[str] = (),
    ) -> int:
        """The model in a scoring child (``walk_worker`` for a walk's step, ``worker`` for the
        items requests wait for; else a worker thread), then the writes, WRITE_BATCH at a time
        with the loop's other work (a click's ack) between them.

        If the champion changed meanwhile, its predictions are stale and the rest is skipped:
        the next model's walk takes a walk's chunk again, and ``score_ids`` scores a request's
        items again with the new model. With ``keep`` (a request that scored them again as
        often as it may: RESCORES), they are written all the same where no other model's
        prediction is stored (``_not_scored_by``, read in the write's own turn of the loop:
        another model's prediction, a newer one's, is never replaced), else the request
        answered as if there were no model.

        ``tell``: ids whose write tells their producer when the item, never scored before
        (``new``), is left to the model (``score_ids``' ``tell_new``); a walk's tells all."""
        texts = [t for _, t in rows]
        worker = (self.walk_worker if walking else None) or self.worker
        try:
            if worker is not None:
                predictions = await worker.predict(
                    champion.version, champion.classifier, texts, strategy
                )
            else:
                predictions = await asyncio.to_thread(
                    predict_texts, champion.classifier, texts, strategy
                )
        except ScoringOutOfMemory as exc:
            raise self._ran_out(champion, exc) from exc.__cause__
        except (MemoryError, RuntimeError, OSError) as exc:
            if (what := ran_out(exc)) is None:
                raise
            oom = ScoringOutOfMemory("start" if worker is None else "score", what)
            raise self._ran_out(champion, oom) from exc
        self._works_again(champion)
        scored = [
            (item_id, champion.version, *p)
            for (item_id, _), p in zip(rows, predictions, strict=True)
        ]
        scored = _in_force(self.store, self.settings(), scored)
        threshold = self.settings().threshold
        written = 0
        for start in range(0, len(scored), WRITE_BATCH):
            if start:
                await asyncio.sleep(0)
            batch = scored[start : start + WRITE_BATCH]
            if self.champion() is not champion:
                if not keep:
                    break
                batch = self._not_scored_by(batch)
            # A walk's writes tell the producers of items never scored before (``new``:
            # stored while there was no model, or their request's scoring wrote nothing)
            # that they are left to the model, and so do a POST /api/items's (``tell``);
            # an /api/predict answer says so for its own.
            told = [row for row in batch if walking or row[0] in tell]
            untold = [row for row in batch if not (walking or row[0] in tell)]
            for rows_of, tell_new in ((untold, False), (told, True)):
                if rows_of:
                    written += self.store.set_predictions(
                        rows_of, threshold, strategy, tell_new=tell_new
                    )
        self.n_scored += written
        return written

    def _not_scored_by(self, batch: list[tuple]) -> list[tuple]:
        """The predictions of ``batch`` (id, version, ...: one model's, ``keep``'s write after
        the model that serves changed) that replace no other model's: their item has no
        prediction at all, or one by the model that made them. Models are told apart by
        identity only (a refresh's version is a negative label count): a prediction by any
        other model may be newer, and an answer reads it instead. One read by id of at most
        WRITE_BATCH items, then a point read for each not scored by that model."""
        if not batch:
            return batch
        version = batch[0][1]
        ids = [row[0] for row in batch]
        others = {i for i, _ in self.store.unscored_of(ids, version, self.settings().strategy)}
        return [
            row
            for row in batch
            if row[0] not in others
            or (
                (item := self.store.get_item(row[0])) is not None
                and item["model_version"] in (None, version)
            )
        ]

    def _ran_out(self, champion: Champion, exc: ScoringOutOfMemory) -> ScoringOutOfMemory:
        """Scoring ran out of memory: say so in one line, with what to do, once while it
        lasts (the dispatcher backs off; ``/healthz`` shows the line); ``exc`` with it."""
        exc.problem = out_of_memory_line(self.settings().models_dir, champion.version, exc)
        if self.out_of_memory is None:
            logger.warning("%s", exc.problem)
        else:
            logger.debug("still: %s", exc.problem)
        self.out_of_memory = exc.problem
        return exc

    def _works_again(self, champion: Champion) -> None:
        """A model call went through: an episode of ``out_of_memory`` ends, said once."""
        if self.out_of_memory is None:
            return
        self.out_of_memory = None
        logger.warning(
            "scoring works again (model v%d); questions are asked again", champion.version
        )
        if self.on_scored is not None:
            self.on_scored()  # the dispatcher's backoff ends (``Dispatcher.round``)


STEPS = {
    "send": "the server cannot send model v{v} ({size}) to its scoring process",
    "start": "the server cannot start a thread or process to score with model v{v} ({size})",
    "score": "its scoring process cannot score with model v{v} ({size})",
}


def out_of_memory_line(models_dir: Path, version: int, exc: ScoringOutOfMemory) -> str:
    """What ran out and what to do, for the log and ``/healthz``: the model's file size (a
    refresh, negative, has none: it lives in memory) and the server's memory limit."""
    try:
        size = f"its file is {file_size((models_dir / f'v{version}.skops').stat().st_size)}"
    except OSError:
        size = "a refresh of the champion, in memory only" if version <= 0 else "no file found"
    return (
        f"scoring ran out of memory ({exc.what}): {STEPS[exc.step].format(v=version, size=size)};"
        f" give the server more memory (its limit: {memory_limit()}) or a lighter model"
        " (HITL_PIPELINE=word_lr). No question is posted until it works: tried again after a"
        " growing wait"
    )


def file_size(n: int) -> str:
    """A size in MB (in kB below 1 MB), for a person."""
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{max(n // 1024, 1)} kB"


def _in_force(store: Store, settings: Settings, scored: list[tuple]) -> list[tuple]:
    """Predictions (id, version, label, confidence, ranked, priority) without the labels the
    set in force never had (``bot.labelset.not_in_force``: imported before HITL_LABELS named a
    narrower set, known to a model trained before): ``set_predictions`` then stores the best
    label in force with its own probability, as it does for a retired label, and no reader
    (a question, the producer API, a webhook) meets one. One small read per batch."""
    never = store.labels_never_in_force(settings.labels)  # a retired label's guesses stay
    if never.kept is None:
        return scored
    aliases = store.label_aliases()
    kept = []
    for item_id, version, label, confidence, ranked, priority in scored:
        ranked = without(ranked, aliases, never)
        label, confidence = ranked[0] if ranked else (None, 0.0)
        kept.append((item_id, version, label, confidence, ranked, priority))
    return kept


async def _wait_for(futures: Iterable[asyncio.Future[Any]]) -> list[Any]:
    """Wait for futures other callers share (each one's results or exceptions). Shielded: a
    caller cancelled while it waits (a producer hung up, the server stops) leaves them to
    those who set them and the others who wait."""
    return await asyncio.gather(*map(asyncio.shield, futures), return_exceptions=True)


def _settle(
    future: asyncio.Future[Any], result: Any = None, *, exception: BaseException | None = None
) -> None:
    """Set a shared future's outcome unless it has one (nothing cancels it but the loop's end)."""
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


@dataclass
class _Walk:
    """Where the walk over the unlabeled items (rowid order, oldest first) is, for one model
    and strategy: ``at``, the last rowid read. A new model's walk starts at the last one's
    ``at``, goes to the end, then round from the oldest item up to where it began
    (``start``); so with a new model every few minutes each item is re-scored once a round,
    none left to an old model while the first items are scored again and again."""

    key: tuple[int, str]  # (model version, strategy)
    at: int  # the last rowid read
    start: int  # where this walk began: the second leg ends there
    end: int | None = None  # the last rowid read before the walk went round (None: first leg)

    @classmethod
    def next(cls, walk: _Walk | None, key: tuple[int, str]) -> _Walk:
        """``walk`` if it is this model's, else a new walk from where ``walk`` was."""
        if walk is not None and walk.key == key:
            return walk
        at = walk.at if walk is not None else 0
        return cls(key, at, start=at)

    def wrap(self) -> bool:
        """The end is reached: go round to the oldest item (True), unless the walk began
        there or already went round (False: it has seen every item)."""
        if self.end is not None or self.start == 0:
            return False
        self.end, self.at = self.at, 0
        return True

    def advance(self, last: int) -> None:
        """The chunk up to rowid ``last`` is scored. Past ``start`` on the second leg the walk
        is round: it goes on from the end it had reached (items added since come after it)."""
        self.at = last
        if self.end is not None and last >= self.start:
            self.at, self.start, self.end = max(self.end, last), 0, None


@dataclass(eq=False)
class _Batch:
    """Items of several ``score_ids`` calls, scored together; ``done`` gets the count written."""

    champion: Champion
    strategy: str
    done: asyncio.Future[int]
    rows: list[tuple[str, str]] = field(default_factory=list)
    keep: bool = False  # written even if the model changed meanwhile (``Scorer._score_now``)
    tell: set[str] = field(default_factory=set)  # ids whose write tells ``new`` ones (tell_new)

    def fits(self, champion: Champion, strategy: str, n: int, chunk: int) -> bool:
        return (
            self.champion is champion and self.strategy == strategy and len(self.rows) + n <= chunk
        )


def _wake_redrawer(rt: Runtime) -> None:
    wake = getattr(rt.redrawer, "wake", None)
    if wake is not None:
        wake()


def scorer_of(rt: Runtime) -> Scorer:
    """The runtime's scorer (made on first use where the runtime was built without one)."""
    if rt.scorer is None:
        rt.scorer = Scorer.for_runtime(rt)
    return rt.scorer


async def score_pending(rt: Runtime, *, max_chunks: int | None = None) -> int:
    """Score unlabeled items the champion has not scored yet (under HITL_STRATEGY), from
    where the last walk stopped; with ``max_chunks``, at most that many chunks now and the
    rest in the background. Returns how many were written."""
    if rt.model is None:
        return 0
    return await scorer_of(rt).catch_up(max_chunks=max_chunks)


async def score_items(
    store: Store,
    champion: Champion,
    threshold: float,
    strategy: str = selection.DEFAULT_STRATEGY,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Score every unlabeled item not yet scored by ``champion`` under ``strategy`` (the CLI,
    a promotion without a running bot, benchmarks); a running bot's ``Scorer.rescore``."""
    settings = Settings(threshold=threshold, strategy=strategy)
    scorer = Scorer(store, champion=lambda: champion, settings=lambda: settings)
    return await scorer.catch_up(progress=progress)


UNCERTAIN_WINDOW = 500  # the most uncertain items the dispatcher considers per round
AUDIT_SAMPLE = 100  # a uniform sample; a round takes its audit picks from it


CHANNEL_DEPTH = 5_000
"""How deep in the queue (the most uncertain queued items) a channel with no item in the
window is looked for: its own window is at most this many row reads (``Store.
most_uncertain_routed``), once a round for each such channel with free places."""


def candidates(
    rt: Runtime, rng: random.Random, channels: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What one dispatcher round chooses from, without reading every item: the most uncertain
    queued items (from the priority index; with routes, each of ``channels`` gets its own,
    ``window``) and a uniform random sample of all unlabeled items (for audit picks, and for
    random picks while there is no model)."""
    sample = rt.store.sample_unlabeled(AUDIT_SAMPLE, rng)
    if rt.model is None:
        return sample, sample
    return window(rt, channels), sample


def window(rt: Runtime, channels: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The UNCERTAIN_WINDOW most uncertain queued items; with routes, and for each of
    ``channels`` (those with free places) none of whose items is among them, that channel's
    own most uncertain items too, looked for among the CHANNEL_DEPTH most uncertain: else a
    channel whose items rank below another channel's backlog was asked nothing but audits
    until that backlog fell under the window. Read on the event loop; a round costs the
    window plus at most CHANNEL_DEPTH row reads for each channel left out of it.

    An item whose question was taken back unanswered lately (``Store.resting``: the
    dispatcher asks it after every other item) is no share of its channel: a channel whose
    only items in the window rest gets its own window too, else the dispatcher, finding
    nothing else there, asked the ignored question again at once, ahead of the channel's
    other items (one more read, from the expired posts' index: a TTL's worth of them)."""
    pool = rt.store.most_uncertain(UNCERTAIN_WINDOW)
    routes = routes_in_force(rt.settings, rt.store)
    if not routes or not channels:
        return pool
    default = rt.settings.channel
    resting = _resting(rt)
    shares = {
        channel_for(routes, rt.settings, it["predicted_label"])
        for it in pool
        if it["id"] not in resting
    }
    elsewhere = sorted(label for label, channel in routes.items() if channel != default)
    seen = {it["id"] for it in pool}
    for channel in dict.fromkeys(channels):
        if channel in shares:
            continue
        if channel == default:
            own = rt.store.most_uncertain_routed(
                elsewhere, among=False, limit=UNCERTAIN_WINDOW, depth=CHANNEL_DEPTH
            )
        else:
            labels = sorted(label for label, to in routes.items() if to == channel)
            if not labels:
                continue
            own = rt.store.most_uncertain_routed(
                labels, among=True, limit=UNCERTAIN_WINDOW, depth=CHANNEL_DEPTH
            )
        pool += [it for it in own if it["id"] not in seen]
        seen.update(it["id"] for it in own)
    return pool


def _resting(rt: Runtime) -> set[str]:
    """The items ``window`` counts as no share of their channel: those resting after a
    question taken back unanswered (``Store.resting``, for one HITL_QUESTION_TTL), as the
    dispatcher's round reads them."""
    ttl = rt.settings.question_ttl
    return rt.store.resting(ttl) if ttl > 0 else set()


FRESH_PASSES = 4  # at most this many windows re-scored in one dispatcher round (2,000 items)


async def fresh_window(
    rt: Runtime, pool: list[dict[str, Any]], channels: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The uncertain window (``candidates``' first list) as the model that asks ranks it.

    After a refresh or a promotion the walk re-scores the waiting items in rowid order: at a
    million items that takes minutes, and until it got there the window's order, and its
    questions' guesses, were the old model's. So the window's items an older model scored are
    scored now (in the scoring child; the walk skips them), and the round chooses among the
    window's items the new model leaves in the queue: the old model's closest calls, ranked by
    the new one. When it is sure of them all, the next window is scored, up to FRESH_PASSES
    windows a round (the next round goes on). Once the window is the new model's, a round
    costs nothing more."""
    model = rt.model
    if model is None:
        return pool
    for _ in range(FRESH_PASSES):
        stale = [it["id"] for it in pool if it["model_version"] != model.version]
        if not stale:
            return pool
        await scorer_of(rt).score_ids(stale)
        fresh = rt.store.queued_of([it["id"] for it in pool])
        if any(it["model_version"] == model.version for it in fresh):
            return [it for it in fresh if it["model_version"] == model.version]
        pool = window(rt, channels)
    return pool


def choose(
    rt: Runtime,
    pool: list[dict[str, Any]],
    n: int,
    rng: random.Random,
    audit_pool: list[dict[str, Any]] | None = None,
    typical: list[dict[str, Any]] | None = None,
) -> list[tuple[dict[str, Any], str]]:
    """Up to ``n`` items of ``pool`` to ask about, each with its reason, in posting order.

    Uncertain picks come only from items below HITL_THRESHOLD (or not scored yet), highest
    stored priority first; audit picks are drawn uniformly from ``audit_pool`` when given (a
    uniform sample of every unlabeled item, confident ones included), else from ``pool``.

    While the model was trained on fewer than HITL_WARM_UP labels its uncertainty is not
    worth following yet: every pick is a uniform random one, reason ``warm_up`` (not ``audit``:
    a refresh trains on these answers instead of holding them out to gate itself).

    Past the warm-up, while it was trained on fewer than HITL_TYPICAL_UNTIL labels, the
    non-audit picks are ``typical`` (TypiClust's picks still waiting, in their order:
    ``bot.learning.typical``), reason ``typical``, when given; without them (the order not
    computed yet, or all asked) they are the uncertain picks, as past HITL_TYPICAL_UNTIL.

    Then each position of the list is an audit with probability HITL_AUDIT_RATE, drawn for
    that position alone. The dispatcher posts only the first few (one a second per channel)
    and asks again next round, so any prefix must carry the share: audits are not put last,
    and a position whose kind has run out ends the list rather than going to the other kind
    (the round's next call draws afresh).
    """
    if n <= 0 or not (pool or audit_pool):
        return []
    generator = np.random.default_rng(rng.getrandbits(64))
    if rt.model is None:  # no model yet: random picks (from the uniform sample if given)
        return _pick(rt, pool if audit_pool is None else audit_pool, n, generator)
    if audit_pool is None:
        audit_pool = pool
    if rt.model.n_train < rt.settings.warm_up:  # a young model (HITL_WARM_UP; 0: none)
        return _pick(rt, audit_pool, n, generator, reason="warm_up")
    is_audit = [bool(a) for a in generator.random(n) < rt.settings.audit_rate]
    audits = _pick(rt, audit_pool, sum(is_audit), generator, reason="audit")
    taken = {it["id"] for it, _ in audits}
    if typical and rt.model.n_train < typical_until(rt.settings, rt.store):
        wanted = is_audit.count(False)
        uncertain = [(it, "typical") for it in typical if it["id"] not in taken][:wanted]
    else:
        rest = [it for it in pool if it["id"] not in taken]
        uncertain = _pick(rt, rest, is_audit.count(False), generator)
    picks = {True: iter(audits), False: iter(uncertain)}
    chosen: list[tuple[dict[str, Any], str]] = []
    for audit in is_audit:
        pick = next(picks[audit], None)
        if pick is None:
            break  # this kind ran out: the share holds only if the slot is not given away
        chosen.append(pick)
    return chosen


def _pick(
    rt: Runtime,
    pool: list[dict[str, Any]],
    n: int,
    generator: np.random.Generator,
    *,
    audit_rate: float = 0.0,
    reason: str | None = None,
) -> list[tuple[dict[str, Any], str]]:
    if n <= 0 or not pool:
        return []
    priorities = confidence = None
    scored = all(it.get("priority") is not None for it in pool)
    if reason is None and rt.model is not None and scored:
        priorities = np.array([float(it["priority"]) for it in pool])
        confidence = np.array([float(it["confidence"]) for it in pool])
    picks = selection.select(
        n,
        None,
        priorities=priorities,
        confidence=confidence,
        texts=[it["text"] for it in pool],
        audit_rate=audit_rate,
        threshold=rt.settings.threshold,
        random_state=generator,
    )
    return [(pool[p.index], reason or p.reason) for p in picks]


def guesses_in_force(
    classifier: Any,
    items: list[dict[str, Any]],
    *,
    strategy: str,
    aliases: dict[str, str],
    out: Any,
    routes: dict[str, str],
    settings: Settings,
) -> Iterator[tuple[dict[str, Any], list[Any], str | None, float, str]]:
    """In a worker thread: each of ``items`` as ``classifier`` guesses it, with its ranked
    guesses in force (``without`` the labels out of the set), its top label in force and that
    label's confidence, and the channel that label routes it to (``channel_for``): what the
    dispatcher's gold draw (``judge_gold``) and the labeling window's (``judge_for_window``)
    judge a gold question by. Pure: no database, no event loop."""
    guessed = predict_texts(classifier, [item["text"] for item in items], strategy)
    for item, (_, _, ranked, _) in zip(items, guessed, strict=True):
        ranked = without(ranked or [], aliases, out)
        label, confidence = top_in_force(ranked, aliases, out)
        yield item, ranked, label, confidence, channel_for(routes, settings, label)
