"""The producer API: ``/api/*`` and ``/metrics`` on the bot's aiohttp app.

Producers (a ticket queue, a moderation pipeline) send items and get the model's prediction,
or the human's label once people have given one. Every ``/api/*`` request carries
``Authorization: Bearer <HITL_API_TOKEN>``; the API is off (503) while that setting is unset.
Bad input gets a 4xx with ``{"error": ..., "field": ...}``; a write the database refuses for
now (another process holds its write lock, the disk is full) gets a 503 that says why, with
``Retry-After``, and one line in the log; an unexpected failure gets a 500 with a generic
message, and the traceback goes to the log only.

``add_routes(app)`` registers everything; ``bot/api/openapi.json`` describes it, is served as it
is, and its request schemas are what the API checks bodies against (a test keeps the routes
and the document in step).

Its length (~700 lines, over the house's ~400) is one handler per route of the document,
each parsing, calling the store or the scorer and shaping its answer, beside the shared auth,
error and schema helpers they all use; reading a body (Content-Encoding, JSON, numbers JSON
cannot hold) is its own module (``bot/api/bodies.py``), as are the intake of predict batches
(``bot/api/intake.py``), webhooks and metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import hmac
import json
import logging
import re
import time
import unicodedata
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

from aiohttp import HttpVersion11, web
from jsonschema import Draft202012Validator, ValidationError, validators

from bot.api.bodies import (
    MAX_BODY,
    ApiError,
    check_unicode,
    read_object,
    too_large_message,
)
from bot.api.intake import INTAKE, Intake, StoredWithAnotherText
from bot.api.metrics import CONTENT_TYPE, METRICS, Metrics
from bot.api.webhooks import ALLOW_HINT, Destinations
from bot.appkeys import RUNTIME
from bot.errors import StoreError
from bot.ingest import (
    deleted_items_among,
    id_problem,
    item_id_for_text,
    legacy_item_ids,
    redaction_twin_ids,
    same_item_text,
    with_redaction_twins,
    with_stored_ids,
)
from bot.ingest.redact import Redactor
from bot.labelnames import quoted, shows_nothing
from bot.labelset import model_guesses
from bot.learning.jobs import Trainer, sync_champion
from bot.learning.scoring import ScoringOutOfMemory, scorer_of
from bot.runtime import Runtime
from bot.store import DatabaseError, Store, database_problem, problems
from bot.store.core import NotSynced
from bot.store.erasure import model_label_seqs

logger = logging.getLogger(__name__)

SOURCE = "api"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ApiItem:
    """One validated item from a producer."""

    id: str
    text: str
    meta: dict[str, Any]
    callback_url: str | None
    came: str | None = None  # the text as sent, when HITL_REDACT changed it (``redacted``)

    def same_text_as(self, stored: str) -> bool:
        """Whether ``stored``, the text this item's id is stored with, is this item's text, as
        `hitl import` tells a duplicate from a row whose id is stored with another text
        (``same_item_text``: line breaks and Unicode forms alike, or stored before
        ``HITL_REDACT`` was turned on, off or given other kinds); ``Store.add_api_items``
        asks it of an item its id is stored with another text than ``text``."""
        return same_item_text(stored, self.text, self.came or self.text)


# Any id the API or `hitl import` could have stored, newlines and "/" included ("." would not
# match a newline): a row stored before ids were checked stays reachable.
ITEM_ROUTE = r"/api/items/{id:[\s\S]+}"


def add_routes(app: web.Application) -> None:
    """Register /api/*, /metrics and the API middleware on the (not yet started) app."""
    app[METRICS] = Metrics(
        lambda: _store_of(app),
        lambda: _roles_of(app),
        lambda: _scored_of(app),
        lambda: _scoring_problem_of(app),
    )
    app[INTAKE] = Intake(lambda: app[RUNTIME].store, SOURCE)
    app.middlewares.append(api_middleware)
    app.router.add_post("/api/predict", predict, expect_handler=_expect)
    app.router.add_post("/api/items", add_items, expect_handler=_expect)
    app.router.add_get(ITEM_ROUTE, get_item)
    app.router.add_delete(ITEM_ROUTE, delete_item)
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/metrics", metrics)


def _store_of(app: web.Application) -> Store | None:
    rt = app.get(RUNTIME)
    return rt.store if rt is not None else None


def _scored_of(app: web.Application) -> int | None:
    rt = app.get(RUNTIME)
    return rt.scorer.n_scored if rt is not None and rt.scorer is not None else None


def _scoring_problem_of(app: web.Application) -> str | None:
    """Why scoring cannot run now (``Scorer.out_of_memory``); None: it runs, or no scorer."""
    rt = app.get(RUNTIME)
    return rt.scorer.out_of_memory if rt is not None and rt.scorer is not None else None


def _roles_of(app: web.Application) -> dict[str, int | None] | None:
    rt = app.get(RUNTIME)
    return rt.model_roles() if rt is not None else None


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


# -- the middleware: auth, errors as JSON, request metrics --------------------------------


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` (curl sends it for a body over 1 KB): the answer the request
    is refused with already (no or a wrong token, a Content-Length over the limit) before
    the client sends its body; else 100 Continue, as aiohttp's own expect handler does."""
    try:
        _authorize(request)
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise ApiError(413, too_large_message(request.path), "body")
    except ApiError as exc:
        return _error(exc.status, exc.message, exc.field, exc.headers)
    if request.version != HttpVersion11:
        return None
    if request.headers.get("Expect", "").lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {request.headers['Expect']}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the 100 is no part of the answer's size
    return None


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        if request.path not in ("/healthz", "/metrics"):
            return await handler(request)
        try:  # their 405 in JSON, as the API's (README: errors are {"error", "field"})
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return _error(exc.status, _http_error_words(request, exc), None, allow)
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


# Per runtime, the refusal last logged (a 503 for a database that cannot store now): a busy
# producer meets the same one on every request, so it is said again only once it changes or
# after a request went through.
_REFUSAL_SAID: weakref.WeakKeyDictionary[Runtime, str] = weakref.WeakKeyDictionary()


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        _authorize(request)
        response = await handler(request)
        _REFUSAL_SAID.pop(_runtime(request), None)
        return response
    except ApiError as exc:
        # a body over the limit is told where it is found (reading, decoding) in a batch's words
        message = too_large_message(request.path) if exc.status == 413 else exc.message
        return _error(exc.status, message, exc.field, exc.headers)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, too_large_message(request.path), "body")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error(exc.status, _http_error_words(request, exc), None, allow)
    except DatabaseError as exc:
        refused = _refused_for_now(_runtime(request), exc, request.method)
        if refused is None:
            logger.exception("%s %s failed", request.method, request.path[:100])
            return _error(500, "Something went wrong on our side; it has been logged")
        rt = _runtime(request)
        problem = str(rt.store.lost or database_problem(rt.settings.db, exc))
        if _REFUSAL_SAID.get(rt) != problem:
            _REFUSAL_SAID[rt] = problem
            logger.error(
                # a failed fsync (``_refused_for_now``): committed, only not known to be on disk
                "%s %s: written but not known to be on disk, answered 503 (a retry is safe): %s"
                " (said once while it lasts)"
                if _committed(rt, exc)
                else "%s %s: not stored, answered 503: %s (said once while it lasts)",
                request.method,
                request.path[:100],
                problem,
            )
        return _error(503, refused.message, None, refused.headers)
    except Exception:  # noqa: BLE001 - a producer never sees a traceback
        logger.exception("%s %s failed", request.method, request.path[:100])
        return _error(500, "Something went wrong on our side; it has been logged")


# What a producer may call, for the 404 of a path that is none of them (bot/api/openapi.json)
ROUTES_SAID = (
    "POST /api/predict, POST /api/items, GET or DELETE /api/items/{id}, GET /api/openapi.json,"
    " GET /healthz, GET /metrics"
)


def _http_error_words(request: web.Request, exc: web.HTTPException) -> str:
    """aiohttp's 404 and 405 in words that say what to fix (its own: "Not Found", "Method Not
    Allowed"); any other such error as aiohttp words it."""
    path = quoted(request.path, 100)
    if exc.status == 404:
        return f"no route {path}; the routes are {ROUTES_SAID}"
    if exc.status == 405 and "Allow" in exc.headers:
        allowed = " or ".join(m.strip() for m in exc.headers["Allow"].split(",") if m.strip())
        return f"{path} does not take {request.method[:20]}; send {allowed}"
    return exc.reason


# The database's refusals that pass (SQLite's error names, as prefixes): what the producer is
# told and after how many seconds to retry. Producers retry a 503; a 500 is a bug to them.
REFUSALS = (
    ("SQLITE_BUSY", "the database is busy (another process holds its write lock)", 5),
    ("SQLITE_FULL", "the server's disk is full", 60),
    ("SQLITE_READONLY", "the database cannot be written now (its file is read-only)", 60),
    ("SQLITE_IOERR", "the server's disk failed to read or write the database", 60),
    ("SQLITE_CANTOPEN", "the server cannot open its database file", 60),
)
# The open-files limits (``bot.store.problems``: EMFILE, this process's; ENFILE, the system's):
# opening the log to fsync it, or a file SQLite needs, failed for want of a descriptor. Not the
# disk: a burst of requests under a low limit, which passes; the operator raises the limit.
OUT_OF_FILES = {
    "EMFILE": (
        "the server is at its limit of open files (its operator must raise it: `ulimit -n`, or"
        " LimitNOFILE= in its systemd unit)",
        10,
    ),
    "ENFILE": (
        "the server's system is at its limit of open files (its operator must raise it: sysctl"
        " fs.file-max)",
        10,
    ),
}


def _committed(rt: Runtime, exc: DatabaseError) -> bool:
    """Whether ``exc`` came after the write was committed: the fsync that follows it failed
    (``NotSynced``; only ``DELETE`` awaits one). Not when the database file was deleted or
    replaced: what was committed went to a file that is no longer the database."""
    return isinstance(exc, NotSynced) and rt.store.lost is None


def _refused_for_now(rt: Runtime, exc: DatabaseError, method: str = "POST") -> ApiError | None:
    """The 503 for a write the database refused for a reason that passes (its lock, its disk,
    the open-files limit), None for any other error (a bug: a 500). A write committed whose
    fsync then failed (``_committed``) was applied: the 503 says so, and that a retry is safe
    (a ``DELETE`` retried fsyncs again, and is answered 410 once that succeeds)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    behind = getattr(exc, "os_error", None)  # the OSError behind a failed fsync (NotSynced)
    limit = None  # EMFILE or ENFILE, as ``database_problem`` tells them
    if isinstance(behind, OSError) and behind.errno in (errno.EMFILE, errno.ENFILE):
        limit = behind.errno
    elif name.startswith("SQLITE_CANTOPEN"):  # SQLite does not say why: look
        limit = problems._out_of_files()
    if rt.store.lost is not None:  # the file was deleted or replaced (Store.check_file)
        cause, seconds = "the server's database file was deleted or replaced", 60
    elif limit is not None:
        cause, seconds = OUT_OF_FILES[errno.errorcode[limit]]
    else:
        found = [(cause, seconds) for prefix, cause, seconds in REFUSALS if name.startswith(prefix)]
        if not found:
            return None
        cause, seconds = found[0]
    if _committed(rt, exc):
        done, then = (
            ("deleted", ", answered 410 once the deletion is on disk")
            if method == "DELETE"
            else ("stored", "")
        )
        return ApiError(
            503,
            f"{done}, but not known to be on disk: {cause}; retry in {seconds} s: a retry is"
            f" safe (not applied twice){then}",
            headers={"Retry-After": str(seconds)},
        )
    return ApiError(
        503,
        f"not stored: {cause}; retry in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


def _error(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


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


def _is_json_integer(checker: Any, instance: Any) -> bool:
    """An integer as JSON writes it: ``1`` but not ``1.0`` (JSON Schema would take both)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


# Draft 2020-12, as the document's "openapi": "3.1.0" says; "format" stays an annotation (the
# callback_url's address rules are checked in code, after the schema).
Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_json_integer),
)

# Which of a field's schema errors a producer hears about first.
KEYWORD_ORDER = ("type", "required", "minLength", "maxLength", "maxItems")

SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")  # \s: what str.isspace() calls space
URL_PROBLEM = "{field} must be an http(s) URL, e.g. https://example.com/hitl-hook"

# The words for each way a request can fail its schema. The limits in them ({limit}) are the
# document's; {field} is where (e.g. items[3].text), {length} the length that was sent.
MESSAGES: dict[tuple[str, str], str] = {
    ("text", "required"): "{field} is missing; send the item's text as a string",
    ("text", "type"): "{field} must be a string",
    ("text", "minLength"): "{field} is empty",
    ("text", "maxLength"): "{field} is {length:,} characters, over the limit of {limit:,}",
    ("id", "type"): "{field} must be a string or an integer",
    ("id", "minLength"): "{field} is empty; leave it out to use a hash of the text",
    ("id", "maxLength"): "{field} is over {limit} characters",
    ("id", "not"): "{field} has a control character (a newline, a tab, NUL, …); send an id "
    "without them",
    ("meta", "type"): "{field} must be a JSON object",
    ("callback_url", "maxLength"): "{field} is over {limit:,} characters",
    ("callback_url", "type"): URL_PROBLEM,
    ("callback_url", "pattern"): URL_PROBLEM,
    ("items", "required"): "{field} must be a list of items",
    ("items", "type"): "{field} must be a list of items",
    ("items", "maxItems"): "{field} has {length:,} items, over the limit of {limit:,} per request",
}


class RequestSchema:
    """One request schema of the OpenAPI document, compiled once. ``check`` raises an
    ``ApiError`` for the first problem, fields in the document's order; ``between`` runs the
    checks the schema cannot express for a field once the schema has passed it.
    ``shallow`` leaves out what is inside the properties' lists (``ItemsIn``'s items are
    checked one by one, so a bad item sinks only itself)."""

    def __init__(self, document: dict[str, Any], name: str, *, shallow: bool = False):
        schema = document["components"]["schemas"][name]
        if shallow:
            properties = {
                key: {k: v for k, v in value.items() if k != "items"}
                for key, value in schema["properties"].items()
            }
            schema = {**schema, "properties": properties}
        self.schema = schema
        self.fields = tuple(schema["properties"])
        self.validator = Validator({**schema, "components": document["components"]})

    def check(
        self,
        body: Any,
        prefix: str = "",
        unknown_hint: str = "",
        between: Callable[[str, str], None] | None = None,
    ) -> None:
        first: dict[str | None, ValidationError] = {}
        for error in self.validator.iter_errors(body):
            name = _field_of(error)
            if name not in first or _rank(error) < _rank(first[name]):
                first[name] = error
        if None in first:
            raise self._root_problem(first[None], body, prefix, unknown_hint)
        for name in self.fields:
            field = f"{prefix}{name}"
            if name in first:
                raise ApiError(400, _message(first[name], name, field), field)
            if between is not None:
                between(name, field)

    def _root_problem(
        self, error: ValidationError, body: Any, prefix: str, unknown_hint: str
    ) -> ApiError:
        if error.validator == "additionalProperties":
            key = next(key for key in body if key not in self.fields)
            # cut as a repeated key is (``bodies._unique_keys``): a 100,000-character key was
            # echoed whole, twice
            key = key if len(key) <= 60 else key[:59] + "…"
            # a line break, a control or invisible character shown as its escape: one line
            shown = key if quoted(key)[1:-1] == key else quoted(key)
            return ApiError(
                400, f"{prefix}{shown} is not a known field; {unknown_hint}", f"{prefix}{key}"
            )
        where = prefix.rstrip(".")
        if error.validator == "type":
            return ApiError(400, f"{where or 'the body'} must be a JSON object", where or "body")
        return ApiError(400, f"{where or 'the body'}: {_fallback(error)}", where or "body")


def _field_of(error: ValidationError) -> str | None:
    if error.absolute_path:
        return str(error.absolute_path[0])
    if error.validator == "required":
        return next((k for k in error.validator_value if k not in error.instance), None)
    return None


def _rank(error: ValidationError) -> int:
    keyword = str(error.validator)
    return KEYWORD_ORDER.index(keyword) if keyword in KEYWORD_ORDER else len(KEYWORD_ORDER)


def _message(error: ValidationError, name: str, field: str) -> str:
    if (name, error.validator) == ("id", "not") and isinstance(error.instance, str):
        problem = id_problem(error.instance)  # the character the document's pattern refuses
        if problem is not None and "control character" not in problem:
            return f"{field} {problem}; send an id without it"
    template = MESSAGES.get((name, str(error.validator)))
    if template is None:
        return f"{field} {_fallback(error)}"
    length = len(error.instance) if isinstance(error.instance, str | list) else 0
    return template.format(field=field, limit=error.validator_value, length=length)


def _fallback(error: ValidationError) -> str:
    """One line for a failure with no words of its own; never echoes the value sent."""
    return f"does not fit the API's schema ({error.validator}: {error.validator_value!r})"


class ItemSchema:
    """The document's ``ItemIn``, and how a producer's item becomes an ``ApiItem``."""

    def __init__(self, document: dict[str, Any]):
        self.request = RequestSchema(document, "ItemIn")
        self.unknown_hint = f"use {', '.join(self.request.fields)}"

    def parse(
        self,
        raw: Any,
        webhook_secret: str | None,
        prefix: str = "",
        destinations: Destinations = Destinations(),  # noqa: B008 - frozen
    ) -> ApiItem:
        item = _normalized(raw, self.request.fields)

        def after_schema(name: str, field: str) -> None:
            value = item.get(name)
            if name == "callback_url" and value is not None:
                _check_url(raw["callback_url"], field, destinations, webhook_secret)
            elif name == "meta" or value is not None:
                check_unicode(value if value is not None else {}, field)
                if name == "id" and (spaced := _id_spaces(value, field)):
                    raise spaced
                if name == "id" and (problem := id_problem(value)):
                    raise ApiError(400, f"{field} {problem}; send an id without it", field)

        self.request.check(item, prefix, self.unknown_hint, after_schema)
        return ApiItem(
            id=item["id"] if "id" in item else item_id_for_text(item["text"]),
            text=item["text"],
            meta=item.get("meta", {}),
            callback_url=raw.get("callback_url"),
        )


def _normalized(raw: Any, fields: tuple[str, ...]) -> Any:
    """The item as the schema checks it: null known fields left out (null means "not given"), the
    text without surrounding whitespace, an integer id as its digits, an id of only whitespace
    as empty, the callback_url's scheme in lower case (schemes are case-insensitive). Any other
    id is kept as sent: one with whitespace around it is refused (``_id_spaces``), never
    stored trimmed, as GET and DELETE would not find it by the id the producer sent."""
    if not isinstance(raw, dict):
        return raw
    item = {key: value for key, value in raw.items() if value is not None or key not in fields}
    if isinstance(item.get("text"), str):
        text = item["text"].strip()
        # only NULs (a UTF-16 text read as bytes), or only characters that show nothing (a
        # zero-width space, a BOM, a soft hyphen), is as empty as blanks: "is empty", as imports
        item["text"] = "" if shows_nothing(text.replace("\x00", "")) else text
    raw_id = item.get("id")
    if isinstance(raw_id, str) or _is_json_integer(None, raw_id):
        item["id"] = str(raw_id) if str(raw_id).strip() else ""  # blanks: "is empty"
    url = item.get("callback_url")
    if isinstance(url, str):
        scheme, sep, rest = url.partition("://")
        item["callback_url"] = f"{scheme.lower()}{sep}{rest}"
    return item


def _id_spaces(item_id: str, field: str) -> ApiError | None:
    """The 400 for an id with whitespace around it (as ``str.strip`` sees it: a space, a
    no-break space, an ideographic space, ...), or None. Such an id is refused, not stored
    trimmed: GET and DELETE by the id sent, and the webhooks, would name another id. (Control
    characters, tabs and newlines included, are the schema's to refuse, in its words.)"""
    if item_id == item_id.strip():
        return None
    starts, ends = item_id[:1].isspace(), item_id[-1:].isspace()
    char = item_id[0] if starts else item_id[-1]
    where = "starts and ends" if starts and ends else "starts" if starts else "ends"
    name = unicodedata.name(char, "whitespace")
    what = "a space" if char == " " else f"a space (U+{ord(char):04X} {name})"
    return ApiError(
        400,
        f"{field} {item_id[:200]!r} {where} with {what}; send the id without spaces around it",
        field,
    )


def _check_url(
    url: str, field: str, destinations: Destinations, webhook_secret: str | None
) -> None:
    """What the schema cannot say of a callback_url (it already is an http(s) URL of at most
    the document's length): no spaces or control characters, a host and a valid port, a
    public address unless ``destinations`` (HITL_WEBHOOK_ALLOW) allows it, webhooks on. A URL
    no webhook could ever reach is refused here, where the producer still hears why: port 0,
    a host written with percent escapes (aiohttp looks the escapes up as they are), a
    backslash before the path (aiohttp refuses the URL; a browser reads it as a slash)."""
    problem = URL_PROBLEM.format(field=field)
    if SPACE_OR_CONTROL.search(url):
        raise ApiError(400, problem, field)
    check_unicode(url, field)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise ApiError(400, problem, field) from None
    if not host:
        raise ApiError(400, problem, field)
    if "\\" in parts.netloc:
        raise ApiError(
            400, f"{field} has a backslash (\\) before its path; URLs separate with /", field
        )
    if port == 0:
        raise ApiError(
            400,
            f"{field} has port 0, which nothing listens on; give the receiver's port, or none"
            " for the scheme's own (80 or 443)",
            field,
        )
    if "%" in host and not parts.netloc.rpartition("@")[2].startswith("["):  # not an IPv6 zone
        raise ApiError(
            400,
            f"{field}'s host {host} is written with percent escapes; write its characters as"
            " they are (example.com, not ex%61mple.com)",
            field,
        )
    where = destinations.url_problem(url)
    if where is not None:
        raise ApiError(400, f"{field} points at {where}; {ALLOW_HINT}", field)
    if not webhook_secret:
        raise ApiError(
            400,
            f"{field} cannot be used: webhooks are off on this server "
            "(set HITL_WEBHOOK_SECRET to turn them on)",
            field,
        )


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of /api/*, /healthz and /metrics (``bot/api/openapi.json``,
    served as it is and the source of the request schemas)."""
    return json.loads(OPENAPI_BYTES)


OPENAPI_BYTES = resources.files("bot.api").joinpath("openapi.json").read_bytes()
ITEM = ItemSchema(openapi_document())
ITEMS = RequestSchema(openapi_document(), "ItemsIn", shallow=True)


def parse_item(
    raw: Any,
    webhook_secret: str | None,
    prefix: str = "",
    destinations: Destinations = Destinations(),  # noqa: B008 - frozen
) -> ApiItem:
    """Check one item (the document's ``ItemIn``: ``{"text", "id"?, "meta"?,
    "callback_url"?}``); raise ``ApiError`` naming the first bad field. A ``callback_url`` must
    point at a public address, or at one ``destinations`` (HITL_WEBHOOK_ALLOW) allows."""
    return ITEM.parse(raw, webhook_secret, prefix, destinations)


def _destinations(rt: Runtime) -> Destinations:
    return Destinations.allowing(rt.settings.webhook_allow)


# -- handlers -------------------------------------------------------------------------------


async def predict(request: web.Request) -> web.Response:
    """Store the item (if new), score it, answer with the prediction or the human's label."""
    rt = _runtime(request)
    item = parse_item(
        await read_object(request), rt.settings.webhook_secret, destinations=_destinations(rt)
    )
    [item], twins = redacted(rt, [item])  # first: an item sent without an id is named by its text
    [item] = with_redaction_twins(rt.store, [item], twins)  # or as it was with HITL_REDACT before
    [item] = with_stored_ids(rt.store, [item])  # an item stored under its id of before
    if (gone := deleted_items_before(rt.store, [item])).get(item.id):
        raise ApiError(410, gone[item.id], "id")
    try:
        created = await request.app[INTAKE].add([item])
    except StoredWithAnotherText:  # neither stored, nor scored, nor its callback_url taken
        raise ApiError(409, another_text(item.id), "id") from None
    if not created:  # a DELETE while it waited to be stored: the store refused it
        _refuse_if_gone(rt.store, item.id)
    await _score(rt, [item.id])
    if created:
        rt.wake_dispatcher()
    stored = rt.store.get_item(item.id)
    if stored is None:  # deleted while it was scored (a DELETE, `hitl delete`)
        _refuse_if_gone(rt.store, item.id, always=True)
    callback = callback_results(rt.store, [item]).get((item.id, item.callback_url), {})
    return web.json_response({**_prediction(rt.store, stored, rt.settings.labels), **callback})


def another_text(item_id: str) -> str:
    """Why an item whose id is stored with another text is refused (a 409 for
    ``/api/predict``, a rejected result in ``/api/items``): `hitl import`'s words for such a row,
    for a producer. A deleted id is never stored again, so a changed text needs a new id."""
    return (
        f"id {quoted(item_id, 60)} is stored with another text (an id names one item, and the"
        " API never changes a stored one): this text was neither stored nor scored; send it"
        f" under a new id, and DELETE /api/items/{quote(item_id, safe='')} if it replaces the"
        " stored item (a deleted id is not stored again)"
    )


def _refuse_if_gone(store: Store, item_id: str, *, always: bool = False) -> None:
    """Raise the 410 a request about ``item_id`` gets when it was deleted and is not stored
    (``always``: it is gone, whatever the record of deletions says)."""
    gone = deleted_before(store, [item_id])
    if item_id in gone:
        raise ApiError(410, gone[item_id], "id")
    if always:
        raise ApiError(
            410,
            f"item {quoted(item_id, 200)} was deleted while it was stored; send a new item under"
            " a new id",
            "id",
        )


@dataclass
class ParsedItems:
    """A request's items once checked: each good one with its index (the first of an id, and
    the repeats of an id already earlier in the request), and a result for each bad one."""

    accepted: list[tuple[int, ApiItem]]
    repeated: list[tuple[int, ApiItem]]
    rejected: list[dict[str, Any]]


def parse_items(
    body: dict[str, Any], webhook_secret: str | None, destinations: Destinations
) -> ParsedItems:
    """Check a ``POST /api/items`` body and each of its items (``parse_item``); raise
    ``ApiError`` only for the body itself, so one bad item never sinks the good ones."""
    ITEMS.check(body, unknown_hint='send {"items": [...]}')
    parsed = ParsedItems([], [], [])
    seen: set[str] = set()
    for index, raw in enumerate(body["items"]):
        try:
            item = parse_item(raw, webhook_secret, f"items[{index}].", destinations)
        except ApiError as exc:
            parsed.rejected.append(
                {"index": index, "id": None, "result": "rejected", "error": exc.message,
                 "field": exc.field}
            )  # fmt: skip
            continue
        if item.id in seen:
            parsed.repeated.append((index, item))
            continue
        seen.add(item.id)
        parsed.accepted.append((index, item))
    return parsed


async def add_items(request: web.Request) -> web.Response:
    """Store and score up to MAX_ITEMS items; each gets its own result, so one bad item
    never sinks the good ones. The items are checked in a worker thread (the schema check
    takes about 0.2 ms an item: 0.2 s of event loop for a full request); the insert, one
    short transaction on the loop's connection, stays here."""
    rt = _runtime(request)
    body = await read_object(request)
    parsed = await asyncio.to_thread(
        parse_items, body, rt.settings.webhook_secret, _destinations(rt)
    )
    accepted, repeated = parsed.accepted, parsed.repeated
    if accepted or repeated:
        # a full request's texts under several regular expressions: off the loop, as the check
        cleaned, twins = await asyncio.to_thread(
            redacted, rt, [item for _, item in accepted + repeated]
        )
        cleaned = with_redaction_twins(rt.store, cleaned, twins)  # the one read: on the loop's
        pairs = [
            (index, item) for (index, _), item in zip(accepted + repeated, cleaned, strict=True)
        ]
        accepted, repeated = pairs[: len(accepted)], pairs[len(accepted) :]
    if accepted or repeated:  # items stored under their id of before: theirs again
        adopted = with_stored_ids(rt.store, [item for _, item in accepted + repeated])
        pairs = [
            (index, item) for (index, _), item in zip(accepted + repeated, adopted, strict=True)
        ]
        accepted, repeated = pairs[: len(accepted)], pairs[len(accepted) :]
    results: list[dict[str, Any]] = list(parsed.rejected)
    if gone := deleted_items_before(rt.store, [item for _, item in accepted + repeated]):
        accepted, repeated = _refused_as_deleted(results, accepted, repeated, gone)
    sent = [item for _, item in accepted + repeated]  # a repeat may bring the callback_url
    # its results say no status: a callback_url registered on an item already left to the
    # model or set aside gets the webhook that says so (``tell_settled``)
    added = rt.store.add_api_items(sent, SOURCE, tell_settled=True)
    created = set(added)
    if added.conflicts:  # an id stored with another text: rejected, as `hitl import` rejects it
        pairs = accepted + repeated  # as ``sent``
        apart = {pairs[n][0] for n in added.conflicts}  # their indexes in the request
        for index, item in pairs:
            if index in apart:
                results.append(
                    {"index": index, "id": item.id, "result": "rejected",
                     "error": another_text(item.id), "field": f"items[{index}].id"}
                )  # fmt: skip
        accepted = [(index, item) for index, item in accepted if index not in apart]
        repeated = [(index, item) for index, item in repeated if index not in apart]
        sent = [item for _, item in accepted + repeated]
    # deleted since the check above (`hitl delete` in another process): the store refused them
    if late := deleted_before(rt.store, [item.id for item in sent if item.id not in created]):
        accepted, repeated = _refused_as_deleted(results, accepted, repeated, late)
        sent = [item for item in sent if item.id not in late]
    repeated_at = {index for index, _ in repeated}
    callbacks = callback_results(rt.store, sent)
    for index, item in accepted + repeated:
        result = "created" if index not in repeated_at and item.id in created else "duplicate"
        callback = callbacks.get((item.id, item.callback_url), {})
        results.append({"index": index, "id": item.id, "result": result, **callback})
    results.sort(key=lambda r: r["index"])
    if created:
        # its results say no status: an item left to the model is told by webhook
        await _score(rt, [item.id for _, item in accepted if item.id in created], tell_new=True)
        scorer_of(rt).wake()  # anything else waiting (e.g. a model that failed on some)
        rt.wake_dispatcher()
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
        if gone := deleted_before(rt.store, [item_id]):
            raise ApiError(410, gone[item_id], "id")
        raise _no_item(rt.store, item_id)
    out = rt.store.labels_not_in_force(rt.settings.labels)
    resolution = rt.store.resolution(item_id)
    retired = resolution is not None and out.undecides(resolution["label"])
    if retired:  # not decided any more: it waits in review for a label in force
        resolution = None
        # and its prediction is the serving model's label in force, as for any item waiting
        # for people: an item labeled before any model (an import's) was never scored, so it
        # is scored now, this one item only, off the loop as /api/predict scores
        await _score(rt, [item_id])
        if (item := rt.store.get_item(item_id)) is None:  # deleted while it was scored
            _refuse_if_gone(rt.store, item_id, always=True)
            raise _no_item(rt.store, item_id)
    prediction = None
    if item["confidence"] is not None:
        model_label, confidence, ranked = model_guesses(rt.store, item, rt.settings.labels, out)
        prediction = {
            "label": model_label,
            "confidence": confidence,
            "ranked": ranked,
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
            "status": api_status(item["status"], retired=retired),
            "queue_status": item["status"],
            "prediction": prediction,
            "human": human,
            "callback_url": item["callback_url"],
            "created_at": item["created_at"],
            "updated_at": item["updated_at"],
        }
    )


async def delete_item(request: web.Request) -> web.Response:
    """Delete the item and everything stored about it (`hitl delete`): an erasure request
    reaching the producer. One short transaction on the loop's connection, as an insert is;
    the redrawer deletes its Slack questions. ``?reason=`` is kept with the id."""
    rt = _runtime(request)
    item_id = request.match_info["id"]
    reason = request.query.get("reason", "")[:500]

    async def refuse_missing() -> NoReturn:
        """404, or 410 for an item deleted before (by this route or `hitl delete`)."""
        if gone := deleted_before(rt.store, [item_id]):
            # the retry of a DELETE whose fsync failed (a 503 that said it was deleted): the
            # deletion is on disk before the 410 says it is done (a failed fsync: that 503 again)
            await rt.store.synced()
            raise ApiError(410, gone[item_id], "id")
        raise _no_item(rt.store, item_id)

    if rt.store.get_item(item_id) is None:
        await refuse_missing()
    # which models may hold its text: read off the loop (a metadata file per model version)
    seqs = await asyncio.to_thread(model_label_seqs, rt.settings.models_dir)
    # A DELETE of the same id sent at once (a producer's retry, two workers) or `hitl delete`
    # may have deleted it meanwhile: that one's 410, not the store's "no item" as a 500.
    if rt.store.get_item(item_id) is None:
        await refuse_missing()
    try:
        with rt.store.synced_later():  # no fsync on the event loop...
            done = rt.store.delete_items([item_id], user_id="api", reason=reason, label_seqs=seqs)
    except StoreError:
        if rt.store.get_item(item_id) is not None:  # not another process's delete: the 500
            raise
        await refuse_missing()  # `hitl delete` committed between the look and the delete
    # woken once it is committed, not after the fsync: a failed fsync (a 503 that says it was
    # deleted, its retry a 410) must not leave its questions, with their text, in Slack
    wake = getattr(rt.redrawer, "wake", None)
    if done.messages and wake is not None:
        wake()  # its questions are deleted from Slack
    if done.messages:
        rt.wake_dispatcher()  # an open question's place is free: the next one goes now
    if done.rows.get("labels") and isinstance(rt.trainer, Trainer):
        rt.trainer.wake()  # a label fewer: the next refresh counts its step from those left
    await rt.store.synced()  # ...but deleted on disk before the answer
    logger.info("deleted item %s (API): %d Slack message(s) to delete", item_id, done.messages)
    return web.json_response(
        {
            "id": item_id,
            "deleted": True,
            "answers": done.rows.get("answers", 0),
            "label": bool(done.rows.get("labels")),
            "slack_messages": done.messages,
            "models": done.models,
        }
    )


def _no_item(store: Store, item_id: str) -> ApiError:
    """The 404 for a path's id no item has; naming the item stored under that id without its
    surrounding whitespace, if there is one (stored by `hitl import`, which trims a cell, or by
    the API before it refused such ids): ids are compared as given."""
    trimmed = item_id.strip()
    if trimmed and trimmed != item_id and store.existing_item_ids([trimmed]):
        return ApiError(
            404,
            f"no item with id {quoted(item_id, 200)}; there is one with id"
            f" {quoted(trimmed, 200)}, without the spaces around it (ids are compared as given)",
            "id",
        )
    return ApiError(404, f"no item with id {quoted(item_id, 200)}", "id")


Pairs = list[tuple[int, ApiItem]]


def _refused_as_deleted(
    results: list[dict[str, Any]], accepted: Pairs, repeated: Pairs, gone: dict[str, str]
) -> tuple[Pairs, Pairs]:
    """A batch's items whose id `hitl delete` deleted (``gone``: id → the error) added to
    ``results`` as rejected, and ``accepted`` and ``repeated`` without them."""
    for index, item in accepted + repeated:
        if item.id in gone:
            results.append(
                {"index": index, "id": item.id, "result": "rejected",
                 "error": gone[item.id], "field": f"items[{index}].id"}
            )  # fmt: skip
    return (
        [(index, item) for index, item in accepted if item.id not in gone],
        [(index, item) for index, item in repeated if item.id not in gone],
    )


def redacted(rt: Runtime, items: list[ApiItem]) -> tuple[list[ApiItem], dict[int, list[str]]]:
    """``items`` with the personal data ``HITL_REDACT`` names replaced in their text and meta;
    one sent without an id gets the redacted text's (the same ticket sent again finds it).
    And, per item sent without an id whose text the setting changed, the ids of its text's
    forms under the settings within the current one (``redaction_twin_ids``:
    ``with_redaction_twins`` finds it stored or deleted under one, stored before the setting
    was turned on or with fewer kinds). None with the setting off: an item sent without an id
    is then stored as it comes. Pure: for a worker thread."""
    kinds = rt.settings.redact
    if not kinds:
        return list(items), {}
    redactor = Redactor(kinds)
    out = []
    came: dict[int, str] = {}
    for n, item in enumerate(items):
        # sent without an id, it is named by its text: the redacted one, or the id (a hash
        # shown beside the text everywhere) would let the value be guessed back
        named = item.id == item_id_for_text(item.text)
        text, meta = redactor.item(item.text, item.meta)
        if named and text != item.text:
            came[n] = item.text
        item = dataclasses.replace(
            item,
            text=text,
            meta=meta,
            id=item_id_for_text(text) if named else item.id,
            came=item.text if text != item.text else None,  # its id's stored text may be it
        )
        out.append(item)
    return out, redaction_twin_ids(out, came, kinds)


def deleted_before(store: Store, ids: list[str]) -> dict[str, str]:
    """Of ``ids``, those `hitl delete` (or ``DELETE``) deleted and not stored again, each
    with the error a request about it gets: a producer re-sending an erased ticket must not
    bring it back (``hitl import`` skips those ids too). One indexed read; none at all while
    nothing was ever deleted."""
    if not ids or not store.has_deleted_items():
        return {}
    gone = store.deleted_among(ids)
    stored = store.existing_item_ids(sorted(gone)) if gone else set()
    return {item_id: _deleted_said(store, item_id, item_id) for item_id in gone - stored}


def deleted_items_before(store: Store, items: list[ApiItem]) -> dict[str, str]:
    """``deleted_before`` for a producer's items: also one sent without an id whose text an
    older version stored under another id (``bot.ingest.deleted_items_among``), deleted since."""
    if not items or not store.has_deleted_items():
        return {}
    places = deleted_items_among(store, items)
    stored = store.existing_item_ids(sorted({items[n].id for n in places})) if places else set()
    said: dict[str, str] = {}
    for n in sorted(places):
        item = items[n]
        if item.id in stored:
            continue
        gone = (
            item.id
            if store.deleted_item(item.id)
            else next(
                (old for old in legacy_item_ids(item.text) if store.deleted_item(old)), item.id
            )
        )
        said[item.id] = _deleted_said(store, item.id, gone)
    return said


def _deleted_said(store: Store, item_id: str, recorded: str) -> str:
    """The 410's words for ``item_id`` (``recorded``: the id its deletion was recorded
    under): when, and by which way (this API's DELETE records its user as ``api``)."""
    found = store.deleted_item(recorded) or {}
    how = "DELETE /api/items/{id}" if found.get("user_id") == "api" else "hitl delete"
    return (
        f"item {quoted(item_id, 200)} was deleted at {found.get('at', '')} ({how}) and is not"
        " stored again; send a new item under a new id"
    )


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_BYTES, content_type="application/json", charset="utf-8")


async def metrics(request: web.Request) -> web.Response:
    try:
        body = await request.app[METRICS].scrape()  # the database's counts off the loop
    except Exception:  # noqa: BLE001 - a scrape failure must not look like a crash
        logger.exception("metrics scrape failed")
        return web.Response(status=503, text="metrics unavailable; see the server log\n")
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _score(rt: Runtime, ids: list[str], *, tell_new: bool = False) -> None:
    """Score this request's items, and only those, with the champion (in a worker thread;
    an item another request is scoring is waited for, not scored twice). A failing model
    leaves the items to people. ``tell_new``: those the model is sure of get their ``auto``
    webhook (``POST /api/items``, whose results carry no status; ``Scorer.score_ids``).

    A server with no model first loads the champion the database names, if any (made by
    `hitl retrain` from the CLI, which scored the waiting items with it), rather than wait for
    the champion watch: an answer never names a model that ``/healthz`` says is not there."""
    loaded = False
    if rt.model is None:
        try:
            loaded = await sync_champion(rt)  # one read of the models table while there is none
        except Exception:  # noqa: BLE001 - the items are stored; people will label them
            # the champion watch tries it every second and says why, once: not every request
            logger.debug("loading the champion the database names failed", exc_info=True)
    model = rt.model  # the working model when a gated refresh replaced the champion
    if model is None:
        return
    try:
        # this request's items first, as its own: an /api/predict answer says auto, no
        # webhook does; POST /api/items's results do not, its webhooks do (``tell_new``)
        await scorer_of(rt).score_ids(ids, tell_new=tell_new)
    except DatabaseError as exc:  # a full disk: one line, not a traceback
        problem = database_problem(rt.settings.db, exc)
        logger.error("scores of model v%d not stored: %s", model.version, problem)
    except ScoringOutOfMemory:
        pass  # the scorer said it, once while it lasts; /healthz and /metrics show it
    except Exception:  # noqa: BLE001 - the items are stored; people will label them
        logger.exception("scoring with model v%d failed", model.version)
    if loaded:  # then the queue the new champion has not scored (``follow_champion``)
        try:
            await scorer_of(rt).rescore()
        except Exception:  # noqa: BLE001 - the walk's next wake goes on with it
            logger.exception("re-scoring the queue with model v%d failed", model.version)
        rt.wake_dispatcher()


def callback_results(store: Store, items: list[ApiItem]) -> dict[tuple[str, str], dict[str, str]]:
    """What to tell the producer of each item it sent with a callback_url, by (id, URL):
    ``callback`` is ``registered`` when that URL is the item's now (the webhook goes to it once
    people resolve the item, or its wait for them ends: skipped, auto), else
    ``not_registered`` with ``callback_note`` saying why. A known
    item takes a callback_url only while it has none and is not resolved
    (``Store.add_api_items``): a registered URL is never replaced, and a resolved item's label
    is for asking (GET /api/items/{id})."""
    sent = {(item.id, item.callback_url) for item in items if item.callback_url}
    stored_urls = store.callback_urls(sorted({item_id for item_id, _ in sent}))
    answers: dict[tuple[str, str], dict[str, str]] = {}
    for item_id, url in sent:
        if item_id not in stored_urls:  # deleted meanwhile (`hitl delete`): nothing to say
            continue
        stored = stored_urls[item_id]
        if stored == url:
            answers[item_id, url] = {"callback": "registered"}
            continue
        # Items are never deleted: with no URL stored, the item was resolved when it came.
        note = (
            "the item already has another callback_url, which is kept"
            if stored is not None
            else "the item is already resolved: GET /api/items/{id} has its label"
        )
        answers[item_id, url] = {"callback": "not_registered", "callback_note": note}
    return answers


def api_status(item_status: str, *, retired: bool = False) -> str:
    """What a producer sees: auto (the model is confident), resolved (people decided),
    skipped (people skipped it) or needs_review (waiting for people). ``retired``: the
    item's decided label was retired since (``NotInForce.undecides``): it left training and
    export and waits in review for a label in force, so it is not decided (needs_review),
    as webhooks tell it."""
    if item_status in ("auto", "resolved", "skipped") and not retired:
        return item_status
    return "needs_review"


def _prediction(
    store: Store, item: dict[str, Any], configured: Sequence[str] = ()
) -> dict[str, Any]:
    out = store.labels_not_in_force(configured)
    model_label, confidence, ranked = model_guesses(store, item, configured, out)
    label = model_label
    status = api_status(item["status"])
    if status == "resolved" and (resolution := store.resolution(item["id"])):
        if out.undecides(resolution["label"]):
            # retired since: the item waits in review, and the answer is the model's label
            # in force, as for any item waiting for people
            status = api_status(item["status"], retired=True)
        else:
            label = resolution["label"]
    return {
        "id": item["id"],
        "label": label,
        "confidence": confidence,
        "ranked": ranked,
        "model_version": item["model_version"],
        "model_label": model_label,
        "status": status,
    }
