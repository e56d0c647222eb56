"""What the producer API's refusals say, from an outside test of a producer written from the
README alone (LOW): a request refused already (no or a wrong token, a body over the limit) was
told "100 Continue" when it sent ``Expect: 100-continue`` (curl does for a body over 1 KB), so
the client sent its whole body for the 413 or 401; an unknown field whose name holds a line
break was echoed raw, making the one-line error two lines; ``/healthz`` and ``/metrics``
answered a wrong method in text/plain, not the API's JSON; a 413 on ``/api/predict`` (one item)
advised sending fewer items."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from tests.bot.harness import Bot
from tests.bot.test_api import AUTH, post_json, start_api, stored


@pytest.fixture
async def api(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    async for bot in start_api(fake_slack, tmp_path):
        yield bot


async def head_of_answer(api: Bot, request: bytes) -> tuple[bytes, dict]:
    """The first status line the server writes for ``request`` (headers only, no body sent),
    and the JSON body of a final answer (empty for a 100)."""
    server = api.http.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 30)
        if b" 100 " in status:
            return status, {}
        length = 0
        while (line := await asyncio.wait_for(reader.readline(), 30)) != b"\r\n":
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, json.loads(await asyncio.wait_for(reader.readexactly(length), 30))
    finally:
        writer.close()
        await writer.wait_closed()


def expecting(path: str, length: int, token: str | None) -> bytes:
    auth = f"Authorization: {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("path", ["/api/predict", "/api/items"])
async def test_expect_100_continue_gets_the_refusal_before_the_body_is_sent(api: Bot, path: str):
    token = AUTH["Authorization"]
    status, said = await head_of_answer(api, expecting(path, 5_000_000, token))
    assert status.startswith(b"HTTP/1.1 413 "), status
    assert said["field"] == "body" and said["error"].startswith("the body is over the limit")
    status, said = await head_of_answer(api, expecting(path, 100, "Bearer wrong-token-0000000"))
    assert status.startswith(b"HTTP/1.1 401 "), status
    assert said["error"].startswith("missing or wrong API token")
    status, _ = await head_of_answer(api, expecting(path, 100, None))
    assert status.startswith(b"HTTP/1.1 401 "), status
    # a request nothing refuses yet is told to go on, and is answered once its body comes
    status, _ = await head_of_answer(api, expecting(path, 100, token))
    assert status == b"HTTP/1.1 100 Continue\r\n"
    body = {"text": "Refund me", "id": "E-1"}
    sent = await api.http.post(
        path,
        data=json.dumps(body if path == "/api/predict" else {"items": [body]}),
        headers={**AUTH, "Expect": "100-continue"},
    )
    assert sent.status == 200 and stored(api) == 1


@pytest.mark.parametrize("name", ["callback\nurl", "colour\tname", "x\u202eevil"])
async def test_an_unknown_field_s_hidden_characters_are_shown_escaped_on_one_line(
    api: Bot, name: str
):
    said = await (await post_json(api, "/api/predict", {"text": "x", name: 1})).json()
    shown = json.dumps(name, ensure_ascii=False)[1:-1]  # \n, \t as escapes
    if "\u202e" in name:
        shown = name.replace("\u202e", "\\u202e")
    assert said["error"].startswith(f'"{shown}" is not a known field; use text, id, meta')
    assert "\n" not in said["error"] and "\t" not in said["error"]
    assert "\u202e" not in said["error"]
    assert said["field"] == name  # the JSON field itself, as sent
    ok = await (await post_json(api, "/api/predict", {"text": "x", "colour": 1})).json()
    assert ok["error"].startswith("colour is not a known field")  # a plain name as before


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_a_wrong_method_on_healthz_and_metrics_is_the_api_s_json_405(api: Bot, path: str):
    response = await api.http.post(path, data=b"{}")
    assert response.status == 405
    assert response.headers["Allow"] == "GET,HEAD"
    assert response.content_type == "application/json"
    assert (await response.json())["error"] == f'"{path}" does not take POST; send GET or HEAD'
    assert (await api.http.get(path)).status == 200


@pytest.mark.parametrize(
    ("path", "advice"),
    [("/api/predict", "; send it with a smaller meta"), ("/api/items", "; send fewer items")],
)
async def test_a_body_over_the_limit_is_told_what_to_send_for_its_route(
    api: Bot, path: str, advice: str
):
    item = {"text": "x", "meta": {"blob": "y" * 1_100_000}}
    body = json.dumps(item if path == "/api/predict" else {"items": [item]}).encode()
    response = await api.http.post(path, data=io.BytesIO(body), headers=AUTH)
    assert response.status == 413
    assert (await response.json())["error"].endswith(advice)
    assert stored(api) == 0
