"""The producer API through real HTTP on loopback: auth, predict, items, item lookup, bad input.

Also home to the helpers the other API test files import (`start_api`, `champion`, `AUTH`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from bot.api.routes import ITEM, ApiError, ApiItem, ItemSchema, RequestSchema, parse_item
from bot.ingest import item_id_for_text
from bot.runtime import Champion
from bot.sandbox import FakeSlack
from model.classifier import TextClassifier
from tests.bot.harness import LABELS, Bot, make_settings, start_bot

TOKEN = "api-token-for-tests"
WEBHOOK_SECRET = "webhook-secret-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

TRAINING = [
    ("I was charged twice for my subscription", "billing"),
    ("Refund the annual plan please", "billing"),
    ("My invoice shows the wrong amount", "billing"),
    ("The app crashes when I open settings", "bug"),
    ("Login page is blank on Safari", "bug"),
    ("Export button throws an error", "bug"),
    ("Please delete my account", "account"),
    ("Change the email on my account", "account"),
    ("Reset my account password", "account"),
]


@pytest.fixture(scope="module")
def classifier() -> TextClassifier:
    texts, labels = zip(*TRAINING, strict=True)
    return TextClassifier().fit(list(texts), list(labels))


@pytest.fixture
def champion(classifier: TextClassifier) -> Champion:
    return Champion(version=1, classifier=classifier, n_train=len(TRAINING))


async def start_api(
    fake: FakeSlack, tmp_path: Path, *, champion: Champion | None = None, **changes: Any
) -> AsyncIterator[Bot]:
    """The real app on loopback with the API on (token and webhook secret set)."""
    settings = make_settings(
        fake, tmp_path, **{"api_token": TOKEN, "webhook_secret": WEBHOOK_SECRET, **changes}
    )
    # closed with it: a caller's aclose() stops the server here, not when the garbage collector
    # finds the inner generator (its loop closed by then: the server's cleanup never ran)
    async with contextlib.aclosing(start_bot(fake, settings)) as bots:
        async for bot in bots:
            bot.rt.champion = champion
            yield bot


@pytest.fixture
async def api(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    async for bot in start_api(fake_slack, tmp_path):
        yield bot


async def post_json(bot: Bot, path: str, body: Any, headers: dict | None = None):
    return await bot.http.post(
        path, data=json.dumps(body), headers=AUTH if headers is None else headers
    )


def stored(bot: Bot) -> int:
    return sum(bot.store.count_items().values())


# -- auth --


async def test_closing_start_api_stops_the_server_it_started(fake_slack: FakeSlack, tmp_path: Path):
    """A caller that closes ``start_api`` (the API state machine's teardown) stops the server
    then: its cleanup (the background tasks, the children, the store) runs on the loop still
    open, not later from the garbage collector, whose loop is closed by then."""
    served = start_api(fake_slack, tmp_path)
    bot = await anext(served)
    await served.aclose()
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        bot.store.db.execute("select 1")


async def test_api_without_a_token_set_answers_503_saying_how_to_turn_it_on(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in start_api(fake_slack, tmp_path, api_token=None):
        response = await post_json(bot, "/api/predict", {"text": "hello"})
        assert response.status == 503
        body = await response.json()
        assert "set HITL_API_TOKEN" in body["error"]
        assert stored(bot) == 0


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer{TOKEN}", "Bearer"],
)
async def test_missing_or_wrong_token_gets_401_and_stores_nothing(
    api: Bot, authorization: str | None
):
    headers = {} if authorization is None else {"Authorization": authorization}
    for path, body in (
        ("/api/predict", {"text": "I was charged twice"}),
        ("/api/items", {"items": [{"text": "I was charged twice"}]}),
    ):
        response = await post_json(api, path, body, headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization: Bearer" in (await response.json())["error"]
    assert stored(api) == 0


# -- predict --


async def test_predict_without_a_champion_needs_review_with_no_label(api: Bot):
    response = await post_json(api, "/api/predict", {"text": "  Where is my refund?  "})
    assert response.status == 200
    item_id = item_id_for_text("Where is my refund?")
    assert await response.json() == {
        "id": item_id,
        "label": None,
        "confidence": None,
        "ranked": [],
        "model_version": None,
        "model_label": None,
        "status": "needs_review",
    }
    item = api.store.get_item(item_id)
    assert (item["text"], item["source"], item["status"]) == ("Where is my refund?", "api", "new")
    assert api.rt.dispatcher.woken.is_set()


async def test_predict_with_a_confident_champion_answers_auto(
    fake_slack: FakeSlack, tmp_path: Path, champion: Champion
):
    async for bot in start_api(fake_slack, tmp_path, champion=champion, threshold=0.0):
        response = await post_json(
            bot, "/api/predict", {"text": "I was charged twice", "id": "T-1", "meta": {"a": 1}}
        )
        assert response.status == 200
        body = await response.json()
        assert body["status"] == "auto"
        assert body["id"] == "T-1" and body["model_version"] == 1
        assert body["label"] == body["model_label"] == body["ranked"][0]["label"]
        assert body["confidence"] == body["ranked"][0]["probability"]
        assert len(body["ranked"]) == 3  # the three labels the model knows
        item = bot.store.get_item("T-1")
        assert (item["status"], item["predicted_label"]) == ("auto", body["label"])
        assert item["meta"] == {"a": 1}


async def test_a_predict_never_reads_the_schema_on_the_event_loop(
    fake_slack: FakeSlack, tmp_path: Path, champion: Champion
):
    """Each statement on the server's connection runs on the event loop, where 20 producers'
    predicts queue behind one another: the schema is read once, at start, not per call."""
    async for bot in start_api(fake_slack, tmp_path, champion=champion, threshold=0.0):
        await post_json(bot, "/api/predict", {"text": "warm-up: the first call may look"})
        statements: list[str] = []
        bot.store.db.conn.set_trace_callback(statements.append)
        try:
            response = await post_json(bot, "/api/predict", {"text": "I was charged twice"})
        finally:
            bot.store.db.conn.set_trace_callback(None)
        assert response.status == 200 and (await response.json())["status"] == "auto"
        assert any("INSERT" in s.upper() for s in statements)  # the trace saw the predict
        assert [s for s in statements if "sqlite_master" in s.lower()] == []


async def test_predict_with_an_unsure_champion_needs_review_and_queues_the_item(
    fake_slack: FakeSlack, tmp_path: Path, champion: Champion
):
    async for bot in start_api(fake_slack, tmp_path, champion=champion, threshold=1.0):
        response = await post_json(bot, "/api/predict", {"text": "The app crashes on start"})
        body = await response.json()
        assert response.status == 200
        assert body["status"] == "needs_review"
        assert body["label"] is not None and body["model_version"] == 1
        assert bot.store.get_item(body["id"])["status"] == "queued"
        assert bot.rt.dispatcher.woken.is_set()


async def test_predict_after_people_answered_gives_the_human_label(
    fake_slack: FakeSlack, tmp_path: Path, champion: Champion
):
    async for bot in start_api(fake_slack, tmp_path, champion=champion, threshold=1.0):
        first = await (await post_json(bot, "/api/predict", {"text": "Refund me", "id": 42})).json()
        assert first["id"] == "42" and first["status"] == "needs_review"
        bot.store.record_answer("42", "U1", "praise", source="button", dedupe_key="k1")
        again = await post_json(bot, "/api/predict", {"text": "Refund me", "id": 42})
        body = await again.json()
        assert body["status"] == "resolved"
        assert body["label"] == "praise"
        assert body["model_label"] == first["model_label"] != "praise"
        assert stored(bot) == 1


async def test_an_item_posted_before_the_first_model_is_scored_when_a_producer_asks(
    fake_slack: FakeSlack, tmp_path: Path, champion: Champion
):
    """An item asked in Slack while no model existed had no prediction for good: once a
    champion came, /api/predict answered label null, model_version null for it."""
    async for bot in start_api(fake_slack, tmp_path, champion=None, threshold=1.0):
        first = await (await post_json(bot, "/api/predict", {"text": "Refund me", "id": 7})).json()
        assert first["label"] is None and first["model_version"] is None
        assert await bot.dispatcher.fill() == 1  # posted with no model yet
        assert bot.store.get_item("7")["status"] == "posted"
        bot.rt.champion = champion  # the first model is promoted
        body = await (await post_json(bot, "/api/predict", {"text": "Refund me", "id": 7})).json()
        assert body["status"] == "needs_review"  # still waiting for people in Slack
        assert body["model_version"] == 1 and body["label"] == body["model_label"] is not None
        assert body["ranked"] and body["confidence"] is not None
        assert bot.store.get_item("7")["status"] == "posted"  # the question stays open
        bot.store.record_answer("7", "U1", "praise", source="button", dedupe_key="k1")
        after = await (await post_json(bot, "/api/predict", {"text": "Refund me", "id": 7})).json()
        assert (after["status"], after["label"]) == ("resolved", "praise")


async def test_predict_of_the_same_text_twice_is_one_item(api: Bot):
    first = await (await post_json(api, "/api/predict", {"text": "same words"})).json()
    second = await (await post_json(api, "/api/predict", {"text": "same words"})).json()
    assert first == second
    assert stored(api) == 1


async def test_a_failing_model_leaves_the_item_to_people(fake_slack: FakeSlack, tmp_path: Path):
    class BrokenModel:
        def score(self, texts, top_k):
            raise RuntimeError("model file is corrupt")

    broken = Champion(version=3, classifier=BrokenModel())
    async for bot in start_api(fake_slack, tmp_path, champion=broken):
        response = await post_json(bot, "/api/predict", {"text": "Refund please"})
        assert response.status == 200
        body = await response.json()
        assert (body["status"], body["label"]) == ("needs_review", None)


# -- items --


async def test_items_batch_answers_per_item_and_a_bad_item_sinks_nothing(
    fake_slack: FakeSlack, tmp_path: Path, champion: Champion
):
    async for bot in start_api(fake_slack, tmp_path, champion=champion, threshold=1.0):
        await post_json(bot, "/api/predict", {"text": "known before", "id": "old"})
        items = [
            {"text": "Refund the plan", "id": "a1", "meta": {"channel": "email"}},
            {"id": "a2"},
            {"text": "Refund the plan again", "id": "a1"},
            {"text": "known before", "id": "old"},
            {"text": "Crash on login", "callback_url": "https://example.com/hook"},
            5,
            {"text": "x" * 40_001},
        ]
        response = await post_json(bot, "/api/items", {"items": items})
        assert response.status == 200
        body = await response.json()
        assert (body["created"], body["duplicates"], body["rejected"]) == (2, 1, 4)
        results = body["results"]
        assert [r["result"] for r in results] == [
            "created", "rejected", "rejected", "duplicate", "created", "rejected", "rejected"
        ]  # fmt: skip
        assert results[2]["field"] == "items[2].id"  # "a1" is stored with another text
        assert results[2]["error"].startswith('id "a1" is stored with another text')
        assert [r["index"] for r in results] == list(range(7))
        assert results[1]["field"] == "items[1].text"
        assert results[1]["error"] == "items[1].text is missing; send the item's text as a string"
        assert results[5]["field"] == "items[5]"
        assert results[6]["error"] == (
            "items[6].text is 40,001 characters, over the limit of 40,000"
        )
        generated = item_id_for_text("Crash on login")
        assert results[4]["id"] == generated
        assert bot.store.get_item("a1")["meta"] == {"channel": "email"}
        assert bot.store.get_item("a1")["text"] == "Refund the plan"
        assert bot.store.get_item(generated)["callback_url"] == "https://example.com/hook"
        assert bot.store.get_item(generated)["status"] == "queued"  # scored, below threshold
        assert stored(bot) == 3


async def test_items_takes_1000_and_refuses_1001(api: Bot):
    batch = [{"text": f"item number {n}", "id": f"n{n}"} for n in range(1001)]
    response = await post_json(api, "/api/items", {"items": batch})
    assert response.status == 400
    assert await response.json() == {
        "error": "items has 1,001 items, over the limit of 1,000 per request",
        "field": "items",
    }
    assert stored(api) == 0
    response = await post_json(api, "/api/items", {"items": batch[:1000]})
    assert response.status == 200
    assert (await response.json())["created"] == 1000
    assert stored(api) == 1000


async def test_a_batch_that_fails_midway_stores_none_of_it(api: Bot):
    # the README promises a refused request stored nothing, so the producer sends it again:
    # a batch inserted 100 items a transaction (to yield the event loop between them) kept
    # the first 900 after the last chunk failed, and the retry called them duplicates
    api.store.db.execute(
        "CREATE TRIGGER refuse_one BEFORE INSERT ON items WHEN new.id = 'n950'"
        " BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    batch = [{"text": f"item number {n}", "id": f"n{n}"} for n in range(1000)]
    response = await post_json(api, "/api/items", {"items": batch})
    assert response.status >= 500 and stored(api) == 0
    api.store.db.execute("DROP TRIGGER refuse_one")
    retried = await (await post_json(api, "/api/items", {"items": batch})).json()
    assert (retried["created"], retried["duplicates"]) == (1000, 0) and stored(api) == 1000


# -- one item --


async def test_get_item_shows_text_status_prediction_and_the_human_label(
    fake_slack: FakeSlack, tmp_path: Path, champion: Champion
):
    async for bot in start_api(fake_slack, tmp_path, champion=champion, threshold=1.0):
        await post_json(bot, "/api/items", {"items": [{"text": "Refund me", "id": "T/7"}]})
        response = await bot.http.get("/api/items/T%2F7", headers=AUTH)
        assert response.status == 200
        body = await response.json()
        assert (body["id"], body["text"], body["status"]) == ("T/7", "Refund me", "needs_review")
        assert body["queue_status"] == "queued" and body["source"] == "api"
        assert body["prediction"]["model_version"] == 1
        assert body["human"] is None
        assert body["created_at"] <= body["updated_at"]

        for n, (user, label) in enumerate([("U1", "bug"), ("U2", "billing"), ("U3", "billing")]):
            bot.store.record_answer("T/7", user, label, source="button", dedupe_key=f"k{n}",
                                    votes_needed=3)  # fmt: skip
        body = await (await bot.http.get("/api/items/T%2F7", headers=AUTH)).json()
        assert body["status"] == "resolved"
        human = body["human"]
        assert (human["label"], human["votes"]) == ("billing", 2)
        assert human["agreement"] == pytest.approx(2 / 3)
        assert human["resolved_at"] == body["updated_at"]


async def test_get_unknown_item_is_404_naming_the_id(api: Bot):
    response = await api.http.get("/api/items/nope", headers=AUTH)
    assert response.status == 404
    assert await response.json() == {"error": 'no item with id "nope"', "field": "id"}


@pytest.mark.parametrize("item_id", ["ticket\n42", "a/b\r\nc", "tab\there", "nul\x00", "c1\x85x"])
async def test_an_item_stored_with_a_control_character_in_its_id_can_still_be_read(
    api: Bot, item_id: str
):
    """Rows the API stored before it checked ids (and ones `hitl import` stores) stay
    reachable: the route takes any id, a newline included."""
    api.store.add_api_items([ApiItem(id=item_id, text="Refund me", meta={}, callback_url=None)])
    response = await api.http.get("/api/items/" + quote(item_id, safe=""), headers=AUTH)
    assert response.status == 200
    assert (await response.json())["id"] == item_id


@pytest.mark.parametrize("item_id", ["ticket\n42", "tab\there", "nul\x00x", "del\x7f", "c1\x85x"])
async def test_an_id_with_a_control_character_is_refused_naming_the_field(api: Bot, item_id: str):
    response = await post_json(api, "/api/predict", {"text": "Refund me", "id": item_id})
    assert response.status == 400
    assert await response.json() == {
        "error": "id has a control character (a newline, a tab, NUL, …); send an id without them",
        "field": "id",
    }
    items = {"items": [{"text": "Refund me", "id": item_id}, {"text": "fine", "id": "ok 1"}]}
    body = await (await post_json(api, "/api/items", items)).json()
    assert [(r["result"], r.get("field")) for r in body["results"]] == [
        ("rejected", "items[0].id"),
        ("created", None),
    ]
    assert api.store.get_item(item_id) is None and stored(api) == 1


async def test_unknown_api_path_is_a_json_404_and_wrong_method_a_json_405(api: Bot):
    response = await api.http.get("/api/nothing-here", headers=AUTH)
    assert response.status == 404
    said = (await response.json())["error"]  # what to fix, not aiohttp's "Not Found"
    assert said.startswith('no route "/api/nothing-here"; the routes are POST /api/predict,')
    response = await api.http.get("/api/predict", headers=AUTH)
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert (await response.json())["error"] == '"/api/predict" does not take GET; send POST'


# -- bad input --

LONG = "x" * 40_001

BAD_INPUT = [
    ("/api/predict", b"{not json", "body", "the body is not valid JSON (Expecting property name"),
    ("/api/predict", b"[1, 2]", "body", "the body must be a JSON object"),
    ("/api/predict", b"\xff\xfe{}", "body", "the body is not valid UTF-8"),
    ("/api/predict", b'{"text": NaN}', "body", "the body is not valid JSON (NaN is not"),
    ("/api/predict", b"", "body", "the body is not valid JSON"),
    ("/api/predict", b'{"id": "x"}', "text", "text is missing"),
    ("/api/predict", b'{"text": 5}', "text", "text must be a string"),
    ("/api/predict", b'{"text": "   "}', "text", "text is empty"),
    ("/api/predict", json.dumps({"text": LONG}).encode(), "text",
     "text is 40,001 characters, over the limit of 40,000"),
    ("/api/predict", b'{"text": "\\ud800"}', "text", "text has an invalid Unicode character"),
    ("/api/predict", b'{"text": "hi", "id": true}', "id", "id must be a string or an integer"),
    ("/api/predict", b'{"text": "hi", "id": 1.5}', "id", "id must be a string or an integer"),
    ("/api/predict", b'{"text": "hi", "id": " "}', "id", "id is empty"),
    ("/api/predict", b'{"text": "hi", "meta": [1]}', "meta", "meta must be a JSON object"),
    ("/api/predict", b'{"text": "hi", "meta": {"k": "\\udc80"}}', "meta", "meta has an invalid"),
    ("/api/predict", b'{"text": "hi", "callback_url": "ftp://x.org/"}', "callback_url",
     "callback_url must be an http(s) URL"),
    ("/api/predict", b'{"text": "hi", "callback_url": "https://"}', "callback_url",
     "callback_url must be an http(s) URL"),
    ("/api/predict", b'{"text": "hi", "callback_url": "http://h:99999/"}', "callback_url",
     "callback_url must be an http(s) URL"),
    ("/api/predict", b'{"text": "hi", "callback_url": 7}', "callback_url",
     "callback_url must be an http(s) URL"),
    ("/api/predict", b'{"text": "hi", "colour": "red"}', "colour",
     "colour is not a known field; use text, id, meta, callback_url"),
    ("/api/items", b'{"items": {}}', "items", "items must be a list of items"),
    ("/api/items", b"{}", "items", "items must be a list of items"),
    ("/api/items", b'{"items": [], "more": 1}', "more", "more is not a known field"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "field", "error"), BAD_INPUT)
async def test_bad_input_is_400_naming_the_field_and_stores_nothing(
    api: Bot, path: str, body: bytes, field: str, error: str
):
    response = await api.http.post(path, data=body, headers=AUTH)
    assert response.status == 400
    answer = await response.json()
    assert answer["field"] == field
    assert answer["error"].startswith(error)
    assert stored(api) == 0


async def test_text_of_exactly_40000_characters_is_taken(api: Bot):
    response = await post_json(api, "/api/predict", {"text": "y" * 40_000})
    assert response.status == 200
    assert stored(api) == 1


async def test_callback_url_needs_the_webhook_secret(fake_slack: FakeSlack, tmp_path: Path):
    async for bot in start_api(fake_slack, tmp_path, webhook_secret=None):
        body = {"text": "hi", "callback_url": "https://example.com/hook"}
        response = await post_json(bot, "/api/predict", body)
        assert response.status == 400
        assert await response.json() == {
            "error": "callback_url cannot be used: webhooks are off on this server "
            "(set HITL_WEBHOOK_SECRET to turn them on)",
            "field": "callback_url",
        }
        assert stored(bot) == 0


async def test_body_over_1_mb_is_413(api: Bot):
    big = json.dumps({"items": [{"text": "z" * 30_000}] * 36}).encode()
    assert len(big) > 1024 * 1024
    response = await api.http.post("/api/items", data=io.BytesIO(big), headers=AUTH)
    assert response.status == 413
    assert (await response.json())["field"] == "body"
    assert stored(api) == 0


async def test_chunked_body_over_1_mb_is_413(api: Bot):
    async def chunks():
        for _ in range(40):
            yield b"z" * 30_000

    response = await api.http.post("/api/predict", data=chunks(), headers=AUTH)
    assert response.status == 413
    assert (await response.json())["error"].startswith("the body is over the limit of 1 MB")
    assert stored(api) == 0


# -- the checks come from the OpenAPI document -----------------------------------------


def shipped_document() -> dict[str, Any]:
    return json.loads((resources.files("bot.api") / "openapi.json").read_bytes())


def refusal(schema: ItemSchema, raw: Any) -> tuple[str, str | None]:
    with pytest.raises(ApiError) as caught:
        schema.parse(raw, WEBHOOK_SECRET)
    return caught.value.message, caught.value.field


def test_item_limits_are_the_ones_in_the_openapi_document():
    document = shipped_document()
    fields = document["components"]["schemas"]["ItemIn"]["properties"]
    fields["text"]["maxLength"] = 10
    fields["id"]["maxLength"] = 3
    strict = ItemSchema(document)

    assert refusal(strict, {"text": "eleven char"}) == (
        "text is 11 characters, over the limit of 10",
        "text",
    )
    assert refusal(strict, {"text": "ok", "id": "abcd"}) == ("id is over 3 characters", "id")
    assert strict.parse({"text": "  exactly 10  ", "id": 123}, None).text == "exactly 10"
    assert parse_item({"text": "eleven char", "id": "abcd"}, None).id == "abcd"  # the shipped one


def test_the_batch_limit_is_the_one_in_the_openapi_document():
    document = shipped_document()
    document["components"]["schemas"]["ItemsIn"]["properties"]["items"]["maxItems"] = 2
    with pytest.raises(ApiError) as caught:
        RequestSchema(document, "ItemsIn", shallow=True).check({"items": [{}, {}, {}]})
    assert (caught.value.message, caught.value.field) == (
        "items has 3 items, over the limit of 2 per request",
        "items",
    )


def test_a_schema_rule_without_words_of_its_own_still_gets_one_line_naming_the_field():
    document = shipped_document()
    document["components"]["schemas"]["ItemIn"]["properties"]["text"]["pattern"] = "^[a-z ]+$"
    message, field = refusal(ItemSchema(document), {"text": "SHOUTING " * 50})
    assert (message, field) == ("text does not fit the API's schema (pattern: '^[a-z ]+$')", "text")


KEPT_AS_BEFORE = [
    ({"text": "hi", "id": None, "meta": None, "callback_url": None}, ("ok", "hash", {}, None)),
    ({"text": "hi", "id": 7}, ("ok", "7", {}, None)),
    ({"text": "hi", "id": "  x  "}, ("id '  x  ' starts and ends with a space", "id")),
    ({"text": " " + "y" * 40_000 + " "}, ("ok", "hash", {}, None)),
    ({"text": "hi", "callback_url": "HTTPS://example.com/h"},
     ("ok", "hash", {}, "HTTPS://example.com/h")),
    ({"text": "hi", "id": 1.0}, ("id must be a string or an integer", "id")),
    ({"text": "hi", "id": 10**200}, ("id is over 200 characters", "id")),
    ({"colour": None}, ("colour is not a known field; use text, id, meta, callback_url", "colour")),
    ({"text": "\ud800", "id": True}, ("text has an invalid Unicode character (a lone surrogate)",
                                      "text")),
    ({"text": "hi", "callback_url": "ftp://" + "a" * 2000}, ("callback_url is over 2,000 "
                                                             "characters", "callback_url")),
    ({"text": "hi", "callback_url": "https://exa mple.com/"},
     ("callback_url must be an http(s) URL, e.g. https://example.com/hitl-hook", "callback_url")),
    ({"text": "hi", "callback_url": "https://10.0.0.1/"}, ("callback_url points at",
                                                           "callback_url")),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "expected"), KEPT_AS_BEFORE)
def test_items_are_read_as_before_the_schema_moved(raw: dict[str, Any], expected: tuple):
    """Null means "not given", text and id lose surrounding spaces before the limits, an
    integer id is its digits (1.0 is not one), a URL scheme is case-insensitive, and each field
    is checked in full, schema then code, before the next."""
    if expected[0] != "ok":
        message, field = refusal(ITEM, raw)
        assert (message[: len(expected[0])], field) == expected
        return
    item = parse_item(raw, WEBHOOK_SECRET)
    item_id = item_id_for_text(item.text) if expected[1] == "hash" else expected[1]
    assert (item.id, item.meta, item.callback_url) == (item_id, expected[2], expected[3])


async def test_a_model_from_before_a_rename_answers_under_the_label_in_force(
    fake_slack: FakeSlack, tmp_path: Path, champion: Champion
):
    # After `hitl labels rename billing refunds` and a rollback to a model trained before it,
    # the producer API and webhooks answered "billing", a label that no longer exists (the
    # questions in Slack already showed "refunds").
    async for api in start_api(fake_slack, tmp_path, champion=champion):
        first = await (await post_json(api, "/api/predict", {"text": "Refund my order"})).json()
        assert first["model_label"] == "billing"
        api.store.change_label_set(
            "rename", "billing", "refunds", current=list(LABELS), user_id="U0ADMIN"
        )
        api.store.change_label_set("retire", "bug", current=list(LABELS), user_id="U0ADMIN")
        again = await (await post_json(api, "/api/predict", {"text": "Refund my order"})).json()
        assert again["model_version"] == 1 and again["model_label"] == again["label"] == "refunds"
        named = [r["label"] for r in again["ranked"]]
        assert "refunds" in named and "billing" not in named and "bug" not in named  # retired
        shown = await (await api.http.get(f"/api/items/{first['id']}", headers=AUTH)).json()
        assert shown["prediction"]["label"] == "refunds"
        assert "billing" not in [r["label"] for r in shown["prediction"]["ranked"]]
        api.store.record_answer(first["id"], "U1", "refunds", source="button", dedupe_key="k1")
        assert api.store.webhook_payload(first["id"])["model_label"] == "refunds"


async def test_a_write_lock_held_by_another_process_gets_a_503_with_retry_after(
    api: Bot, caplog: pytest.LogCaptureFixture
):
    """Another process held the write lock (a `sqlite3` shell in BEGIN IMMEDIATE): predict
    and items answered 500 "Something went wrong" and logged a traceback. A producer retries a
    503; to it a 500 is a bug."""
    import sqlite3

    api.store.set_busy_timeout(0)  # refused at once, not after the server's 2 s
    other = sqlite3.connect(api.rt.settings.db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        predicted = await post_json(api, "/api/predict", {"id": "L1", "text": "refund charge"})
        added = await post_json(api, "/api/items", {"items": [{"id": "L2", "text": "refund"}]})
    finally:
        other.execute("ROLLBACK")
        other.close()
    for response in (predicted, added):
        assert response.status == 503 and response.headers["Retry-After"] == "5"
        assert (await response.json()) == {
            "error": "not stored: the database is busy (another process holds its write lock);"
            " retry in 5 s"
        }
    said = [r for r in caplog.records if r.name == "bot.api.routes"]
    # one line, no traceback, for both: a busy producer meets the same refusal on every
    # request, and the log said it once while it lasted (not a line a request)
    assert [r.exc_info for r in said] == [None]
    assert "answered 503" in said[0].getMessage()
    assert "locked by another process" in said[0].getMessage()
    assert stored(api) == 0
    again = await post_json(api, "/api/predict", {"id": "L1", "text": "refund charge"})
    assert again.status == 200 and stored(api) == 1
    other = sqlite3.connect(api.rt.settings.db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the same refusal after a request went through
    try:
        refused = await post_json(api, "/api/items", {"items": [{"id": "L3", "text": "x"}]})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert refused.status == 503
    assert len([r for r in caplog.records if r.name == "bot.api.routes"]) == 2  # said again


async def test_a_full_disk_gets_a_503_that_says_so(api: Bot, caplog: pytest.LogCaptureFixture):
    """The disk is full (here: the database may not grow by a page): a 503 naming it, with
    Retry-After, one log line."""
    pages = api.store.db.execute("PRAGMA page_count").fetchone()[0]
    api.store.db.execute(f"PRAGMA max_page_count = {pages}")
    many = [{"id": f"F{i}", "text": "refund charge " * 500} for i in range(50)]
    response = await post_json(api, "/api/items", {"items": many})
    assert response.status == 503 and response.headers["Retry-After"] == "60"
    body = await response.json()
    assert body == {"error": "not stored: the server's disk is full; retry in 60 s"}
    said = [r for r in caplog.records if r.name == "bot.api.routes"]
    assert len(said) == 1 and said[0].exc_info is None
    assert "the disk is full" in said[0].getMessage()


async def test_a_champion_that_fails_to_load_is_not_a_traceback_per_predict(
    api: Bot, caplog: pytest.LogCaptureFixture
):
    """The database names a champion the server cannot load (its models folder gone): each
    /api/predict of a server with no model tries to load it first, and each logged a full
    traceback (566 log lines for 20 requests). The champion watch says why, once."""
    import shutil

    shutil.rmtree(api.rt.registry.root)
    api.store.db["models"].insert(
        {
            "version": 1,
            "status": "champion",
            "created_at": "2026-12-04T00:00:00+00:00",
            "n_train": 4,
            "label_set": "[]",
            "metrics": "{}",
            "path": "v1.skops",
            "sha256": "0" * 64,
            "reason": "",
        }  # fmt: skip
    )
    for n in range(3):
        response = await post_json(api, "/api/predict", {"id": f"P{n}", "text": "refund"})
        assert response.status == 200 and (await response.json())["model_version"] is None
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info]
    assert loud == []
