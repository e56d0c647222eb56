"""A DELETE /api/items/{id} leaves no old copy of the item's text in the database file once the
server stops.

The server deletes in one short transaction with ``secure_delete`` on, which zeroes the rows it
removes but not the old copies earlier writes left in the file's unused space (a page split as
items were scored), nor the older pages in the write-ahead log: a look at the file found the
text after the DELETE had answered ``"deleted": true``, and after the server stopped. It cannot
rebuild the file while it serves (the VACUUM holds the write lock; the clicks would wait): it
does as it stops, when an erasure was made while it ran."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from tests.bot.harness import FakeSlack, Item, seed
from tests.bot.test_api import AUTH, start_api
from tests.bot.test_erasure_leftovers import copied_twice, on_disk, scored, text_of


async def test_an_item_deleted_through_the_api_leaves_no_copy_once_the_server_stops(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    db = tmp_path / "hitl.db"
    scored(db)
    twice = copied_twice(db)
    assert twice  # the old copies this is about: a row moved when its page split
    caplog.set_level(logging.INFO, logger="bot.server")
    served = start_api(fake_slack, tmp_path)
    bot = await anext(served)
    for item_id in twice:
        answer = await bot.http.delete(f"/api/items/{item_id}?reason=erasure", headers=AUTH)
        assert answer.status == 200, await answer.text()
    assert all(text_of(i) in on_disk(db) for i in twice)  # while it serves, they are left
    await served.aclose()
    data = on_disk(db)
    assert [i for i in twice if text_of(i) in data] == []
    assert text_of("T-99" if "T-99" not in twice else "T-98") in data  # the others stay
    said = [r.getMessage() for r in caplog.records if "database file" in r.getMessage()]
    assert len(said) == 1 and re.fullmatch(
        rf"rebuilt the database file after {len(twice)} erasure\(s\) made while the server ran,"
        r" so it keeps no old copy of what they removed \(\d+\.\d s\)",
        said[0],
    ), said


async def test_a_server_that_erased_nothing_does_not_rebuild_the_file_as_it_stops(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    db = tmp_path / "hitl.db"
    seed(db, [Item("T-1", "a ticket")])
    caplog.set_level(logging.INFO, logger="bot.server")
    served = start_api(fake_slack, tmp_path)
    await anext(served)
    await served.aclose()
    assert [r.getMessage() for r in caplog.records if "database file" in r.getMessage()] == []
