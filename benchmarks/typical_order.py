"""TypiClust's order (HITL_TYPICAL_UNTIL) as the backlog grows: its cost, and the loop's hold.

One database grows through the sizes with ``_common.grow_backlog`` (synthetic texts scored as
the champion leaves them, 20 labels), with ``--covered`` items answered or asked beside them.
At each size a young model asks, and ``bot.learning.typical.typical_candidates`` starts
its order as the dispatcher does: in a worker thread on a connection of its own
(``Store.apart``) it reads the uniform sample (``TYPICAL_SAMPLE`` waiting items,
``Store.sample_unlabeled_steps``: 1,000 rowids a statement, then 500 rows a statement) and
the covered texts; then it embeds them (the classifier's word + char features, SVD to 100)
and runs k-means (``model.typical``). Timed, median of ``--repeat`` after one untimed order (a
new model version each, so a new order): the loop thread's CPU time (the 5 ms ticks, and what
else runs there), the SQLite VM steps run on the loop's own connection (counted in hundreds:
none of the order's reads run there), the time until the order is ready, and the loop's
longest hold meanwhile (the longest gap between the ticks of a task on the loop; beside it the
longest gap in IDLE_S seconds of ticks with nothing else to do, the machine's), with the order
computed in the walks' scoring child (as `hitl serve` does) and in a worker thread (the
fallback where there is no child), whose sparse products hold the GIL.

    python benchmarks/typical_order.py            # 10k, 100k, 1M items
    python benchmarks/typical_order.py --quick    # 1k, 4k items, a sample of 300: for the tests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _common import grow_backlog, machine, markdown_table

import bot.learning.typical as typical
from bot.config import Settings
from bot.learning.scoring_worker import WALK_NICENESS, ScoringWorker
from bot.learning.typical import TypicalOrder, typical_candidates
from bot.runtime import Champion, Runtime
from bot.store import Store

LABELS = [f"l{i}" for i in range(20)]
WORDS = [f"w{i}" for i in range(5_000)]
PATHS = ("child", "thread")  # `hitl serve`'s scoring child; a worker thread (no child: tests)
TICK = 0.005  # seconds between the loop's ticks while the order is computed
IDLE_S = 3.0  # seconds of ticks with nothing else on the loop, after each order


async def one_order(
    store: Store, settings: Settings, version: int, worker: ScoringWorker | None
) -> dict[str, float]:
    """Start model ``version``'s order as the dispatcher does and time it: in ``worker``, the
    walks' scoring child as under `hitl serve`, or with None in a worker thread."""
    rt = Runtime(settings=settings, store=store, client=None)  # type: ignore[arg-type]
    rt.champion = Champion(version=version, classifier=None, n_train=10)  # type: ignore[arg-type]
    rt.scorer = SimpleNamespace(walk_worker=worker)
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(TICK)
            now = loop.time()
            gaps.append(now - last - TICK)
            last = now

    steps = [0]

    def count() -> int:
        steps[0] += 100
        return 0

    ticks = asyncio.create_task(ticker())
    await asyncio.sleep(TICK)  # the ticker is running
    store.db.conn.set_progress_handler(count, 100)  # the loop's own connection
    t0, cpu0 = time.perf_counter(), time.thread_time()
    assert typical_candidates(rt) is None  # noqa: S101 - started, not ready
    order = TypicalOrder.of(rt)
    assert order.task is not None  # noqa: S101
    await order.task
    ready, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
    store.db.conn.set_progress_handler(None, 100)
    done.set()
    await ticks
    return {
        "loop_cpu": cpu,
        "loop_steps": steps[0],
        "ready": ready,
        "hold": max(gaps),
        "picks": len(order.ids),
    }


async def idle_hold(seconds: float) -> float:
    """The longest gap between the 5 ms ticks with nothing else on the loop: the machine's own
    (other processes, this one's niceness), which the holds above include."""
    loop = asyncio.get_running_loop()
    last, end, longest = loop.time(), loop.time() + seconds, 0.0
    while last < end:
        await asyncio.sleep(TICK)
        now = loop.time()
        longest, last = max(longest, now - last - TICK), now
    return longest


def cover(store: Store, n: int) -> None:
    """The first ``n`` items answered (their texts are the covered clusters' TypiClust reads)."""
    store.db.execute(
        "UPDATE items SET status = 'resolved' WHERE rowid IN"
        " (SELECT rowid FROM items WHERE status != 'resolved' ORDER BY rowid LIMIT ?)",
        [n],
    )
    store.db.conn.commit()


def measure(db: Path, args: argparse.Namespace, first_version: int, path: str) -> dict[str, Any]:
    """The median of ``--repeat`` orders computed in the scoring child (``path`` ``child``,
    started and warmed before the first) or in a worker thread (``thread``)."""
    settings = Settings(db=db, labels=tuple(LABELS), typical_until=75)
    worker = ScoringWorker(niceness=WALK_NICENESS) if path == "child" else None
    runs = []
    try:
        if worker is not None:
            worker.warm()
        with Store.open(db) as store:
            # the first order untimed: the child's start and imports, the thread's imports
            for r in range(args.repeat + 1):
                run = asyncio.run(one_order(store, settings, first_version + r, worker))
                run["idle"] = asyncio.run(idle_hold(IDLE_S))
                runs += [run] if r else []
    finally:
        if worker is not None:
            worker.close()
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def report(results: list[dict], args: argparse.Namespace) -> str:
    head = [
        "items",
        "order computed in",
        "seed s",
        "loop thread's CPU, ms",
        "loop's VM steps",
        "order ready, s",
        "loop's longest hold meanwhile, ms",
        "idle loop's longest gap, ms",
        "picks",
    ]
    rows = [
        [
            f"{r['items']:,}",
            r["path"],
            f"{r['seed_s']:.0f}",
            f"{r['loop_cpu'] * 1e3:.0f}",
            f"{r['loop_steps']:,.0f}",
            f"{r['ready']:.2f}",
            f"{r['hold'] * 1e3:.0f}",
            f"{r['idle'] * 1e3:.0f}",
            f"{r['picks']:.0f}",
        ]
        for r in results
    ]
    lines = [
        f"typical_order.py: {machine()}; a sample of {typical.TYPICAL_SAMPLE:,} waiting items,"
        f" {args.covered:,} covered, budget {typical.TYPICAL_BATCH}+5 picks, median of"
        f" {args.repeat}",
        "",
        markdown_table(head, rows, "rl" + "r" * (len(head) - 2)),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        help="waiting items the database grows through, comma-separated (default:"
        " 10000,100000,1000000; --quick: 1000,4000)",
    )
    parser.add_argument(
        "--covered", type=int, default=50, help="items answered: the covered texts (default 50)"
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="orders timed per size and place (median; default 2)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, one order each: for the tests"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or [1_000, 4_000]
        args.repeat = 1
        global IDLE_S
        IDLE_S = 0.1
    args.sizes = args.sizes or [10_000, 100_000, 1_000_000]
    sample = typical.TYPICAL_SAMPLE
    typical.TYPICAL_SAMPLE = 300 if args.quick else sample
    try:
        print(run(args))
    finally:  # (a test runs this in its own process: the product's constant is given back)
        typical.TYPICAL_SAMPLE = sample
    return 0


def run(args: argparse.Namespace) -> str:
    """The report of a run over ``args.sizes``."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "typical.db"
        have = 0
        for i, n in enumerate(args.sizes):
            seconds = grow_backlog(db, have, n, WORDS, LABELS)
            if have == 0:
                with Store.open(db) as store:
                    cover(store, args.covered)
            have = n
            for j, path in enumerate(PATHS):
                version = 1 + (i * len(PATHS) + j) * (args.repeat + 1)  # a new order each time
                row = {"items": n, "path": path, "seed_s": seconds}
                row |= measure(db, args, version, path)
                results.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return report(results, args)


if __name__ == "__main__":
    sys.exit(main())
