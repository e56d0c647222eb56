"""Defects an outside tester met in the first minutes of `hitl demo` (demofirst): App Home's
counts after labeling from it, Bolt's developer hint for an unknown command, the start-up
lines, and /hitl stats' "Items:" line with gold questions waiting."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.demo import DemoOptions, load_data, running_demo
from bot.demo.data import DemoItem
from bot.demo.run import CHANNEL, Demo, describe, stopped_early_line
from bot.learning.reports import stats_text
from tests.bot.test_sandbox import start_labeling_from_home

QUESTIONS = CHANNEL[0]


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    options = DemoOptions(db=tmp_path / "demo.db", port=0, size=60, retrain_every=0, pace=0.0)
    async with running_demo(options, load_data(options), echo=lambda line: None) as running:
        yield running


def home_text(demo: Demo, user: str) -> str:
    return str(demo.fake.home[user]["blocks"])


async def test_home_shows_the_labels_given_from_it_once_the_labeling_window_closes(demo: Demo):
    """Slack sends no app_home_opened when a modal over Home closes: the modal asks for
    view_closed (notify_on_close, on every redraw too) and the app publishes Home again."""
    await demo.sandbox.open_home("U0RAJ")
    await demo.fake.wait_for(lambda: "U0RAJ" in demo.fake.home, 5)
    assert "This week you labeled *0 items*" in home_text(demo, "U0RAJ")
    await start_labeling_from_home(demo, "U0RAJ")
    for _ in range(3):
        modal = demo.sandbox.modal_for("U0RAJ")
        assert modal is not None and modal["notify_on_close"] is True
        actions = next(b for b in modal["blocks"] if b["type"] == "actions")
        label = next(e for e in actions["elements"] if ".label." in e["action_id"])
        await demo.sandbox.click(
            "U0RAJ", action_id=label["action_id"], block_id=actions["block_id"], view_id=modal["id"]
        )
        await demo.rt.background.drain()
    modal = demo.sandbox.modal_for("U0RAJ")
    assert modal is not None and modal["notify_on_close"] is True  # still, after views.update
    assert "This week you labeled *0 items*" in home_text(demo, "U0RAJ")  # under the modal
    reply = await demo.sandbox.close_view("U0RAJ", modal["id"])
    assert reply is not None and reply.status == 200
    await demo.rt.background.drain()
    assert "This week you labeled *3 items*" in home_text(demo, "U0RAJ")
    assert "1. <@U0RAJ> — 3 labels" in home_text(demo, "U0RAJ")  # the leaderboard too


async def test_the_modal_of_hitl_label_asks_for_view_closed_but_publishes_no_home(demo: Demo):
    """Every window asks for view_closed, whose close ends the hold on the item it showed
    (``bot.slack.holds``); only a modal opened from App Home has a Home to redraw under it."""
    await demo.sandbox.command("U0ANA", QUESTIONS, "/hitl label")
    await demo.rt.background.drain()
    modal = demo.sandbox.modal_for("U0ANA")
    assert modal is not None and modal["notify_on_close"] is True
    reply = await demo.sandbox.close_view("U0ANA", modal["id"])
    assert reply is not None and reply.status == 200
    await demo.rt.background.drain()
    assert "U0ANA" not in demo.fake.home


async def test_an_unknown_command_is_not_sent_to_the_app(
    demo: Demo, caplog: pytest.LogCaptureFixture
):
    """Slack answers a command no app registered and sends the app nothing; sent, Bolt printed
    its "[Suggestion] @app.command(...)" developer hint to the demo's terminal."""
    caplog.set_level(logging.INFO)
    reply = await demo.sandbox.command("U0ANA", QUESTIONS, "/foo bar")
    assert reply.status == 404
    texts = [m["text"] for m in demo.sandbox.timeline("U0ANA", QUESTIONS) if m["ephemeral"]]
    assert texts == ["/foo is not a valid command. Try /hitl help."]
    assert "Suggestion" not in caplog.text and "Unhandled request" not in caplog.text


async def test_the_start_up_lines_say_what_retrain_every_0_and_careless_alone_do(tmp_path: Path):
    options = DemoOptions(db=tmp_path / "demo.db", port=0, size=60, retrain_every=0, careless=True)
    async with running_demo(options, load_data(options), background=False) as demo:
        lines = describe(demo)
    [model] = [line for line in lines if line.lstrip().startswith("model")]
    assert model.endswith("retrained only on /hitl retrain (--retrain-every 0)")
    [simulated] = [line for line in lines if line.lstrip().startswith("simulated")]
    assert simulated == "  simulated  cal: careless, 50% wrong on purpose"


async def test_the_start_up_line_names_each_teammates_rate(tmp_path: Path):
    options = DemoOptions(
        db=tmp_path / "demo.db", port=0, size=60, simulate=2, error_rate=0.2, careless=True
    )
    async with running_demo(options, load_data(options), background=False) as demo:
        lines = describe(demo)
    [model] = [line for line in lines if line.lstrip().startswith("model")]
    assert model.endswith("retrained every 20 labels")
    [simulated] = [line for line in lines if line.lstrip().startswith("simulated")]
    names = [t.name for t in demo.teammates]
    assert simulated == (
        f"  simulated  {names[0]}, {names[1]}: answer with the true labels, 20% wrong on purpose;"
        f" {names[2]}: careless, 50% wrong on purpose"
    )


async def test_the_items_line_of_stats_counts_the_gold_questions_waiting(tmp_path: Path):
    options = DemoOptions(db=tmp_path / "demo.db", port=0, size=60, careless=True)
    async with running_demo(options, load_data(options), background=False) as demo:
        store = demo.rt.store
        gold = store.count_items()["gold"]
        total = sum(store.count_items().values())
        text = stats_text(store, demo.settings, datetime.now(UTC))
    [items] = [line for line in text.splitlines() if line.startswith("*Items:*")]
    assert gold > 0
    assert f"({gold} of them gold questions)" in items
    numbers = re.findall(r"(\d+) (?:waiting|posted|resolved|decided|skipped)", items)
    assert sum(int(n) for n in numbers) == total


async def test_the_start_up_and_stopping_lines_write_counts_with_thousands_separators(demo: Demo):
    """As the rest of the CLI writes them (1,234 items): the held-out count was "1234", and
    the line saying why a simulation stopped early wrote its counts as bare numbers."""
    held = [DemoItem(f"h{n}", f"held-out text {n}", "billing") for n in range(1234)]
    big = dataclasses.replace(demo, data=dataclasses.replace(demo.data, holdout=held))
    [database] = [line for line in describe(big) if line.lstrip().startswith("database")]
    assert database.endswith(" items to label, 1,234 held out to score the model)")
    assert stopped_early_line(2500, 1200, 1300, 1200, 5000) == (
        "The pool has 2,500 items (1,200 with a label to answer with; 1,300 without one skipped"
        " and set aside); stopping at 1,200 answers (not 5,000)."
    )
