"""How long a walk's writes hold the event loop, as the items grow.

After a refresh or a promotion the walk re-scores every waiting item, oldest first, a chunk of
``SCORE_CHUNK`` (500) at a time (``bot/learning/scoring.py``). The model runs in a child; the
predictions are written on the event loop's thread, where the SQLite connection lives, and
every click waits while a transaction runs. This times those writes through the real
``Store.set_predictions`` on a database of N unlabeled items scored by a model v1
(``_common.grow_backlog``: synthetic texts, each with its top 5 of 89 labels), re-scored by a
v2 with stand-in probabilities (the store's cost, not the model's): the next 500 items in
rowid order, as the walk takes them, written

- **before**: one transaction of 500, as a walk step did;
- **now**: ``WRITE_BATCH`` (50) a transaction, as ``Scorer`` writes them, the loop free between.

The two ways alternate step by step over fresh items. As in ``hitl serve``, commits do not
checkpoint the log (``Checkpointer.take_over``); a passive checkpoint runs between steps,
untimed, as the server's runs in a worker thread every second. Cells: one transaction's time
(the loop's hold: median, 90th percentile, longest), and a step's 500 writes in all.

    python benchmarks/walk_writes.py              # 1,000,000 items, 20 steps each way
    python benchmarks/walk_writes.py --sizes 10000 1000000
    python benchmarks/walk_writes.py --quick      # 6,000 items (the steps' own), 6 steps each way
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import grow_backlog, machine, markdown_table, percentile

from bot.learning.scoring import SCORE_CHUNK, WRITE_BATCH
from bot.store import Checkpointer, Store

WORDS = (
    "invoice refund charged twice card declined password reset login crash error upload "
    "export report account cancel upgrade plan billing address phone email sync android "
    "safari slow timeout notification calendar shortcut api bulk workspace teammate"
).split()
LABELS = [f"label{n}" for n in range(89)]  # as many as the four datasets' mixture has


def v2_predictions(ids: list[str], rng: random.Random) -> list[tuple]:
    """Predictions of a model v2 for ``ids``, shaped as ``predict_texts`` gives them."""
    rows = []
    for item_id in ids:
        top = rng.sample(LABELS, 5)
        p = sorted((rng.random() for _ in top), reverse=True)
        total = sum(p) + rng.random()
        ranked = [[label, q / total] for label, q in zip(top, p, strict=True)]
        margin = ranked[0][1] - ranked[1][1]
        rows.append((item_id, 2, top[0], ranked[0][1], ranked, 1 - margin))
    return rows


def measure(db: Path, n_items: int, steps: int) -> dict[str, dict[str, list[float]]]:
    """Per way, each transaction's seconds and each step's."""
    rng = random.Random(n_items)
    out = {way: {"transactions": [], "steps": []} for way in ("before", "now")}
    with Store.open(db) as store:
        checkpointer = Checkpointer(store.db)
        checkpointer.take_over()
        checkpointer.run()  # the backlog's own writes are copied back first
        start = 0
        for step in range(2 * steps):
            way = ("before", "now")[step % 2]
            ids = [f"g{i}" for i in range(start, start + SCORE_CHUNK)]
            start += SCORE_CHUNK
            rows = v2_predictions(ids, rng)
            size = SCORE_CHUNK if way == "before" else WRITE_BATCH
            step_started = time.perf_counter()
            written = 0
            for first in range(0, len(rows), size):
                began = time.perf_counter()
                written += store.set_predictions(rows[first : first + size], 0.8, "margin")
                out[way]["transactions"].append(time.perf_counter() - began)
            out[way]["steps"].append(time.perf_counter() - step_started)
            if written != SCORE_CHUNK:
                raise SystemExit(f"{way}: wrote {written} of {SCORE_CHUNK} predictions")
            checkpointer.run()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run for the test suite")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1_000_000],
        metavar="N",
        help="unlabeled items in the database, one database each (default 1000000; --quick: 6000)",
    )
    parser.add_argument("--steps", type=int, default=20, help="walk steps timed each way")
    args = parser.parse_args(argv)
    if args.quick:
        # the 6,000 items the 2 x 6 steps of 500 re-score: each step's items fresh, none more
        args.sizes, args.steps = [2 * 6 * SCORE_CHUNK], 6
    if min(args.sizes) < 2 * args.steps * SCORE_CHUNK:
        parser.error(
            f"--sizes must be at least {2 * args.steps * SCORE_CHUNK:,} (the steps' items)"
        )
    print(machine())
    print(f"{SCORE_CHUNK} predictions a step, now {WRITE_BATCH} a transaction; {args.steps} steps")
    rows = []
    for n_items in args.sizes:
        with tempfile.TemporaryDirectory(prefix="hitl-walk-") as folder:
            db = Path(folder) / "walk.db"
            seconds = grow_backlog(db, 0, n_items, WORDS, LABELS)
            print(f"{n_items:,} items scored by v1 in {seconds:.0f} s", flush=True)
            found = measure(db, n_items, args.steps)
        ms = {way: {k: [1000 * s for s in v] for k, v in d.items()} for way, d in found.items()}
        for way in ("before", "now"):
            t, s = ms[way]["transactions"], ms[way]["steps"]
            rows.append([f"{n_items:,}", way, len(t), f"{statistics.median(t):.1f}",
                         f"{percentile(t, 90):.1f}", f"{max(t):.1f}",
                         f"{statistics.median(s):.1f}"])  # fmt: skip
        longest = max(ms["before"]["transactions"]) / max(ms["now"]["transactions"])
        typical = statistics.median(ms["before"]["transactions"]) / statistics.median(
            ms["now"]["transactions"]
        )
        per_step = statistics.median(ms["now"]["steps"]) / statistics.median(ms["before"]["steps"])
        rows.append([f"{n_items:,}", "before / now", "", f"{typical:.1f}", "", f"{longest:.1f}",
                     f"{1 / per_step:.2f}"])  # fmt: skip
    print()
    print(markdown_table(
        ["items", "way", "transactions", "hold median ms", "hold p90 ms", "longest hold ms",
         "step's writes median ms"],
        rows, "lllrrrr",
    ))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
