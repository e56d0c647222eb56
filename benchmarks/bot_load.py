"""Bot latency under load: signed button clicks against the real `hitl serve`, and the Bolt floor.

The benchmark process runs the fake Slack Web API (``bot.sandbox.FakeSlack``, on loopback, in
its own thread and event loop) and the load generator: ``--concurrency`` aiohttp clients that
send ``--clicks`` signed ``block_actions`` requests (button clicks on the posted questions, each
from a distinct user on its item, each with a unique ``action_ts``) and time every
acknowledgement. Phases, in one run:

1. ``bare Bolt``: a Bolt AsyncApp whose only listener acks, served by the same aiohttp adapter
   in its own process (``--bare-server``): the floor (measured before and after phase 2; with
   ``--keep-bare``, as in ``--quick``, one such process serves every floor of the run);
2. ``hitl serve``: the real server as a subprocess (``python -m bot serve``) on a database
   seeded by ``hitl import`` with ``--labeled`` labeled and ``--pending`` unlabeled items,
   HITL_MAX_OPEN=50 and HITL_VOTES=25 so the clicks stay answers and nothing resolves;
3. ``hitl serve + retrain``: the same, on a fresh copy of that database, while a retrain on all
   the labels runs inside the server (``/hitl retrain`` from an admin, a signed slash command;
   with ``--hold-fit``, as in ``--quick``, the fit child is stopped while the clicks run, so
   they come during the retrain however loaded the machine is);
4. ``hitl serve, realistic mix``: a champion trained by ``hitl retrain`` on ``--mix-labeled``
   labels, ``--mix-pending`` items waiting (scored, each with a callback_url), HITL_VOTES=1 so
   the first click on a question decides it (a label, a redraw, a webhook to a receiver in
   this process, a new question), and ``--predict-clients`` clients calling ``/api/predict``
   with new texts all along, from a process of their own (``--predict-worker``); then the
   bare Bolt floor again on the same clicks. With ``--mix-during-rescore`` (set by
   ``--quick``) the first clicks decide the open questions, the benchmark waits (through
   ``/metrics``) until the refresh of the working model they bring is adopted, and times the
   other clicks while that refresh re-scores every waiting item (with
   ``--predicts-after-refresh``, also set by ``--quick``, the predict clients begin calling
   only then).

With ``--overlap`` (set by ``--quick``) phase 4's database is seeded and its server, the bare
server and the (paused) predict clients are started while phase 3 runs, and phase 3's held
retrain is started while its questions are posted: the run waits on one start-up at a time
instead of on each in turn.

After each server phase the server is stopped and the SQLite file is read: every acknowledged
click must be exactly one answer row (in the mix the first click on a question decides it; the
later ones are kept as history and told it was already decided). Every click phase is reported with
p50 / p95 / p99 and each one's ratio to the floor's (the lowest of the floors measured).

    python benchmarks/bot_load.py            # 2,000 clicks, 50 clients, 50,000 labels; mix 100k
    python benchmarks/bot_load.py --quick  # 60 clicks, 10 clients, 350 labels (mix 25); phases 3-4
    python benchmarks/bot_load.py --skip-idle --no-retrain --labeled 1000 --pending 100 \
        --clicks 5000 --mix-during-rescore   # the mix while a refresh re-scores 100,000 items
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from _common import (
    DATASETS,
    ROOT,
    add_data_options,
    free_port,
    grow_backlog,
    load_mixture,
    machine,
    markdown_table,
    percentile,
    resolve_data,
    stop_server,
    write_seed_csv,
)

from bot.sandbox import FakeSlack
from tests import signing

SECRET = "bench-signing-secret"
ADMIN = "U0ADMIN"
CHANNELS = {"idle": "C0LOADIDLE", "retrain": "C0LOADRETRAIN", "mix": "C0LOADMIX"}
TOKEN = "bench-api-token-0123456789"  # HITL_API_TOKEN of the servers that take /api/predict
HOOK_SECRET = "bench-webhook-secret"
FIT_NICENESS = 10  # bot.learning.retrain's: how the fit child is told from the scoring child
HITL_COMMAND_S = 900  # the longest a `hitl` command (the full run's retrain of 50,000) may take
STARTED = time.monotonic()


def step(what: str) -> None:
    """Note on stderr, with the seconds since the start, the step the run is at: a run that
    waits too long shows where."""
    print(f"[{time.monotonic() - STARTED:7.1f} s] {what}", file=sys.stderr, flush=True)


# --- the fake Slack in its own thread -------------------------------------------------------


class FakeThread:
    """FakeSlack served from a thread with its own loop, so its work does not delay the
    load generator's timers (it still shares the GIL)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.fake: FakeSlack | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.hooks_received = 0
        self.hook_runner = None

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
        if self.hook_runner is not None:
            asyncio.run_coroutine_threadsafe(self.hook_runner.cleanup(), self.loop).result(30)
        asyncio.run_coroutine_threadsafe(self.fake.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)

    def messages(self, channel: str) -> list[dict]:
        async def read() -> list[dict]:
            return self.fake.messages(channel)

        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(30)

    def start_hooks(self) -> str:
        """A webhook receiver on this thread's loop (it answers 200 and counts); its URL."""
        from aiohttp import web

        async def receive(request: web.Request) -> web.Response:
            await request.read()
            self.hooks_received += 1
            return web.Response(text="ok")

        async def start() -> str:
            app = web.Application()
            app.router.add_post("/hook", receive)
            runner = web.AppRunner(app)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self.hook_runner = runner
            return f"http://127.0.0.1:{port}/hook"

        return asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)

    def count_calls(self, method: str, containing: str = "") -> int:
        """Web API calls to ``method`` so far (those whose text contains ``containing``)."""

        async def count() -> int:
            calls = self.fake.calls_to(method)
            return sum(containing in str(call.params.get("text", "")) for call in calls)

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(30)


# --- seeding -----------------------------------------------------------------------------


# The product the servers and `hitl` commands run: this checkout, or another one's (to set an
# older server beside this benchmark). `python -m bot` puts its working directory first on the
# path, ahead of PYTHONPATH: so the other checkout is their working directory.
SERVER_ROOT = Path(os.environ.get("BENCH_SERVER_CHECKOUT") or ROOT).resolve()


def hitl(db: Path, *args: str) -> str:
    step(f"hitl {' '.join(args)}")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "bot", "--db", str(db), *args],
            capture_output=True,
            text=True,
            cwd=SERVER_ROOT,
            check=False,
            env=clean_env(),
            timeout=HITL_COMMAND_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise SystemExit(f"hitl {' '.join(args)} still ran after {HITL_COMMAND_S} s") from exc
    if result.returncode != 0:
        raise SystemExit(f"hitl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "HITL_"))}
    return {**env, **extra}


def train_seed_champion(
    db: Path, n_labeled: int, data: Path, datasets: Sequence[str]
) -> tuple[list[str], float]:
    """``hitl import`` ``n_labeled`` labeled dataset texts, then ``hitl retrain``: the champion
    v1. Returns its labels and the seconds the retrain took."""
    csv_path = db.with_suffix(".csv")
    write_seed_csv(csv_path, n_labeled, 0, data, datasets)
    hitl(db, "import", "-q", str(csv_path))
    t0 = time.perf_counter()
    hitl(db, "retrain")
    seconds = time.perf_counter() - t0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute(
            "SELECT label_set, n_train FROM models WHERE status = 'champion'"
        ).fetchone()
    if row is None:
        raise SystemExit("hitl retrain promoted no champion")
    if row[1] != n_labeled:
        raise SystemExit(f"the champion learned {row[1]:,} labels, not {n_labeled:,}")
    return json.loads(row[0]), seconds


# --- servers -----------------------------------------------------------------------------


def no_core_file() -> None:
    """In a server about to start: SIGABRT prints its stacks and writes no core file."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


async def start_process(
    args: list[str],
    env: dict[str, str],
    cwd: Path = SERVER_ROOT,
    *,
    ready: str = "listening on",
    stdout: bool = False,
) -> asyncio.subprocess.Process:
    """Start ``args`` and return once its stderr says ``ready`` (with ``stdout``, its stdout is
    a pipe to read)."""
    step(f"starting {' '.join(Path(a).name for a in args[1:])}")
    process = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        cwd=cwd,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE if stdout else None,
        preexec_fn=no_core_file,  # stop_process may ask it for its stacks with SIGABRT
    )
    seen: list[str] = []

    async def until_listening() -> None:
        while True:
            line = (await process.stderr.readline()).decode()
            if not line:
                raise SystemExit(f"server ended before listening: {''.join(seen)}")
            seen.append(line)
            if ready in line:
                return

    await asyncio.wait_for(until_listening(), 120)
    step(f"pid {process.pid} is ready")
    # Read the server's log from here on, or a full pipe (64 KiB of warnings) stops the server
    # at its next write: it is kept for stop_process.
    DRAINS[process.pid] = asyncio.create_task(drain(process.stderr, process.pid))
    return process


DRAINS: dict[int, asyncio.Task] = {}  # pid → the task reading that server's stderr
KEEP_LOG = 200_000  # characters of a server's log kept for the report
STOP_WITHIN = 60  # seconds from SIGTERM to a server's exit before it is asked where it waits


LOGS: dict[int, str] = {}  # pid → that server's log so far (the last KEEP_LOG characters)


async def drain(stream: asyncio.StreamReader, pid: int) -> str:
    LOGS[pid] = ""
    while chunk := await stream.read(65536):
        LOGS[pid] = (LOGS[pid] + chunk.decode(errors="replace"))[-KEEP_LOG:]
    return LOGS.pop(pid)


async def stop_process(process: asyncio.subprocess.Process) -> tuple[int, str]:
    step(f"stopping pid {process.pid}")
    code, aborted = await stop_server(process, STOP_WITHIN)
    step(f"pid {process.pid} exited ({code})")
    reader = DRAINS.pop(process.pid, None)
    rest = await reader if reader is not None else (await process.stderr.read()).decode()
    if aborted and "Fatal Python error: Aborted" in rest:  # the report shows where it waited
        stacks = rest[rest.rindex("Fatal Python error: Aborted") :]
        print(f"server {process.pid} did not stop within {STOP_WITHIN} s of SIGTERM; its threads:")
        print(stacks[:20_000], flush=True)
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
    """``--bare-server``: Bolt with one listener that only acks, on $HITL_PORT; beside it a
    ``/api/predict`` that only answers (the JSON body read, a fixed prediction sent back), so
    that the floor can be measured under the same predict traffic as the server."""
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

    async def predict(request: web.Request) -> web.Response:
        item = json.loads(await request.read())
        return web.json_response({"id": None, "label": None, "text_chars": len(item["text"])})

    app = web.Application()
    app.router.add_post("/slack/events", events)
    app.router.add_post("/api/predict", predict)
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


@contextlib.contextmanager
def no_collector_pauses() -> Iterator[None]:
    """This process's garbage collector off while it times requests. A full collection
    scans every object the benchmark holds (the datasets' texts, the backlog's words, the
    fake Slack's records): at a million items it took 55-83 ms, about every 0.5 s, and
    stopped every thread here, so the requests in flight counted it as the server's latency
    (and the fake Slack, in a thread here, answered late). The objects alive at the start
    are frozen (never scanned again) and collection resumes when the phase ends."""
    if not gc.isenabled():  # a phase inside another
        yield
        return
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


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


async def predict_load(
    url: str, texts: list[str], clients: int, *, n: int | None, stop: asyncio.Event | None, tag: str
) -> Load:
    """``clients`` clients calling /api/predict with new texts, ``n`` calls in all or until
    ``stop`` is set."""
    result = Load(f"predict {tag}")
    counter = iter(range(10**9))
    rng = random.Random(tag)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def more() -> bool:
        return (stop is None or not stop.is_set()) and (n is None or sent < n)

    sent = 0

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal sent
        while more():
            sent += 1
            body = json.dumps({"text": f"{rng.choice(texts)} ({tag} {next(counter)})"})
            await timed_post(http, url, body, headers, result)

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        with no_collector_pauses():
            t0 = time.perf_counter()
            await asyncio.gather(*(client(http) for _ in range(clients)))
            result.seconds = time.perf_counter() - t0
    return result


def run_predict_worker(url: str, clients: int, tag: str) -> None:
    """``--predict-worker URL CLIENTS TAG``: the mix's /api/predict clients, in a process of their
    own so that their work does not share the click clients' interpreter (as the producers
    calling a real server would not); they run until SIGTERM, then write their Load as JSON
    to the file BENCH_OUT names. With BENCH_GO set they are started (imports done) but wait
    for a line on stdin before the first call (``release_predict_worker``)."""
    texts = json.loads(Path(os.environ["BENCH_TEXTS"]).read_text())

    parent = os.getppid()

    async def orphaned(stop: asyncio.Event) -> None:
        while os.getppid() == parent:  # noqa: ASYNC110 - a failed benchmark would leave these
            await asyncio.sleep(1)  # clients calling a server that is gone, for ever
        stop.set()

    async def run() -> Load:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        watch = asyncio.create_task(orphaned(stop))
        print("predict clients started", file=sys.stderr, flush=True)
        if os.environ.get("BENCH_GO"):
            await asyncio.to_thread(sys.stdin.readline)  # the word to start calling
        try:
            return await predict_load(url, texts, clients, n=None, stop=stop, tag=tag)
        finally:
            watch.cancel()

    result = asyncio.run(run())
    Path(os.environ["BENCH_OUT"]).write_text(json.dumps(result.__dict__))


@dataclass
class PredictWorker:
    """A running ``--predict-worker`` process and the file its figures go to."""

    process: subprocess.Popen
    out: Path


def start_predict_worker(
    url: str, clients: int, texts: Path, tag: str, *, paused: bool = False
) -> PredictWorker:
    """The ``--predict-worker`` process, once its clients run (a plain Popen: asyncio's child
    watcher is not involved in its exit); ``paused``: once they are ready, waiting for
    ``release_predict_worker``."""
    step(f"starting the predict clients ({tag}{', paused' if paused else ''})")
    out = texts.with_suffix(f".{tag}.json")  # the Load, written at SIGTERM (not a pipe)
    go = {"BENCH_GO": "stdin"} if paused else {}
    process = subprocess.Popen(
        [sys.executable, __file__, "--predict-worker", url, str(clients), tag],
        env=clean_env(BENCH_TEXTS=str(texts), BENCH_OUT=str(out), **go),
        cwd=ROOT,
        stdin=subprocess.PIPE if paused else None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stderr.readline()
    if "predict clients started" not in line:
        process.kill()
        rest = line + process.communicate()[1]
        raise SystemExit(f"the predict clients did not start: {rest.strip()[-300:]}")
    return PredictWorker(process, out)


def release_predict_worker(worker: PredictWorker) -> None:
    """Let a paused ``--predict-worker``'s clients start calling."""
    step(f"releasing the predict clients (pid {worker.process.pid})")
    worker.process.stdin.write("go\n")
    worker.process.stdin.flush()


async def stop_predict_worker(worker: PredictWorker) -> Load:
    process = worker.process
    step(f"stopping the predict clients (pid {process.pid})")
    process.send_signal(signal.SIGTERM)
    _, err = await asyncio.to_thread(process.communicate, timeout=120)
    if process.returncode != 0:
        raise SystemExit(f"the predict clients failed ({process.returncode}): {err[-300:]}")
    fields = json.loads(worker.out.read_text())
    fields["statuses"] = {int(k): v for k, v in fields["statuses"].items()}
    return Load(**fields)


async def run_load(name: str, url: str, payloads: list[dict], concurrency: int) -> Load:
    step(f"{name}: {len(payloads)} clicks")
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
        with no_collector_pauses():
            t0 = time.perf_counter()
            await asyncio.gather(*(client(http) for _ in range(concurrency)))
            result.seconds = time.perf_counter() - t0
    step(f"{name}: done, {result.statuses} {result.errors[:3]}")
    return result


def count_answers(db: Path, tag: str) -> tuple[int, int]:
    """(answer rows from the load's users, distinct (item, user) pairs among them)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows, pairs = conn.execute(
            "SELECT count(*), count(DISTINCT item_id || ' ' || user_id) FROM answers"
            " WHERE user_id LIKE ?",
            [f"U0{tag}%"],
        ).fetchone()
    return rows, pairs


def descendants(pid: int) -> list[int]:
    """The processes below ``pid``: its children (the fork server, the resource tracker) and
    theirs (the scoring and fit children, forked by the fork server)."""
    found: list[int] = []
    with contextlib.suppress(OSError):  # gone meanwhile
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    return found


def fit_children(pid: int) -> list[dict]:
    """The server's child processes, and theirs (the retrain's fit, the scoring children, the
    fork server they come from) with their niceness, CPU seconds and state (Z: exited, not
    yet reaped)."""
    found = []
    ticks = os.sysconf("SC_CLK_TCK")
    for child in descendants(pid):
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found.append(
            {
                "pid": child,
                "state": fields[0],
                "nice": int(fields[16]),
                "cpu_s": (int(fields[11]) + int(fields[12])) / ticks,
            }
        )
    return found


class FitHold:
    """Keeps the server's fit child stopped (SIGSTOP) while the clicks run, so that the
    retrain is still under way when they come, whatever the machine's load (``--hold-fit``,
    the quick run's way to make "during a retrain" certain; it measures no fit's CPU cost).
    The fit child is the one at FIT_NICENESS; every such child seen is stopped, until
    ``release`` continues them all."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.held: set[int] = set()
        self.task: asyncio.Task | None = None

    def hold_new(self) -> None:
        base = os.getpriority(os.PRIO_PROCESS, self.server_pid)  # the fit adds its own to it
        fit = min(base + FIT_NICENESS, 19)  # Linux's lowest priority (a server run under nice)
        for child in fit_children(self.server_pid):
            if child["nice"] >= fit and child["state"] != "Z":
                if child["pid"] not in self.held:
                    os.kill(child["pid"], signal.SIGSTOP)
                    self.held.add(child["pid"])

    def start(self) -> None:
        async def watch() -> None:
            while True:
                self.hold_new()
                await asyncio.sleep(0.01)  # a benchmark watching another process, not a test

        self.task = asyncio.create_task(watch())

    def live_held(self) -> list[int]:
        alive = {c["pid"] for c in fit_children(self.server_pid) if c["state"] != "Z"}
        return sorted(self.held & alive)

    async def release(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for pid in self.held:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def retrain_state(db: Path) -> dict:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute(
            "SELECT id, started_at, finished_at, status FROM runs WHERE kind = 'retrain'"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
    keys = ("id", "started_at", "finished_at", "status")
    return dict(zip(keys, row, strict=True)) if row else {}


async def wait_for_posts(ft: FakeThread, channel: str, n: int, limit_s: float) -> list[dict]:
    step(f"waiting for {n} questions in {channel}")
    deadline = time.monotonic() + limit_s
    while True:
        messages = [m for m in ft.messages(channel) if m.get("blocks")]
        if len(messages) >= n:
            for m in messages:
                m.setdefault("channel", channel)
            return messages
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(messages)} of {n} questions posted in {limit_s:.0f} s")
        await asyncio.sleep(0.05)  # a benchmark polling another thread, not a test


async def server_phase(
    ft: FakeThread, args, db: Path, kind: str, bare_between: bool
) -> tuple[list[Load], dict]:
    fake = ft.fake
    port = free_port()
    channel = CHANNELS[kind]
    env = serve_env(fake, db, channel, port, args.max_open)
    if args.hitl_labels:  # the label set from settings instead of the database
        with contextlib.closing(sqlite3.connect(db)) as conn:
            labels = [r[0] for r in conn.execute("SELECT DISTINCT label FROM labels ORDER BY 1")]
        env["HITL_LABELS"] = ",".join(labels)
    process = await start_process([sys.executable, "-m", "bot", "serve"], env)
    url = f"http://127.0.0.1:{port}/slack/events"
    loads: list[Load] = []
    info: dict = {}
    tag = "L" if kind == "idle" else "R"
    hold: FitHold | None = None
    try:
        posts = wait_for_posts(ft, channel, args.max_open, 10 + 2 * args.max_open)
        early = kind == "retrain" and args.hold_fit and args.overlap
        if early:  # the retrain is started, its fit held, while the questions are posted
            hold = FitHold(process.pid)
            hold.start()
            retrain = asyncio.ensure_future(start_held_retrain(url, db, channel, hold))
            try:
                messages = await posts
                info["retrain_ack"] = await retrain
            finally:
                retrain.cancel()  # when the posts did not come
        else:
            messages = await posts
        payloads = click_payloads(messages, args.clicks, args.max_open, tag)
        if bare_between:
            loads.append(await bare_phase(fake, payloads, args, "bare Bolt (before)"))
        if kind == "retrain" and not early:
            if args.hold_fit:
                hold = FitHold(process.pid)
                hold.start()
                info["retrain_ack"] = await start_held_retrain(url, db, channel, hold)
            else:
                info["retrain_ack"] = await slash_retrain(url, channel)
                # let the child get past its imports and into the fit before the clicks start
                await asyncio.sleep(args.retrain_lead)
        if kind == "retrain":
            info["retrain_at_start"] = retrain_state(db)
            info["fit_children"] = fit_children(process.pid)
        t0 = time.perf_counter()
        name = "hitl serve" if kind == "idle" else "hitl serve + retrain"
        updates_before = len(fake.calls_to("chat.update"))
        loads.append(await run_load(name, url, payloads, args.concurrency))
        info[f"chat_update_calls_{kind}"] = len(fake.calls_to("chat.update")) - updates_before
        if kind == "retrain":
            info["retrain_at_end"] = retrain_state(db)
            if hold is not None:
                info["fit_held_during_clicks"] = hold.live_held() != []
                await hold.release()
            state = info["retrain_at_end"]
            deadline = time.monotonic() + (0 if args.leave_retrain else args.retrain_wait)
            while state and state["finished_at"] is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # a benchmark watching another process, not a test
                state = retrain_state(db)
            info["retrain_final"] = state
            info["retrain_wait_s"] = time.perf_counter() - t0
        if bare_between:
            loads.append(await bare_phase(fake, payloads, args, "bare Bolt (after)"))
    finally:
        if hold is not None:
            await hold.release()
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


@dataclass
class Mix:
    """Phase 4's database, server and predict clients, as ``mix_setup`` leaves them for
    ``mix_run``."""

    db: Path
    port: int = 0  # the server's, chosen just before its start (--overlap: at the setup's)
    texts: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    payloads: list[dict] = field(default_factory=list)
    predicts: PredictWorker | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def seed_mix(ft: FakeThread, args, mix: Mix) -> None:
    """The mix's database: a champion trained by ``hitl retrain`` on ``--mix-labeled`` labels,
    ``--mix-pending`` items waiting, each with the webhook receiver's callback_url."""
    t0 = time.perf_counter()
    labels, retrain_s = train_seed_champion(mix.db, args.mix_labeled, args.data, args.datasets)
    words = sorted({w for t in mix.texts[:20_000] for w in t.split()})
    grow_backlog(mix.db, 0, args.mix_pending, words, labels)
    hook_url = ft.start_hooks()
    with contextlib.closing(sqlite3.connect(mix.db)) as conn, conn:  # commits, closes
        conn.execute("UPDATE items SET callback_url = ? WHERE status != 'resolved'", [hook_url])
    mix.info["mix_seed"] = (
        f"{args.mix_labeled:,} labels ({len(labels)} classes), retrain "
        f"{retrain_s:.0f} s; {args.mix_pending:,} pending; seeded in "
        f"{time.perf_counter() - t0:.0f} s"
    )


def write_predict_texts(tmp: Path, texts: list[str]) -> Path:
    texts_file = tmp / "predict_texts.json"
    texts_file.write_text(json.dumps(texts[:20_000]))
    return texts_file


async def mix_setup(ft: FakeThread, args, tmp: Path, mix: Mix) -> None:
    """Phase 4 up to its first measured step: the database seeded, the server started, its
    questions posted (``mix.payloads``), /api/predict warmed. With ``--overlap`` (``--quick``)
    this runs while phase 3 does, and the paused predict clients start beside the seeding."""
    channel = CHANNELS["mix"]
    mix.texts, _ = load_mixture(args.data, args.datasets)
    worker = None
    if args.overlap and args.predicts_after_refresh and args.mix_during_rescore:
        # paused: they call only once the refresh asks; their start-up runs beside the seeding
        mix.port = free_port()
        texts_file = write_predict_texts(tmp, mix.texts)
        worker = asyncio.ensure_future(
            asyncio.to_thread(
                start_predict_worker,
                f"{mix.base}/api/predict",
                args.predict_clients,
                texts_file,
                "M",
                paused=True,
            )
        )
    try:
        await asyncio.to_thread(seed_mix, ft, args, mix)
        mix.port = mix.port or free_port()
        env = serve_env(ft.fake, mix.db, channel, mix.port, args.max_open)
        env.update(
            HITL_VOTES="1",
            **(
                {}
                if args.mix_refresh_every is None
                else {"HITL_REFRESH_EVERY": args.mix_refresh_every}
            ),
            HITL_API_TOKEN=TOKEN,
            HITL_WEBHOOK_SECRET=HOOK_SECRET,
            HITL_WEBHOOK_ALLOW="127.0.0.1",
        )
        # the quick run's server logs at INFO (the refresh's fit and gate): a failure shows its log
        verbose = ["-v"] if args.quick else []
        mix.process = await start_process([sys.executable, "-m", "bot", *verbose, "serve"], env)
        messages = await wait_for_posts(ft, channel, args.max_open, 10 + 2 * args.max_open)
        mix.payloads = click_payloads(messages, args.clicks, args.max_open, "M")
        clients = args.predict_clients
        step("warming /api/predict")
        await predict_load(
            f"{mix.base}/api/predict", mix.texts, clients, n=5 * clients, stop=None, tag="Mw"
        )
    finally:
        if worker is not None:
            mix.predicts = await worker


async def end_mix(mix: Mix) -> tuple[int, str]:
    """Stop what phase 4 started: its predict clients (killed if they still run: the run
    failed) and its server."""
    if mix.predicts is not None and mix.predicts.process.poll() is None:
        mix.predicts.process.kill()
        mix.predicts.process.wait()
    if mix.process is None:
        return 0, ""
    return await stop_process(mix.process)


async def mix_phase(ft: FakeThread, args, tmp: Path) -> tuple[list[Load], dict]:
    """Phase 4, the realistic mix: a trained champion, ``--mix-pending`` items waiting (each
    with a callback_url, so a decision sends a webhook), HITL_VOTES=1 (the first click on a
    question decides it: a label, a redraw, a webhook and a new question follow), and
    ``--predict-clients`` clients calling /api/predict the whole time."""
    mix = Mix(tmp / "mix.db")
    try:
        await mix_setup(ft, args, tmp, mix)
    except BaseException:
        await end_mix(mix)
        raise
    return await mix_run(ft, args, tmp, mix)


async def mix_run(ft: FakeThread, args, tmp: Path, mix: Mix) -> tuple[list[Load], dict]:
    """Phase 4 from its first measured step, on what ``mix_setup`` left; the server is
    stopped at the end."""
    db, info, process, base, payloads = mix.db, mix.info, mix.process, mix.base, mix.payloads
    try:
        late = ("chat.postEphemeral", "already decided")
        predict_url = f"{base}/api/predict"
        clients = args.predict_clients
        calls_before = {m: ft.count_calls(*m) for m in (("chat.update", ""), late)}
        hooks_before = ft.hooks_received
        paused = args.predicts_after_refresh and args.mix_during_rescore
        if mix.predicts is None:
            texts_file = write_predict_texts(tmp, mix.texts)
            mix.predicts = await asyncio.to_thread(
                start_predict_worker, predict_url, clients, texts_file, "M", paused=paused
            )
        predicts = mix.predicts
        if not paused:
            await asyncio.sleep(args.load_lead)  # the predict clients are busy before the clicks
        name, measured = "hitl serve, realistic mix", payloads
        if args.mix_during_rescore:
            name += ", re-scoring after a refresh"
            measured = await refresh_first(base, payloads, args, info, db, process.pid)
            if paused:  # --predicts-after-refresh: they start calling once the refresh asks
                release_predict_worker(predicts)
                await asyncio.sleep(args.load_lead)
            scored = [await metric(base, "hitl_items_scored_total")]
        clicks = await run_load(name, f"{base}/slack/events", measured, args.concurrency)
        if args.mix_during_rescore:
            scored.append(await metric(base, "hitl_items_scored_total"))
            at_refresh = info.pop("_scored_at_refresh")
            start, end = (n - at_refresh for n in scored)
            info["rescore_walk"] = (
                f"{args.mix_pending - args.max_open:,} items waiting; the walk had re-scored "
                f"{start:,.0f} when the clicks began, {end:,.0f} when they ended (predicts "
                "included)"
            )
        predict = await stop_predict_worker(predicts)
        predict.name = f"/api/predict during the mix ({args.predict_clients} clients)"
        info["memory"] = process_memory(process.pid)
    finally:
        stop_code, rest = await end_mix(mix)
    # after the stop: the server finishes what its listeners do after an ack (the "already
    # decided" notes, the redraws) before it exits
    calls = {m: ft.count_calls(*m) - n for m, n in calls_before.items()}
    stored, pairs = count_answers(db, "M")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        decided, outbox = conn.execute(
            "SELECT count(DISTINCT l.item_id), (SELECT count(*) FROM deliveries d"
            " WHERE d.item_id IN (SELECT item_id FROM answers WHERE user_id LIKE 'U0M%'))"
            " FROM labels l JOIN answers a ON a.item_id = l.item_id WHERE a.user_id LIKE 'U0M%'"
        ).fetchone()
    clicks.stored = stored
    if stop_code != 0 or "Traceback" in rest:
        last = rest.strip().splitlines()[-1:] or [""]
        clicks.note += f"server exit {stop_code} ({last[0][-120:]}); "
    clicks.note += (
        f"{pairs} distinct (item, user); {decided} items decided by a click ({outbox} webhooks "
        f"queued, {ft.hooks_received - hooks_before} received), {calls[late]} later clicks told "
        f"already decided; {calls[('chat.update', '')]} chat.update"
    )
    info["mix_predicts"] = len(predict.latencies)
    floor = await bare_phase(ft.fake, payloads, args, "bare Bolt (after the mix)")
    return [clicks, predict, floor], info


def process_memory(pid: int) -> str:
    """Resident memory of the server and each of its children (the scoring and fit children
    each hold a copy of the model), from /proc; "" where /proc is not there."""

    def rss_mib(p: int) -> float:
        status = Path(f"/proc/{p}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    try:
        parts = [f"server {rss_mib(pid):.0f} MiB"]
        for child in descendants(pid):
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            if "resource_tracker" in cmd:
                kind = "resource tracker"
            elif "forkserver" in cmd and int(fields[1]) == pid:  # its children share its cmdline
                kind = "fork server"
            else:
                kind = f"child (nice {fields[16]})"
            parts.append(f"{kind} {rss_mib(child):.0f} MiB")
        return ", ".join(parts)
    except (OSError, StopIteration, ValueError):
        return ""


async def refresh_first(
    base: str, payloads: list[dict], args, info: dict, db: Path, pid: int
) -> list[dict]:
    """Decide the open questions, each on a label the champion does not predict (so the audit
    gate, which holds out the audit answers, cannot keep the champion), wait until the server
    has fitted and adopted the refresh that follows (HITL_REFRESH_EVERY ≤ the open questions),
    and return the clicks left: they run while the re-scoring walk goes over every waiting
    item. The quick run loads the champion only when an audit question is among them (the
    gate reads no other answer)."""
    first = _not_the_champions_guess(payloads[: args.max_open], db, audits_only=args.quick)
    warm = await run_load("deciding", f"{base}/slack/events", first, args.concurrency)
    if warm.ok != len(first):
        raise SystemExit(f"deciding the open questions failed: {warm.statuses} {warm.errors[:3]}")
    step("waiting for the refresh to be adopted")
    deadline = time.monotonic() + args.refresh_wait
    while (asks := await metric(base, 'hitl_model_version{role="asks"}')) >= 0:
        if time.monotonic() > deadline:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                clicked = conn.execute(
                    "SELECT a.item_id, i.status, count(*) FROM answers a JOIN items i"
                    " ON i.id = a.item_id WHERE a.user_id LIKE 'U0M%' GROUP BY a.item_id"
                ).fetchall()
                resolved = conn.execute(
                    "SELECT count(*) FROM items WHERE status = 'resolved'"
                ).fetchone()[0]
            lines = LOGS.get(pid, "").strip().splitlines()
            log = [line for line in lines if "aiohttp.access" not in line][-20:]  # no requests
            raise SystemExit(
                f"no refresh adopted in {args.refresh_wait:.0f} s (asks v{asks:.0f}); the "
                f"{len(first)} clicks answered (item, status, answers) {clicked}; {resolved} "
                "items resolved; the server's log ends:\n" + "\n".join(log)
            )
        # a benchmark watching another process, not a test (the quick run's refresh takes
        # about a second: its clicks begin closer to the adoption)
        await asyncio.sleep(0.05 if args.quick else 0.2)
    info["_scored_at_refresh"] = await metric(base, "hitl_items_scored_total")
    info["refresh"] = f"r{-asks:.0f} asks"
    return payloads[args.max_open :]


async def metric(base: str, name: str) -> float:
    """One sample of the server's /metrics (``name`` with its labels), -1 when absent."""
    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"{base}/metrics") as response,
    ):
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return -1.0


def champion_guesses(db: Path, ids: Sequence[str]) -> dict[str, str]:
    """The label the champion predicts for each of the items ``ids`` of ``db``."""
    from model.registry import ModelRegistry

    step(f"taking the champion's guesses on {len(ids)} items")
    loaded = ModelRegistry(db.with_name(db.name + ".models")).load_champion()
    if loaded is None:
        raise SystemExit(f"{db}: no champion to answer against")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        texts = [
            conn.execute("SELECT text FROM items WHERE id = ?", [item]).fetchone()[0]
            for item in ids
        ]
    predicted = loaded.classifier.predict(texts)
    return {item: str(label) for item, label in zip(ids, predicted, strict=True)}


def _not_the_champions_guess(
    payloads: list[dict], db: Path, *, audits_only: bool = False
) -> list[dict]:
    """Each payload moved to a label button the champion does not predict for its item. The
    buttons do not tell: the backlog's stored scores are synthetic (``grow_backlog``), so the
    champion's own guess may be any button, the last one included. With ``audits_only``
    only the audit questions' are (a refresh's gate holds out the audit answers, and no
    other: ``Store.audit_answered_since``); the others' go to their last button, and the
    champion is loaded only if there is an audit question among them."""
    from bot.slack.blocks import decode_value

    def label_buttons(payload: dict) -> list[dict]:
        actions = next(b for b in payload["message"]["blocks"] if b["type"] == "actions")
        return [e for e in actions["elements"] if e["action_id"].startswith("hitl.q.label.")]

    items = [decode_value(label_buttons(p)[0]["value"])[0] for p in payloads]
    wanted = items
    if audits_only:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            query = "SELECT reason FROM posts WHERE item_id = ?"
            reasons = {item: {r for (r,) in conn.execute(query, [item])} for item in items}
        # an item whose post is not recorded yet is taken as an audit
        wanted = [item for item in items if not reasons[item] or "audit" in reasons[item]]
    guesses = champion_guesses(db, wanted) if wanted else {}
    out = []
    for payload, item in zip(payloads, items, strict=True):
        buttons = label_buttons(payload)
        guess = guesses.get(item)
        button = next(b for b in reversed(buttons) if decode_value(b["value"])[1] != guess)
        moved = json.loads(json.dumps(payload))
        moved["actions"][0].update(action_id=button["action_id"], value=button["value"])
        out.append(moved)
    return out


async def slash_retrain(url: str, channel: str, text: str = "retrain") -> str:
    """``/hitl retrain`` from the admin, signed; returns the ack's text."""
    step(f"/hitl {text}")
    fields = signing.command_fields(text, ADMIN, channel_id=channel)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        body, headers = signing.signed_command(fields, SECRET)
        async with http.post(url, data=body, headers=headers) as response:
            return (await response.text())[:200]


async def start_held_retrain(url: str, db: Path, channel: str, hold: FitHold) -> str:
    """``/hitl retrain``, its fit child stopped as soon as it shows (``hold`` watches). Should
    the fit end before its child was seen (a very loaded machine), the retrain is asked for
    again (forced: nothing is new), in a child of its own: so this returns with the run under
    way and its fit stopped, on the first try or a later one."""
    for attempt in range(3):
        before = retrain_state(db).get("id")  # the command is acked before its run is recorded

        def ended(before: int | None = before) -> bool:
            state = retrain_state(db)
            return state.get("id") != before and state.get("finished_at") is not None

        ack = await slash_retrain(url, channel, "retrain --force" if attempt else "retrain")
        await until(
            lambda: hold.live_held() != [] or ended(),
            120,
            "the fit child or the retrain's end",
        )
        if not ended():
            return ack
    raise SystemExit("could not hold a retrain's fit in three tries")


async def until(condition, limit_s: float, what: str) -> None:  # noqa: ANN001
    step(f"waiting for {what}")
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"waited {limit_s:.0f} s for {what}")
        await asyncio.sleep(0.01)  # a benchmark watching another process, not a test


async def bare_phase(
    fake: FakeSlack,
    payloads: list[dict],
    args,
    name: str,
    under_predicts: tuple[Path, int, float] | None = None,
) -> Load | tuple[Load, Load]:
    """The bare Bolt floor: ``payloads`` clicked at ``args.concurrency``. With
    ``under_predicts`` = (texts file, clients, lead seconds), the clicks run while that many
    predict clients (a ``--predict-worker``) call the bare server's ``/api/predict``, started
    ``lead`` seconds before; then the clicks' and the predicts' Loads are returned. Each floor
    has a bare server of its own, unless ``args.keep_bare`` (``--quick``): then the first
    floor's server, kept in ``args.bare``, serves the later ones too, until
    ``stop_kept_bare``."""
    if args.keep_bare:
        process, port = await kept_bare(fake, args)
    else:
        process, port = await start_bare(fake)
    try:
        url = f"http://127.0.0.1:{port}/slack/events"
        if under_predicts is None:
            return await run_load(name, url, payloads, args.concurrency)
        texts, clients, lead = under_predicts
        predict_url = f"http://127.0.0.1:{port}/api/predict"
        worker = await asyncio.to_thread(start_predict_worker, predict_url, clients, texts, "bare")
        try:
            await asyncio.sleep(lead)  # the predict clients are busy before the clicks
            clicks = await run_load(name, url, payloads, args.concurrency)
        finally:
            predicts = await stop_predict_worker(worker)
        return clicks, predicts
    finally:
        if not args.keep_bare:
            await stop_process(process)


async def start_bare(fake: FakeSlack) -> tuple[asyncio.subprocess.Process, int]:
    """A ``--bare-server`` process, once it listens, and its port."""
    port = free_port()
    env = clean_env(
        SLACK_BOT_TOKEN=fake.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake.base_url,
        HITL_PORT=str(port),
    )
    return await start_process([sys.executable, __file__, "--bare-server"], env), port


async def kept_bare(fake: FakeSlack, args) -> tuple[asyncio.subprocess.Process, int]:
    """The bare server a ``keep_bare`` run keeps for all its floors, started at the first
    call (``--overlap`` makes that call at the run's start; the floors then wait for it)."""
    if args.bare is None:
        args.bare = asyncio.ensure_future(start_bare(fake))
    return await args.bare


async def stop_kept_bare(args) -> None:
    """Stop the bare server a ``keep_bare`` run kept for its floors (``bare_phase``)."""
    if args.bare is None:
        return
    starting, args.bare = args.bare, None
    try:
        process, _ = await starting
    except (Exception, SystemExit):  # its start failed (the floor that waited for it said so)
        return
    await stop_process(process)


def report(loads: list[Load], info: dict, args) -> str:
    floor = min(lo.p(50) for lo in loads if lo.name.startswith("bare"))
    floor99 = min(lo.p(99) for lo in loads if lo.name.startswith("bare"))
    floor95 = min(lo.p(95) for lo in loads if lo.name.startswith("bare"))
    rows = []
    for lo in loads:
        is_click = not lo.name.startswith("/api/predict")
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
                f"{lo.p(50) / floor:.2f}" if is_click else "–",
                f"{lo.p(95) / floor95:.2f}" if is_click else "–",
                f"{lo.p(99) / floor99:.2f}" if is_click else "–",
                "–" if lo.stored is None else f"{lo.stored:,}",
                lo.note,
            ]
        )
    head = [
        "phase",
        "requests",
        "acked 200",
        "errors",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "per s",
        "p50 / floor",
        "p95 / floor",
        "p99 / floor",
        "answer rows",
        "note",
    ]
    align = "l" + "r" * 12 + "l"
    return markdown_table(head, rows, align) + "\n\n" + json.dumps(info, indent=1)


async def main_async(args) -> int:
    print(machine())
    print(
        f"{args.clicks} clicks, {args.concurrency} clients, {args.max_open} open questions, "
        f"{args.labeled:,} labeled + {args.pending:,} pending items"
        + (", HITL_LABELS set" if args.hitl_labels else "")
    )
    with tempfile.TemporaryDirectory() as tmp, FakeThread() as ft:
        loads, info = [], {}
        mix = Mix(Path(tmp) / "mix.db")
        setup: asyncio.Task | None = None  # phase 4's seeding and start, beside phase 3
        try:
            if args.overlap:
                if args.keep_bare:
                    args.bare = asyncio.ensure_future(start_bare(ft.fake))
                if not args.no_mix:
                    setup = asyncio.create_task(mix_setup(ft, args, Path(tmp), mix))
            seed_db = Path(tmp) / "seed.db"
            csv_path = Path(tmp) / "seed.csv"
            write_seed_csv(csv_path, args.labeled, args.pending, args.data, args.datasets)
            t0 = time.perf_counter()
            imported = await asyncio.to_thread(hitl, seed_db, "import", "-q", str(csv_path))
            print(imported, f"({time.perf_counter() - t0:.0f} s)")
            for kind in ("idle", "retrain"):  # the mix seeds a database of its own (mix_phase)
                shutil.copy(seed_db, Path(tmp) / f"{kind}.db")
            if not args.skip_idle:
                loads, info = await server_phase(ft, args, Path(tmp) / "idle.db", "idle", True)
            if not args.no_retrain:
                more, info = await server_phase(
                    ft, args, Path(tmp) / "retrain.db", "retrain", args.skip_idle
                )
                loads += more
            if setup is not None:
                await setup
                setup = None  # from here mix_run stops what it started
                more, mixed = await mix_run(ft, args, Path(tmp), mix)
            elif not args.no_mix:
                more, mixed = await mix_phase(ft, args, Path(tmp))
            if not args.no_mix:
                loads += more
                info.update(mixed)
        finally:
            if setup is not None:  # the run failed before phase 4: what its setup started
                await asyncio.gather(setup, return_exceptions=True)
                await end_mix(mix)
            await stop_kept_bare(args)
    print(report(loads, info, args))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run for the test suite")
    parser.add_argument(
        "--clicks",
        type=int,
        default=2000,
        help="signed button clicks sent in each click phase (default 2,000; --quick: 60)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=50,
        help="click clients sending them at once (default 50; --quick: 10)",
    )
    parser.add_argument("--max-open", type=int, default=50, help="HITL_MAX_OPEN (≤ 50)")
    parser.add_argument(
        "--labeled",
        type=int,
        default=50_000,
        help="labeled items imported into phases 2-3's database, the retrain's labels "
        "(default 50,000; --quick: 350)",
    )
    parser.add_argument(
        "--pending",
        type=int,
        default=5_000,
        help="unlabeled items imported beside them (default 5,000; --quick: 100)",
    )
    add_data_options(parser, DATASETS, quick="trec")
    parser.add_argument(
        "--retrain-wait", type=float, default=1200, help="seconds to let the retrain finish"
    )
    parser.add_argument(
        "--refresh-wait",
        type=float,
        default=600,
        help="seconds to let the mix's refresh be fitted and adopted (--mix-during-rescore)",
    )
    parser.add_argument(
        "--retrain-lead", type=float, default=15, help="seconds of fitting before the clicks"
    )
    parser.add_argument(
        "--hitl-labels", action="store_true", help="set HITL_LABELS to the imported label set"
    )
    parser.add_argument(
        "--hold-fit",
        action="store_true",
        help="stop the retrain's fit child (SIGSTOP) while the clicks run, so they certainly "
        "come during the retrain (--quick sets it; it then measures no fit's CPU cost)",
    )
    parser.add_argument(
        "--leave-retrain",
        action="store_true",
        help="stop phase 3's server once the clicks are done, its retrain still fitting, instead "
        "of waiting for the retrain's end (--quick sets it)",
    )
    parser.add_argument("--skip-idle", action="store_true", help="skip phase 2 (--quick sets it)")
    parser.add_argument("--no-retrain", action="store_true", help="skip phase 3")
    parser.add_argument("--no-mix", action="store_true", help="skip phase 4 (the realistic mix)")
    parser.add_argument(
        "--mix-labeled", type=int, default=2_000, help="labels the mix's champion learns"
    )
    parser.add_argument(
        "--mix-pending", type=int, default=100_000, help="items waiting in the mix's database"
    )
    parser.add_argument("--predict-clients", type=int, default=20, help="/api/predict clients")
    parser.add_argument(
        "--mix-refresh-every",
        help="HITL_REFRESH_EVERY of the mix's server (default: the product's; 0 turns the "
        "refresh of the working model off)",
    )
    parser.add_argument(
        "--mix-during-rescore",
        action="store_true",
        help="decide the open questions first, wait for the refresh they bring (fitted and "
        "adopted), and time the other clicks while it re-scores every waiting item "
        "(needs --mix-refresh-every at most --max-open)",
    )
    parser.add_argument(
        "--load-lead", type=float, default=1.0, help="seconds of predict load before the clicks"
    )
    parser.add_argument(
        "--predicts-after-refresh",
        action="store_true",
        help="with --mix-during-rescore: the /api/predict clients, started before the deciding "
        "clicks, begin calling once the refresh asks (they still run all through the timed "
        "clicks; --quick sets it, so that they do not take the CPU the refresh's fit needs)",
    )
    parser.add_argument(
        "--keep-bare",
        action="store_true",
        help="one bare Bolt server for every floor instead of one each (--quick sets it)",
    )
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="seed and start phase 4's server, the bare server and the (paused) predict "
        "clients while phase 3 runs, and start phase 3's held retrain while its questions are "
        "posted (--quick sets it; phase 3's figures then share the machine with phase 4's "
        "start)",
    )
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--predict-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_server:
        run_bare_server()
        return 0
    if args.predict_worker:
        url, clients, tag = args.predict_worker
        run_predict_worker(url, int(clients), tag)
        return 0
    args.data, args.datasets = resolve_data(args)
    args.bare = None  # the bare server kept for every floor (--keep-bare): a future (process, port)
    if args.quick:
        # two open questions: the server posts one a second, so a third cost each server
        # a second's wait before its clicks could begin
        args.clicks, args.concurrency, args.max_open = 60, 10, 2
        args.labeled, args.pending = 350, 100  # more than the mix's: its database is its own
        # 25 mix labels (27 with the refresh's): under 30, neither the seed retrain nor the
        # refresh computes a learning curve (model/stopping.py)
        args.mix_labeled, args.mix_pending = 25, 1_000
        args.predict_clients, args.load_lead = 5, 0.2
        args.mix_during_rescore, args.mix_refresh_every = True, "2"
        args.predicts_after_refresh = True
        args.retrain_lead, args.hold_fit, args.leave_retrain = 0.0, True, True
        args.refresh_wait = 120  # a refresh of 27 labels fits in a second alone
        args.skip_idle = True  # phase 3 clicks the same server with its floor around it
        args.keep_bare = True  # its three floors on one bare server (one process, not three)
        args.overlap = True  # phase 4's seeding and server start beside phase 3
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
