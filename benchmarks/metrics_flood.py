"""How long a flood of ``GET /metrics`` holds the server's event loop, before and now.

``/metrics`` reports counts that are scans growing with the history (``SELECT count(*)`` of
the answers, of the posts): at 1M posts and 1M answers a read takes about 140 ms. Before
cda48ef the handler read them on the event loop (``Metrics.render()`` with no counts), where
every Slack ack waits; now ``Metrics.scrape`` reads them in a worker thread on a connection of
its own, and scrapes that come while one reads share its answer.

The benchmark builds a database of N items, each labeled by one answer (``Store.add_items``
of labeled rows: the store's own bulk path, as an import) and posted once (one
``executemany`` into ``posts``), then serves the real routes (``bot.api.routes.add_routes``,
a real ``Store``) on 127.0.0.1 in this process, with one more path for the old way:

- **on-loop**: ``/metrics/on-loop``, a handler that calls ``Metrics.render()`` on the loop,
  as the handler before cda48ef did (registered here only);
- **scrape**: ``/metrics``, the real route (``Metrics.scrape``).

Each arm is flooded for S seconds by C client threads in a child process, each scraping in a
loop (a new connection a request, as urllib makes them), while a probe task on the server's
loop sleeps 5 ms at a time and records by how much each wake-up was late: the loop's lag,
what a Slack ack arriving then would wait. A quiet baseline (the probe alone, no flood) comes
first. "one scrape s" is the median of 3 requests to the arm's path, alone. The 1-minute load
average is read at the end of each arm: the machine's other work shows in the lag too.

    python benchmarks/metrics_flood.py            # 1,000,000 posts and answers, 32 clients, 20 s
    python benchmarks/metrics_flood.py --db PATH  # reuse the database at PATH (built there first)
    python benchmarks/metrics_flood.py --quick    # 20,000, 4 clients, 0.4 s: about 3 s
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import types
import urllib.request
from pathlib import Path

from _common import machine, markdown_table, percentile
from aiohttp import web

from bot.api.metrics import CONTENT_TYPE, METRICS
from bot.api.routes import add_routes
from bot.appkeys import RUNTIME
from bot.store import Store

ON_LOOP_PATH = "/metrics/on-loop"
ARMS = {"on-loop": ON_LOOP_PATH, "scrape": "/metrics"}
PROBE_S = 0.005  # the probe's sleep
BATCH = 50_000  # items (and their answers) a transaction while the database is built
WORDS = (
    "invoice refund charged twice card declined password reset login crash error upload "
    "export report account cancel upgrade plan billing address phone email sync android"
).split()
LABELS = [f"label{n}" for n in range(20)]

# The child process of clients: C threads, each scraping PATH in a loop for S seconds from
# the moment it says "ready"; it prints the scrapes served and the ones that failed.
FLOOD = """
import sys, threading, time, urllib.request
url, clients, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
served, failed = [], []
def run(stop):
    ok = bad = 0
    while time.monotonic() < stop:
        try:
            with urllib.request.urlopen(url, timeout=120) as response:
                response.read()
            ok += 1
        except Exception:
            bad += 1
    served.append(ok)
    failed.append(bad)
print("ready", flush=True)
stop = time.monotonic() + seconds
threads = [threading.Thread(target=run, args=(stop,)) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sum(served), sum(failed), flush=True)
"""


class LabeledRow:
    """One item with its label, as ``Store.add_items`` takes it: stored resolved, with one
    answer (an import's)."""

    def __init__(self, id: str, text: str, label: str) -> None:  # noqa: A002 - the store's name
        self.id, self.text, self.label, self.meta = id, text, label, {}


def build(db: Path, n: int) -> float:
    """``n`` items, each labeled by one answer and posted once (closed); the seconds it took."""
    import random

    rng = random.Random(n)
    started = time.perf_counter()
    with Store.open(db) as store:
        for first in range(0, n, BATCH):
            ids = range(first, min(first + BATCH, n))
            store.add_items(
                [
                    LabeledRow(f"m{i}", " ".join(rng.choices(WORDS, k=12)), LABELS[i % len(LABELS)])
                    for i in ids
                ],
                "import",
            )
            with store.db.conn:  # one transaction a batch, as add_items writes its own
                store.db.conn.executemany(
                    "INSERT INTO posts (item_id, channel, ts, reason, posted_at, closed_at)"
                    " VALUES (?, 'C0FLOOD', ?, 'uncertain', ?, ?)",
                    (
                        (
                            f"m{i}",
                            f"1700000000.{i:07d}",
                            "2026-01-01T00:00:00.000+00:00",
                            "2026-01-01T00:05:00.000+00:00",
                        )
                        for i in ids
                    ),
                )
    return time.perf_counter() - started


async def on_loop(request: web.Request) -> web.Response:
    """The handler before cda48ef: the database's counts read on the event loop."""
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


def get(url: str) -> float:
    """Seconds of one GET of ``url`` (in a worker thread: the server's loop stays free)."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        response.read()
        if response.status != 200:
            raise SystemExit(f"error: {url} answered {response.status}")
    return time.perf_counter() - started


async def probe(seconds: float) -> list[float]:
    """The loop's lag: by how much each ``PROBE_S`` sleep woke late, for ``seconds``."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    until = loop.time() + seconds
    while loop.time() < until:
        began = loop.time()
        await asyncio.sleep(PROBE_S)
        lags.append(max(0.0, loop.time() - began - PROBE_S))  # early by the clock's grain: 0
    return lags


async def flood(url: str, clients: int, seconds: float) -> tuple[list[float], int, int]:
    """Probe the loop while ``clients`` threads of a child process scrape ``url`` for
    ``seconds``: the lags, the scrapes served and the ones that failed."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOOD, url, str(clients), str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    if (await child.stdout.readline()).strip() != b"ready":
        raise SystemExit("error: the flood's client process did not start")
    lags = await probe(seconds)
    out, _ = await child.communicate()  # its requests under way are answered first
    if child.returncode != 0:
        raise SystemExit(f"error: the flood's client process exited with {child.returncode}")
    served, failed = (int(x) for x in out.split())
    return lags, served, failed


async def measure(db: Path, clients: int, seconds: float, quiet_s: float) -> list[dict]:
    app = web.Application()
    add_routes(app)
    app.router.add_get(ON_LOOP_PATH, on_loop)
    store = Store.open(db)
    app[RUNTIME] = types.SimpleNamespace(store=store, scorer=None, model_roles=lambda: {})
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        for path in ARMS.values():  # a first read of each: the file's pages in memory
            await asyncio.to_thread(get, base + path)
        results = [{"arm": "quiet", "one": None, "lags": await probe(quiet_s), "served": 0}]
        results[-1]["load"] = os.getloadavg()[0]
        for arm, path in ARMS.items():
            one = statistics.median([await asyncio.to_thread(get, base + path) for _ in range(3)])
            lags, served, failed = await flood(base + path, clients, seconds)
            results.append({"arm": arm, "one": one, "lags": lags, "served": served,
                            "failed": failed, "load": os.getloadavg()[0]})  # fmt: skip
            print(f"{arm}: {served:,} scrapes served", flush=True)
    finally:
        await runner.cleanup()
        store.close()
    return results


def counts(db: Path) -> tuple[int, int, int]:
    """Items, answers, posts in ``db``."""
    with Store.open(db) as store:
        posts = store.metrics_counts()["posts"]
        return sum(store.count_items().values()), store.count_answers(), posts


def report(results: list[dict]) -> str:
    rows = []
    for r in results:
        ms = [1000 * x for x in r["lags"]]
        r["p99"], r["max"] = percentile(ms, 99), max(ms)
        rows.append([
            r["arm"], "" if r["one"] is None else f"{r['one']:.3f}",
            f"{statistics.median(ms):.1f}", f"{r['p99']:.1f}", f"{r['max']:.1f}",
            f"{len(ms):,}", f"{r['served']:,}", f"{r.get('failed', 0):,}", f"{r['load']:.1f}",
        ])  # fmt: skip
    table = markdown_table(
        ["arm", "one scrape s", "loop lag p50 ms", "p99 ms", "max ms", "probe samples",
         "scrapes served", "failed", "load 1 min"],
        rows, "lrrrrrrrr",
    )  # fmt: skip
    by = {r["arm"]: r for r in results}
    old, new = by["on-loop"], by["scrape"]
    ratios = (
        f"on-loop / scrape: loop lag p99 {old['p99'] / max(new['p99'], 1e-3):.1f}x, "
        f"max {old['max'] / max(new['max'], 1e-3):.1f}x; "
        f"one scrape {old['one'] / new['one']:.2f}x"
    )
    return table + "\n\n" + ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000, 4 clients, 0.4 s: ~3 s")
    parser.add_argument("--n", type=int, default=1_000_000, help="posts and answers (and items)")
    parser.add_argument("--clients", type=int, default=32, help="client threads of the flood")
    parser.add_argument("--seconds", type=float, default=20, help="each flood's length")
    parser.add_argument(
        "--db", type=Path, help="the database to use: reused if it is there, else built there"
    )
    args = parser.parse_args(argv)
    if args.quick:
        # a flood keeps both cores busy for its length: 0.4 s an arm still gives a hundred
        # scrapes or more and ~40-80 probe samples (the test checks there are some) at 40 % of
        # the flood's CPU of 1 s
        args.n, args.clients, args.seconds = 20_000, 4, 0.4
    if args.n < 1 or args.clients < 1 or args.seconds <= 0:
        parser.error("--n and --clients must be at least 1, --seconds above 0")
    quiet_s = min(3.0, args.seconds / 2)
    print(machine())
    with tempfile.TemporaryDirectory(prefix="hitl-metrics-") as folder:
        db = args.db if args.db is not None else Path(folder) / "metrics.db"
        if db.exists():
            print(f"reusing {db}", flush=True)
        else:
            seconds = build(db, args.n)
            print(f"built {args.n:,} items, answers and posts in {seconds:.0f} s", flush=True)
        items, answers, posts = counts(db)
        print(
            f"database: {items:,} items, {answers:,} answers, {posts:,} posts, "
            f"{db.stat().st_size / 2**20:.0f} MiB; flood: {args.clients} clients, "
            f"{args.seconds:g} s an arm; quiet baseline {quiet_s:g} s; probe sleeps "
            f"{1000 * PROBE_S:g} ms",
            flush=True,
        )
        results = asyncio.run(measure(db, args.clients, args.seconds, quiet_s))
    print()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
