"""An Undo of a decision whose label was retired since takes its "its label was retired" review
with it.

With HITL_VOTES=1 a person answers `billing`, an admin retires `billing` (the item waits in
/hitl review, "its label was retired"), and the person clicks Undo within the window: the item
is an open question again, with no label. The Undo closed the decision's low_agreement and
contradicted reviews but not its retired one, so /hitl review went on counting and showing an
open question as "its label was retired", even after `/hitl labels add billing`. Through the
real server: signed button, Undo, slash commands and the review modal; and the real CLI.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from bot.sandbox import FakeSlack
from tests.bot.harness import Bot
from tests.bot.test_api import start_api
from tests.bot.test_retired_counts import hitl
from tests.bot.test_retired_counts import imported as import_rows
from tests.bot.test_undo_flows import click_undo

LABELS = ("billing", "bug", "account", "how_to")
ITEMS = [
    {"id": "g1", "text": "The app crashes on start", "label": "bug"},
    {"id": "a1", "text": "Please delete my account", "label": "account"},
    {"id": "u1", "text": "How do I export my data?"},
]
RETIRED = "its label was retired"


def imported(tmp_path: Path) -> Path:
    return import_rows(tmp_path, ITEMS)


async def reply(bot: Bot, text: str) -> str:
    response = await bot.command(text, "U0ADMIN")
    assert response.status == 200
    body = await response.text()
    return json.loads(body)["text"] if body.startswith("{") else body


async def review_text(bot: Bot, n: int) -> str:
    """What /hitl review shows an admin (the modal's blocks)."""
    assert (await bot.command("review", "U0ADMIN", trigger_id=f"trig.{n}")).status == 200
    return json.dumps((await bot.fake.next_call("views.open")).reply["view"]["blocks"])


async def test_an_undo_after_the_label_was_retired_closes_its_retired_review(
    fake_slack: FakeSlack, tmp_path: Path
):
    imported(tmp_path)
    async for bot in start_api(fake_slack, tmp_path, labels=LABELS, max_open=1, votes=1):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        assert (await bot.action(bot.button_payload(message, "U0ANA", "billing"))).status == 200
        await bot.settled()
        assert bot.store.get_item("u1")["status"] == "resolved"

        assert (await reply(bot, "labels retire billing")).startswith("Done. Labels now: ")
        await bot.settled()
        assert bot.store.pending_review_count() == 1
        assert RETIRED in await review_text(bot, 1)

        assert (await click_undo(bot, "U0ANA", message)).startswith("Undone: `billing`")
        assert bot.store.get_item("u1")["status"] == "posted"
        # an open question: nothing of it waits in review
        assert bot.store.pending_review_count() == 0
        assert RETIRED not in await review_text(bot, 2)

        # the label added back leaves nothing pending either
        assert (await reply(bot, "labels add billing")).startswith("Done. Labels now: ")
        await bot.settled()
        assert bot.store.pending_review_count() == 0
        assert RETIRED not in await review_text(bot, 3)
        assert bot.store.get_item("u1")["status"] == "posted"


def test_adding_the_label_back_closes_a_retired_review_an_undo_left_pending(tmp_path: Path):
    """A database an older version left with such a review (an open item, no label): `hitl
    labels add` of the retired label closes it."""
    db = imported(tmp_path)
    assert hitl(db, "labels", "add", "how_to").exit_code == 0  # a set of two once bug goes
    assert hitl(db, "labels", "retire", "bug").exit_code == 0
    # closed, and committed (a Connection's own `with` only commits)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "INSERT INTO reviews (item_id, reason, detail, created_at)"
            " VALUES ('u1', 'retired', 'bug was retired', '2026-01-01T00:00:00+00:00')"
        )
    pending = "SELECT item_id FROM reviews WHERE decided_at IS NULL ORDER BY item_id"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute(pending).fetchall() == [("g1",), ("u1",)]
    result = hitl(db, "labels", "add", "bug")
    assert result.exit_code == 0, result.output
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute(pending).fetchall() == []
        assert conn.execute("SELECT decision FROM reviews WHERE item_id = 'u1'").fetchall() == [
            ("undone",)
        ]
