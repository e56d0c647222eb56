"""The producer API against input an outside tester tried (producer 3, 5, 6): an id sent with
whitespace around it was stored trimmed, so GET and DELETE by the id sent answered 404 (an
erasure request told "no such item" while the text stayed stored) and ``"T-4\\n"`` slipped past
the rule against control characters; a body in a list of codings (``gzip, gzip``) or in one the
server does not know (``compress``) was read as if uncompressed ("not valid UTF-8", or a plain
body labelled ``compress`` taken); an unknown field's name was echoed whole, twice.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest

from bot.api import bodies
from bot.sandbox import FakeSlack
from tests.bot.harness import Bot
from tests.bot.test_api import AUTH, post_json, start_api, stored
from tests.bot.test_api_contract import tracebacks
from tests.bot.test_openapi import check_answer


@pytest.fixture
async def api(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    async for bot in start_api(fake_slack, tmp_path):
        yield bot


# -- 3: an id with whitespace around it ---------------------------------------------------------

SPACED = [
    (" T-1 ", "starts and ends with a space"),
    ("T-2\u00a0", "ends with a space (U+00A0 NO-BREAK SPACE)"),
    ("\u3000T-3", "starts with a space (U+3000 IDEOGRAPHIC SPACE)"),
]


@pytest.mark.parametrize(("sent", "said"), SPACED, ids=["space", "nbsp", "ideographic"])
async def test_an_id_with_whitespace_around_it_is_refused_not_stored_trimmed(
    api: Bot, sent: str, said: str
):
    response = await post_json(api, "/api/predict", {"text": f"text of {sent}", "id": sent})
    body = await response.json()
    assert response.status == 400, body
    assert body == {
        "error": f"id {sent!r} {said}; send the id without spaces around it",
        "field": "id",
    }
    check_answer("/api/predict", "POST", 400, body)
    assert stored(api) == 0
    # the same in a batch: that item is rejected on its own, the good one beside it stored
    items = [{"text": "a good one", "id": "G-1"}, {"text": f"text of {sent}", "id": sent}]
    response = await post_json(api, "/api/items", {"items": items})
    assert response.status == 200
    answer = await response.json()
    assert (answer["created"], answer["rejected"]) == (1, 1)
    assert answer["results"][1] == {
        "index": 1,
        "id": None,
        "result": "rejected",
        "error": f"items[1].id {sent!r} {said}; send the id without spaces around it",
        "field": "items[1].id",
    }
    check_answer("/api/items", "POST", 200, answer)
    assert api.store.existing_item_ids(["G-1", sent, sent.strip()]) == {"G-1"}


async def test_an_id_with_a_control_character_at_an_end_is_refused_as_one_anywhere(api: Bot):
    """``"T-4\\n"`` (an id read from a CRLF line) was stored as ``T-4``; the README refuses an
    id with a control character, as ``"T\\n4"`` is."""
    control = "id has a control character (a newline, a tab, NUL, …); send an id without them"
    for n, sent in enumerate(["T-4\n", "\tT-5", "T-6\r\n", "T\n4"]):
        response = await post_json(api, "/api/predict", {"text": f"text {n}", "id": sent})
        assert (response.status, await response.json()) == (400, {"error": control, "field": "id"})
        items = {"items": [{"text": f"text {n}", "id": sent}]}
        answer = await (await post_json(api, "/api/items", items)).json()
        assert answer["results"][0]["error"] == f"items[0].{control}"
    assert stored(api) == 0


async def test_get_and_delete_by_a_spaced_id_name_the_item_stored_without_the_spaces(api: Bot):
    """An item stored under ``T-1`` (by `hitl import`, which trims a cell, or by the API before
    it refused such ids): a path id ``" T-1 "`` is another id, and the 404 says which one is
    stored; the item is not deleted."""
    response = await post_json(api, "/api/predict", {"text": "refund my order", "id": "T-1"})
    assert response.status == 200
    said = {
        "error": 'no item with id " T-1 "; there is one with id "T-1", without the spaces '
        "around it (ids are compared as given)",
        "field": "id",
    }
    path = f"/api/items/{quote(' T-1 ', safe='')}"
    got = await api.http.get(path, headers=AUTH)
    assert (got.status, await got.json()) == (404, said)
    check_answer("/api/items/{id}", "GET", 404, said)
    gone = await api.http.delete(path, headers=AUTH)
    assert (gone.status, await gone.json()) == (404, said)
    assert api.store.get_item("T-1") is not None
    # an id with no such twin keeps the plain 404
    other = await api.http.get(f"/api/items/{quote(' T-9 ', safe='')}", headers=AUTH)
    assert (await other.json())["error"] == 'no item with id " T-9 "'
    # spaces inside an id are part of it, kept as sent; an integer id is its digits
    for sent in ("T 7", "工单\u3000八", 9):
        response = await post_json(api, "/api/predict", {"text": f"text of {sent}", "id": sent})
        assert (response.status, (await response.json())["id"]) == (200, str(sent))
        found = await api.http.get(f"/api/items/{quote(str(sent), safe='')}", headers=AUTH)
        assert (found.status, (await found.json())["id"]) == (200, str(sent))
    # an id of only blanks is empty, as before
    response = await post_json(api, "/api/predict", {"text": "blank id", "id": " \u3000 "})
    assert (response.status, await response.json()) == (
        400,
        {"error": "id is empty; leave it out to use a hash of the text", "field": "id"},
    )
    assert stored(api) == 4


# -- 5: Content-Encoding lists and codings the server does not decode ---------------------------


def _body(n: int) -> bytes:
    return json.dumps({"text": f"Refund my order {n}", "id": f"E{n}"}).encode()


async def test_a_body_compressed_twice_is_decoded_in_order(api: Bot):
    coded = {
        "gzip, gzip": lambda b: gzip.compress(gzip.compress(b)),
        "deflate, gzip": lambda b: gzip.compress(zlib.compress(b)),
        "GZIP,deflate": lambda b: zlib.compress(gzip.compress(b)),
        "identity, gzip": gzip.compress,
        "identity": lambda b: b,
    }
    for n, (header, code) in enumerate(coded.items()):
        headers = {**AUTH, "Content-Encoding": header}
        response = await api.http.post("/api/predict", data=code(_body(n)), headers=headers)
        assert response.status == 200, (header, await response.text())
    assert stored(api) == len(coded)
    assert api.store.get_item("E0")["text"] == "Refund my order 0"


@pytest.mark.parametrize("path", ["/api/predict", "/api/items"])
@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("compress", "compress"),
        ("x-compress", "x-compress"),
        ("snappy", "snappy"),
        ("gzip, br", "br"),
        ("Zstd, gzip", "zstd"),
    ],
)
async def test_a_coding_the_server_does_not_decode_is_a_415_naming_it(
    api: Bot, caplog: pytest.LogCaptureFixture, path: str, header: str, named: str
):
    """A plain JSON body labelled ``compress`` was stored as if it were not compressed."""
    raw = _body(0) if path == "/api/predict" else json.dumps({"items": [{"text": "x"}]}).encode()
    with caplog.at_level(logging.INFO):
        response = await api.http.post(path, data=raw, headers={**AUTH, "Content-Encoding": header})
    body = await response.json()
    assert response.status == 415, body
    assert response.headers["Accept-Encoding"] == "gzip, deflate"
    assert body == {
        "error": f"the body's Content-Encoding {named} is not supported; send it as gzip or "
        "deflate, or uncompressed",
        "field": "body",
    }
    assert tracebacks(caplog) == []
    assert stored(api) == 0


async def test_a_list_of_codings_is_bounded_and_a_bomb_inside_one_is_still_a_413(api: Bot):
    thrice = gzip.compress(gzip.compress(gzip.compress(_body(0))))
    headers = {**AUTH, "Content-Encoding": "gzip, gzip, gzip"}
    response = await api.http.post("/api/predict", data=thrice, headers=headers)
    assert (response.status, response.headers["Accept-Encoding"]) == (415, "gzip, deflate")
    assert (await response.json())["error"] == (
        f"the body's Content-Encoding lists 3 codings, over the limit of {bodies.MAX_CODINGS}; "
        "send it compressed once with gzip or deflate, or uncompressed"
    )
    # 5 MB of spaces compressed twice is a few hundred bytes; the inner pass stops at the limit
    bomb = gzip.compress(gzip.compress(b'{"text": "' + b" " * 5_000_000 + b'"}'))
    assert len(bomb) < 20_000
    headers = {**AUTH, "Content-Encoding": "gzip, gzip"}
    response = await api.http.post("/api/predict", data=bomb, headers=headers)
    assert response.status == 413
    assert (await response.json())["field"] == "body"
    assert stored(api) == 0


# -- 6: an unknown field's name, cut ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "prefix", "where"),
    [
        ("/api/predict", {"text": "x", "k" * 100_000: 1}, "", None),
        ("/api/items", {"items": [{"text": "x", "k" * 100_000: 1}]}, "items[0].", 0),
        ("/api/items", {"items": [], "k" * 100_000: 1}, "", None),
    ],
    ids=["predict", "item", "items-body"],
)
async def test_an_unknown_field_s_long_name_is_cut_in_the_answer(
    api: Bot, path: str, body: dict, prefix: str, where: int | None
):
    response = await post_json(api, path, body)
    answer = await response.json()
    said = answer["results"][where] if where is not None else answer
    shown = f"{prefix}{'k' * 59}…"
    assert said["field"] == shown
    assert said["error"].startswith(f"{shown} is not a known field; ")
    assert len(await response.read()) < 1_000
    assert stored(api) == 0
