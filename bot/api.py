"""The producer API: ``/api/*`` and ``/metrics`` on the bot's aiohttp app.

Producers (a ticket queue, a moderation pipeline) send items and get the model's prediction,
or the human's label once people have given one. Every ``/api/*`` request carries
``Authorization: Bearer <HITL_API_TOKEN>``; the API is off (503) while that setting is unset.
Bad input gets a 4xx with ``{"error": ..., "field": ...}``; an unexpected failure gets a 500
with a generic message, and the traceback goes to the log only.

``add_routes(app)`` registers everything; ``openapi_document()`` describes it (a test keeps the
two in step).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bot.appkeys import MAX_BODY, METRICS, RUNTIME
from bot.ingest import MAX_TEXT_CHARS, item_id_for_text
from bot.metrics import CONTENT_TYPE, Metrics
from bot.runtime import Runtime
from bot.scoring import score_pending
from bot.store import Store
from bot.webhooks import ALLOW_HINT, Destinations

logger = logging.getLogger(__name__)

SOURCE = "api"
MAX_ITEMS = 1000
MAX_ID_CHARS = 200
MAX_URL_CHARS = 2000
ITEM_FIELDS = ("text", "id", "meta", "callback_url")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A request the API refuses: the HTTP status, a message for the producer, the field."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers


@dataclass(frozen=True)
class ApiItem:
    """One validated item from a producer."""

    id: str
    text: str
    meta: dict[str, Any]
    callback_url: str | None


def add_routes(app: web.Application) -> None:
    """Register /api/*, /metrics and the API middleware on the (not yet started) app."""
    app[METRICS] = Metrics(lambda: _store_of(app))
    app.middlewares.append(api_middleware)
    app.router.add_post("/api/predict", predict)
    app.router.add_post("/api/items", add_items)
    app.router.add_get("/api/items/{id:.+}", get_item)
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/metrics", metrics)


def _store_of(app: web.Application) -> Store | None:
    rt = app.get(RUNTIME)
    return rt.store if rt is not None else None


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


# -- the middleware: auth, errors as JSON, request metrics --------------------------------


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    method = request.method if request.method in METHODS else "other"
    status = 500
    try:
        response = await _answer(request, handler)
        status = response.status
        return response
    finally:
        metrics_ = request.app[METRICS]
        metrics_.api_requests.labels(route, method, str(status)).inc()
        metrics_.api_latency.labels(route, method).observe(time.perf_counter() - started)


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        _authorize(request)
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.message, exc.field, exc.headers)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, _too_large_message(), "body")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error(exc.status, exc.reason, None, allow)
    except Exception:  # noqa: BLE001 - a producer never sees a traceback
        logger.exception("%s %s failed", request.method, request.path[:100])
        return _error(500, "Something went wrong on our side; it has been logged")


def _error(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


def _too_large_message() -> str:
    return f"the body is over the limit of 1 MB ({MAX_BODY:,} bytes); send fewer items"


def _authorize(request: web.Request) -> None:
    token = _runtime(request).settings.api_token
    if not token:
        raise ApiError(
            503,
            "the producer API is off: set HITL_API_TOKEN on the server to turn it on, "
            "then send it as Authorization: Bearer <token>",
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given_bytes = given.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, token.encode()):
        raise ApiError(
            401,
            "missing or wrong API token; send Authorization: Bearer <HITL_API_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )


# -- reading and checking input -------------------------------------------------------------


async def _read_object(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, _too_large_message(), "body")
    raw = await request.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not valid UTF-8", "body") from None
    try:
        body = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            "body",
        ) from None
    except RecursionError:
        raise ApiError(400, "the body is not valid JSON (nested too deeply)", "body") from None
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc})", "body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", "body")
    return body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_unicode(value: Any, field: str) -> None:
    """Refuse strings SQLite cannot store (lone surrogates, from escapes like "\\ud800")."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            400, f"{field} has an invalid Unicode character (a lone surrogate)", field
        ) from None
    except (ValueError, RecursionError):
        raise ApiError(400, f"{field} is nested too deeply", field) from None


def parse_item(
    raw: Any,
    webhook_secret: str | None,
    prefix: str = "",
    destinations: Destinations = Destinations(),  # noqa: B008 - frozen
) -> ApiItem:
    """Check one item (``{"text", "id"?, "meta"?, "callback_url"?}``); raise ``ApiError``
    naming the first bad field. A ``callback_url`` must point at a public address, or at one
    ``destinations`` (HITL_WEBHOOK_ALLOW) allows."""
    if not isinstance(raw, dict):
        raise ApiError(400, f"{prefix.rstrip('.') or 'the body'} must be a JSON object",
                       prefix.rstrip(".") or "body")  # fmt: skip
    for key in raw:
        if key not in ITEM_FIELDS:
            raise ApiError(
                400,
                f"{prefix}{key} is not a known field; use {', '.join(ITEM_FIELDS)}",
                f"{prefix}{key}",
            )

    field = f"{prefix}text"
    text = raw.get("text")
    if text is None:
        raise ApiError(400, f"{field} is missing; send the item's text as a string", field)
    if not isinstance(text, str):
        raise ApiError(400, f"{field} must be a string", field)
    text = text.strip()
    if not text:
        raise ApiError(400, f"{field} is empty", field)
    if len(text) > MAX_TEXT_CHARS:
        raise ApiError(
            400,
            f"{field} is {len(text):,} characters, over the limit of {MAX_TEXT_CHARS:,}",
            field,
        )
    _check_unicode(text, field)

    field = f"{prefix}id"
    raw_id = raw.get("id")
    if raw_id is None:
        item_id = item_id_for_text(text)
    elif isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise ApiError(400, f"{field} must be a string or an integer", field)
    else:
        item_id = str(raw_id).strip()
        if not item_id:
            raise ApiError(400, f"{field} is empty; leave it out to use a hash of the text", field)
        if len(item_id) > MAX_ID_CHARS:
            raise ApiError(400, f"{field} is over {MAX_ID_CHARS} characters", field)
        _check_unicode(item_id, field)

    field = f"{prefix}meta"
    meta = raw.get("meta")
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict):
        raise ApiError(400, f"{field} must be a JSON object", field)
    _check_unicode(meta, field)

    field = f"{prefix}callback_url"
    url = raw.get("callback_url")
    if url is not None:
        url = _check_url(url, field)
        problem = destinations.url_problem(url)
        if problem is not None:
            raise ApiError(400, f"{field} points at {problem}; {ALLOW_HINT}", field)
        if not webhook_secret:
            raise ApiError(
                400,
                f"{field} cannot be used: webhooks are off on this server "
                "(set HITL_WEBHOOK_SECRET to turn them on)",
                field,
            )
    return ApiItem(id=item_id, text=text, meta=meta, callback_url=url)


def _check_url(url: Any, field: str) -> str:
    problem = f"{field} must be an http(s) URL, e.g. https://example.com/hitl-hook"
    if not isinstance(url, str):
        raise ApiError(400, problem, field)
    if len(url) > MAX_URL_CHARS:
        raise ApiError(400, f"{field} is over {MAX_URL_CHARS:,} characters", field)
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ApiError(400, problem, field)
    _check_unicode(url, field)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ApiError(400, problem, field) from None
    if parts.scheme not in ("http", "https") or not host:
        raise ApiError(400, problem, field)
    return url


def _destinations(rt: Runtime) -> Destinations:
    return Destinations.allowing(rt.settings.webhook_allow)


# -- handlers -------------------------------------------------------------------------------


async def predict(request: web.Request) -> web.Response:
    """Store the item (if new), score it, answer with the prediction or the human's label."""
    rt = _runtime(request)
    item = parse_item(
        await _read_object(request), rt.settings.webhook_secret, destinations=_destinations(rt)
    )
    created = rt.store.add_api_items([item], SOURCE)
    await _score(rt)
    if created:
        rt.wake_dispatcher.set()
    stored = rt.store.get_item(item.id)
    return web.json_response(_prediction(rt.store, stored))


async def add_items(request: web.Request) -> web.Response:
    """Store and score up to MAX_ITEMS items; each gets its own result, so one bad item
    never sinks the good ones."""
    rt = _runtime(request)
    body = await _read_object(request)
    for key in body:
        if key != "items":
            raise ApiError(400, f'{key} is not a known field; send {{"items": [...]}}', key)
    raw_items = body.get("items")
    if not isinstance(raw_items, list):
        raise ApiError(400, "items must be a list of items", "items")
    if len(raw_items) > MAX_ITEMS:
        raise ApiError(
            400,
            f"items has {len(raw_items):,} items, over the limit of {MAX_ITEMS:,} per request",
            "items",
        )
    results: list[dict[str, Any]] = []
    accepted: list[tuple[int, ApiItem]] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_items):
        try:
            item = parse_item(
                raw, rt.settings.webhook_secret, f"items[{index}].", _destinations(rt)
            )
        except ApiError as exc:
            results.append(
                {"index": index, "id": None, "result": "rejected", "error": exc.message,
                 "field": exc.field}
            )  # fmt: skip
            continue
        if item.id in seen:
            results.append({"index": index, "id": item.id, "result": "duplicate"})
            continue
        seen.add(item.id)
        accepted.append((index, item))
    created = set(rt.store.add_api_items([item for _, item in accepted], SOURCE))
    for index, item in accepted:
        result = "created" if item.id in created else "duplicate"
        results.append({"index": index, "id": item.id, "result": result})
    results.sort(key=lambda r: r["index"])
    if created:
        await _score(rt)
        rt.wake_dispatcher.set()
    counts = {name: sum(r["result"] == name for r in results) for name in
              ("created", "duplicate", "rejected")}  # fmt: skip
    return web.json_response(
        {
            "created": counts["created"],
            "duplicates": counts["duplicate"],
            "rejected": counts["rejected"],
            "results": results,
        }
    )


async def get_item(request: web.Request) -> web.Response:
    rt = _runtime(request)
    item_id = request.match_info["id"]
    item = rt.store.get_item(item_id)
    if item is None:
        raise ApiError(404, f"no item with id {item_id[:200]!r}", "id")
    resolution = rt.store.resolution(item_id)
    prediction = None
    if item["confidence"] is not None:
        prediction = {
            "label": item["predicted_label"],
            "confidence": item["confidence"],
            "ranked": _ranked(item["ranked"]),
            "model_version": item["model_version"],
        }
    human = None
    if resolution is not None:
        human = {
            "label": resolution["label"],
            "votes": resolution["votes"],
            "agreement": resolution["agreement"],
            "resolved_at": resolution["resolved_at"],
        }
    return web.json_response(
        {
            "id": item["id"],
            "text": item["text"],
            "meta": item["meta"],
            "source": item["source"],
            "status": api_status(item["status"]),
            "queue_status": item["status"],
            "prediction": prediction,
            "human": human,
            "callback_url": item["callback_url"],
            "created_at": item["created_at"],
            "updated_at": item["updated_at"],
        }
    )


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def metrics(request: web.Request) -> web.Response:
    try:
        body = request.app[METRICS].render()
    except Exception:  # noqa: BLE001 - a scrape failure must not look like a crash
        logger.exception("metrics scrape failed")
        return web.Response(status=503, text="metrics unavailable; see the server log\n")
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _score(rt: Runtime) -> None:
    """Score new items with the champion; a failing model leaves them to people."""
    if rt.champion is None:
        return
    try:
        await score_pending(rt)
    except Exception:  # noqa: BLE001 - the items are stored; people will label them
        logger.exception("scoring with model v%d failed", rt.champion.version)


def api_status(item_status: str) -> str:
    """What a producer sees: auto (the model is confident), resolved (people decided),
    skipped (people skipped it) or needs_review (waiting for people)."""
    if item_status in ("auto", "resolved", "skipped"):
        return item_status
    return "needs_review"


def _ranked(ranked: list | None) -> list[dict[str, Any]]:
    return [{"label": label, "probability": p} for label, p in ranked or []]


def _prediction(store: Store, item: dict[str, Any]) -> dict[str, Any]:
    status = api_status(item["status"])
    label = item["predicted_label"]
    if status == "resolved":
        resolution = store.resolution(item["id"])
        label = resolution["label"] if resolution else label
    return {
        "id": item["id"],
        "label": label,
        "confidence": item["confidence"],
        "ranked": _ranked(item["ranked"]),
        "model_version": item["model_version"],
        "model_label": item["predicted_label"],
        "status": status,
    }


# -- the OpenAPI document -------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    why = {
        400: "bad input: invalid JSON, a wrong type, a missing or too long field",
        401: "missing or wrong bearer token",
        404: "no such item",
        413: "body over 1 MB",
        503: "the API is off: HITL_API_TOKEN is not set",
    }
    return {str(s): _json(_ref("Error"), why[s]) for s in statuses}


_NULLABLE_STRING = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "what is wrong and what to do"},
            "field": {"type": "string", "description": "the field at fault, e.g. items[3].text"},
        },
    },
    "ItemIn": {
        "type": "object",
        "required": ["text"],
        "additionalProperties": False,
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS},
            "id": {
                "type": ["string", "integer"],
                "minLength": 1,
                "maxLength": MAX_ID_CHARS,
                "description": "your id for the item; default: a hash of the text",
            },
            "meta": {"type": "object", "description": "anything you want kept with the item"},
            "callback_url": {
                "type": "string",
                "format": "uri",
                "pattern": "^https?://",
                "maxLength": MAX_URL_CHARS,
                "description": "http(s) URL that gets a signed POST when people resolve the "
                "item (needs HITL_WEBHOOK_SECRET on the server); a public address, unless "
                "the server's HITL_WEBHOOK_ALLOW names it",
            },
        },
    },
    "Ranked": {
        "type": "array",
        "description": "the model's top labels, best first",
        "items": {
            "type": "object",
            "required": ["label", "probability"],
            "properties": {"label": {"type": "string"}, "probability": {"type": "number"}},
        },
    },
    "Prediction": {
        "type": "object",
        "required": [
            "id",
            "label",
            "confidence",
            "ranked",
            "model_version",
            "model_label",
            "status",
        ],  # fmt: skip
        "properties": {
            "id": {"type": "string"},
            "label": {
                **_NULLABLE_STRING,
                "description": "the human's label once resolved, else the model's; "
                "null with no model yet",
            },
            "confidence": {"type": ["number", "null"], "description": "the model's"},
            "ranked": _ref("Ranked"),
            "model_version": {"type": ["integer", "null"]},
            "model_label": {**_NULLABLE_STRING, "description": "the model's guess"},
            "status": {"enum": ["auto", "needs_review", "resolved", "skipped"]},
        },
    },
    "ItemsIn": {
        "type": "object",
        "required": ["items"],
        "additionalProperties": False,
        "properties": {"items": {"type": "array", "maxItems": MAX_ITEMS, "items": _ref("ItemIn")}},
    },
    "ItemsResult": {
        "type": "object",
        "required": ["created", "duplicates", "rejected", "results"],
        "properties": {
            "created": {"type": "integer"},
            "duplicates": {"type": "integer"},
            "rejected": {"type": "integer"},
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "id", "result"],
                    "properties": {
                        "index": {"type": "integer"},
                        "id": _NULLABLE_STRING,
                        "result": {"enum": ["created", "duplicate", "rejected"]},
                        "error": {"type": "string"},
                        "field": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
    "Item": {
        "type": "object",
        "required": [
            "id",
            "text",
            "meta",
            "source",
            "status",
            "queue_status",
            "prediction",
            "human",
            "callback_url",
            "created_at",
            "updated_at",
        ],  # fmt: skip
        "properties": {
            "id": {"type": "string"},
            "text": {"type": "string"},
            "meta": {"type": "object"},
            "source": {"type": "string", "description": "api, import, …"},
            "status": {"enum": ["auto", "needs_review", "resolved", "skipped"]},
            "queue_status": {"enum": ["new", "queued", "posted", "resolved", "skipped", "auto"]},
            "prediction": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["label", "confidence", "ranked", "model_version"],
                        "properties": {
                            "label": {"type": "string"},
                            "confidence": {"type": "number"},
                            "ranked": _ref("Ranked"),
                            "model_version": {"type": "integer"},
                        },
                    },
                ]
            },
            "human": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["label", "votes", "agreement", "resolved_at"],
                        "properties": {
                            "label": {"type": "string"},
                            "votes": {"type": "integer"},
                            "agreement": {"type": "number"},
                            "resolved_at": {"type": "string", "format": "date-time"},
                        },
                    },
                ]
            },
            "callback_url": _NULLABLE_STRING,
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["ok", "db", "champion", "scheduler"],
        "properties": {
            "ok": {"type": "boolean"},
            "db": {"enum": ["ok", "unreachable"]},
            "champion": {"type": ["integer", "null"], "description": "the model's version"},
            "scheduler": {"type": ["boolean", "null"], "description": "null: no scheduler"},
        },
    },
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of /api/*, /healthz and /metrics."""
    secured = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "slack-hitl producer API",
            "version": "1",
            "description": "Send items, get the model's prediction or the human's label, "
            "and a signed webhook when people resolve an item.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
        "security": secured,
        "paths": {
            "/api/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Send one item; get the prediction (or the human's label)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ItemIn")}},
                    },
                    "responses": {
                        "200": _json(_ref("Prediction"), "the prediction"),
                        **_errors(400, 401, 413, 503),
                    },
                }
            },
            "/api/items": {
                "post": {
                    "operationId": "addItems",
                    "summary": f"Send up to {MAX_ITEMS:,} items; each gets its own result",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ItemsIn")}},
                    },
                    "responses": {
                        "200": _json(_ref("ItemsResult"), "one result per item, in order"),
                        **_errors(400, 401, 413, 503),
                    },
                }
            },
            "/api/items/{id}": {
                "get": {
                    "operationId": "getItem",
                    "summary": "One item: text, status, the model's prediction, the human label",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _json(_ref("Item"), "the item"),
                        **_errors(401, 404, 503),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": _json({"type": "object"}, "the OpenAPI document"),
                        **_errors(401, 503),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Database reachable, champion version, scheduler alive",
                    "security": [],
                    "responses": {
                        "200": _json(_ref("Health"), "healthy"),
                        "503": _json(_ref("Health"), "unhealthy"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "503": {
                            "description": "the scrape failed",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                    },
                }
            },
        },
    }
