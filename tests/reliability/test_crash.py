"""Crash durability: an acked click survives `kill -9`; a killed import completes on rerun."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.slack.blocks import block_id_for, encode_value
from bot.store import Store
from tests import signing
from tests.bot.harness import SECRET, Item, make_settings, seed, seed_champion, start_bot
from tests.bot.test_serve_process import free_port, read_until
from tests.fake_slack import CHANNEL
from tests.processes import exits_within

# 120 clicks from 20 concurrent clients, killed after 60 acks: ~20 in flight at the kill, as
# many as with more clicks (the server's CPU per click is the cost of each one more)
N_ITEMS, N_CLICKS, KILL_AFTER = 50, 120, 60


def click_payload(n: int) -> dict:
    item_id, label = f"i{n % N_ITEMS}", ("billing", "bug")[n % 2]
    payload = signing.block_actions_payload(
        f"U{n:04d}", "hitl.q.label.0", encode_value(item_id, label), block_id=block_id_for(item_id)
    )
    payload["actions"][0]["action_ts"] = f"1700000500.{n:06d}"
    return payload


LOGS: dict[int, list[str]] = {}  # pid → the server's stderr lines, read all along


async def start_serve(env: dict[str, str]) -> asyncio.subprocess.Process:
    """Start `hitl serve` and return once it listens; its stderr is read from then on (into
    LOGS), so a full pipe never stops it and a failure can show what it said."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    seen = LOGS.setdefault(process.pid, [])
    await asyncio.wait_for(read_until(process.stderr, "listening on", seen), 60)

    async def drain(stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            seen.append(line.decode())

    DRAINS.add(asyncio.create_task(drain(process.stderr)))
    return process


DRAINS: set[asyncio.Task] = set()


async def send_clicks(
    url: str,
    numbers: list[int],
    acked: set[int],
    on_ack: Callable[[], None] | None = None,
    failed: dict[int, str] | None = None,
) -> None:
    """Send the clicks from 20 concurrent clients; ``on_ack`` runs after each 200; ``failed``
    gets why each other click was not acknowledged."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in numbers:
        queue.put_nowait(n)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            body, headers = signing.signed_action(click_payload(n), SECRET)
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status == 200:
                        acked.add(n)
                        if on_ack is not None:
                            on_ack()
                    elif failed is not None:
                        failed[n] = f"HTTP {response.status}: {(await response.text())[:200]}"
            except (TimeoutError, aiohttp.ClientError) as exc:
                if failed is not None:  # (else: the server died under this request)
                    failed[n] = f"{type(exc).__name__}: {exc}"

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(20)))


BILLING_BUG = ["billing", "billing", "bug", "bug"]


def descendants_of(pid: int) -> list[int]:
    """The processes below ``pid``: its children and theirs (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(
                    int(entry.name)
                )
    found, todo = [], [pid]
    while todo:
        below = parents.get(todo.pop(), [])
        found += below
        todo += below
    return found


async def test_every_acked_click_survives_kill_9(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    db = tmp_path / "hitl.db"
    seed(db, [Item(f"i{n}", f"ticket {n} about an invoice or a crash") for n in range(N_ITEMS)])
    # a model to score with, so that the server has its scoring children when it is killed
    seed_champion(db, ["an invoice to pay", "a refund", "the app crashes", "an error"], BILLING_BUG)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "HITL_"))},
        "SLACK_BOT_TOKEN": fake_slack.token,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake_slack.base_url,
        "HITL_CHANNEL": CHANNEL,
        "HITL_LABELS": "billing,bug",
        "HITL_DB": str(db),
        "HITL_PORT": str(port),
        "HITL_VOTES": "25",  # three clicks per item never decide it: every click is an answer
        "HITL_MAX_OPEN": "1",
    }
    url = f"http://127.0.0.1:{port}/slack/events"
    process = await start_serve(env)
    acked: set[int] = set()

    children: list[int] = []

    def kill_midway() -> None:
        if len(acked) == KILL_AFTER:
            # the fork server, the resource tracker, and the scoring children they started
            children.extend(descendants_of(process.pid))
            process.send_signal(signal.SIGKILL)  # the other clients' requests die in flight

    await send_clicks(url, list(range(N_CLICKS)), acked, kill_midway)
    assert await process.wait() == -signal.SIGKILL
    assert KILL_AFTER <= len(acked) < N_CLICKS
    assert len(children) >= 3  # the server had its scoring children when it was killed
    # no child outlives the killed server (each would keep a model in memory for good)
    assert [pid for pid in children if not exits_within(pid, 30)] == []

    with Store.open(db) as store:  # straight after the crash
        assert store.integrity_check() == "ok"
        stored = {(a["item_id"], a["user_id"]) for a in store.iter_answers()}
        for n in acked:
            assert (f"i{n % N_ITEMS}", f"U{n:04d}") in stored, f"acked click {n} was lost"

    # Restart; clients send everything again. The server the kill needed a process of its own;
    # the restart does not: the app `hitl serve` runs, on the same database, in this process
    # (a second interpreter and fork server cost ~6 s of CPU)
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), votes=25, max_open=1)
    assert settings.db == db
    async for bot in start_bot(fake_slack, settings):
        again: set[int] = set()
        failed: dict[int, str] = {}
        url = str(bot.http.make_url("/slack/events"))
        await send_clicks(url, list(range(N_CLICKS)), again, failed=failed)
        first = sorted(failed.items())[:5]
        log = caplog.text[-4000:]
        assert again == set(range(N_CLICKS)), f"{len(failed)} not acked, first {first}; log:\n{log}"
    with Store.open(db) as store:
        assert store.integrity_check() == "ok"
        answers = [(a["item_id"], a["user_id"]) for a in store.iter_answers()]
        assert len(answers) == len(set(answers)) == N_CLICKS  # every click once, none twice


def rows_csv(n: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "text"])
    for i in range(n):
        writer.writerow([f"r{i}", f"row {i}: the export button does nothing"])
    return out.getvalue()


def replace_with_file(path: Path, content: str) -> None:
    path.unlink()
    path.write_text(content, encoding="utf-8")


async def test_an_import_killed_midfile_completes_on_rerun_without_duplicates(tmp_path: Path):
    db, fifo = tmp_path / "hitl.db", tmp_path / "items.csv"
    os.mkfifo(fifo)
    content = rows_csv(5000)
    head = content[: content.index("r2500,")]  # 2,500 rows arrive; then the writer stalls
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "-v",
        "--db",
        str(db),
        "import",
        str(fifo),
        stderr=asyncio.subprocess.PIPE,
    )
    writer_done = threading.Event()

    def write_head() -> None:
        try:
            with open(fifo, "w", encoding="utf-8") as pipe:
                pipe.write(head)
                pipe.flush()
                writer_done.wait(60)  # keep the pipe open: the importer waits for more
        except BrokenPipeError:  # the importer died early: the assertions below say so
            pass

    writer = threading.Thread(target=write_head)
    writer.start()
    try:
        seen: list[str] = []
        await asyncio.wait_for(
            read_until(process.stderr, "committed rows through line 2001", seen), 60
        )
        process.send_signal(signal.SIGKILL)  # mid-file: rows 2001-2500 were read, not committed
        assert await process.wait() == -signal.SIGKILL
    finally:
        writer_done.set()
        if process.returncode is None:
            process.kill()
        # An importer that never opened the fifo leaves the writer blocked in open(): a
        # reader of our own lets it through, so a failing run fails instead of hanging.
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join()
        await process.wait()
    with Store.open(db) as store:
        assert store.db["items"].count == 2000
    await asyncio.to_thread(replace_with_file, fifo, content)
    # the rerun in this process (the kill needed a process of its own; a rerun does not)
    rerun = await asyncio.to_thread(
        CliRunner().invoke, cli, ["--db", str(db), "import", str(fifo)], prog_name="hitl"
    )
    assert rerun.exit_code == 0, rerun.output
    assert rerun.stdout.strip() == (
        "items.csv: read 5,000 rows, imported 3,000 (0 with labels), 2,000 duplicates, 0 rejected"
    )
    with Store.open(db) as store:
        assert store.integrity_check() == "ok"
        ids = [row[0] for row in store.db.execute("SELECT id FROM items")]
        assert len(ids) == len(set(ids)) == 5000
