"""Defects found by a new user's first 15 minutes with `hitl demo` (/tmp/demofirst, second
batch): open questions asked before the first model are redrawn with its guess; a second demo
on a database in use is told what works for a demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.demo import DemoOptions, load_data, running_demo
from bot.errors import StoreError
from bot.learning.jobs import run_retrain
from bot.sandbox import FakeSlack
from bot.slack.redraw import Redrawer
from bot.store.lock import server_lock
from tests.bot.harness import Bot, make_settings, seed, start_bot
from tests.bot.test_learning import UNLABELED, labeled_items
from tests.bot.test_slack_bot import context_text


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", labeled_items() + UNLABELED)
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), max_open=2)
    async for running in start_bot(fake_slack, settings):
        yield running


async def test_questions_asked_before_the_first_model_show_its_guess_once_promoted(bot: Bot):
    # L6: after "Retrain v1: promoted", the open questions kept "No model yet" until answered.
    assert await bot.dispatcher.fill() == 2
    before = bot.posted()
    assert all("No model yet" in context_text(m) for m in before)
    done = await run_retrain(bot.rt, "cli", force=True)
    assert done.status == "promoted"
    assert len(bot.store.posts_to_redraw()) == 2  # the promotion asked for their redraw
    assert await Redrawer.of(bot.rt).pending() == 0
    asked = {m["ts"] for m in before}
    after = [m for m in bot.posted() if m["ts"] in asked]  # not the retrain's report
    assert len(after) == 2
    for message in after:
        text = context_text(message)
        assert "No model yet" not in text and "Model's guess:" in text, text
        assert "model v1" in text, text


async def test_a_demo_on_a_database_in_use_is_told_the_option_a_demo_reads(tmp_path: Path):
    # L3: the refusal said "(--db or HITL_DB)", and `hitl demo` ignores HITL_DB.
    options = DemoOptions(db=tmp_path / "hitl-demo.db", port=0, retrain_every=0)
    data = load_data(options, warn=lambda line: None)
    with server_lock(options.db), pytest.raises(StoreError) as refused:  # a demo running on it
        async with running_demo(options, data, echo=lambda line: None, background=False):
            pass
    said = str(refused.value)
    assert "is in use by another hitl server or demo" in said, said
    assert "HITL_DB" not in said and said.endswith("hitl --db other.db demo --port 0"), said
