"""Soak: mixed load on the real `hitl serve` for a long while, with Slack failing now and then.

The benchmark process runs the fake Slack Web API (``bot.sandbox.FakeSlack``) and the load:
signed button clicks from several clients (each on an unanswered item, so each one resolves
it), producer API predictions, an admin `/hitl retrain` every ``--retrain-every`` seconds, and
a fault injected into the Slack Web API on about ``--fault-rate`` of the seconds (429, 500,
connection reset, timeout). The server's RSS is sampled every ``--sample-every`` seconds.
At the end the server is stopped and the database read: clicks must have been taken (at least
one acknowledged, each click sent either acknowledged or counted an error: a server refusing
every click loses none of the acknowledged ones), every acknowledged click must be exactly one
answer, and RSS must show no growth trend (the slope of a least-squares line through the
samples after warm-up, in MB per minute, next to the first sample as baseline).

    python benchmarks/soak.py                  # 30 minutes
    python benchmarks/soak.py --minutes 5
    python benchmarks/soak.py --quick          # 4 seconds, for the test suite (the seed
                                               # imported in-process, not by `hitl import`)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import random
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import stop_server  # noqa: E402

from bot.sandbox import FakeSlack  # noqa: E402
from bot.slack.blocks import block_id_for, encode_value  # noqa: E402
from tests import signing  # noqa: E402

SECRET = "soak-signing-secret"
STOP_WITHIN = 60  # seconds from SIGTERM to the server's exit before it is asked where it waits
API_TOKEN = "soak-api-token-0123456789"
CHANNEL = "C0SOAK"
LABELS = ("billing", "bug", "account", "how_to")
WORDS = {
    "billing": "invoice refund charged card payment vat receipt plan".split(),
    "bug": "crash error freeze blank broken fails timeout upload".split(),
    "account": "password login email delete profile access admin owner".split(),
    "how_to": "how where export invite settings shortcut merge archive".split(),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``: the fork server and resource tracker, and the fork
    server's children (the scoring children, a fit's child while it fits)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone since the listing
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def children_rss_mb(pid: int) -> tuple[float, int]:
    """The summed RSS of ``pid``'s descendants (pages they share with the fork server are
    counted in each), and how many there are."""
    total, alive = 0.0, 0
    for child in descendants(pid):
        try:
            total += rss_mb(child)
            alive += 1
        except OSError:
            continue  # ended since the listing
    return total, alive


MEMORY_METRICS = (  # (name on /metrics, unit shown, divisor)
    ("hitl_sqlite_memory_bytes", "MB", 2**20),
    ("hitl_python_allocated_blocks", "thousand blocks", 1000),
)


async def memory_metrics(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The server's own memory figures from GET /metrics (empty if it did not answer)."""
    try:
        async with session.get(f"{url}/metrics") as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in {m[0] for m in MEMORY_METRICS}:
            found[name] = float(value)
    return found


def text_for(label: str, rng: random.Random) -> str:
    words = rng.sample(WORDS[label], 3) + rng.sample([w for ws in WORDS.values() for w in ws], 2)
    rng.shuffle(words)
    return "my " + " ".join(words) + f" issue #{rng.randint(1, 99999)}"


def write_seed(path: Path, n_labeled: int, n_pending: int, rng: random.Random) -> list[str]:
    pending = []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        for i in range(n_labeled):
            label = LABELS[i % len(LABELS)]
            writer.writerow([f"L{i}", text_for(label, rng), label])
        for i in range(n_pending):
            writer.writerow([f"P{i}", text_for(rng.choice(LABELS), rng), ""])
            pending.append(f"P{i}")
    return pending


def import_here(db: Path, seed: Path) -> None:
    """What ``hitl import -q SEED`` does with the server's environment (HITL_LABELS, no other
    setting that an import reads): the command's ``import_rows``, in this process."""
    from bot.ingest.load import import_rows, rows_of_file
    from bot.store import Store

    rows = rows_of_file(seed)
    try:
        with Store.open(db) as store:
            summary = import_rows(
                store, seed, rows, triggered_by=f"cli:{seed.name}", configured_labels=LABELS
            )
    finally:
        getattr(rows, "close", lambda: None)()
    if summary.rejected or not summary.imported:
        raise SystemExit(f"the seed's import failed: {summary.counts()}")


class Load:
    def __init__(self, url: str, pending: list[str], rng: random.Random):
        self.url = url
        self.pending = pending
        self.rng = rng
        self.acked: set[str] = set()
        self.clicks = self.errors = self.predictions = self.api_errors = self.retrains = 0
        self.retrain_errors = 0  # apart from the clicks' errors: sent = acked + errors
        self.latencies: list[float] = []

    async def click(self, session: aiohttp.ClientSession) -> None:
        if not self.pending:
            return
        item_id = self.pending.pop()
        payload = signing.block_actions_payload(
            f"U{self.rng.randint(1, 40):03d}",
            "hitl.q.label.0",
            encode_value(item_id, self.rng.choice(LABELS)),
            block_id=block_id_for(item_id),
        )
        payload["actions"][0]["action_ts"] = f"{time.time():.6f}"
        body, headers = signing.signed_action(payload, SECRET)
        self.clicks += 1
        started = time.perf_counter()
        try:
            async with session.post(f"{self.url}/slack/events", data=body, headers=headers) as r:
                if r.status == 200:
                    self.acked.add(item_id)
                    self.latencies.append(time.perf_counter() - started)
                else:
                    self.errors += 1
        except (aiohttp.ClientError, TimeoutError):
            self.errors += 1

    async def predict(self, session: aiohttp.ClientSession) -> None:
        label = self.rng.choice(LABELS)
        body = {"text": text_for(label, self.rng)}
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        self.predictions += 1
        try:
            async with session.post(f"{self.url}/api/predict", json=body, headers=headers) as r:
                if r.status != 200:
                    self.api_errors += 1
        except (aiohttp.ClientError, TimeoutError):
            self.api_errors += 1

    async def retrain(self, session: aiohttp.ClientSession) -> None:
        fields = signing.command_fields("retrain", "U0ADMIN")
        body, headers = signing.signed_command(fields, SECRET)
        async with session.post(f"{self.url}/slack/events", data=body, headers=headers) as r:
            if r.status != 200:
                self.retrain_errors += 1
        self.retrains += 1


FAULTS = [
    ("ratelimited", {"status": 429, "retry_after": 1}),
    ("internal_error", {"status": 500}),
    ("reset", {"mode": "reset"}),
    ("timeout", {"mode": "timeout"}),
]


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    fake = FakeSlack()
    fake.add_channel(CHANNEL, "soak")
    for n in range(1, 41):
        fake.add_user(f"U{n:03d}", f"user{n}")
    fake.add_user("U0ADMIN", "admin", is_admin=True)
    await fake.start()
    tmp = Path(tempfile.mkdtemp(prefix="hitl-soak-"))
    db = tmp / "hitl.db"
    pending = write_seed(tmp / "seed.csv", args.labeled, args.pending, rng)
    rng.shuffle(pending)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "HITL_"))},
        "SLACK_BOT_TOKEN": fake.token,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.base_url,
        "HITL_CHANNEL": CHANNEL,
        "HITL_LABELS": ",".join(LABELS),
        "HITL_ADMINS": "U0ADMIN",
        "HITL_API_TOKEN": API_TOKEN,
        "HITL_DB": str(db),
        "HITL_PORT": str(port := free_port()),
        "HITL_MAX_OPEN": "10",
    }
    if args.quick:  # the seed imported in this process: one interpreter's start-up less
        import_here(db, tmp / "seed.csv")
    else:
        importer = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "import",
            "-q",
            str(tmp / "seed.csv"),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
        )
        await importer.wait()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    log: list[str] = []
    while True:
        line = (await server.stderr.readline()).decode()
        log.append(line)
        if not line or "listening on" in line:
            break
    if not line:  # the server exited before it listened
        await server.wait()
        print(f"hitl serve exited with {server.returncode} before listening:", file=sys.stderr)
        print("".join(log[-20:]), file=sys.stderr)
        await fake.close()
        return 1
    drain = asyncio.create_task(_drain(server.stderr, log))
    try:
        url = f"http://127.0.0.1:{port}"
        load = Load(url, pending, rng)
        samples: list[tuple[float, float]] = []
        child_samples: list[tuple[float, float, int]] = []  # (seconds, summed MB, processes)
        memory: list[tuple[float, dict[str, float]]] = []  # where the memory goes, from /metrics
        faults = 0
        started = time.monotonic()
        duration = args.minutes * 60
        next_sample = next_retrain = 0.0
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while (elapsed := time.monotonic() - started) < duration:
                if elapsed >= next_sample:
                    samples.append((elapsed, rss_mb(server.pid)))
                    child_samples.append((elapsed, *children_rss_mb(server.pid)))
                    memory.append((elapsed, await memory_metrics(session, url)))
                    next_sample += args.sample_every
                if elapsed >= next_retrain:
                    await load.retrain(session)
                    next_retrain += args.retrain_every
                if rng.random() < args.fault_rate:
                    error, kwargs = rng.choice(FAULTS)
                    fake.fail(rng.choice(["chat.postMessage", "chat.update"]), error, **kwargs)
                    faults += 1
                fake.release_timeouts()
                tasks = [load.click(session) for _ in range(args.clicks_per_second)]
                tasks += [load.predict(session) for _ in range(args.predictions_per_second)]
                await asyncio.gather(*tasks, asyncio.sleep(1))  # a second's worth of load
            samples.append((time.monotonic() - started, rss_mb(server.pid)))
            child_samples.append((time.monotonic() - started, *children_rss_mb(server.pid)))
            memory.append((time.monotonic() - started, await memory_metrics(session, url)))
        fake.release_timeouts()
    except BaseException:
        server.terminate()  # never leave the server running when the soak itself fails
        await fake.close()
        raise
    code, aborted = await stop_server(server, STOP_WITHIN)  # a hang: its stacks in the log
    if aborted:
        log.append(f"[soak] the server did not stop within {STOP_WITHIN} s of SIGTERM\n")
    await drain
    await fake.close()

    with contextlib.closing(sqlite3.connect(db)) as conn:
        answers = conn.execute(
            "SELECT item_id, count(*) FROM answers WHERE source = 'button' GROUP BY item_id"
        ).fetchall()
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        runs = conn.execute("SELECT status, count(*) FROM runs WHERE kind = 'retrain' GROUP BY 1")
        retrain_runs = dict(runs.fetchall())
        posts = conn.execute("SELECT count(*), count(DISTINCT item_id) FROM posts").fetchone()
    stored = {item for item, n in answers}
    twice = sum(1 for _, n in answers if n > 1)
    lost = len(load.acked - stored)

    warm = [s for s in samples if s[0] >= min(60, duration / 4)] or samples
    minutes = np.array([s[0] / 60 for s in warm])
    rss = np.array([s[1] for s in warm])
    slope = float(np.polyfit(minutes, rss, 1)[0]) if len(warm) > 2 else 0.0
    lat = np.array(load.latencies) * 1000 if load.latencies else np.array([0.0])
    tracebacks = sum("Traceback" in line for line in log)

    print(f"soak: {args.minutes:g} min, seed {args.seed}, server exit code {code}")
    print("| metric | value |")
    print("| --- | --- |")
    print(
        f"| clicks sent / acked / errors | {load.clicks:,} / {len(load.acked):,} / {load.errors} |"
    )
    print(f"| acked clicks lost / stored twice | {lost} / {twice} |")
    p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
    print(f"| click ack p50 / p99 (ms) | {p50:.1f} / {p99:.1f} |")
    print(f"| API predictions / errors | {load.predictions:,} / {load.api_errors} |")
    refused = f"; {load.retrain_errors} refused" if load.retrain_errors else ""
    print(f"| retrains asked / runs by status | {load.retrains} / {retrain_runs}{refused} |")
    print(f"| Slack faults injected | {faults} |")
    print(f"| posts / distinct items posted | {posts[0]:,} / {posts[1]:,} |")
    print(f"| tracebacks in the server log | {tracebacks} |")
    print(f"| PRAGMA integrity_check | {integrity} |")
    print(
        f"| RSS first / last / max (MB) | {samples[0][1]:.0f} / {samples[-1][1]:.0f} / "
        f"{max(s[1] for s in samples):.0f} |"
    )
    print(f"| RSS trend after warm-up (MB/min) | {slope:+.2f} |")
    warm_children = [c for c in child_samples if c[0] >= min(60, duration / 4)] or child_samples
    if len(warm_children) > 2:
        trend = float(np.polyfit([c[0] / 60 for c in warm_children],
                                 [c[1] for c in warm_children], 1)[0])  # fmt: skip
        print(
            f"| children's RSS first / last / max (MB; {child_samples[-1][2]} processes at the"
            f" end) | {child_samples[0][1]:.0f} / {child_samples[-1][1]:.0f} /"
            f" {max(c[1] for c in child_samples):.0f}; trend after warm-up {trend:+.2f} MB/min |"
        )
    for name, unit, scale in MEMORY_METRICS:
        points = [(t / 60, m[name] / scale) for t, m in memory if name in m]
        warm_points = [pt for pt in points if pt[0] * 60 >= min(60, duration / 4)] or points
        if len(warm_points) > 2:
            trend = float(np.polyfit(*zip(*warm_points, strict=True), 1)[0])
            print(
                f"| {name} first / last / max ({unit}) | {points[0][1]:,.1f} / "
                f"{points[-1][1]:,.1f} / {max(v for _, v in points):,.1f};"
                f" trend after warm-up {trend:+,.2f} {unit}/min |"
            )
    # RSS less SQLite's own memory: what is left when the (bounded) page cache is taken out
    rest = [
        (t / 60, rss - m["hitl_sqlite_memory_bytes"] / 2**20)
        for (t, rss), (_, m) in zip(samples, memory, strict=True)
        if "hitl_sqlite_memory_bytes" in m
    ]
    warm_rest = [pt for pt in rest if pt[0] * 60 >= min(60, duration / 4)] or rest
    if len(warm_rest) > 2:
        trend = float(np.polyfit(*zip(*warm_rest, strict=True), 1)[0])
        first, last = rest[0][1], rest[-1][1]
        print(
            f"| RSS less SQLite's memory first / last (MB) | {first:.0f} / {last:.0f};"
            f" trend after warm-up {trend:+.2f} MB/min |"
        )
    print()
    print("RSS samples (minute, MB): " + ", ".join(f"{t / 60:.1f}:{m:.0f}" for t, m in samples))
    print(
        "children's RSS samples (minute, MB, processes): "
        + ", ".join(f"{t / 60:.1f}:{m:.0f}:{n}" for t, m, n in child_samples)
    )
    for name, unit, scale in MEMORY_METRICS:
        series = ", ".join(f"{t / 60:.1f}:{m[name] / scale:.1f}" for t, m in memory if name in m)
        print(f"{name} samples (minute, {unit}): {series}")
    if not load.acked:
        print("no click was acknowledged: the server took no answer")
    if len(load.acked) + load.errors != load.clicks:
        print("clicks sent are not the acknowledged ones and the errors")
    taken = len(load.acked) > 0 and len(load.acked) + load.errors == load.clicks
    # a server that exited leaves no retrain recorded running (README: a stopped one is said)
    left_running = retrain_runs.get("running", 0)
    if left_running:
        print(f"{left_running} retrain run(s) left recorded running after the server exited")
    ok = all([taken, lost == 0, twice == 0, integrity == "ok", code == 0, tracebacks == 0])
    ok = ok and not left_running
    for mark in ("Fatal Python error", "Traceback"):  # a hang (its threads' stacks), a failure
        n = next((n for n, line in enumerate(log) if mark in line), None)
        if n is not None:
            print("server log around a traceback:")
            print("".join(log[max(0, n - 3) : n + 200])[:20_000])
            break
    print("verdict:", "ok" if ok else "PROBLEMS (see above)")
    if ok:
        shutil.rmtree(tmp)
    else:
        print(f"database and models kept for a look in {tmp}")
    return 0 if ok else 1


async def _drain(stream: asyncio.StreamReader, log: list[str]) -> None:
    while line := await stream.readline():
        log.append(line.decode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--minutes", type=float, default=30, help="how long to run (default 30)")
    add("--quick", action="store_true", help="4 seconds, small data (the test suite's run)")
    add("--clicks-per-second", type=int, default=8, help="signed button clicks (default 8)")
    add("--predictions-per-second", type=int, default=4, help="POST /api/predict (default 4)")
    add("--retrain-every", type=float, default=300, help="seconds between admin /hitl retrain")
    add("--sample-every", type=float, default=60, help="seconds between RSS samples")
    add("--fault-rate", type=float, default=0.05, help="share of seconds with a Slack fault")
    add("--labeled", type=int, default=2000, help="labeled items imported first")
    add("--pending", type=int, default=20000, help="unlabeled items imported first")
    add("--seed", type=int, default=0, help="random seed of the load")
    args = parser.parse_args()
    if args.quick:
        # 4 s: two retrains still (at 0 and 3 s) and RSS samples at 0, 1.5, 3 s and the end
        args.minutes, args.retrain_every, args.sample_every = 4 / 60, 3, 1.5
        args.labeled, args.pending, args.fault_rate = 200, 1000, 0.2
    raise SystemExit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
