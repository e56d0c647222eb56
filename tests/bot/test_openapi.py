"""The OpenAPI document stays true: it names every route the app serves (and no other), its
schemas are valid, answers match them, and a property-based run finds no 500.

The property run generates request bodies from the document's own request schemas (a small
JSON-Schema-to-Hypothesis translation below), plus arbitrary JSON, mutated items and raw bytes.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from bot.api import routes as api_module
from bot.api.routes import openapi_document
from bot.ingest import MAX_TEXT_CHARS
from bot.runtime import Champion
from bot.sandbox import FakeSlack
from bot.store import ITEM_STATUSES
from tests.bot.harness import Bot, Item
from tests.bot.test_api import AUTH, champion, classifier, start_api

__all__ = ["champion", "classifier"]  # fixtures shared with test_api.py

DOC = openapi_document()
SERVED = ("/healthz", "/metrics")


def documented_operations() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in DOC["paths"].items() for method in ops}


def served_operations(bot: Bot) -> set[tuple[str, str]]:
    app = bot.http.server.app
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
        and (route.resource.canonical.startswith("/api/") or route.resource.canonical in SERVED)
    }


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for one schema of the document, its $refs resolved within the document."""
    return Draft202012Validator({**schema, "components": DOC["components"]})


def check_answer(path: str, method: str, status: int, body: Any) -> None:
    """The answer's status is documented for the operation and its body fits the schema."""
    responses = DOC["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, not documented"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    errors = sorted(validator(schema).iter_errors(body), key=str)
    assert errors == [], f"{method} {path} {status}: {errors[0].message}"


@pytest.fixture
async def api(fake_slack: FakeSlack, tmp_path: Path, champion: Champion) -> AsyncIterator[Bot]:
    async for bot in start_api(fake_slack, tmp_path, champion=champion):
        response = await bot.http.post("/api/predict", json={"text": "Refund me", "id": "a"},
                                       headers=AUTH)  # fmt: skip
        assert response.status == 200
        yield bot


def test_document_is_openapi_3_1_with_valid_schemas_and_resolvable_refs():
    assert DOC["openapi"] == "3.1.0"
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    text = json.dumps(DOC)
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs <= set(DOC["components"]["schemas"])
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            assert op["responses"] and op["operationId"] and op["summary"], (method, path)


async def test_every_served_route_is_documented_and_every_documented_route_served(api: Bot):
    served = served_operations(api)
    assert {op for op in served if op[1].startswith("/api/")} >= {("POST", "/api/predict")}
    assert served == documented_operations()


async def test_every_api_route_needs_the_token_and_answers_its_schema(api: Bot):
    for method, path in sorted(documented_operations()):
        if not path.startswith("/api/"):
            continue
        url = path.replace("{id}", "x")
        response = await api.http.request(method, url, json={"text": "hi"})
        assert response.status == 401, (method, path)
        check_answer(path, method, 401, await response.json())


async def test_openapi_json_is_served_and_matches_the_document(api: Bot):
    response = await api.http.get("/api/openapi.json", headers=AUTH)
    assert response.status == 200
    assert await response.json() == json.loads(json.dumps(DOC))


async def test_the_served_document_is_the_shipped_file_the_checks_are_built_from(api: Bot):
    shipped = (resources.files("bot.api") / "openapi.json").read_bytes()
    response = await api.http.get("/api/openapi.json", headers=AUTH)
    assert response.content_type == "application/json"
    assert await response.read() == shipped
    schemas = json.loads(shipped)["components"]["schemas"]
    assert api_module.ITEM.request.schema == schemas["ItemIn"]
    assert api_module.ITEMS.schema["required"] == schemas["ItemsIn"]["required"]
    assert api_module.ITEMS.fields == tuple(schemas["ItemsIn"]["properties"])


def test_the_document_ships_with_the_package_and_agrees_with_hitl_import():
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "openapi.json" in pyproject["tool"]["setuptools"]["package-data"]["bot.api"]
    text = DOC["components"]["schemas"]["ItemIn"]["properties"]["text"]
    assert text["maxLength"] == MAX_TEXT_CHARS  # the same limit for `hitl import`


async def test_happy_answers_match_their_schemas(api: Bot):
    response = await api.http.post("/api/predict", json={"text": "Refund me", "id": "a"},
                                   headers=AUTH)  # fmt: skip
    check_answer("/api/predict", "POST", response.status, await response.json())
    items = {"items": [{"text": "Crash"}, {"nope": 1}, {"text": "Crash"}]}
    response = await api.http.post("/api/items", json=items, headers=AUTH)
    check_answer("/api/items", "POST", response.status, await response.json())
    api.store.record_answer("a", "U1", "billing", source="button", dedupe_key="k1")
    response = await api.http.get("/api/items/a", headers=AUTH)
    check_answer("/api/items/{id}", "GET", response.status, await response.json())
    response = await api.http.get("/healthz")
    check_answer("/healthz", "GET", response.status, await response.json())


async def test_a_gold_question_not_asked_yet_answers_its_schema(api: Bot):
    """`hitl import --gold` stores an item with queue status gold until it is asked."""
    api.store.add_gold([Item("G-1", "Refund the annual plan", label="billing")])
    response = await api.http.get("/api/items/G-1", headers=AUTH)
    body = await response.json()
    assert body["queue_status"] == "gold"
    check_answer("/api/items/{id}", "GET", response.status, body)
    statuses = DOC["components"]["schemas"]["Item"]["properties"]["queue_status"]["enum"]
    assert set(statuses) == {*ITEM_STATUSES, "gold"}


async def test_a_wrong_method_on_every_documented_path_answers_its_documented_405(api: Bot):
    for path, ops in DOC["paths"].items():
        url = path.replace("{id}", "a")
        method = "PUT"
        assert method.lower() not in ops
        response = await api.http.request(method, url, headers=AUTH)
        assert response.status == 405, (method, path)
        documented = next(iter(ops.values()))["responses"]["405"]
        assert set(response.headers["Allow"].split(",")) >= {m.upper() for m in ops}
        if path.startswith("/api/"):  # the API's errors are JSON; /healthz and /metrics text
            check_answer(path, next(iter(ops)), 405, await response.json())
        else:
            assert response.content_type in documented["content"]


async def test_answers_about_a_callback_url_match_their_schemas(api: Bot):
    hook = {"callback_url": "https://example.com/hook"}
    response = await api.http.post("/api/predict", json={"text": "Refund me", "id": "a", **hook},
                                   headers=AUTH)  # fmt: skip
    body = await response.json()
    assert body["callback"] == "registered"
    check_answer("/api/predict", "POST", response.status, body)
    other = {"text": "Refund me", "id": "a", "callback_url": "https://example.com/other"}
    response = await api.http.post("/api/predict", json=other, headers=AUTH)
    body = await response.json()
    assert body["callback"] == "not_registered"
    check_answer("/api/predict", "POST", response.status, body)
    items = {"items": [other, {"text": "Crash", **hook}]}
    response = await api.http.post("/api/items", json=items, headers=AUTH)
    body = await response.json()
    assert [r["callback"] for r in body["results"]] == ["not_registered", "registered"]
    check_answer("/api/items", "POST", response.status, body)


async def test_answers_while_the_database_cannot_store_match_the_document(api: Bot):
    """Another process holds the write lock (a `sqlite3` shell in BEGIN IMMEDIATE): predict
    and items answer a 503 with Retry-After, /healthz a 503 with db "not storing" and
    db_problem; the document had neither (Health.db was ok|unreachable, the 503 said only
    "the API is off")."""
    import sqlite3

    api.store.set_busy_timeout(0)  # refused at once, not after the server's 2 s
    other = sqlite3.connect(api.rt.settings.db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        answers = [
            ("/api/predict", await api.http.post("/api/predict", json={"text": "Crash"},
                                                 headers=AUTH)),
            ("/api/items", await api.http.post("/api/items", json={"items": [{"text": "Bug"}]},
                                               headers=AUTH)),
        ]  # fmt: skip
        health = await api.http.get("/healthz")
        health_body = await health.json()
    finally:
        other.execute("ROLLBACK")
        other.close()
    for path, response in answers:
        assert response.status == 503, path
        body = await response.json()
        assert body["error"].startswith("not stored: the database is busy"), body
        check_answer(path, "POST", 503, body)
        documented = DOC["paths"][path]["post"]["responses"]["503"]
        assert set(response.headers) >= set(documented["headers"]) == {"Retry-After"}
        assert int(response.headers["Retry-After"]) > 0
        assert "Retry-After" in documented["description"]
    assert health.status == 503
    assert health_body["db"] == "not storing" and health_body["db_problem"], health_body
    check_answer("/healthz", "GET", 503, health_body)


# -- property-based: bodies from the document's own schemas --------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy:
    """Values that fit ``schema`` (the subset of JSON Schema the document uses), kept small."""
    if "$ref" in schema:
        return from_schema(DOC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "oneOf" in schema:
        return st.one_of([from_schema(s) for s in schema["oneOf"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}) for k in kind])
    if kind == "string":
        if schema.get("pattern") == "^[Hh][Tt][Tt][Pp][Ss]?://":
            host = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5})?", fullmatch=True)
            scheme = st.sampled_from(["http", "https", "HTTPS", "Http"])
            return st.builds("{}://{}/{}".format, scheme, host,
                             st.text(max_size=10).map(quote))  # fmt: skip
        low = schema.get("minLength", 0)
        return st.text(min_size=low, max_size=min(schema.get("maxLength", 30), low + 30))
    if kind == "integer":
        return st.integers()
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema["items"]), max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object":
        if "properties" not in schema:
            return st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3)
        required = set(schema.get("required", ()))
        props = {k: from_schema(v) for k, v in schema["properties"].items()}
        return st.fixed_dictionaries(
            {k: s for k, s in props.items() if k in required},
            optional={k: s for k, s in props.items() if k not in required},
        )
    raise AssertionError(f"from_schema does not know {schema}")


def request_body(path: str) -> st.SearchStrategy:
    """Mostly bodies that fit the operation's schema; also near misses and junk."""
    schema = DOC["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    fitting = from_schema(schema)
    near_miss = st.builds(lambda body, key, value: {**body, key: value}, fitting,
                          st.sampled_from(["text", "id", "meta", "callback_url", "items"]),
                          JSON_VALUES)  # fmt: skip
    as_bytes = st.one_of(
        fitting.map(json.dumps),
        near_miss.map(json.dumps),
        JSON_VALUES.map(json.dumps),
    ).map(str.encode)
    return st.one_of(as_bytes, as_bytes, st.binary(max_size=40))


REQUESTS = st.one_of(
    st.tuples(st.just("POST"), st.just("/api/predict"), request_body("/api/predict")),
    st.tuples(st.just("POST"), st.just("/api/items"), request_body("/api/items")),
    st.tuples(
        st.just("GET"),
        st.just("/api/items/{id}"),
        st.one_of(st.just("a"), st.text(min_size=1, max_size=20)).map(lambda s: s.encode()),
    ),
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays deterministic
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=REQUESTS)
async def test_generated_requests_never_get_a_500_and_answers_match_the_document(
    api: Bot, request: tuple[str, str, bytes]
):
    method, path, payload = request
    if method == "GET":
        url = "/api/items/" + quote(payload.decode(), safe="")
        response = await api.http.get(url, headers=AUTH)
    else:
        response = await api.http.post(path, data=payload, headers=AUTH)
    event(f"{method} {path} -> {response.status}")
    assert response.status < 500
    check_answer(path, method, response.status, await response.json())
