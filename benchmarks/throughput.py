"""Throughput and how costs grow: import, scoring, retrain, and the queries behind each click.

* ``import``: ``hitl import`` of a CSV (in a child process; peak RSS from the kernel) against a
  plain ``sqlite3`` ``executemany`` of the same rows (CSV parsed the same way, one transaction,
  WAL) in the same run, fastest of 3 runs of each; two file sizes show whether memory stays flat
  (benchmarks/import_memory.py goes to 1M rows).
* ``scoring``: ``bot.learning.scoring.score_items`` (what the server and a promoted retrain run:
  read texts, ``TextClassifier.score``, write predictions) over all pending items, texts/s.
* ``retrain``: ``hitl retrain`` wall time (cross-validation, fit, save; no pending items to
  re-score) at growing label counts.
* ``growth``: with growing numbers of stored items, the time of what the bot does per click or
  command: the dispatcher's pick (``Store.pool`` + ``bot.learning.scoring.choose``), ``/hitl stats``
  (``reports.stats_text``) and the single Store queries, with ``EXPLAIN QUERY PLAN`` of the SQL
  each one runs (captured with a trace callback). Growth is fitted as time ∝ n^k.
* ``window``: after a new model (a refresh, a promotion) on the largest growth size, the
  dispatcher's first round scores its uncertain window (500 items) with the new model
  (``bot.learning.scoring.fresh_window``): its time, the part of it on the event loop (the
  store's reads and the write), and, beside it, how long the walk, which re-scores the waiting
  items oldest first, takes to reach the last of those items at the scoring rate of the same
  run (without ``fresh_window`` the window is the old model's until then).
* ``sparse``: the same dispatcher pick and ``Store.sample_unlabeled`` on the largest growth size
  as the unlabeled share falls (most items labeled: imported history, or a team that keeps up),
  with the ratio to the 50 % row of the same run.

    python benchmarks/throughput.py            # 100k rows; 1k/10k/50k labels; 10k-1M items
    python benchmarks/throughput.py --only sparse   # 1M items, 50 % to 0.5 % unlabeled
    python benchmarks/throughput.py --only window   # 1M items, a new model's first round
    python benchmarks/throughput.py --quick    # small sizes, one retrain, for the test suite
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _common import (
    DATASETS,
    ROOT,
    add_data_options,
    growth_exponent,
    load_mixture,
    machine,
    markdown_table,
    resolve_data,
    write_seed_csv,
)

from bot.config import Settings
from bot.learning.reports import stats_text
from bot.learning.scoring import (
    UNCERTAIN_WINDOW,
    Scorer,
    candidates,
    choose,
    fresh_window,
    score_items,
)
from bot.runtime import Champion
from bot.store import Store
from model.classifier import TextClassifier
from tests.query_plans import query_plans as plans_of

CHANNEL = "C0QUESTIONS"


def run_child(db: Path, *args: str) -> tuple[float, float, str]:
    """Run ``hitl --db db ARGS`` in a child; (seconds, the child's peak RSS in MiB, stdout).

    The child is started by /usr/bin/time (GNU time): a child forked straight from this
    process would count this process's pages, before its exec, in its own peak RSS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "HITL_"))}
    command = [sys.executable, "-m", "bot", "--db", str(db), *args]
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        if shutil.which("time") or Path("/usr/bin/time").exists():
            command = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *command]
        t0 = time.perf_counter()
        result = subprocess.run(command, capture_output=True, cwd=ROOT, env=env, check=False)
        seconds = time.perf_counter() - t0
        if result.returncode != 0:
            raise SystemExit(f"hitl {' '.join(args)} failed: {result.stderr.decode().strip()}")
        rss = float(rss_file.read_text().split()[-1]) / 1024 if rss_file.exists() else math.nan
    return seconds, rss, result.stdout.decode().strip()


# --- import ------------------------------------------------------------------------------


def plain_executemany(csv_path: Path, db: Path) -> float:
    """The floor: parse the same CSV and insert the same rows with one executemany."""
    t0 = time.perf_counter()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE items (id TEXT PRIMARY KEY, text TEXT NOT NULL, meta TEXT, source TEXT,"
        " status TEXT, created_at TEXT)"
    )
    now = datetime.now(UTC).isoformat()
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = (
            (r["id"], r["text"], json.dumps({}), "import", "new", now)
            for r in reader  # labels ignored: the floor writes one table
        )
        with conn:
            conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.close()
    return time.perf_counter() - t0


def bench_import(
    tmp: Path, sizes: list[int], data: Path, datasets: tuple[str, ...], repeat: int = 1
) -> list[dict]:
    """Each size ``repeat`` times, the two sides taking turns; the fastest run of each counts
    (what the code costs, less the machine's noise)."""
    rows = []
    for n in sizes:
        csv_path = tmp / f"import_{n}.csv"
        write_seed_csv(csv_path, n // 10, n - n // 10, data, datasets)  # 10 % labeled rows
        runs, floors = [], []
        for attempt in range(repeat):
            runs.append(run_child(tmp / f"import_{n}_{attempt}.db", "import", "-q", str(csv_path)))
            floors.append(plain_executemany(csv_path, tmp / f"plain_{n}_{attempt}.db"))
        seconds, rss, out = min(runs)
        floor = min(floors)
        rows.append(
            {
                "rows": n,
                "file_mib": csv_path.stat().st_size / 2**20,
                "hitl_s": seconds,
                "hitl_rows_s": n / seconds,
                "plain_s": floor,
                "plain_rows_s": n / floor,
                "ratio": floor / seconds,
                "peak_rss_mib": max(run[1] for run in runs),
                "runs": repeat,
                "hitl_s_all": [run[0] for run in runs],
                "plain_s_all": floors,
                "summary": out,
            }
        )
        csv_path.unlink()
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# --- scoring and retrain -----------------------------------------------------------------


def bench_scoring(
    tmp: Path, n_pending: int, n_train: int, data: Path, datasets: tuple[str, ...]
) -> dict:
    """Score ``n_pending`` imported items with a model fitted on ``n_train`` labels."""
    pool = load_mixture(data, datasets)
    rng = random.Random(1)
    train = [rng.randrange(len(pool[0])) for _ in range(n_train)]
    clf = TextClassifier().fit([pool[0][i] for i in train], [pool[1][i] for i in train])
    csv_path = tmp / "score.csv"
    write_seed_csv(csv_path, 0, n_pending, data, datasets)
    db = tmp / "score.db"
    run_child(db, "import", "-q", str(csv_path))
    with Store.open(db) as store:
        t0 = time.perf_counter()
        n = asyncio.run(score_items(store, Champion(1, clf), 0.8))
        seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    clf.score([pool[0][i] for i in range(min(n_pending, len(pool[0])))], top_k=5)
    model_only = time.perf_counter() - t0
    model_n = min(n_pending, len(pool[0]))
    return {
        "items": n,
        "seconds": seconds,
        "texts_s": n / seconds,
        "model_only_texts_s": model_n / model_only,
        "n_classes": len(clf.classes),
    }


def bench_retrain(tmp: Path, sizes: list[int], data: Path, datasets: tuple[str, ...]) -> list[dict]:
    rows = []
    for n in sizes:
        csv_path = tmp / f"retrain_{n}.csv"
        write_seed_csv(csv_path, n, 0, data, datasets)
        db = tmp / f"retrain_{n}.db"
        run_child(db, "import", "-q", str(csv_path))
        seconds, rss, out = run_child(db, "retrain")
        rows.append({"labels": n, "seconds": seconds, "peak_rss_mib": rss, "report": out})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# --- growth ------------------------------------------------------------------------------


@dataclass
class Row:
    id: str
    text: str
    label: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def grow(store: Store, start: int, stop: int, texts: list[str], labels: list[str]) -> None:
    """Add items ``start..stop-1``: 1 % labeled (resolved), the rest pending and scored."""
    rng = random.Random(start)
    batch: list[Row] = []
    preds = []
    for i in range(start, stop):
        j = rng.randrange(len(texts))
        labeled = i % 100 == 0
        batch.append(Row(f"g{i}", texts[j], labels[j] if labeled else None))
        if not labeled:
            conf = rng.random()
            ranked = [[labels[j], conf], [labels[(j + 1) % len(labels)], (1 - conf) / 2]]
            preds.append((f"g{i}", 1, labels[j], conf, ranked, 1 - (conf - (1 - conf) / 2)))
        if len(batch) >= 10_000:
            store.add_items(batch, "import")
            batch.clear()
    if batch:
        store.add_items(batch, "import")
    store.set_predictions(preds, 0.8, "margin")


def seed_activity(store: Store, n_posts: int, n_users: int) -> None:
    """Open posts and answers, as a live channel has them."""
    pool = store.pool(limit=n_posts * 3)
    for k, item in enumerate(pool[:n_posts]):
        store.record_post(item["id"], CHANNEL, f"1700000000.{k:06d}", "uncertain", 1, "x", 0.5)
    for k, item in enumerate(pool[:n_posts]):
        for u in range(n_users // 2):
            store.record_answer(
                item["id"],
                f"U0G{u:04d}",
                "x",
                source="button",
                dedupe_key=f"{k}:{u}",
                votes_needed=25,
            )


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def dispatcher_runtime(db: Path, store: Store) -> SimpleNamespace:
    """What ``candidates`` and ``choose`` read of a runtime: settings, a champion, the store."""
    settings = Settings(db=db, channel=CHANNEL, votes=3)
    champion = Champion(1, None)
    return SimpleNamespace(settings=settings, champion=champion, model=champion, store=store)


def pick_next(rt: SimpleNamespace, rng: random.Random) -> None:
    """What Dispatcher.fill does before a post: a bounded pool from the indexes, then choose."""
    pool, audit = candidates(rt, rng)
    choose(rt, pool, 1, rng, audit_pool=audit)


def bench_growth(
    tmp: Path,
    sizes: list[int],
    repeat: int,
    data: Path,
    datasets: tuple[str, ...],
    n_users: int = 20,
) -> tuple[list[dict], dict]:
    texts, labels = load_mixture(data, datasets)
    now = datetime.now(UTC)
    since = (now.replace(hour=0, minute=0, second=0, microsecond=0)).isoformat()
    rows: list[dict] = []
    query_plans: dict = {}
    with Store.open(tmp / "growth.db") as store:
        rt = dispatcher_runtime(tmp / "growth.db", store)
        settings = rt.settings
        have = 0
        for n in sizes:
            grow(store, have, n, texts, labels)
            if have == 0:
                seed_activity(store, 50, n_users)
            have = n
            rng = random.Random(0)
            open_ids = [r[0] for r in store.db.execute("SELECT item_id FROM posts")]
            some_ids = [f"g{i}" for i in random.Random(2).sample(range(n), 500)]

            calls = {
                "pick next (candidates + choose)": lambda r=rng: pick_next(rt, r),
                "Store.most_uncertain": lambda: store.most_uncertain(500),
                "Store.sample_unlabeled": lambda: store.sample_unlabeled(100, random.Random(1)),
                "/hitl stats (stats_text)": lambda: stats_text(store, settings, now),
                "Store.pool": store.pool,
                "Store.open_post_counts": store.open_post_counts,
                "Store.count_items": store.count_items,
                "Store.answers_by_user": lambda: store.answers_by_user(since),
                "Store.next_for_user": lambda: store.next_for_user("U0NEW"),
                # the modal once every open question is answered: the queue's branch
                "Store.next_for_user (queue)": lambda ids=open_ids: store.next_for_user(
                    "U0NEW", exclude=ids
                ),
                "Store.waiting_count": store.waiting_count,
                # POST /api/items scores its new items: which of them need it (up to 500)
                "Store.unscored_of (500 ids)": lambda ids=some_ids: store.unscored_of(
                    ids, 2, "margin"
                ),
            }
            row = {"items": n}
            for name, fn in calls.items():
                reps = 1 if name == "Store.pool" and n > 200_000 else repeat
                row[name] = timed(fn, reps)
                if name.startswith("Store.") and name not in query_plans:
                    query_plans[name] = plans_of(store, fn)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows, query_plans


SPARSE_SHARES = (0.5, 0.1, 0.05, 0.02, 0.01, 0.005)


def bench_window(
    tmp: Path,
    n: int,
    n_labels: int,
    repeat: int,
    data: Path,
    datasets: tuple[str, ...],
    n_rate: int = 2_000,
    grown: Path | None = None,
) -> dict:
    """At ``n`` items scored by model 1, a new model (fitted on ``n_labels`` texts) and the
    dispatcher's first round with it: ``fresh_window`` on a fresh copy of the scores each time
    (median of ``repeat``), its store calls alone (on the event loop in the server), and the
    walk's time to the window's last item, estimated at this run's rate of scoring (timed on
    ``n_rate`` texts). ``grown``: a copy of it is the database (see ``grown_db``)."""
    texts, labels = load_mixture(data, datasets)
    rng = random.Random(0)
    picks = [rng.randrange(len(texts)) for _ in range(n_labels)]
    newer = TextClassifier().fit([texts[i] for i in picks], [labels[i] for i in picks])
    db = tmp / "window.db"
    if grown is not None:
        shutil.copyfile(grown, db)
    with Store.open(db) as store:
        if grown is None:
            grow(store, 0, n, texts, labels)
        # grow's stand-in priorities reach 1.5; a margin's stay in [0, 1]
        store.db.execute("UPDATE items SET priority = priority / 1.5")
        store.db.conn.commit()
    totals, on_loop, fresh = [], [], []
    for _ in range(repeat):
        copy = tmp / "window-copy.db"
        shutil.copyfile(db, copy)
        with Store.open(copy) as store:
            champion = Champion(2, newer)
            rt = dispatcher_runtime(copy, store)
            rt.champion = rt.model = champion
            rt.scorer = Scorer(
                store, champion=lambda c=champion: c, settings=lambda s=rt.settings: s
            )
            pool = store.most_uncertain(UNCERTAIN_WINDOW)
            ids = [it["id"] for it in pool]
            last = max(store.db.execute(
                f"SELECT rowid FROM items WHERE id IN ({','.join('?' * len(ids))})", ids
            ).fetchall())[0]  # fmt: skip
            before = store.db.execute(
                "SELECT count(*) FROM items WHERE status IN ('new', 'queued', 'auto')"
                " AND rowid <= ?",
                [last],
            ).fetchone()[0]
            t0 = time.perf_counter()
            window = asyncio.run(fresh_window(rt, pool))
            totals.append(time.perf_counter() - t0)
            fresh.append(sum(it["model_version"] == 2 for it in window) / len(window))
            rows = [(it["id"], 3, it["predicted_label"], it["confidence"],
                     store.prediction(it["id"])["ranked"], it["priority"])
                    for it in window]  # fmt: skip
            t0 = time.perf_counter()  # the store's part again, alone: reads and the write
            store.unscored_of(ids, 1, "margin")
            store.set_predictions(rows, 0.8, "margin")
            store.most_uncertain(UNCERTAIN_WINDOW)
            on_loop.append(time.perf_counter() - t0)
        copy.unlink()
    sample = [texts[i % len(texts)] for i in range(n_rate)]
    t0 = time.perf_counter()
    newer.score(sample)
    per_item = (time.perf_counter() - t0) / len(sample)
    row = {
        "items": n,
        "window": UNCERTAIN_WINDOW,
        "fresh_window_s": statistics.median(totals),
        "store_s": statistics.median(on_loop),
        "window_by_new_model": min(fresh),
        "walk_items_to_window": before,
        "walk_s_to_window": before * per_item,
        "score_texts_s": 1 / per_item,
    }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def grown_db(tmp: Path, n: int, data: Path, datasets: tuple[str, ...]) -> Path:
    """A database holding what ``grow(store, 0, n)`` writes (seeded: the same rows each time),
    for ``bench_sparse`` and ``bench_window`` to start from a copy of instead of growing their
    own (the quick run's saving)."""
    texts, labels = load_mixture(data, datasets)
    db = tmp / f"grown_{n}.db"
    with Store.open(db) as store:
        grow(store, 0, n, texts, labels)
    return db


def bench_sparse(
    tmp: Path,
    n: int,
    repeat: int,
    data: Path,
    datasets: tuple[str, ...],
    grown: Path | None = None,
) -> list[dict]:
    """At ``n`` items, the dispatcher's pick and its audit sample as the unlabeled share falls
    (items marked resolved in place, a fixed pseudo-random subset each step). ``grown``: a
    copy of it is the database (see ``grown_db``)."""
    texts, labels = load_mixture(data, datasets)
    rows: list[dict] = []
    db = tmp / "sparse.db"
    if grown is not None:
        shutil.copyfile(grown, db)
    with Store.open(db) as store:
        rt = dispatcher_runtime(db, store)
        if grown is None:
            grow(store, 0, n, texts, labels)
        for share in SPARSE_SHARES:
            store.db.execute(
                "UPDATE items SET status = 'resolved' WHERE status IN ('new', 'queued', 'auto')"
                " AND (rowid * 7919) % 1000 >= ?",
                [round(share * 1000)],
            )
            store.db.conn.commit()
            rng = random.Random(0)
            row = {
                "items": n,
                "share": share,
                "unlabeled": store.db.execute(
                    "SELECT count(*) FROM items WHERE status IN ('new', 'queued', 'auto')"
                ).fetchone()[0],
                "sample_unlabeled": timed(lambda r=rng: store.sample_unlabeled(100, r), repeat),
                "pick": timed(lambda r=rng: pick_next(rt, r), repeat),
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


# --- report ------------------------------------------------------------------------------


def plot_growth(retrain: list[dict], growth: list[dict], out: Path) -> Path:
    """``throughput_growth.png`` in ``out``: retrain time (left) and the growth series (right),
    a panel only for a series with data (a run of one part draws one panel, never an empty
    one); ``ValueError`` if neither has any."""
    if not retrain and not growth:
        raise ValueError("no retrain or growth numbers to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = bool(retrain) + bool(growth)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    axes = list(axes[0])
    if retrain:
        ax = axes.pop(0)
        ax.loglog([r["labels"] for r in retrain], [r["seconds"] for r in retrain], "o-")
        ax.set_xlabel("labels")
        ax.set_ylabel("hitl retrain, s")
        ax.grid(alpha=0.3, which="both")
    if growth:
        ax = axes.pop(0)
        ns = [r["items"] for r in growth]
        for name in growth[0]:
            if name != "items":
                ax.loglog(ns, [max(r[name], 1e-6) * 1000 for r in growth], "o-", label=name)
        ax.set_xlabel("items stored")
        ax.set_ylabel("ms per call (median)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "throughput_growth.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def report(imports, scoring, retrain, growth, query_plans, sparse=(), window=None) -> str:
    """Markdown for whichever parts ran."""
    parts: list[str] = []
    if window:
        w = window
        head = ["items", "window", "first round (fresh_window) ms", "its store calls ms"]
        head += ["chosen from: new model's share", "walk to the window: items", "s (est.)"]
        parts += [
            markdown_table(
                head,
                [
                    [
                        f"{w['items']:,}",
                        f"{w['window']:,}",
                        f"{w['fresh_window_s'] * 1000:.0f}",
                        f"{w['store_s'] * 1000:.1f}",
                        f"{w['window_by_new_model']:.0%}",
                        f"{w['walk_items_to_window']:,}",
                        f"{w['walk_s_to_window']:,.0f}",
                    ]
                ],
            )
        ]
    if imports:
        head = ["rows", "file MiB", "hitl import s", "rows/s", "executemany s", "rows/s"]
        head += ["hitl / plain", "peak RSS MiB"]
        table = [
            [
                f"{r['rows']:,}",
                f"{r['file_mib']:.1f}",
                f"{r['hitl_s']:.2f}",
                f"{r['hitl_rows_s']:,.0f}",
                f"{r['plain_s']:.2f}",
                f"{r['plain_rows_s']:,.0f}",
                f"{r['ratio']:.2f}",
                f"{r['peak_rss_mib']:.0f}",
            ]
            for r in imports
        ]
        parts += ["#### Import", "", markdown_table(head, table), ""]
        if imports[0].get("runs", 1) > 1:
            parts += [
                f"Fastest of {imports[0]['runs']} runs of each side, taking turns; every run (s):"
            ]
            parts += [
                f"- {r['rows']:,} rows: hitl import "
                + ", ".join(f"{x:.2f}" for x in r["hitl_s_all"])
                + "; executemany "
                + ", ".join(f"{x:.2f}" for x in r["plain_s_all"])
                for r in imports
            ]
            parts += [""]
    if scoring:
        parts += ["#### Scoring", ""]
        parts.append(
            f"score_items: {scoring['items']:,} pending items in {scoring['seconds']:.1f} s = "
            f"{scoring['texts_s']:,.0f} texts/s ({scoring['n_classes']} classes); "
            f"TextClassifier.score alone: {scoring['model_only_texts_s']:,.0f} texts/s"
        )
        parts.append("")
    if retrain:
        k = growth_exponent([r["labels"] for r in retrain], [r["seconds"] for r in retrain])
        shown = "– (one size)" if math.isnan(k) else f"{k:.2f}"
        parts += [f"#### Retrain (`hitl retrain`, time ∝ labels^{shown})", ""]
        table = [
            [
                f"{r['labels']:,}",
                f"{r['seconds']:.1f}",
                f"{r['peak_rss_mib']:.0f}",
                " / ".join(r["report"].splitlines()[:4]),
            ]
            for r in retrain
        ]
        parts += [markdown_table(["labels", "seconds", "peak RSS MiB", "report"], table, "rrrl")]
        parts.append("")
    if growth:
        names = [k for k in growth[0] if k != "items"]
        ns = [r["items"] for r in growth]
        parts += ["#### Growth with items stored (median ms per call; k: time ∝ n^k)", ""]
        table = []
        for name in names:
            k = growth_exponent(ns, [r[name] for r in growth])
            table.append([name, *(f"{r[name] * 1000:.2f}" for r in growth), f"{k:.2f}"])
        parts += [markdown_table(["call", *(f"{n:,} items" for n in ns), "k"], table), ""]
        parts += ["#### Query plans (EXPLAIN QUERY PLAN)", ""]
        for name, found in query_plans.items():
            for sql, lines in found:
                scans = any(ln.startswith("SCAN") and "USING" not in ln for ln in lines)
                parts.append(f"- `{name}` ({'SCAN' if scans else 'index'}): `{sql[:160]}`")
                parts += [f"    - {ln}" for ln in lines]
    if sparse:
        dense = sparse[0]
        parts += [
            "",
            f"#### Few unlabeled among {dense['items']:,} items (median ms per call; "
            f"× = against the {dense['share']:.0%} row)",
            "",
        ]
        table = [
            [
                f"{r['share']:.1%}",
                f"{r['unlabeled']:,}",
                f"{r['sample_unlabeled'] * 1000:.2f}",
                f"{r['sample_unlabeled'] / dense['sample_unlabeled']:.1f}×",
                f"{r['pick'] * 1000:.2f}",
                f"{r['pick'] / dense['pick']:.1f}×",
            ]
            for r in sparse
        ]
        head = ["unlabeled share", "unlabeled", "Store.sample_unlabeled", "×"]
        head += ["pick next (candidates + choose)", "×"]
        parts += [markdown_table(head, table)]
    return "\n".join(parts)


PARTS = ("import", "scoring", "retrain", "growth", "sparse", "window")  # what --only picks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for the test suite")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        metavar="PART",
        help=f"measure only these parts, of: {' '.join(PARTS)} (default: all; the module's "
        "docstring says what each measures)",
    )
    parser.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="draw throughput_growth.png (retrain and growth panels, each only with data) in "
        "this folder (default: no plot; benchmarks/plots holds the committed plot of RESULTS' "
        "runs, redrawn only when named here)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument(
        "--retrain-sizes",
        nargs="*",
        type=int,
        help="label counts for the retrain series (default 1,000, 10,000 and 50,000)",
    )
    parser.add_argument(
        "--from-json",
        nargs="*",
        type=Path,
        help="only report these raw files (--json's); the plot only with --plots DIR",
    )
    add_data_options(parser, DATASETS, quick="trec")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    print(machine())
    if args.from_json:
        raw: dict = {
            "import": [], "scoring": None, "retrain": [], "growth": [], "plans": {}, "sparse": [],
            "window": None,
        }  # fmt: skip
        for path in args.from_json:
            for key, value in json.loads(path.read_text()).items():
                raw[key] = value or raw[key]
        print(report(raw["import"], raw["scoring"], raw["retrain"], raw["growth"], raw["plans"],
                     raw["sparse"], raw["window"]))  # fmt: skip
        if (raw["retrain"] or raw["growth"]) and args.plots is not None:
            print(f"plot: {plot_growth(raw['retrain'], raw['growth'], args.plots)}")
        elif raw["retrain"] or raw["growth"]:
            print("plot: none drawn (--plots DIR draws it)")
        return 0
    # texts resampled from every dataset (all four: 89 labels "<dataset>/<label>")
    data, datasets = resolve_data(args)
    if args.quick:  # under 30 labels `hitl retrain` skips its learning curve (model/stopping.py)
        # one size each of import and retrain: a child process each (~0.5 s and ~2.5 s of CPU,
        # nearly all start-up and imports), and at these sizes a second point says nothing of
        # how the cost grows
        import_sizes, n_score, retrain_sizes = [2_000], 1_000, [25]
        growth_sizes, repeat, window_repeat = [1_000, 3_000, 10_000], 1, 1
        n_users, n_rate = 4, 500  # answers seeded for the growth; texts timed for the walk
    else:
        import_sizes, n_score, retrain_sizes = [10_000, 100_000], 100_000, [1_000, 10_000, 50_000]
        growth_sizes, repeat, window_repeat = [10_000, 100_000, 1_000_000], 5, 3
        n_users, n_rate = 20, 2_000
    retrain_sizes = args.retrain_sizes or retrain_sizes
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        imports = (
            bench_import(tmp, import_sizes, data, datasets, 1 if args.quick else 3)
            if "import" in args.only
            else []
        )
        scoring = (
            bench_scoring(tmp, n_score, 1_000 if not args.quick else 200, data, datasets)
            if "scoring" in args.only
            else None
        )
        retrain = (
            bench_retrain(tmp, retrain_sizes, data, datasets) if "retrain" in args.only else []
        )
        growth, query_plans = (
            bench_growth(tmp, growth_sizes, repeat, data, datasets, n_users)
            if "growth" in args.only
            else ([], {})
        )
        grown = (  # one grown database for both, in the quick run
            grown_db(tmp, growth_sizes[-1], data, datasets)
            if args.quick and {"sparse", "window"} <= set(args.only)
            else None
        )
        sparse = (
            bench_sparse(tmp, growth_sizes[-1], repeat, data, datasets, grown)
            if "sparse" in args.only
            else []
        )
        window = (
            bench_window(
                tmp,
                growth_sizes[-1],
                200 if args.quick else 1_000,
                window_repeat,
                data,
                datasets,
                n_rate,
                grown,
            )
            if "window" in args.only
            else None
        )
        if args.json:
            raw = {"import": imports, "scoring": scoring, "retrain": retrain, "growth": growth}
            raw["sparse"], raw["window"] = sparse, window
            args.json.write_text(json.dumps({**raw, "plans": query_plans}, indent=1))
        print(report(imports, scoring, retrain, growth, query_plans, sparse, window))
        if (retrain or growth) and args.plots is not None:
            print(f"\nplot: {plot_growth(retrain, growth, args.plots)}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
