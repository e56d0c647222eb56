"""`hitl serve` as a real process: it posts, takes a signed click, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

import bot as package_under_test
from bot.sandbox import FakeSlack
from bot.store import Store
from tests import signing
from tests.bot.harness import SECRET, Item, seed
from tests.fake_slack import CHANNEL

# Where `python -m bot` finds the bot under test, also when the tests run from another checkout.
CHECKOUT = Path(package_under_test.__file__).parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> None:
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError(f"process ended before {needle!r}: {''.join(seen)}")
        seen.append(line)
        if needle in line:
            return


def mapped_files(pid: int) -> str:
    """The files ``pid`` has mapped: its shared libraries among them (Linux's /proc)."""
    return Path(f"/proc/{pid}/maps").read_text()


def child_commands(pid: int) -> list[str]:
    """The command lines of ``pid``'s child processes (Linux's /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                out.append(
                    Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
    return out


def serve_env(fake_slack: FakeSlack, db: Path, port: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "HITL_"))},
        "SLACK_BOT_TOKEN": fake_slack.token,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake_slack.base_url,
        "HITL_CHANNEL": CHANNEL,
        "HITL_LABELS": "billing,bug,greeting",
        "HITL_DB": str(db),
        "HITL_PORT": str(port),
        "HITL_MAX_OPEN": "2",
    }


async def test_serve_runs_answers_and_shuts_down_cleanly(fake_slack: FakeSlack, tmp_path: Path):
    db = tmp_path / "hitl.db"
    seed(db, [Item("a", "refund please"), Item("b", "app crashes"), Item("c", "hello")])
    port = free_port()
    env = serve_env(fake_slack, db, port)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    seen: list[str] = []
    try:
        await asyncio.wait_for(read_until(process.stderr, "listening on", seen), 60)
        # no model yet, so no child to fork: no fork server importing scikit-learn for nothing
        assert not [c for c in child_commands(process.pid) if "forkserver" in c]
        # nor does the server import it (or scipy) before it listens: ~2 s on two cores
        maps = mapped_files(process.pid)
        assert "/sklearn/" not in maps and "/scipy/" not in maps
        await fake_slack.wait_for(
            lambda: len(fake_slack.calls_to("chat.postMessage")) >= 2, timeout=30
        )
        message = fake_slack.messages(CHANNEL)[0]
        actions = next(b for b in message["blocks"] if b["type"] == "actions")
        button = actions["elements"][0]
        payload = signing.block_actions_payload(
            "U0ANA",
            button["action_id"],
            button["value"],
            message_ts=message["ts"],
            block_id=actions["block_id"],
            message=message,
        )
        body, headers = signing.signed_action(payload, SECRET)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/slack/events"
            async with http.post(url, data=body, headers=headers) as response:
                assert response.status == 200
        with Store.open(db) as store:  # a second connection: the answer is committed
            assert [a["user_id"] for a in store.iter_answers()] == ["U0ANA"]
        # start-up's objects are out of the collector's sight: a full collection (~70 ms on
        # the event loop when it walked them) skips them
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                metrics = await response.text()
        frozen = next(line for line in metrics.splitlines()
                      if line.startswith("hitl_python_gc_frozen_objects "))  # fmt: skip
        assert float(frozen.split()[1]) > 50_000, frozen
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 60)
    rest = (await process.stderr.read()).decode()
    assert code == 0, "".join(seen) + rest
    assert "shutting down" in rest
    output = "".join(seen) + rest
    assert "Traceback" not in output
    # Nothing went wrong, so nothing is logged at the default level; the person still sees
    # that the server is up, and where.
    assert "WARNING" not in output and "will be unused" not in output
    assert f"slack-hitl listening on http://127.0.0.1:{port} (database {db})\n" in seen


async def test_a_port_in_use_is_one_line_and_nothing_else_prints_a_traceback(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The bind fails after start-up (Slack checked, background tasks running): they stop
    without a word. (With a champion, the fork server and the scoring children stop quietly too;
    that run costs ~10 s of model loading, so it is not repeated here.)"""
    db = tmp_path / "hitl.db"
    seed(db, [Item("a", "refund please"), Item("b", "app crashes")])
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "serve",
            env=serve_env(fake_slack, db, port),
            stderr=asyncio.subprocess.PIPE,
            cwd=CHECKOUT,
        )
        try:
            output = (await asyncio.wait_for(process.stderr.read(), 60)).decode()
            code = await asyncio.wait_for(process.wait(), 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert code == 1, output
    assert output == (
        f"Error: port {port} on 127.0.0.1 is in use (another hitl serve?): "
        "stop it or set HITL_PORT / --port\n"
    )


async def test_a_server_asked_with_sigabrt_prints_where_every_thread_is(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A server that hangs (a stop that never ends) can be asked where it waits."""
    db = tmp_path / "hitl.db"
    seed(db, [Item("a", "refund please")])
    env = serve_env(fake_slack, db, free_port())
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        env=env,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)),  # no core file
    )
    seen: list[str] = []
    try:
        await asyncio.wait_for(read_until(process.stderr, "listening on", seen), 60)
        process.send_signal(signal.SIGABRT)
        code = await asyncio.wait_for(process.wait(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = "".join(seen) + (await process.stderr.read()).decode()
    assert code == -signal.SIGABRT, output
    assert "Fatal Python error: Aborted" in output, output
    # every thread's stack (the worker threads' too), the main one down to the command
    assert "Current thread 0x" in output and "Thread 0x" in output.replace("Current thread", "")
    assert "bot/cli.py" in output


async def test_a_limit_of_open_files_the_server_cannot_serve_under_is_one_line(
    fake_slack: FakeSlack, tmp_path: Path
):
    """With `ulimit -n 32` the server said "listening on" and accepted no connection (an
    outside test on a small machine): it now refuses to start, saying what it needs."""
    db = tmp_path / "hitl.db"
    seed(db, [Item("a", "refund please")])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", env=serve_env(fake_slack, db, free_port()),
        stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32)),
    )  # fmt: skip
    try:
        code = await asyncio.wait_for(process.wait(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = (await process.stderr.read()).decode()
    assert code == 1, output
    assert "listening on" not in output and "Traceback" not in output
    assert output.splitlines()[-1] == (
        "Error: the limit of open files is 32 (ulimit -n): hitl serve needs at least 64 (its"
        " database files and children's pipes take about 30, and each connection one); raise it"
        " with `ulimit -n 4096` before `hitl serve`, or LimitNOFILE=4096 under systemd"
    )


# -- Socket Mode while Slack cannot be reached (issue 15, point 9) -----------------------------


def socket_mode_env(db: Path, api_url: str, token: str, app_token: str) -> dict[str, str]:
    seed(db, [Item("a", "refund please")])
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "HITL_"))},
        "SLACK_BOT_TOKEN": token,
        "SLACK_APP_TOKEN": app_token,
        "SLACK_API_URL": api_url,
        "HITL_CHANNEL": CHANNEL,
        "HITL_LABELS": "billing,bug",
        "HITL_DB": str(db),
        "HITL_PORT": str(free_port()),
    }


async def read_lines_until(stream: asyncio.StreamReader, needle: str, count: int, seen: list[str]):
    """Read until `count` lines contain `needle` (case-insensitive)."""
    found = 0
    while found < count:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError(f"process ended before {needle!r}: {''.join(seen)}")
        seen.append(line)
        found += needle.lower() in line.lower()


async def stop_and_collect(process, sig: int, seen: list[str]) -> tuple[int, str]:
    process.send_signal(sig)
    try:
        code = await asyncio.wait_for(process.wait(), 15)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(
            f"{signal.Signals(sig).name} did not stop it: {''.join(seen)}"
        ) from None
    return code, "".join(seen) + (await process.stderr.read()).decode()


SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}


@pytest.fixture(scope="module", autouse=True)
def unreachable_servers(tmp_path_factory: pytest.TempPathFactory):
    """A Socket Mode server for each signal test below, both started as this module's first
    test begins: each spends ~3 s before its first "retrying" line (start-up, then slack_sdk's
    two retries of the unreachable auth.test, 0.5 + 1 s, inside the first attempt), which now
    runs beside the tests before them instead of in them. Each signal test signals its own
    server; one left at the end (its test not selected) is killed. Values: (process, URL)."""
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    for name in SIGNALS:
        unreachable = f"http://127.0.0.1:{free_port()}/api/"  # nothing listens there
        db = tmp_path_factory.mktemp(f"unreachable-{name}") / "hitl.db"
        env = socket_mode_env(db, unreachable, "xoxb-1", "xapp-1")
        process = subprocess.Popen(  # in the database's folder, as the tests' own folder
            [sys.executable, "-m", "bot", "serve"], env=env, stderr=subprocess.PIPE, cwd=db.parent
        )
        servers[name] = (process, unreachable)
    try:
        yield servers
    finally:
        for process, _ in servers.values():
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stderr.close()


def read_retry_line(process: subprocess.Popen, seen: list[str]) -> None:
    """Read ``process``'s stderr up to its first line that says it is retrying (blocking: in a
    thread)."""
    while True:
        line = process.stderr.readline().decode()
        if not line:
            raise AssertionError(f"process ended before 'retrying': {''.join(seen)}")
        seen.append(line)
        if "retrying" in line.lower():
            return


@pytest.mark.parametrize("name", list(SIGNALS))
async def test_socket_mode_with_slack_unreachable_stops_on_a_signal_without_a_traceback(
    unreachable_servers: dict[str, tuple[subprocess.Popen, str]], name: str
):
    process, unreachable = unreachable_servers[name]
    sig = SIGNALS[name]
    seen: list[str] = []
    try:
        await asyncio.wait_for(asyncio.to_thread(read_retry_line, process, seen), 60)
    finally:
        process.send_signal(sig)
        try:
            code = await asyncio.wait_for(asyncio.to_thread(process.wait), 15)
        except TimeoutError:
            process.kill()
            raise AssertionError(f"{name} did not stop it: {''.join(seen)}") from None
    output = "".join(seen) + (await asyncio.to_thread(process.stderr.read)).decode()
    assert code == (130 if sig == signal.SIGINT else 0), output  # Ctrl-C: 130, as shells expect
    assert "Traceback" not in output
    retries = [line for line in output.splitlines() if "retrying" in line.lower()]
    assert retries and all("cannot reach Slack" in r and unreachable in r for r in retries)
    assert "retrying in 1 s" in retries[0]  # HITL_CONNECT_RETRY's default


async def test_socket_mode_retries_a_failed_connection_one_line_at_a_time(
    fake_slack: FakeSlack, tmp_path: Path
):
    from tests.fake_socket_mode import FakeSocketMode

    fake_slack.socket_url = f"ws://127.0.0.1:{free_port()}/link"  # the websocket is unreachable
    env = socket_mode_env(
        tmp_path / "hitl.db", fake_slack.base_url, fake_slack.token, fake_slack.app_token
    )
    # the backoff doubles from HITL_CONNECT_RETRY (default 1 s, as the tests below see): a
    # twentieth of it here, so that this test does not wait out 1 + 2 s
    env["HITL_CONNECT_RETRY"] = "0.05"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    socket = FakeSocketMode()
    seen: list[str] = []
    try:
        await asyncio.wait_for(read_lines_until(process.stderr, "retrying", 2, seen), 60)
        assert len(fake_slack.calls_to("apps.connections.open")) >= 2  # a fresh URL each time
        fake_slack.socket_url = await socket.start()  # Slack is back
        await asyncio.wait_for(read_until(process.stderr, "listening on", seen), 60)
        await socket.wait_connected(timeout=10)
    finally:
        code, output = await stop_and_collect(process, signal.SIGTERM, seen)
        await socket.close()
    assert code == 0, output
    assert "Traceback" not in output
    retries = [line for line in output.splitlines() if "retrying" in line.lower()]
    assert all("Socket Mode: cannot connect to Slack" in line for line in retries), retries
    assert "retrying in 0.05 s" in retries[0] and "retrying in 0.1 s" in retries[1]  # backoff
    assert "connected to Slack in Socket Mode\n" in seen


async def test_a_second_server_on_the_same_database_refuses_to_start_until_the_first_is_gone(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Two servers on one database would each post the queue's questions: every question
    twice. The second refuses with one line naming the first; once the first is gone, even by
    kill -9, a server starts."""
    db = tmp_path / "hitl.db"
    seed(db, [Item("a", "refund please"), Item("b", "app crashes"), Item("c", "hello")])
    started: list[asyncio.subprocess.Process] = []

    async def start() -> asyncio.subprocess.Process:
        env = serve_env(fake_slack, db, free_port())
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", env=env, stderr=asyncio.subprocess.PIPE
        )
        started.append(process)
        return process

    try:
        first = await start()
        await asyncio.wait_for(read_until(first.stderr, "listening on", []), 60)
        # The second starts while the first posts its questions (one a second per channel, the
        # dispatcher's pace): its ~1 s start-up overlaps that second instead of following it.
        second = await start()
        code = await asyncio.wait_for(second.wait(), 60)
        error = (await second.stderr.read()).decode()
        await fake_slack.wait_for(
            lambda: len(fake_slack.calls_to("chat.postMessage")) >= 2, timeout=30
        )
        assert code == 1, error
        [line] = error.strip().splitlines()
        assert line.startswith(
            f"Error: {db} is in use by another hitl server or demo (pid {first.pid} "
        )
        assert "Stop that one first, or give this one another database (--db or HITL_DB)" in line
        posted = [c.params["metadata"]["event_payload"]["item_id"]
                  for c in fake_slack.calls_to("chat.postMessage")]  # fmt: skip
        assert sorted(posted) == sorted(set(posted))  # no question went out twice
        assert first.returncode is None  # the first one goes on
        first.kill()  # no clean stop: the kernel drops its lock
        await first.wait()
        third = await start()
        await asyncio.wait_for(read_until(third.stderr, "listening on", []), 60)
        third.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(third.wait(), 60) == 0
    finally:
        for process in started:
            if process.returncode is None:
                process.kill()
                await process.wait()
