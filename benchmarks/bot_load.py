"""Bot latency under load: signed button clicks against the real `hitl serve`, and the Bolt floor.

The benchmark process runs the fake Slack Web API (``bot.sandbox.FakeSlack``, on loopback, in
its own thread and event loop) and the load generator: ``--concurrency`` aiohttp clients that
send ``--clicks`` signed ``block_actions`` requests (button clicks on the posted questions, each
from a distinct user on its item, each with a unique ``action_ts``) and time every
acknowledgement. Phases, in one run:

1. ``bare Bolt``: a Bolt AsyncApp whose only listener acks, served by the same aiohttp adapter
   in its own process (``--bare-server``): the floor (measured before and after phase 2);
2. ``hitl serve``: the real server as a subprocess (``python -m bot serve``) on a database
   seeded by ``hitl import`` with ``--labeled`` labeled and ``--pending`` unlabeled items,
   HITL_MAX_OPEN=50 and HITL_VOTES=25 so the clicks stay answers and nothing resolves;
3. ``hitl serve + retrain``: the same, on a fresh copy of that database, while a retrain on all
   the labels runs inside the server (``/hitl retrain`` from an admin, a signed slash command).

After each server phase the server is stopped and the SQLite file is read: every acknowledged
click must be exactly one answer row.

    python benchmarks/bot_load.py            # 2,000 clicks, 50 clients, 50,000 labels
    python benchmarks/bot_load.py --quick    # 60 clicks, 10 clients, 300 labels (< 30 s)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from _common import (
    DATASETS,
    ROOT,
    add_data_options,
    free_port,
    machine,
    markdown_table,
    percentile,
    resolve_data,
    write_seed_csv,
)

from bot.sandbox import FakeSlack
from tests import signing

SECRET = "bench-signing-secret"
ADMIN = "U0ADMIN"
CHANNELS = {"idle": "C0LOADIDLE", "retrain": "C0LOADRETRAIN"}


# --- the fake Slack in its own thread -------------------------------------------------------


class FakeThread:
    """FakeSlack served from a thread with its own loop, so its work does not delay the
    load generator's timers (it still shares the GIL)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.fake: FakeSlack | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.fake = FakeSlack()
            for channel in CHANNELS.values():
                self.fake.add_channel(channel, channel.lower())
            self.fake.add_user(ADMIN, "admin", is_admin=True)
            await self.fake.start()
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def __enter__(self) -> FakeThread:
        self.thread.start()
        self.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)

    def messages(self, channel: str) -> list[dict]:
        async def read() -> list[dict]:
            return self.fake.messages(channel)

        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(30)


# --- seeding -----------------------------------------------------------------------------


def hitl(db: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--db", str(db), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env=clean_env(),
    )
    if result.returncode != 0:
        raise SystemExit(f"hitl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "HITL_"))}
    return {**env, **extra}


# --- servers -----------------------------------------------------------------------------


async def start_process(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        *args, env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE
    )
    seen: list[str] = []

    async def until_listening() -> None:
        while True:
            line = (await process.stderr.readline()).decode()
            if not line:
                raise SystemExit(f"server ended before listening: {''.join(seen)}")
            seen.append(line)
            if "listening on" in line:
                return

    await asyncio.wait_for(until_listening(), 120)
    return process


async def stop_process(process: asyncio.subprocess.Process) -> tuple[int, str]:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.wait_for(process.wait(), 60)
    except TimeoutError:  # a retrain still fitting in a worker thread holds the exit
        process.kill()
        code = await process.wait()
    rest = (await process.stderr.read()).decode()
    return code, rest


def serve_env(fake: FakeSlack, db: Path, channel: str, port: int, max_open: int) -> dict:
    return clean_env(
        SLACK_BOT_TOKEN=fake.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake.base_url,
        HITL_CHANNEL=channel,
        HITL_DB=str(db),
        HITL_PORT=str(port),
        HITL_MAX_OPEN=str(max_open),
        HITL_VOTES="25",
        HITL_ADMINS=ADMIN,
    )


def run_bare_server() -> None:
    """``--bare-server``: Bolt with one listener that only acks, on $HITL_PORT."""
    from aiohttp import web
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(
        token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]
    )
    bolt = AsyncApp(client=client, signing_secret=os.environ["SLACK_SIGNING_SECRET"])

    @bolt.action(re.compile(".*"))
    async def only_ack(ack) -> None:
        await ack()

    async def events(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    app = web.Application()
    app.router.add_post("/slack/events", events)
    port = int(os.environ["HITL_PORT"])
    print(f"bare Bolt listening on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, shutdown_timeout=1)


# --- load --------------------------------------------------------------------------------


@dataclass
class Load:
    name: str
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stored: int | None = None
    note: str = ""

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


def click_payloads(messages: list[dict], n_clicks: int, n_posts: int, tag: str) -> list[dict]:
    """``n_clicks`` clicks spread over the first ``n_posts`` questions: click k goes to post
    k % n_posts, from user k // n_posts, on button (k + post) % buttons. Every (item, user) pair
    is new and no label gets a majority of 25 votes, so each click is one stored answer."""
    questions = []
    for message in messages[:n_posts]:
        actions = next(b for b in message["blocks"] if b["type"] == "actions")
        buttons = [e for e in actions["elements"] if e["action_id"].startswith("hitl.q.label.")]
        questions.append((message, actions["block_id"], buttons))
    payloads = []
    for k in range(n_clicks):
        post = k % len(questions)
        message, block_id, buttons = questions[post]
        button = buttons[(k // len(questions) + post) % len(buttons)]
        payload = signing.block_actions_payload(
            f"U0{tag}{k // len(questions):05d}",
            button["action_id"],
            button["value"],
            channel=message.get("channel", ""),
            message_ts=message["ts"],
            block_id=block_id,
            message=message,
        )
        payload["actions"][0]["action_ts"] = f"1700000200.{k:06d}"
        payloads.append(payload)
    return payloads


async def timed_post(
    http: aiohttp.ClientSession, url: str, body: str | bytes, headers: dict, result: Load
) -> None:
    """POST once and note the outcome in ``result``: the latency and status, or the error."""
    t0 = time.perf_counter()
    try:
        async with http.post(url, data=body, headers=headers) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.errors.append(type(exc).__name__)
        return
    result.latencies.append(time.perf_counter() - t0)
    result.statuses[status] = result.statuses.get(status, 0) + 1


async def run_load(name: str, url: str, payloads: list[dict], concurrency: int) -> Load:
    signed = [signing.signed_action(p, SECRET) for p in payloads]
    queue: asyncio.Queue = asyncio.Queue()
    for item in signed:
        queue.put_nowait(item)
    result = Load(name)

    async def client(http: aiohttp.ClientSession) -> None:
        while True:
            try:
                body, headers = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await timed_post(http, url, body, headers, result)

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        result.seconds = time.perf_counter() - t0
    return result


def count_answers(db: Path, tag: str) -> tuple[int, int]:
    """(answer rows from the load's users, distinct (item, user) pairs among them)."""
    with sqlite3.connect(db) as conn:
        rows, pairs = conn.execute(
            "SELECT count(*), count(DISTINCT item_id || ' ' || user_id) FROM answers"
            " WHERE user_id LIKE ?",
            [f"U0{tag}%"],
        ).fetchone()
    return rows, pairs


def fit_children(pid: int) -> list[dict]:
    """The server's child processes (the retrain's fit) with their niceness and CPU seconds."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # ppid
            ticks = os.sysconf("SC_CLK_TCK")
            found.append(
                {
                    "pid": int(status.parent.name),
                    "nice": int(fields[16]),
                    "cpu_s": (int(fields[11]) + int(fields[12])) / ticks,
                }
            )
    return found


def retrain_state(db: Path) -> dict:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT started_at, finished_at, status FROM runs WHERE kind = 'retrain'"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
    return dict(zip(("started_at", "finished_at", "status"), row, strict=True)) if row else {}


async def wait_for_posts(ft: FakeThread, channel: str, n: int, limit_s: float) -> list[dict]:
    deadline = time.monotonic() + limit_s
    while True:
        messages = [m for m in ft.messages(channel) if m.get("blocks")]
        if len(messages) >= n:
            for m in messages:
                m.setdefault("channel", channel)
            return messages
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(messages)} of {n} questions posted in {limit_s:.0f} s")
        await asyncio.sleep(0.25)  # a benchmark polling another thread, not a test


async def server_phase(
    ft: FakeThread, args, db: Path, kind: str, bare_between: bool
) -> tuple[list[Load], dict]:
    fake = ft.fake
    port = free_port()
    channel = CHANNELS[kind]
    env = serve_env(fake, db, channel, port, args.max_open)
    if args.hitl_labels:  # the label set from settings instead of the database
        with sqlite3.connect(db) as conn:
            labels = [r[0] for r in conn.execute("SELECT DISTINCT label FROM labels ORDER BY 1")]
        env["HITL_LABELS"] = ",".join(labels)
    process = await start_process([sys.executable, "-m", "bot", "serve"], env)
    url = f"http://127.0.0.1:{port}/slack/events"
    loads: list[Load] = []
    info: dict = {}
    tag = "L" if kind == "idle" else "R"
    try:
        messages = await wait_for_posts(ft, channel, args.max_open, 10 + 2 * args.max_open)
        payloads = click_payloads(messages, args.clicks, args.max_open, tag)
        if bare_between:
            loads.append(await bare_phase(fake, payloads, args, "bare Bolt (before)"))
        if kind == "retrain":
            fields = signing.command_fields("retrain", ADMIN, channel_id=channel)
            async with aiohttp.ClientSession() as http:
                body, headers = signing.signed_command(fields, SECRET)
                async with http.post(url, data=body, headers=headers) as response:
                    info["retrain_ack"] = (await response.text())[:200]
            # let the child get past its imports and into the fit before the clicks start
            await asyncio.sleep(args.retrain_lead)
            info["retrain_at_start"] = retrain_state(db)
            info["fit_children"] = fit_children(process.pid)
        t0 = time.perf_counter()
        name = "hitl serve" if kind == "idle" else "hitl serve + retrain"
        updates_before = len(fake.calls_to("chat.update"))
        loads.append(await run_load(name, url, payloads, args.concurrency))
        info[f"chat_update_calls_{kind}"] = len(fake.calls_to("chat.update")) - updates_before
        if kind == "retrain":
            info["retrain_at_end"] = retrain_state(db)
            state = info["retrain_at_end"]
            deadline = time.monotonic() + args.retrain_wait
            while state and state["finished_at"] is None and time.monotonic() < deadline:
                await asyncio.sleep(1)
                state = retrain_state(db)
            info["retrain_final"] = state
            info["retrain_wait_s"] = time.perf_counter() - t0
        if bare_between:
            loads.append(await bare_phase(fake, payloads, args, "bare Bolt (after)"))
    finally:
        code, rest = await stop_process(process)
    server_load = next(lo for lo in loads if lo.name.startswith("hitl"))
    if code != 0 or "Traceback" in rest:
        last = rest.strip().splitlines()[-1:] or [""]
        server_load.note += f"server exit {code} ({last[0][-120:]}); "
    stored, pairs = count_answers(db, tag)
    server_load.stored = stored
    server_load.note += f"{pairs} distinct (item, user); "
    server_load.note += (
        f"{info.get(f'chat_update_calls_{kind}', 0):,} chat.update during the clicks"
    )
    return loads, info


async def bare_phase(fake: FakeSlack, payloads: list[dict], args, name: str) -> Load:
    port = free_port()
    env = clean_env(
        SLACK_BOT_TOKEN=fake.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake.base_url,
        HITL_PORT=str(port),
    )
    process = await start_process([sys.executable, __file__, "--bare-server"], env)
    try:
        url = f"http://127.0.0.1:{port}/slack/events"
        return await run_load(name, url, payloads, args.concurrency)
    finally:
        await stop_process(process)


def report(loads: list[Load], info: dict, args) -> str:
    floor = min(lo.p(50) for lo in loads if lo.name.startswith("bare"))
    floor99 = min(lo.p(99) for lo in loads if lo.name.startswith("bare"))
    rows = []
    for lo in loads:
        rows.append(
            [
                lo.name,
                f"{len(lo.latencies) + len(lo.errors):,}",
                lo.ok,
                len(lo.errors) + sum(n for s, n in lo.statuses.items() if s != 200),
                f"{lo.p(50):.1f}",
                f"{lo.p(95):.1f}",
                f"{lo.p(99):.1f}",
                f"{max(lo.latencies) * 1000:.1f}" if lo.latencies else "–",
                f"{len(lo.latencies) / lo.seconds:,.0f}" if lo.seconds else "–",
                f"{lo.p(50) / floor:.2f}",
                f"{lo.p(99) / floor99:.2f}",
                "–" if lo.stored is None else f"{lo.stored:,}",
                lo.note,
            ]
        )
    head = [
        "phase",
        "clicks",
        "acked 200",
        "errors",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "clicks/s",
        "p50 / floor",
        "p99 / floor",
        "answer rows",
        "note",
    ]
    align = "l" + "r" * 11 + "l"
    return markdown_table(head, rows, align) + "\n\n" + json.dumps(info, indent=1)


async def main_async(args) -> int:
    print(machine())
    print(
        f"{args.clicks} clicks, {args.concurrency} clients, {args.max_open} open questions, "
        f"{args.labeled:,} labeled + {args.pending:,} pending items"
        + (", HITL_LABELS set" if args.hitl_labels else "")
    )
    with tempfile.TemporaryDirectory() as tmp, FakeThread() as ft:
        seed_db = Path(tmp) / "seed.db"
        csv_path = Path(tmp) / "seed.csv"
        write_seed_csv(csv_path, args.labeled, args.pending, args.data, args.datasets)
        t0 = time.perf_counter()
        print(hitl(seed_db, "import", "-q", str(csv_path)), f"({time.perf_counter() - t0:.0f} s)")
        for kind in CHANNELS:
            shutil.copy(seed_db, Path(tmp) / f"{kind}.db")
        loads, info = [], {}
        if not args.skip_idle:
            loads, info = await server_phase(ft, args, Path(tmp) / "idle.db", "idle", True)
        if not args.no_retrain:
            more, info = await server_phase(
                ft, args, Path(tmp) / "retrain.db", "retrain", args.skip_idle
            )
            loads += more
    print(report(loads, info, args))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run for the test suite")
    parser.add_argument("--clicks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--max-open", type=int, default=50, help="HITL_MAX_OPEN (≤ 50)")
    parser.add_argument("--labeled", type=int, default=50_000)
    parser.add_argument("--pending", type=int, default=5_000)
    add_data_options(parser, DATASETS, quick="trec")
    parser.add_argument(
        "--retrain-wait", type=float, default=1200, help="seconds to let the retrain finish"
    )
    parser.add_argument(
        "--retrain-lead", type=float, default=15, help="seconds of fitting before the clicks"
    )
    parser.add_argument(
        "--hitl-labels", action="store_true", help="set HITL_LABELS to the imported label set"
    )
    parser.add_argument("--skip-idle", action="store_true", help="skip phase 2")
    parser.add_argument("--no-retrain", action="store_true", help="skip phase 3")
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_server:
        run_bare_server()
        return 0
    args.data, args.datasets = resolve_data(args)
    if args.quick:
        args.clicks, args.concurrency, args.max_open = 60, 10, 3
        args.labeled, args.pending = 300, 100
        args.retrain_lead = 0.0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
