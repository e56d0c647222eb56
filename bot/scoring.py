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


def choose(
    rt: Runtime, pool: list[dict[str, Any]], n: int, rng: random.Random
) -> list[tuple[dict[str, Any], str]]:
    """Up to ``n`` items of ``pool`` to ask about, each with its reason, in posting order.

    Uncertain picks come only from items below HITL_THRESHOLD (or not scored yet); audit picks
    are drawn uniformly from the whole pool, confident items included.
    """
    if n <= 0 or not pool:
        return []
    proba = None
    if rt.champion is not None and all(it["ranked"] for it in pool):
        proba = _top_k_matrix([it["ranked"] for it in pool])
    picks = selection.select(
        n,
        proba,
        texts=[it["text"] for it in pool],
        audit_rate=rt.settings.audit_rate,
        threshold=rt.settings.threshold,
        random_state=np.random.default_rng(rng.getrandbits(64)),
    )
    return [(pool[p.index], p.reason) for p in picks]


def _top_k_matrix(ranked: list[list[list[Any]]]) -> np.ndarray:
    """Each item's stored top-k probabilities as rows (enough for margin and confidence)."""
    width = max(len(r) for r in ranked)
    rows = np.zeros((len(ranked), width))
    for i, top in enumerate(ranked):
        rows[i, : len(top)] = [float(p) for _, p in top]
    return rows
