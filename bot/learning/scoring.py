"""Between the store and model/: scoring unlabeled items and choosing what to ask next.

Reads happen on the event loop's thread (the SQLite connection belongs to it); the model's
work gets plain lists and runs in a worker thread, so the bot never blocks on it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import numpy as np

from bot.runtime import Champion, Runtime
from bot.store import Store
from model import selection

logger = logging.getLogger(__name__)

TOP_K = 5
SCORE_CHUNK = 10_000


async def score_pending(rt: Runtime) -> int:
    """Score unlabeled items the champion has not scored yet; return how many."""
    if rt.champion is None:
        return 0
    return await score_items(rt.store, rt.champion, rt.settings.threshold)


async def score_items(store: Store, champion: Champion, threshold: float) -> int:
    """Score every unlabeled item not yet scored by ``champion`` (fitting-free, in a thread)."""
    ids = store.unscored_ids(champion.version)
    done = 0
    for start in range(0, len(ids), SCORE_CHUNK):
        chunk = ids[start : start + SCORE_CHUNK]
        texts = store.texts_of(chunk)
        scores = await asyncio.to_thread(champion.classifier.score, texts, top_k=TOP_K)
        store.set_predictions(
            (
                (item_id, champion.version, scores.labels[i], float(scores.confidence[i]),
                 scores.ranked(i))
                for i, item_id in enumerate(chunk)
            ),
            threshold,
        )  # fmt: skip
        done += len(chunk)
    if done:
        logger.info("scored %d items with model v%d", done, champion.version)
    return done


UNCERTAIN_WINDOW = 500  # the most uncertain items the dispatcher considers per round
AUDIT_SAMPLE = 100  # a uniform sample; a round takes its audit picks from it


def candidates(
    rt: Runtime, rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What one dispatcher round chooses from, without reading every item: the most uncertain
    queued items (from the margin index) and a uniform random sample of all unlabeled items
    (for audit picks, and for random picks while there is no model)."""
    sample = rt.store.sample_unlabeled(AUDIT_SAMPLE, rng)
    if rt.champion is None:
        return sample, sample
    return rt.store.most_uncertain(UNCERTAIN_WINDOW), sample


def choose(
    rt: Runtime,
    pool: list[dict[str, Any]],
    n: int,
    rng: random.Random,
    audit_pool: list[dict[str, Any]] | None = None,
) -> list[tuple[dict[str, Any], str]]:
    """Up to ``n`` items of ``pool`` to ask about, each with its reason, in posting order.

    Uncertain picks come only from items below HITL_THRESHOLD (or not scored yet); audit picks
    are drawn uniformly from ``audit_pool`` when given (a uniform sample of every unlabeled
    item, confident ones included), else from ``pool``.

    With a model, each position of the list is an audit with probability HITL_AUDIT_RATE,
    drawn for that position alone. The dispatcher posts only the first few (one a second per
    channel) and asks again next round, so any prefix must carry the share: audits are not
    put last, and a position whose kind has run out ends the list rather than going to the
    other kind (the round's next call draws afresh).
    """
    if n <= 0 or not (pool or audit_pool):
        return []
    generator = np.random.default_rng(rng.getrandbits(64))
    if rt.champion is None:  # no model yet: random picks (from the uniform sample if given)
        return _pick(rt, pool if audit_pool is None else audit_pool, n, generator)
    if audit_pool is None:
        audit_pool = pool
    is_audit = [bool(a) for a in generator.random(n) < rt.settings.audit_rate]
    audits = _pick(rt, audit_pool, sum(is_audit), generator, reason="audit")
    taken = {it["id"] for it, _ in audits}
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
    proba = None
    if reason is None and rt.champion is not None and all(it["ranked"] for it in pool):
        proba = _top_k_matrix([it["ranked"] for it in pool])
    picks = selection.select(
        n,
        proba,
        texts=[it["text"] for it in pool],
        audit_rate=audit_rate,
        threshold=rt.settings.threshold,
        random_state=generator,
    )
    return [(pool[p.index], reason or p.reason) for p in picks]


def _top_k_matrix(ranked: list[list[list[Any]]]) -> np.ndarray:
    """Each item's stored top-k probabilities as rows (enough for margin and confidence)."""
    width = max(len(r) for r in ranked)
    rows = np.zeros((len(ranked), width))
    for i, top in enumerate(ranked):
        rows[i, : len(top)] = [float(p) for _, p in top]
    return rows
