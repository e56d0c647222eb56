"""TypiClust's order for a young model (HITL_TYPICAL_UNTIL): what the dispatcher asks first.

While the model that asks was trained on fewer than HITL_TYPICAL_UNTIL labels (and past
HITL_WARM_UP's random picks), the non-audit questions are TypiClust's picks
(``model.typical``): the most typical item of each cluster of the backlog no answered or
asked item covers yet. The order is computed once per model version, for the questions the
model asks before its refresh replaces it (HITL_REFRESH_EVERY, the benchmark's batch of 25
per model, plus HITL_MAX_OPEN for the questions still open), over a uniform sample of
TYPICAL_SAMPLE unlabeled items and the texts of up to TYPICAL_SAMPLE answered or asked ones.
The sample and the texts are read in a worker thread on a connection of its own
(``Store.apart``, as the commands read); the embedding and k-means (tens of seconds at 10,000
items on a slow machine) run in the walks' scoring child under `hitl serve` (in a worker
thread where there is none: tests), never on the loop. Until the order is ready, and once its
picks are all asked or gone, the dispatcher asks what it asks without it (the model's closest
calls).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from bot import eventloop
from bot.config import TYPICAL_AUTO, Settings
from bot.errors import HitlError
from bot.labelset import current_labels
from bot.learning.scoring_worker import ran_out
from bot.runtime import Champion, Runtime
from bot.store import Store
from model.typical import typical_budget, typical_order

logger = logging.getLogger(__name__)

TYPICAL_SAMPLE = 10_000
"""Unlabeled items TypiClust clusters (a uniform sample, ``Store.sample_unlabeled_steps``), and
the most answered or asked texts read beside them as covered: embedding and k-means take ~25 s
on this many on 2 shared cores (``benchmarks/typical_order.py``); the backlog's size changes
only the read."""
TYPICAL_BATCH = 25  # picks per model version when refreshes are off (HITL_REFRESH_EVERY=0)
MAX_BATCH = 100  # picks per model version at most, however rare the refreshes
READ_STEP = 500  # sample rows read a statement


@dataclass
class TypicalOrder:
    """The runtime's TypiClust order (``rt.typical``): the model version it is for, its task
    while it is computed, then the item ids in the order to ask them."""

    version: int | None = None
    task: asyncio.Task[None] | None = None
    ids: list[str] = field(default_factory=list)
    n_computed: int = 0  # orders computed since start (one per model version)
    stopped: bool = False  # the server stops: no order is computed from here on (``stop``)

    @classmethod
    def of(cls, rt: Runtime) -> TypicalOrder:
        if rt.typical is None:
            rt.typical = cls()
        return rt.typical


def typical_until(settings: Settings, store: Store) -> int:
    """HITL_TYPICAL_UNTIL in labels: as set, or with ``auto`` ``model.typical.typical_budget``
    of the label set in force (8 labels a label, at most 150; the benchmark arm ``typicpc8``,
    benchmarks/RESULTS.md, "A twelfth screen"). Two small reads (the label set) when
    ``auto``."""
    if settings.typical_until != TYPICAL_AUTO:
        return int(settings.typical_until)
    return typical_budget(len(current_labels(settings, store)))


def is_typical(rt: Runtime, model: Champion | None = None) -> bool:
    """Whether the model that asks (``model``, else ``rt.model``) asks TypiClust's picks: it
    was trained on at least HITL_WARM_UP labels (warm-up's random picks come first) and on
    fewer than HITL_TYPICAL_UNTIL (``typical_until``; 0: never)."""
    model = model or rt.model
    settings = rt.settings
    return model is not None and settings.warm_up <= model.n_train < typical_until(
        settings, rt.store
    )


def budget(rt: Runtime) -> int:
    """How many picks one model version's order holds: the labels until its refresh
    (HITL_REFRESH_EVERY, TYPICAL_BATCH without refreshes; at most MAX_BATCH, as k-means makes
    a cluster per label and pick) plus the open questions' room (HITL_MAX_OPEN)."""
    return min(rt.settings.refresh_every or TYPICAL_BATCH, MAX_BATCH) + rt.settings.max_open


def typical_candidates(rt: Runtime) -> list[dict[str, Any]] | None:
    """On the event loop: the model's TypiClust picks still unlabeled and not asked, in their
    order, as the dispatcher's pool rows; None when the model does not ask them
    (``is_typical``), while its order is being computed (started here, once per version) or
    once they are all asked or gone: the dispatcher then asks as it does without them."""
    model = rt.model
    if model is None or not is_typical(rt, model):
        return None
    order = TypicalOrder.of(rt)
    if order.stopped:
        return None
    if order.version != model.version:
        _start(rt, order, model)
        return None
    if order.task is not None and not order.task.done():
        return None  # being computed: the model's closest calls meanwhile
    return rt.store.unlabeled_of(order.ids) or None


def stop(rt: Runtime) -> None:
    """The server stops: the order being computed is of no use any more (tens of seconds at
    10,000 items), so it is cancelled, not waited for among the listeners' work
    (``Background.drain``), and no round starts another."""
    order = TypicalOrder.of(rt)
    order.stopped = True
    if order.task is not None and not order.task.done():
        order.task.cancel()


def _start(rt: Runtime, order: TypicalOrder, model: Champion) -> None:
    """Compute model's order in a task of its own (``_compute``)."""
    if order.task is not None and not order.task.done():
        order.task.cancel()  # an older version's: its result is no use
    order.version, order.ids = model.version, []
    # Not among the listeners' work (``rt.background``) that a stop and the simulated
    # teammates drain, with a timeout: the order takes tens of seconds, and nobody waits for
    # it (the closest calls are asked meanwhile); a stop cancels it (``stop``).
    order.task = eventloop.background(_compute(rt, order, model), name="hitl-typical")


async def _compute(rt: Runtime, order: TypicalOrder, model: Champion) -> None:
    """Compute model's order: a failure is said in the log (in one line when the bot knows
    it: ``HitlError``, memory), and its questions stay its closest calls."""
    try:
        picks, sample, n_covered = await _picks(rt, model)
    except Exception as exc:
        # one the bot knows (the file lost, the scoring child out of memory or dead twice)
        # says what to do in its own words; only an unexpected one brings its traceback
        why = str(exc) if isinstance(exc, HitlError) else ran_out(exc)
        if why is None:
            logger.exception(
                "TypiClust's order for model %s failed: its questions are its closest calls",
                model.version,
            )
        else:
            logger.warning(
                "TypiClust's order for model %s failed: %s; its questions are its closest calls",
                model.version,
                why,
            )
        return
    if order.version != model.version:
        return  # another model asks now: its own order is on its way
    order.ids = [sample[p - n_covered]["id"] for p in picks]
    order.n_computed += 1
    logger.info("TypiClust's order for model %s: %d picks", model.version, len(order.ids))
    rt.wake_dispatcher()


async def _picks(rt: Runtime, model: Champion) -> tuple[list[int], list[dict[str, Any]], int]:
    """TypiClust's picks for ``model`` (positions among the covered texts, then the sample),
    the sample and the count of covered texts. The pool is read in a worker thread on a
    connection of its own (``read_pool``: at a million items its 10,000-row sample held the
    loop 1–8 ms a 500-row statement when read there); the order is computed off the loop too:
    in the walks' scoring child under `hitl serve` (scipy's sparse products hold the GIL: in a
    worker thread they held the loop 3 s), else in a worker thread."""
    rng = random.Random(f"typical:{model.version}")
    sample, covered, labels = await eventloop.to_thread(read_pool, rt.store, rt.settings, rng)
    texts = [*covered, *(it["text"] for it in sample)]
    labeled = [True] * len(covered) + [False] * len(sample)
    n_classes = len(labels) or None
    seed, size = model.version % 2**31, budget(rt)
    worker = getattr(rt.scorer, "walk_worker", None)
    if worker is not None:
        picks = await worker.call(
            model.version, typical_order, texts, labeled, size, seed, n_classes=n_classes
        )
    else:
        picks = await eventloop.to_thread(
            lambda: typical_order(texts, labeled, size, seed, n_classes=n_classes)
        )
    return picks, sample, len(covered)


def read_pool(
    served: Store, settings: Settings, rng: random.Random
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """In a worker thread, on a connection of its own (``Store.apart``): the uniform sample of
    TYPICAL_SAMPLE unlabeled items (``Store.sample_unlabeled_steps``' draws, then READ_STEP
    rows a statement), the texts of up to TYPICAL_SAMPLE answered or asked items, and the
    label set in force."""
    with served.apart() as store:
        steps = store.sample_unlabeled_steps(TYPICAL_SAMPLE, rng, 2 * READ_STEP)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                rowids: list[int] = done.value
                break
        sample: list[dict[str, Any]] = []
        for start in range(0, len(rowids), READ_STEP):
            sample += store.unlabeled_at(rowids[start : start + READ_STEP])
        return sample, store.covered_texts(TYPICAL_SAMPLE), current_labels(settings, store)
