"""The log: one event is one line, whatever ids and texts producers send."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.logs import REDACTOR
from bot.sandbox import FakeSlack
from tests.bot.harness import Item, seed
from tests.bot.test_api import post_json, start_api
from tests.fake_slack import CHANNEL

FORGED = "T-1\r\nERROR bot.api: forged line \x1b[31mred\x1b[0m"


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    """What `hitl serve -v` writes: the root handler, with the filter `logs.configure` adds."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(REDACTOR)
    root, bot_logger = logging.getLogger(), logging.getLogger("bot")
    level = bot_logger.level
    root.addHandler(handler)
    bot_logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        bot_logger.setLevel(level)


async def test_an_item_id_with_a_newline_and_an_ansi_escape_is_logged_on_one_line(
    fake_slack: FakeSlack, tmp_path: Path, log: io.StringIO
):
    # The producer API and imports refuse such ids now; a database may hold one from before.
    seed(tmp_path / "hitl.db", [Item(FORGED, "hi")])
    async for bot in start_api(fake_slack, tmp_path):
        response = await post_json(bot, "/api/items", {"items": [{"text": "hi", "id": FORGED}]})
        assert (await response.json())["created"] == 0  # refused: the stored one is posted
        assert await bot.dispatcher.fill() == 1
    lines = log.getvalue().splitlines()
    posted = [line for line in lines if "posted item" in line]
    assert posted == [
        r"INFO bot.slack.dispatch: posted item "
        r"T-1\r\nERROR bot.api: forged line \x1b[31mred\x1b[0m"
        f" to {CHANNEL} (cold_start)"
    ]
    assert not any(line.startswith("ERROR bot.api: forged") for line in lines)
    assert "\x1b" not in log.getvalue() and "\r" not in log.getvalue()


def test_a_traceback_keeps_its_lines_and_the_message_is_escaped(log: io.StringIO):
    logger = logging.getLogger("bot.test_logs")
    try:
        {}["missing"]
    except KeyError:
        logger.exception("lookup of %s failed", "a\nb\x07")
    first, *rest = log.getvalue().splitlines()
    assert first == r"ERROR bot.test_logs: lookup of a\nb\x07 failed"
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "KeyError: 'missing'" and len(rest) >= 3
