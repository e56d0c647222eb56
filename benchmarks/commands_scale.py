"""The commands a team member or admin runs, at 10k and 1M items: what grows, and how long each
holds the server's event loop.

Each size's database is seeded as a team leaves it: ``_common.grow_backlog``'s items, scored as
a champion leaves them (20 labels); 3 % of them decided by two of 20 people each (HITL_VOTES=2,
one in seven answers a different label, a split), 0.5 % set aside, 0.2 % sent to review; 200
gold questions (1 in 50 items below 10,000), half of them answered by five people; l18 renamed,
l19 retired; a champion model beside it. The server's commands go through the real server's
``/slack/events`` (its app served in this process, on its loop, with the walks' scoring child
started as `hitl serve` starts it beside a champion; the fake Slack in a thread of its own),
signed as Slack signs them: each row is the seconds to the HTTP answer and until every
reply was sent, and the longest the event loop was held meanwhile (a probe coroutine's lag:
Python's own work on the request, from parsing to the ack, included), and the SQLite VM steps
run on the loop's own connection (``rt.store``; a worker thread's ``Store.apart`` is not
counted). The CLI's rows are ``hitl`` processes, as a person runs them (``hitl --version`` is
the process alone). The writes (label changes, deletes, anonymise, import, restore) run once, in
that order, after the reads.

    python benchmarks/commands_scale.py                    # 10k and 1M items (1M: ~10 min to seed)
    python benchmarks/commands_scale.py --dir D --keep     # keep the seeded databases in D
    python benchmarks/commands_scale.py --quick            # 500, 2,000 items, no CLI: for the tests
    python benchmarks/commands_scale.py --only 'review|labels (rename|merge|retire)'  # those rows
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TypeVar

from _common import ROOT, grow_backlog, machine, markdown_table
from aiohttp.test_utils import TestClient, TestServer
from bot_load import ADMIN, CHANNELS, SECRET, FakeThread, clean_env

from bot.config import Settings
from bot.learning.scoring import scorer_of
from bot.learning.scoring_worker import WALK_NICENESS, ScoringWorker
from bot.server import RUNTIME, init_app
from bot.store import Store
from tests import signing

LABELS = [f"l{i}" for i in range(20)]
WORDS = [f"w{i}" for i in range(5_000)]
PEOPLE = [f"U0P{i:02d}" for i in range(20)]
GOLD = 200  # at 10,000 items and more; 1 in 50 items below
T = TypeVar("T")


class Row:
    def __init__(self, id: str, text: str, label: str | None = None) -> None:  # noqa: A002
        self.id, self.text, self.label, self.meta = id, text, label, {}


def first_in_line(store: Store, n: int) -> list[str]:
    return [
        r[0]
        for r in store.db.execute(
            "SELECT id FROM items INDEXED BY items_status_priority WHERE status = 'queued'"
            " ORDER BY priority DESC, rowid LIMIT ?",
            [n],
        )
    ]


def seed(db: Path, n: int) -> dict[str, float]:
    took = {"backlog": grow_backlog(db, 0, n, WORDS, LABELS)}
    rng = random.Random(n)
    t0 = time.perf_counter()
    decided = max(15, n * 3 // 100)
    gold = min(GOLD, n // 50)
    with Store.open(db) as store:
        line = first_in_line(store, decided + n // 200 + n // 500)
        with store.unsynced():
            for k, item in enumerate(line[:decided]):
                label = LABELS[rng.randrange(18)]
                two = rng.sample(PEOPLE, 2)
                for j, user in enumerate(two):
                    store.record_answer(
                        item,
                        user,
                        label if j == 0 or rng.random() < 0.85 else LABELS[(k + 1) % 18],
                        source="button",
                        dedupe_key=f"d{k}.{j}",
                        votes_needed=2,
                    )
        took["answers"] = time.perf_counter() - t0
        for item in line[decided : decided + n // 200]:
            store.set_aside(item, "skipped")
        for item in line[decided + n // 200 :]:
            store.flag_review(item, "low_agreement")
        store.db.conn.commit()
    with Store.open(db) as store, store.unsynced():
        store.add_gold(
            [Row(f"gold{i}", f"gold text {i} w{i}", LABELS[i % 18]) for i in range(gold)]
        )
        for i in range(gold // 2):
            for user in PEOPLE[:5]:
                store.record_answer(
                    f"gold{i}",
                    user,
                    LABELS[(i + (user == PEOPLE[0])) % 18],
                    source="button",
                    dedupe_key=f"g{i}{user}",
                    votes_needed=2,
                )
        current = list(LABELS)
        for action, label, new in (("rename", "l18", "l18x"), ("retire", "l19", None)):
            changed = store.change_label_set(
                action, label, new, current=current, user_id="cli:seed"
            )
            current = list(changed)
    from model import ModelRegistry, TextClassifier

    texts = [" ".join(rng.choices(WORDS[:400], k=8)) for _ in range(400)]
    registry = ModelRegistry(db.with_name(db.name + ".models"))
    meta = registry.save(
        TextClassifier().fit(texts, [LABELS[i % 18] for i in range(400)]), n_train=400
    )
    registry.promote(meta.version)
    took["rest"] = time.perf_counter() - t0 - took["answers"]
    return took


def chosen(rows: dict[str, T], only: re.Pattern[str] | None) -> dict[str, T]:
    """The rows whose name ``only`` finds (all without it), in order."""
    return {name: row for name, row in rows.items() if only is None or only.search(name)}


# --- the server's commands ---------------------------------------------------------------

CHANNEL = CHANNELS["idle"]
MEMBER = "U0P01"
TICK = 0.002


class Probe:
    """A coroutine that wakes every ``TICK`` s: the longest it was kept waiting past its
    wake-up is the longest the event loop was held (by anything, the request's own parsing
    included); with the loop thread's CPU time over the same span."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.cpu = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self._stop.is_set():
            await asyncio.sleep(TICK)
            now = loop.time()
            self.worst = max(self.worst, now - last - TICK)
            last = now

    async def __aenter__(self) -> Probe:
        self._cpu0 = time.thread_time()
        self._task = asyncio.ensure_future(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await self._task
        self.cpu = time.thread_time() - self._cpu0


async def served(db: Path, ft: FakeThread, labels: list[str]):
    settings = Settings(
        slack_bot_token=ft.fake.token,
        slack_signing_secret=SECRET,
        slack_api_url=ft.fake.base_url,
        db=db,
        channel=CHANNEL,
        labels=tuple(labels),
        admins=(ADMIN,),
        votes=2,
    )
    app = init_app(settings, run_background=False)
    server = TestServer(app, host="127.0.0.1")
    client = TestClient(server)
    await client.start_server()
    rt = app[RUNTIME]
    # as `hitl serve` with a champion: the walks' scoring child started (``jobs.warm_scoring``),
    # where `/hitl stats` measures (``reports.stats_off_loop``)
    walks = scorer_of(rt).walk_worker = ScoringWorker(niceness=WALK_NICENESS)
    walks.warm()
    await walks.call(None, os.getpid)  # up before the first timed command
    return client, rt


async def timed(
    rt, ft: FakeThread, send, expect: str | None = None
) -> tuple[float, float, float, float, int]:
    """Seconds to the HTTP answer, seconds until every reply is sent (the fake Slack got the
    call ``expect`` names, if any: an event's listener starts after its ack; then the
    background work the request started drained), the loop's longest hold, its CPU seconds
    and the SQLite VM steps (in hundreds) run on the loop's own connection (``rt.store``: the
    reads a worker thread makes on a connection of its own, ``Store.apart``, are not)."""
    before = len(ft.fake.calls_to(expect)) if expect else 0
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    rt.store.db.conn.set_progress_handler(count, 100)  # the loop's own connection
    async with Probe() as probe:
        t0 = time.perf_counter()
        response = await send()
        assert response.status == 200, (response.status, await response.text())
        await response.read()
        acked = time.perf_counter() - t0
        waited = time.monotonic() + 600
        while expect and len(ft.fake.calls_to(expect)) == before:
            if time.monotonic() > waited:
                raise SystemExit(
                    f"no {expect} in 600 s; the fake's last calls: {ft.fake.calls[-5:]}"
                )
            await asyncio.sleep(TICK)  # a benchmark waiting on another thread, not a test
        await rt.background.drain(600)
        done = time.perf_counter() - t0
    rt.store.db.conn.set_progress_handler(None, 100)
    return acked, done, probe.worst, probe.cpu, steps[0]


def command(client: TestClient, ft: FakeThread, text: str, user: str):
    def send():
        fields = signing.command_fields(
            text, user, channel_id=CHANNEL, response_url=ft.fake.response_url(CHANNEL)
        )
        body, headers = signing.signed_command(fields, SECRET)
        return client.post("/slack/events", data=body, headers=headers)

    return send


def home(client: TestClient, user: str):
    def send():
        envelope = signing.app_home_opened_event(user)
        body, headers = signing.signed_event(envelope, SECRET)
        return client.post("/slack/events", data=body, headers=headers)

    return send


async def server_rows(
    db: Path, ft: FakeThread, repeat: int, only: re.Pattern[str] | None = None
) -> dict[str, tuple]:
    with Store.open(db) as store:
        labels = store.stored_labels()
        reviewed = store.db.execute("SELECT item_id FROM reviews LIMIT 1").fetchone()[0]
    for user in (MEMBER, ADMIN):
        ft.fake.add_user(user, user.lower())
    client, rt = await served(db, ft, labels)
    reads = {
        "/hitl help": command(client, ft, "help", MEMBER),
        "/hitl stats (member)": command(client, ft, "stats", MEMBER),
        "/hitl stats (admin)": command(client, ft, "stats", ADMIN),
        "/hitl queue": command(client, ft, "queue", MEMBER),
        "/hitl accuracy": command(client, ft, "accuracy", MEMBER),
        "/hitl review (admin)": (command(client, ft, "review", ADMIN), "views.open"),
        "/hitl review ID (admin)": (
            command(client, ft, f"review {reviewed}", ADMIN),
            "views.open",
        ),
        "/hitl labels (admin)": command(client, ft, "labels", ADMIN),
        "App Home publish": (home(client, MEMBER), "views.publish"),
    }
    found = {}
    try:
        for name, send in chosen(reads, only).items():
            send, expect = send if isinstance(send, tuple) else (send, None)
            runs = [await timed(rt, ft, send, expect) for _ in range(repeat)]
            found[name] = tuple(statistics.median(r[i] for r in runs) for i in range(5))
            print(f"  {name}: {found[name]}", flush=True)
        changes = {
            "/hitl labels rename l5 l5r": command(client, ft, "labels rename l5 l5r", ADMIN),
            "/hitl labels merge l5r l6": command(client, ft, "labels merge l5r l6", ADMIN),
        }
        for name, send in chosen(changes, only).items():
            found[name] = await timed(rt, ft, send)
    finally:
        await client.close()
        scorer_of(rt).walk_worker.close()
    return found


# --- the CLI -----------------------------------------------------------------------------


def hitl(db: Path, *args: str, stdin: str | None = None) -> float:
    """Seconds of ``hitl --db db args`` (a process of its own, as a person runs it)."""
    env = clean_env()
    env["PYTHONPATH"] = str(ROOT)
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--db", str(db), *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"hitl {' '.join(args)}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return took


def cli_rows(db: Path, work: Path, n: int, only: re.Pattern[str] | None = None) -> dict[str, float]:
    with Store.open(db) as store:
        queued = first_in_line(store, 1_001)
    rows = [(f"new{i}", " ".join(random.Random(i).choices(WORDS, k=12))) for i in range(10_000)]
    new = work / "new.csv"
    with new.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows(rows)
    backup = work / "backup.db"
    with Store.open(db) as store:
        store.db.execute("VACUUM INTO ?", [str(backup)])
    out = work / "out"
    calls = {
        "hitl --version (the process alone)": ("--version",),
        "hitl stats": ("stats", "-q"),
        "hitl export (jsonl)": ("export", "-o", str(out)),
        "hitl export --format csv": ("export", "--format", "csv", "-o", str(out)),
        "hitl export --answers": ("export", "--answers", "-o", str(out)),
        "hitl export --answers --format csv": (
            "export",
            "--answers",
            "--format",
            "csv",
            "-o",
            str(out),
        ),
        "hitl find w4999 --ids": ("find", "w4999", "--ids", "-q"),
        "hitl find '#77' --part --ids": ("find", "#77", "--part", "--ids", "-q"),
        "hitl labels show": ("labels", "show"),
        "hitl delete (1 item)": ("delete", queued[0], "--yes", "--reason", "bench"),
        "hitl delete (1,000 items)": ("delete", "--ids-from", "-", "--yes", "--reason", "bench"),
        "hitl labels rename l7 l7r": ("labels", "rename", "l7", "l7r"),
        "hitl labels merge l7r l8": ("labels", "merge", "l7r", "l8"),
        "hitl labels retire l9": ("labels", "retire", "l9"),
        "hitl people anonymise U0P03": ("people", "anonymise", "U0P03"),
        "hitl import (10,000 more)": ("import", str(new)),
        "hitl restore (the backup)": ("restore", str(backup)),
    }
    found = {}
    for name, args in chosen(calls, only).items():
        stdin = "\n".join(queued[1:]) + "\n" if "1,000" in name else None
        found[name] = hitl(db, *args, stdin=stdin)
    return found


# --- the run -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="500 and 2,000 items, 1 repeat, no CLI rows"
    )
    parser.add_argument("--no-cli", action="store_true", help="the server's commands only")
    parser.add_argument("--dir", type=Path, help="where the databases go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="reuse and keep the seeded databases")
    parser.add_argument(
        "--only", type=re.compile, help="the rows whose name this regular expression finds"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeat, args.no_cli = [500, 2_000], 1, True
    print(machine(), flush=True)
    base = args.dir or Path(tempfile.mkdtemp(prefix="commands_scale."))
    base.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, tuple]] = {}
    try:
        for n in args.sizes:
            seeded = base / f"seeded-{n}.db"
            if not seeded.exists():
                print(f"seeding {n:,} items: {seed(seeded, n)}", flush=True)
            work = base / f"run-{n}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            db = work / "hitl.db"
            with Store.open(seeded) as store:
                store.db.execute("VACUUM INTO ?", [str(db)])
            shutil.copytree(
                seeded.with_name(seeded.name + ".models"), db.with_name("hitl.db.models")
            )
            with FakeThread() as ft:
                rows = asyncio.run(server_rows(db, ft, args.repeat, args.only))
            if not args.no_cli:
                cli = cli_rows(db, work, n, args.only)
                rows.update({k: (v, v, None, None, None) for k, v in cli.items()})
            results[n] = rows
            for name, (acked, done, held, cpu, steps) in rows.items():
                hold = (
                    ""
                    if held is None
                    else f" loop held {held * 1000:.0f} ms, cpu {cpu * 1000:.0f} ms,"
                    f" {steps * 100:,} VM steps"
                )
                print(f"{n:>9,} {name:<40} ack {acked:7.3f} s done {done:7.3f} s{hold}", flush=True)
            shutil.rmtree(work)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    small, large = args.sizes[0], args.sizes[-1]
    table = []
    for name, (_, done, held, _, steps) in results[large].items():
        first = results[small][name]
        table.append(
            [
                name,
                f"{first[1]:.3f}",
                f"{done:.3f}",
                f"{done / first[1]:.1f}",
                "" if held is None else f"{first[2] * 1000:.0f} / {held * 1000:.0f}",
                "" if steps is None else f"{first[4] * 100:,} / {steps * 100:,}",
            ]
        )
    head = [
        "command",
        f"{small:,}: s",
        f"{large:,}: s",
        "ratio",
        "loop held, ms",
        "loop's VM steps",
    ]
    print(markdown_table(head, table, "lrrrrr"))


if __name__ == "__main__":
    main()
