"""`hitl serve` as a real process: it posts, takes a signed click, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from bot.sandbox import FakeSlack
from bot.store import Store
from tests import signing
from tests.bot.harness import SECRET, Item, seed
from tests.fake_slack import CHANNEL


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


async def test_serve_runs_answers_and_shuts_down_cleanly(fake_slack: FakeSlack, tmp_path: Path):
    db = tmp_path / "hitl.db"
    seed(db, [Item("a", "refund please"), Item("b", "app crashes"), Item("c", "hello")])
    port = free_port()
    env = {
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
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    seen: list[str] = []
    try:
        await asyncio.wait_for(read_until(process.stderr, "listening on", seen), 60)
        await fake_slack.wait_for(
            lambda: len(fake_slack.calls_to("chat.postMessage")) >= 2, timeout=30
        )
        message = fake_slack.messages(CHANNEL)[0]
        actions = next(b for b in message["blocks"] if b["type"] == "actions")
        button = actions["elements"][0]
        payload = signing.block_actions_payload(
            "U0ANA", button["action_id"], button["value"], message_ts=message["ts"],
            block_id=actions["block_id"], message=message,
        )  # fmt: skip
        body, headers = signing.signed_action(payload, SECRET)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/slack/events"
            async with http.post(url, data=body, headers=headers) as response:
                assert response.status == 200
        with Store.open(db) as store:  # a second connection: the answer is committed
            assert [a["user_id"] for a in store.iter_answers()] == ["U0ANA"]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 60)
    rest = (await process.stderr.read()).decode()
    assert code == 0, "".join(seen) + rest
    assert "shutting down" in rest
    assert "Traceback" not in "".join(seen) + rest
