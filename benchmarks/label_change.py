"""What a change of the label set costs, as the items grow: the change, and the pass after it.

`hitl labels retire X` (or `/hitl labels`, which runs on the server's event loop) changes the
label set in one write transaction; every click waits for SQLite's write lock while it runs. It
touches no item row: the stored predictions are put under the new set afterwards by a pass over
the unlabeled items in rowid order (``Store.restate_predictions``), RESTATE_CHUNK (500) items
a step, at most RESTATE_CHANGES (50) writes a step, each step its own short transaction (the
server's scorer between its other work, `hitl labels` after the change). On a database of N
unlabeled items scored by a model v1 (``_common.grow_backlog``: synthetic texts, each with its
top 5 of 89 labels, so ~1/89 of them have the retired label first), this times

- **retire**: ``change_label_set('retire', 'label3')``, then the pass (items that had label3
  first now show their best label in force at its own probability: the `auto` ones go back to
  people);
- **add back**: ``change_label_set('add', 'label3')``, then the pass again (they take it back).

Cells: the change's seconds (its write transaction: the lock's hold), the pass's steps, its
total seconds (the steps' own time; a passive checkpoint between steps, untimed, as the
server's ``Checkpointer`` runs in a worker thread) and its longest step (the longest hold of the
lock, and in the server of the loop), with how many predictions it changed.

    python benchmarks/label_change.py                    # 200,000 and 1,000,000 items
    python benchmarks/label_change.py --sizes 200000 --backlog /dev/shm/backlogs
    python benchmarks/label_change.py --quick            # 20,000 items: a few s
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import grow_backlog, machine, markdown_table, percentile
from walk_writes import LABELS, WORDS

from bot.labelset import RESTATE_CHANGES, RESTATE_CHUNK
from bot.store import Checkpointer, Store

LABEL = "label3"


def restate_pass(store: Store, checkpointer: Checkpointer) -> tuple[int, int, float, list[float]]:
    """The pass as ``restate_all`` runs it, each step timed: (steps, predictions changed,
    seconds in all, each step's seconds)."""
    changed, at, steps = 0, 0, []
    while True:
        began = time.perf_counter()
        n, last = store.restate_predictions(at, RESTATE_CHUNK, 0.8, RESTATE_CHANGES)
        steps.append(time.perf_counter() - began)
        changed += n
        checkpointer.run()  # untimed, as the server's in its worker thread
        if last is None:
            return len(steps), changed, sum(steps), steps
        at = last


def measure(db: Path) -> list[tuple[str, float, int, int, float, list[float]]]:
    """Per change: (action, the change's seconds, the pass's steps, predictions changed, its
    seconds, each step's seconds)."""
    out = []
    with Store.open(db) as store:
        checkpointer = Checkpointer(store.db)
        checkpointer.take_over()
        checkpointer.run()  # the backlog's own writes are copied back first
        for action in ("retire", "add"):
            current = [label for label in LABELS if action == "retire" or label != LABEL]
            began = time.perf_counter()
            store.change_label_set(action, LABEL, current=current, user_id="bench")
            change = time.perf_counter() - began
            checkpointer.run()
            out.append((action, change, *restate_pass(store, checkpointer)))
    return out


def backlog(n_items: int, folder: Path, cache: Path | None) -> Path:
    """A database of ``n_items`` scored by v1 in ``folder``: built there, or copied from
    ``cache`` (built there first if absent; a million items take a few minutes to build)."""
    db = folder / "labels.db"
    if cache is None:
        seconds = grow_backlog(db, 0, n_items, WORDS, LABELS, batch=20_000)
        print(f"{n_items:,} items scored by v1 in {seconds:.0f} s", flush=True)
        return db
    cache.mkdir(parents=True, exist_ok=True)
    kept = cache / f"backlog-{n_items}.db"
    if not kept.exists():
        seconds = grow_backlog(kept, 0, n_items, WORDS, LABELS, batch=20_000)
        print(f"{n_items:,} items scored by v1 in {seconds:.0f} s (kept in {cache})", flush=True)
    with Store.open(kept) as store:  # the log into the file, so that one copy is the database
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(kept, db)
    return db


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run for the test suite")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--backlog", type=Path, help="build the databases here once, reuse them")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [20_000]
    print(machine())
    print(f"pass: {RESTATE_CHUNK} items a step, at most {RESTATE_CHANGES} writes a step")
    rows = []
    for n_items in args.sizes:
        with tempfile.TemporaryDirectory(prefix="hitl-labels-") as folder:
            found = measure(backlog(n_items, Path(folder), args.backlog))
        for action, change, n_steps, changed, total, steps in found:
            ms = [1000 * s for s in steps]
            rows.append([f"{n_items:,}", action, f"{change:.3f}", n_steps, changed,
                         f"{total:.2f}", f"{statistics.median(ms):.2f}",
                         f"{percentile(ms, 99):.2f}", f"{max(ms):.2f}"])  # fmt: skip
    print()
    print(markdown_table(
        ["items", "change", "change s", "pass steps", "predictions changed", "pass s",
         "step median ms", "step p99 ms", "longest step ms"],
        rows, "llrrrrrrr",
    ))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
