"""The labeling window's store calls as items grow: what each drawing reads on the event loop.

One database grows through the sizes with ``_common.grow_backlog`` (synthetic texts scored as
the champion leaves them, 20 labels), and holds what a busy team leaves beside it: ``--gold``
gold questions waiting, a closed post for every item (a channel's history), 50 people whose
windows hold the 50 items first in line, one person who answered ``--answered`` of the waiting
items under HITL_VOTES=3 (each still waits for two more), and one who answered as many gold
questions (10 more wait after those). At each size it times, median of ``--repeat``, the calls
a window drawing makes (``bot.slack.modal._view``), the dispatcher's per-round move of reopened
questions (``_move_reopened``) and an Undo's reopen, and counts what each reads (SQLite VM
steps, from a progress handler): the ratio to the smallest size of the same run says whether a
call grows with the items. The rows "loop's hold" run the window's own lookups as it draws
(``bot.slack.modal._next_item``, ``bot.slack.windowgold.gold_for_window``) on an event loop:
their time is the loop thread's CPU time (a worker thread's is not), their steps the loop's
connection's; the store call of the row above them is what the loop held before those moved
to a worker thread. Routes: l0 goes to #C2; #C3 is routed a label nothing waits for (a
channel whose queue is empty, whose window says "Nothing left").

    python benchmarks/window_scale.py            # 10k, 100k, 1M items
    python benchmarks/window_scale.py --quick    # 1k, 4k items, 200 answered: for the test suite
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from _common import grow_backlog, machine, markdown_table

from bot.config import Settings
from bot.slack.holds import Holds
from bot.slack.modal import _next_item
from bot.slack.windowgold import gold_for_window
from bot.store import Store

LABELS = [f"l{i}" for i in range(20)]
WORDS = [f"w{i}" for i in range(5_000)]
ROUTES = {"l0": "C2", "nothing-waits": "C3"}
HELD = 50
GOLD_LEFT = 10  # gold questions after the --gold ones, for the person who answered those


class Row:
    def __init__(self, id: str, text: str, label: str | None = None) -> None:  # noqa: A002
        self.id, self.text, self.label, self.meta = id, text, label, {}


def first_in_line(store: Store, status: str, n: int) -> list[str]:
    return [
        r[0]
        for r in store.db.execute(
            "SELECT id FROM items INDEXED BY items_status_priority WHERE status = ?"
            " ORDER BY priority DESC, rowid LIMIT ?",
            [status, n],
        )
    ]


def seed(store: Store, start: int, stop: int, args: argparse.Namespace) -> None:
    """A closed post for each item ``start..stop-1``; at the first size, the gold questions and
    the two people's answers (which do not grow with the items); ``GOLD_LEFT`` gold questions
    come after those the second person answered."""
    store.db.execute(
        "INSERT INTO posts (item_id, channel, ts, reason, posted_at, closed_at)"
        " SELECT id, 'C1', '1700000000.' || rowid, 'uncertain', created_at, created_at"
        " FROM items WHERE rowid > (SELECT coalesce(max(rowid), 0) FROM items) - ?",
        [stop - start],
    )
    store.db.conn.commit()
    # the person's answers are the first in line at each size (new items come before some)
    answered = {
        r[0] for r in store.db.execute("SELECT item_id FROM answers WHERE user_id = ?", ["UHEAVY"])
    }
    for item in first_in_line(store, "queued", args.answered):
        if item not in answered:
            store.record_answer(
                item, "UHEAVY", "l1", source="button", dedupe_key=f"h{item}", votes_needed=3
            )
    if start:
        return
    gold = args.gold + GOLD_LEFT
    store.add_gold([Row(f"gold{i}", f"gold text {i}", LABELS[i % 20]) for i in range(gold)])
    for i, item in enumerate(first_in_line(store, "gold", args.answered)):
        store.record_answer(
            item, "UGOLD", "l1", source="button", dedupe_key=f"g{i}", votes_needed=3
        )


@contextlib.contextmanager
def vm_steps(store: Store) -> Iterator[list[int]]:
    """The SQLite VM steps (in hundreds) run on ``store``'s connection inside the block, in
    the one-element list it gives."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    store.db.conn.set_progress_handler(count, 100)
    try:
        yield steps
    finally:
        store.db.conn.set_progress_handler(None, 100)


def read(store: Store, call) -> tuple[float, int]:
    """Seconds and SQLite VM steps (in hundreds) of one ``call``."""
    with vm_steps(store) as steps:
        t0 = time.perf_counter()
        call()
        return time.perf_counter() - t0, steps[0]


def loop_hold(store: Store, loop: asyncio.AbstractEventLoop, coro) -> tuple[float, int]:
    """The loop thread's CPU seconds and the loop's connection's SQLite VM steps (in
    hundreds) while ``loop`` runs ``coro`` (its worker threads' are not counted)."""
    with vm_steps(store) as steps:
        t0 = time.thread_time()
        loop.run_until_complete(coro)
        return time.thread_time() - t0, steps[0]


def undo_one(store: Store, k: int) -> None:
    """A click that decides an item (HITL_VOTES=1), then its Undo: the item is reopened."""
    item = first_in_line(store, "queued", HELD + 1)[-1]
    store.record_answer(item, "UUNDO", "l2", source="button", dedupe_key=f"u{k}")
    store.undo_resolution(item, "UUNDO", "2000-01-01T00:00:00")


def measure(store: Store, repeat: int) -> dict[str, tuple[float, int]]:
    held = first_in_line(store, "queued", HELD)
    last_gold = first_in_line(store, "gold", 100_000)[-1]  # read past every other gold item
    calls = {
        "window, HITL_CHANNEL, 50 held": lambda: store.next_in_channels(
            "UNEW", ["C1"], ROUTES, "C1", exclude=held
        ),
        "window, routed channel (5 %)": lambda: store.next_in_channels(
            "UNEW", ["C2"], ROUTES, "C1", exclude=held
        ),
        "window, routed channel, nothing waits": lambda: store.next_in_channels(
            "UNEW", ["C3"], ROUTES, "C1", exclude=held
        ),
        "window, the person answered --answered waiting": lambda: store.next_in_channels(
            "UHEAVY", ["C1"], ROUTES, "C1", exclude=held
        ),
        "holds: votes in the 50 held": lambda: store.votes_in(held),
        "gold turn: a page of gold": lambda: store.gold_page(100, held, unanswered_by="UNEW"),
        "gold turn, the person answered --answered gold": lambda: store.gold_page(
            100, held, unanswered_by="UGOLD"
        ),
        "gold shown again (Undo, refused click)": lambda: store.gold_page(
            1, item_id=last_gold, unanswered_by="UNEW"
        ),
        "waiting count (window's footer)": store.waiting_count,
        "dispatcher round: reopened to move": lambda: store.requeue_posts_outside(["C1", "C2"]),
    }
    found = {}
    for name, call in calls.items():
        runs = [read(store, call) for _ in range(repeat)]
        found[name] = (statistics.median(t for t, _ in runs), runs[0][1])
    # the window's own lookups, as it draws them: in a worker thread, checked on the loop
    settings = Settings(channel="C1", routes=ROUTES, votes=3)
    rt = SimpleNamespace(store=store, settings=settings, model=None)
    holds = Holds(lambda: datetime.now(UTC))
    for i, item in enumerate(held):
        holds.hold(f"UHOLD{i}", item)
    crowded = holds.crowded("UHEAVY", settings.votes, store.votes_in)
    drawings = {
        "window, the person answered --answered waiting: loop's hold": lambda: _next_item(
            rt, "UHEAVY", ["C1"], ROUTES, holds, crowded, None
        ),
        "gold turn, the person answered --answered gold: loop's hold": lambda: gold_for_window(
            rt, "UGOLD", ["C1"], crowded
        ),
    }
    loop = asyncio.new_event_loop()
    try:
        for name, draw in drawings.items():
            runs = [loop_hold(store, loop, draw()) for _ in range(repeat)]
            found[name] = (statistics.median(t for t, _ in runs), runs[0][1])
    finally:
        loop.close()
    order = [*calls]  # each loop's hold after the store call it held the loop for before
    for name in drawings:
        order.insert(order.index(name.removesuffix(": loop's hold")) + 1, name)
    found = {name: found[name] for name in order}
    runs = [read(store, lambda k=k: undo_one(store, k)) for k in range(repeat)]
    found["a click and its Undo (reopen)"] = (statistics.median(t for t, _ in runs), runs[0][1])
    return found


def report(results: list[dict], args: argparse.Namespace) -> str:
    first = results[0]["calls"]
    head = ["call", *(f"{r['items']:,} items ms (× {results[0]['items']:,})" for r in results)]
    rows = []
    for name in first:
        cells = [name.replace("--answered", f"{args.answered:,}")]
        for r in results:
            t, steps = r["calls"][name]
            ratio = t / first[name][0] if first[name][0] else float("nan")
            cells.append(f"{t * 1e3:.2f} ({ratio:.1f}×; {steps / 10:,.1f}k steps)")
        rows.append(cells)
    lines = [
        f"window_scale.py: {machine()}; {args.gold:,} gold waiting, {HELD} held,"
        f" {args.answered:,} answered by one person (HITL_VOTES=3), median of {args.repeat}",
        "",
        markdown_table(head, rows, "l" + "r" * len(results)),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--gold", type=int, default=10_000)
    parser.add_argument("--answered", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or [1_000, 4_000]
        args.gold, args.answered, args.repeat = 300, 200, 3
    args.sizes = args.sizes or [10_000, 100_000, 1_000_000]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "window.db"
        have = 0
        for n in args.sizes:
            seconds = grow_backlog(db, have, n, WORDS, LABELS)
            with Store.open(db) as store:
                seed(store, have, n, args)
                have = n
                results.append(
                    {"items": n, "seed_s": seconds, "calls": measure(store, args.repeat)}
                )
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
