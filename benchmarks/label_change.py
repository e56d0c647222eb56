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

With ``--decided FRACTION`` that share of the items is decided first (status resolved, a
``labels`` row each, the labels spread evenly over the 89, or ``--share`` of them each on
label3 and label5), and ``--callbacks FRACTION`` of those have a callback_url and a webhook
already delivered (so a retire queues a taken-back delivery for them). The changes are then
the ones that write a row per decided item of the label, all in the change's transaction:

- **retire** label3: a review per decided item (reason ``retired``), a delivery per told item;
- **add** label3 back: those reviews decided, a delivery per item with a callback;
- **merge** label3 into label4: a label_history row per decided item, a delivery each;
- **rename** label5 to label5-renamed: the same for label5's items.

Their columns say how many reviews each opened and decided, history rows and deliveries it
wrote (counted after it, untimed). Between changes the deliverer is taken to have caught up
(the queued deliveries marked delivered, untimed): a delivery waiting unsent is not queued
again, so without that the later changes would queue none.

    python benchmarks/label_change.py                    # 200,000 and 1,000,000 items
    python benchmarks/label_change.py --sizes 200000 --backlog /dev/shm/backlogs
    python benchmarks/label_change.py --quick            # 20,000 items: a few s
    python benchmarks/label_change.py --decided 0.3 --callbacks 0.5 --backlog /dev/shm/backlogs
    python benchmarks/label_change.py --quick --decided 0.3 --callbacks 0.5
"""

from __future__ import annotations

import argparse
import random
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
from bot.store.migrations import DELIVERY_KEY_SQL

LABEL = "label3"  # retired, added back, then merged into MERGED_INTO
MERGED_INTO = "label4"
RENAMED = "label5"  # renamed to RENAMED_TO (--decided)
RENAMED_TO = "label5-renamed"
PLAIN = ("retire", "add")
WITH_DECIDED = ("retire", "add", "merge", "rename")


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


def writes(store: Store) -> tuple[int, int, int, int]:
    """Reviews, reviews decided, label_history rows and deliveries in the database."""
    return store.db.execute(
        "SELECT (SELECT count(*) FROM reviews),"
        " (SELECT count(*) FROM reviews WHERE decided_at IS NOT NULL),"
        " (SELECT count(*) FROM label_history), (SELECT count(*) FROM deliveries)"
    ).fetchone()


def change(store: Store, action: str, active: list[str]) -> list[str]:
    """One change of the label set as `hitl labels` makes it; the set in force after it."""
    if action == "merge":
        return store.change_label_set("merge", LABEL, MERGED_INTO, current=active, user_id="bench")
    if action == "rename":
        return store.change_label_set(
            "rename", RENAMED, RENAMED_TO, current=active, user_id="bench"
        )
    return store.change_label_set(action, LABEL, current=active, user_id="bench")


def measure(db: Path, actions: tuple[str, ...] = PLAIN) -> list[tuple]:
    """Per change: (action, the change's seconds, reviews it opened, reviews it decided,
    label_history rows and deliveries it wrote, the pass's steps, predictions changed, its
    seconds, each step's seconds)."""
    out = []
    with Store.open(db) as store:
        checkpointer = Checkpointer(store.db)
        checkpointer.take_over()
        checkpointer.run()  # the backlog's own writes are copied back first
        active = list(LABELS)
        for action in actions:
            before = writes(store)
            began = time.perf_counter()
            active = change(store, action, active)
            seconds = time.perf_counter() - began
            after = writes(store)
            wrote = [a - b for a, b in zip(after, before, strict=True)]
            with store.db.conn:  # the deliverer caught up (untimed): see the module's doc
                store.db.execute(
                    "UPDATE deliveries SET status = 'delivered', attempts = 1"
                    " WHERE status = 'pending'"
                )
            checkpointer.run()
            out.append((action, seconds, *wrote, *restate_pass(store, checkpointer)))
    return out


def decide(
    db: Path, fraction: float, callbacks: float, share: float | None
) -> tuple[int, int, dict[str, int], float]:
    """Decide ``fraction`` of the items in ``db`` (chosen at random, seeded), each with a
    label drawn evenly from the 89, or ``share`` of them each with LABEL and RENAMED and the
    rest evenly from the others; give ``callbacks`` of them a callback_url (one of three
    receivers) and a delivered webhook. Set-based SQL through the store's connection in one
    transaction. Returns (decided, with a callback, decided per changed label, seconds)."""
    rng = random.Random(11)
    others = [label for label in LABELS if label not in (LABEL, RENAMED)]
    began = time.perf_counter()
    with Store.open(db) as store:
        conn = store.db.conn
        rows = []
        for (rowid,) in conn.execute("SELECT rowid FROM items ORDER BY rowid").fetchall():
            if rng.random() >= fraction:
                continue
            if share is None:
                label = rng.choice(LABELS)
            else:
                draw = rng.random()
                label = LABEL if draw < share else RENAMED if draw < 2 * share else None
                label = label or rng.choice(others)
            rows.append((rowid, label, int(rng.random() < callbacks)))
        now = store.now()
        with store._immediate():  # noqa: SLF001 - the store's own write transaction
            conn.execute(
                "CREATE TEMP TABLE decided"
                " (rowid INTEGER PRIMARY KEY, label TEXT NOT NULL, callback INTEGER NOT NULL)"
            )
            conn.executemany("INSERT INTO decided VALUES (?, ?, ?)", rows)
            conn.execute(
                "INSERT INTO labels (item_id, label, votes, agreement, annotators, resolved_at)"
                ' SELECT i.id, d.label, 2, 1.0, \'["U1", "U2"]\', ? FROM decided d'
                " JOIN items i ON i.rowid = d.rowid ORDER BY d.rowid",
                [now],
            )
            conn.execute(
                "UPDATE items SET status = 'resolved', updated_at = ?,"
                " callback_url = CASE WHEN (SELECT callback FROM decided d"
                "  WHERE d.rowid = items.rowid) THEN 'https://producer' || (rowid % 3)"
                "  || '.example/hook' END"
                " WHERE rowid IN (SELECT rowid FROM decided)",
                [now],
            )
            conn.execute(
                "INSERT INTO deliveries"
                " (item_id, url, attempts, next_attempt_at, status, created_at, receiver, key)"
                " SELECT id, callback_url, 1, ?, 'delivered', ?, 'producer' || (rowid % 3)"
                f" || '.example', {DELIVERY_KEY_SQL} FROM items WHERE rowid IN"
                " (SELECT rowid FROM decided WHERE callback) ORDER BY rowid",
                [now, now],
            )
            conn.execute("DROP TABLE decided")
        per_label = dict(
            conn.execute(
                "SELECT label, count(*) FROM labels WHERE label IN (?, ?, ?) GROUP BY label",
                [LABEL, MERGED_INTO, RENAMED],
            ).fetchall()
        )
    with_callback = sum(callback for _, _, callback in rows)
    return len(rows), with_callback, per_label, time.perf_counter() - began


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


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction from 0 to 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Without --decided every item is unlabeled and the changes are retire and add "
        "back (the change touches no item row); with it they are retire, add back, merge and "
        "rename, each writing rows per decided item of the label in its transaction. The top "
        "of benchmarks/label_change.py says what each column is.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="20,000 items only: a few seconds (the test suite)"
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[200_000, 1_000_000], metavar="N",
        help="numbers of items (default: 200000 1000000)",
    )  # fmt: skip
    parser.add_argument(
        "--backlog", type=Path, metavar="DIR",
        help="build the unlabeled databases here once, reuse them (a copy is decided per run)",
    )  # fmt: skip
    parser.add_argument(
        "--decided", type=fraction, metavar="FRACTION",
        help="decide this share of the items first, and time retire, add back, merge, rename",
    )  # fmt: skip
    parser.add_argument(
        "--callbacks", type=fraction, default=0.0, metavar="FRACTION",
        help="share of the decided items with a callback_url and a delivered webhook "
        "(default 0; needs --decided)",
    )  # fmt: skip
    parser.add_argument(
        "--share", type=fraction, metavar="FRACTION",
        help=f"share of the decided items on {LABEL} and on {RENAMED} each, the rest spread "
        "over the others (default: every label alike, 1/89; needs --decided)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.decided is None and (args.callbacks or args.share is not None):
        parser.error("--callbacks and --share need --decided")
    if args.share is not None and args.share > 0.5:
        parser.error("--share is at most 0.5 (two labels have it)")
    if args.quick:
        args.sizes = [20_000]
    print(machine())
    print(f"pass: {RESTATE_CHUNK} items a step, at most {RESTATE_CHANGES} writes a step")
    actions = PLAIN if args.decided is None else WITH_DECIDED
    rows = []
    for n_items in args.sizes:
        with tempfile.TemporaryDirectory(prefix="hitl-labels-") as folder:
            db = backlog(n_items, Path(folder), args.backlog)
            if args.decided is not None:
                decided, called, per_label, seconds = decide(
                    db, args.decided, args.callbacks, args.share
                )
                each = ", ".join(
                    f"{per_label.get(x, 0):,} {x}" for x in (LABEL, MERGED_INTO, RENAMED)
                )
                print(
                    f"{n_items:,} items: {decided:,} decided ({each}), {called:,} of them with a "
                    f"callback and a delivered webhook; seeded in {seconds:.1f} s",
                    flush=True,
                )
            found = measure(db, actions)
        for action, change_s, *wrote, n_steps, changed, total, steps in found:
            ms = [1000 * s for s in steps]
            wrote = wrote if args.decided is not None else []
            rows.append([f"{n_items:,}", action, f"{change_s:.3f}", *wrote, n_steps, changed,
                         f"{total:.2f}", f"{statistics.median(ms):.2f}",
                         f"{percentile(ms, 99):.2f}", f"{max(ms):.2f}"])  # fmt: skip
    print()
    wrote_head = (
        ["reviews opened", "reviews decided", "history rows", "deliveries"]
        if args.decided is not None
        else []
    )
    print(markdown_table(
        ["items", "change", "change s", *wrote_head, "pass steps", "predictions changed",
         "pass s", "step median ms", "step p99 ms", "longest step ms"],
        rows, "llr" + "r" * len(wrote_head) + "rrrrrr",
    ))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
