"""Many people at once: votes counted exactly, an item resolved once; one retrain or rollback
at a time."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bot.learning.jobs import run_retrain
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Item, make_settings, seed, start_bot
from tests.bot.test_learning import (
    SlowLoads,
    hitl_here,
    labeled_items,
    rollback_reply,
    rollback_report,
)
from tests.fake_slack import CHANNEL


async def test_twenty_people_answer_the_same_item_at_once(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("hot", "card charged twice and the app crashed")])
    settings = make_settings(fake_slack, tmp_path, votes=3, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        message = bot.posted()[0]
        users = [f"U{n:03d}" for n in range(20)]
        labels = ["billing" if n % 3 else "bug" for n in range(20)]
        payloads = [bot.button_payload(message, u, lb) for u, lb in zip(users, labels, strict=True)]
        responses = await asyncio.gather(*(bot.action(p) for p in payloads))
        assert [r.status for r in responses] == [200] * 20
        await bot.settled()

        answers = list(bot.store.iter_answers())
        assert len(answers) == 20 and {a["user_id"] for a in answers} == set(users)
        [resolved] = list(bot.store.iter_export())  # resolved once
        tally = bot.store.tally("hot")
        decided = resolved["annotators"]
        assert resolved["votes"] == len(decided) == 2  # a majority of 3
        assert all(tally.votes[resolved["label"]][i] == decided[i] for i in range(2))
        shown = json.dumps(bot.fake.message(CHANNEL, message["ts"]), ensure_ascii=False)
        at_end = _at_resolution(bot.store, "hot")
        winners = " · ".join(f"*`{label}`* {len(voters)}" for label, voters in at_end.items())
        assert f"✅ *`{resolved['label']}`* by vote ({winners}" in shown


def _at_resolution(store: Store, item_id: str) -> dict[str, list[str]]:
    """The tally as it stood when the item was decided: the answers up to the one that decided
    it (``labels.decided_by``); later ones are history only. Not by time: an answer stored just
    after the decision can carry the decision's millisecond when twenty come at once."""
    rows = store.db.execute(
        "SELECT a.label, a.user_id FROM answers a JOIN labels l ON l.item_id = a.item_id"
        " WHERE a.item_id = ? AND a.id <= l.decided_by AND a.label IS NOT NULL ORDER BY a.id",
        [item_id],
    )
    votes: dict[str, list[str]] = {}
    for label, user_id in rows:
        votes.setdefault(label, []).append(user_id)
    return votes


async def test_two_retrains_started_at_once_one_runs(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", labeled_items())
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))
    async for bot in start_bot(fake_slack, settings):
        first, second = await asyncio.gather(
            run_retrain(bot.rt, "<@U0ADMIN>"), run_retrain(bot.rt, "cli")
        )
        assert sorted([first.status, second.status]) == ["busy", "promoted"]
        assert len(bot.rt.registry.versions()) == 1
        assert [r["status"] for r in bot.store.runs("retrain")] == ["promoted"]


async def test_a_slack_rollback_and_a_cli_rollback_at_once_leave_registry_and_db_agreeing(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`/hitl rollback 1` is loading its model file when `hitl rollback 2` runs in another
    process: the CLI is told a rollback is running, and the registry, the database and the
    server all end on v1."""
    db = tmp_path / "hitl.db"
    seed(db, labeled_items())
    for args in (["retrain"], ["retrain", "--force"], ["retrain", "--force"]):
        assert (await hitl_here(db, *args))[0] == 0  # v1, v2 retired; v3 champion
    cli: dict[str, subprocess.CompletedProcess] = {}

    def cli_rollback_while_loading(slow: SlowLoads) -> None:
        try:
            if slow.entered.wait(60):
                cli["result"] = subprocess.run(
                    [sys.executable, "-m", "bot", "--db", str(db), "rollback", "2"],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
        finally:
            slow.release.set()

    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))
    async for bot in start_bot(fake_slack, settings):
        slow = SlowLoads(monkeypatch)  # the server's loads from now on; not the CLI's
        other = threading.Thread(target=cli_rollback_while_loading, args=(slow,))
        other.start()
        try:
            ack = await rollback_reply(bot, "rollback 1")
        finally:
            await asyncio.to_thread(other.join, 180)
        assert ack == "Rolling back to v1… I'll tell you here when it is done."
        assert await rollback_report(bot) == (
            "Model v1 is the champion again (rolled back by <@U0ADMIN>)."
        )
        result = cli["result"]
        assert result.returncode == 1
        assert result.stderr.startswith(
            "Error: cannot roll back: a rollback to v1 by @U0ADMIN is already running ("
        ) and result.stderr.endswith("); try again when it is done\n")
        assert not slow.watchdog_fired

        registry = {v.version: v.status for v in bot.rt.registry.versions()}
        database = {m["version"]: m["status"] for m in bot.store.models()}
        assert registry == database == {1: "champion", 2: "retired", 3: "retired"}
        assert bot.rt.champion.version == 1
        assert bot.store.db["locks"].count == 0
