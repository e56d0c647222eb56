"""`/hitl accuracy` counts the questions answered as they are now (an outside test, finding 5:
"Accuracy now: not estimated: it needs 30 questions a model asked answered, has 0 so far"
right under "Live accuracy on audit posts … n=8" and "Agreement on uncertain posts … n=12").
The reason is written at a model's fit; it was shown unchanged until the next one, all day
after a nightly retrain with HITL_REFRESH_EVERY=0."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.learning import stopping as learning_stopping
from bot.learning.jobs import run_retrain
from bot.sandbox import FakeSlack
from tests.bot.harness import make_settings, remembered_curve, seed, start_bot
from tests.bot.test_accuracy_now_unasked import ASKED, answer
from tests.bot.test_learning import labeled_items
from tests.bot.test_stopping import accuracy_text


async def test_accuracy_now_counts_the_questions_answered_since_the_models_fit(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(learning_stopping, "_curve", remembered_curve)
    seed(tmp_path / "hitl.db", labeled_items("A") + labeled_items("B") + ASKED)
    settings = make_settings(
        fake_slack, tmp_path, labels=("billing", "bug"), max_open=1, audit_rate=0.0,
        threshold=1.0, refresh_every=0,
    )  # fmt: skip
    async for bot in start_bot(fake_slack, settings):
        await run_retrain(bot.rt, "cli")  # v1, fitted when no question was answered
        assert "has 0 so far" in await accuracy_text(bot)
        await answer(bot, 6)  # six questions v1 asked, answered; no model update since
        text = await accuracy_text(bot)
        [(asked,)] = bot.store.db.execute(
            "SELECT count(*) FROM posts p JOIN labels l ON l.item_id = p.item_id"
            " WHERE p.model_version = 1 AND p.confidence IS NOT NULL"
        )
        assert asked == 6
        # the same reply counts them where it shows live accuracy
        assert re.search(r"\*Agreement on uncertain posts\*.*\(n=6\)", text), text
        assert (
            "*Accuracy now:* not estimated: it needs 30 questions a model asked answered, has 6"
            " so far\n" in text + "\n"
        ), text
