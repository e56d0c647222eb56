"""The sandbox's browser UI: one HTML page, its CSS and JavaScript, and a small JSON API.

The page asks ``GET /sandbox/state`` for what one person sees (long polling: the request waits
until something changes), and sends what they do to the ``POST /sandbox/*`` routes, which hand it
to the ``Sandbox`` (it signs it and POSTs it to the bot's ``/slack/events``). Mounted on the
bot's own aiohttp app by ``hitl demo``; there is no build step.

Every sandbox route answers only requests addressed to the server's own loopback address
(``Host`` is 127.0.0.1, localhost or [::1] with its port: a DNS-rebinding page's host is
refused), and the POST routes only same-origin JSON (a cross-site page can send a "simple"
text/plain POST without a preflight, and all the demo's people are admins).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.sandbox.workspace import Sandbox, SandboxError

logger = logging.getLogger(__name__)

SANDBOX = web.AppKey("sandbox", Sandbox)
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "mrkdwn.js": "text/javascript",
}
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
LONG_POLL = 20.0  # seconds a state request waits for a change
MAX_TEXT = 4000


def add_routes(app: web.Application, sandbox: Sandbox) -> None:
    app[SANDBOX] = sandbox
    app.router.add_get("/", _local(index))
    app.router.add_get("/sandbox/static/{name}", _local(static))
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/sandbox/state", _local(state))
    app.router.add_get("/sandbox/files/{file_id}", _local(file_content))
    app.router.add_post("/sandbox/action", _json_route(_action))
    app.router.add_post("/sandbox/options", _json_route(_options))
    app.router.add_post("/sandbox/command", _json_route(_command))
    app.router.add_post("/sandbox/home", _json_route(_home))
    app.router.add_post("/sandbox/view/submit", _json_route(_submit))
    app.router.add_post("/sandbox/view/close", _json_route(_close))

    async def let_browsers_go(app: web.Application) -> None:
        sandbox.stop_waiting()

    app.on_shutdown.append(let_browsers_go)


Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guard_host(app: web.Application) -> None:
    """Answer on every route of ``app`` (the demo's bot: ``/slack/events``, ``/api/*``) only
    requests addressed to this server by a loopback name and its port: its signing secret and
    token are the sandbox's published ones, so a DNS-rebinding page (a name that resolves to
    127.0.0.1) could else send it signed commands as an admin. Before the app starts."""

    @web.middleware
    async def own_host_only(request: web.Request, handler: Route) -> web.StreamResponse:
        if (refused := _refusal(request, writes=False)) is not None:
            return refused
        return await handler(request)

    app.middlewares.append(own_host_only)


def _own_hosts(request: web.Request) -> tuple[set[str], int]:
    """The Host values that name this server (a loopback name, or the address the request came
    in on, with the port it came in on; no port: 80), and that port."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return set(), 0
    address, port = str(sockname[0]), int(sockname[1])
    names = {*LOOPBACK, f"[{address}]" if ":" in address else address}
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts |= names
    return hosts, port


def _refusal(request: web.Request, *, writes: bool) -> web.Response | None:
    """Why the sandbox refuses this request, or None: a Host that is not this server's own
    loopback address, and for a POST a foreign Origin or a body that is not JSON."""
    host = request.headers.get("Host", "").lower()
    hosts, port = _own_hosts(request)
    if host not in hosts:
        return web.json_response(
            {
                "error": f"Host {host or '(none)'!r} is not this sandbox's address: "
                f"open http://127.0.0.1:{port}"
            },
            status=403,
        )
    if not writes:
        return None
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() != f"http://{host}":
        return web.json_response(
            {
                "error": f"Origin {origin!r} is another site: the sandbox takes requests only "
                "from its own page"
            },
            status=403,
        )
    if request.content_type != "application/json":
        return web.json_response(
            {"error": "send a JSON object with Content-Type: application/json"}, status=415
        )
    return None


def _local(route: Route) -> Route:
    """``route``, answered only to requests addressed to this server (see :func:`_refusal`)."""

    async def local(request: web.Request) -> web.StreamResponse:
        return _refusal(request, writes=False) or await route(request)

    return local


async def index(request: web.Request) -> web.Response:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def favicon(request: web.Request) -> web.Response:
    """No icon: an empty answer, so the browser does not log a 404 on every page load."""
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(
        STATIC / name, headers={"Content-Type": STATIC_FILES[name], "Cache-Control": "no-store"}
    )


async def state(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    user = request.query.get("user") or next(iter(sandbox.users), "")
    since = request.query.get("since")
    if since is not None and since.lstrip("-").isdigit():
        await sandbox.wait_changed(int(since), LONG_POLL)
    try:
        return web.json_response(sandbox.state(user))
    except SandboxError as exc:
        return web.json_response({"error": str(exc)}, status=400)


async def file_content(request: web.Request) -> web.Response:
    upload = request.app[SANDBOX].fake.files.get(request.match_info["file_id"])
    if upload is None or not upload.get("completed"):
        raise web.HTTPNotFound()
    name = upload["filename"].lower()
    kind = "image/png" if name.endswith(".png") else "application/octet-stream"
    return web.Response(body=upload["content"], content_type=kind)


Handler = Callable[[Sandbox, dict[str, Any]], Awaitable[dict[str, Any]]]


def _json_route(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def route(request: web.Request) -> web.Response:
        refused = _refusal(request, writes=True)
        if refused is not None:
            return refused
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            return web.json_response({"error": "send a JSON object"}, status=400)
        try:
            return web.json_response(await handler(request.app[SANDBOX], data))
        except SandboxError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except (KeyError, TypeError) as exc:
            return web.json_response({"error": f"missing or bad field: {exc}"}, status=400)

    return route


def _where(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data.get(key) for key in ("channel", "ts", "view_id")}


def _view_hash(data: dict[str, Any]) -> str | None:
    """The ``hash`` of the view the page drew (a modal's), if it sent one."""
    return None if data.get("hash") is None else str(data["hash"])


async def _action(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    reply = await sandbox.click(
        str(data["user"]),
        action_id=str(data["action_id"]),
        block_id=str(data["block_id"]),
        value=data.get("value"),
        view_hash=_view_hash(data),
        **_where(data),
    )
    return {"status": reply.status, "body": reply.body}


async def _options(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    options = await sandbox.suggest(
        str(data["user"]),
        action_id=str(data["action_id"]),
        block_id=str(data["block_id"]),
        value=str(data.get("value") or "")[:MAX_TEXT],
        **_where(data),
    )
    return {"options": options}


async def _command(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    text = str(data["text"])[:MAX_TEXT].strip()
    if not text.startswith("/"):
        raise SandboxError("The sandbox only sends slash commands: try /hitl help")
    reply = await sandbox.command(str(data["user"]), str(data["channel"]), text)
    return {"status": reply.status, "text": reply.text, "body": reply.body}


async def _home(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    reply = await sandbox.open_home(str(data["user"]))
    return {"status": reply.status}


async def _submit(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    values = data.get("values") or {}
    if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
        raise SandboxError("values: send {block_id: {action_id: value}}")
    reply = await sandbox.submit_view(
        str(data["user"]), str(data["view_id"]), values, view_hash=_view_hash(data)
    )
    return {"status": reply.status, "body": reply.body}


async def _close(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    reply = await sandbox.close_view(str(data["user"]), str(data["view_id"]))
    return {"status": reply.status if reply else 200}
