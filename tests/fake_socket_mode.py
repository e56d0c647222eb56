"""A local Socket Mode server for one test: WebSocket `GET /link`, envelopes in, acks out (§5).

    server = FakeSocketMode()
    fake_slack.socket_url = await server.start()     # or client.wss_uri = server.ws_url
    envelope_id = await server.send_envelope("slash_commands", command_fields("stats"))
    ack = await server.next_ack(envelope_id)         # {"envelope_id": ..., "payload": {...}}
    await server.close()

Nothing sleeps: `send_envelope` waits for a connected client, `next_ack` for the matching ack.
For faults: `connections_made` lists every connection (`Link`: its acks, whether it is open),
`send_envelope(..., on=link)` and `disconnect(..., on=link)` pick one, `drop(link)` closes or
aborts one, and `BlackHole` is a server that accepts TCP and never answers a handshake.
`on_connect(link)` runs on each new connection after its hello (to close it at once, say), and
`before_close_reply(link)` when a client closes a connection, before the server answers the
close (Slack's envelopes already on their way); `FakeSocketMode(answer_pings=False)` leaves
the client's pings unanswered.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

ENVELOPE_TYPES = frozenset({"events_api", "interactive", "slash_commands"})


@dataclass(eq=False)
class Link:
    """One connection a client made: what it acked on it, and whether it is still open."""

    socket: web.WebSocketResponse
    request: web.Request
    acks: list[dict] = field(default_factory=list)
    open: bool = True
    opened_at: float = field(default_factory=time.monotonic)


class BlackHole:
    """Accepts TCP connections and never answers (a stuck edge or proxy)."""

    def __init__(self) -> None:
        self.url = ""
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._held: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            self._held.append(writer)

        self._server = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/link"
        return self.url

    async def close(self) -> None:
        for writer in self._held:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class FakeSocketMode:
    def __init__(self, *, app_id: str = "A0HITL", answer_pings: bool = True):
        self.app_id = app_id
        self.answer_pings = answer_pings  # False: a client's pings go unanswered
        self.ws_url = ""
        self.received: list[dict] = []  # every JSON message a client sent, in order
        self.acks: dict[str, dict] = {}  # envelope_id -> the client's ack
        self.connections = 0  # how many times a client connected
        self.connections_made: list[Link] = []  # every connection, in order
        self._sockets: list[web.WebSocketResponse] = []
        self._changed = asyncio.Condition()
        self.on_connect: Callable[[Link], Awaitable[None]] | None = None
        self.before_close_reply: Callable[[Link], Awaitable[None]] | None = None
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_get("/link", self._handle_link)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.ws_url = f"ws://{host}:{self._runner.addresses[0][1]}/link"
        return self.ws_url

    async def close(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_connected(self, count: int = 1, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until a client is connected and `count` connections have been made in all."""
        await self._wait_for(lambda: bool(self._sockets) and self.connections >= count, timeout)

    async def send_envelope(
        self,
        type: str,
        payload: dict,
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        envelope_id: str | None = None,
        on: Link | None = None,
    ) -> str:
        """Send an envelope to the newest connected client (or on `on`); returns its
        envelope_id."""
        if type not in ENVELOPE_TYPES:
            raise ValueError(f"type={type!r}; use one of {sorted(ENVELOPE_TYPES)}")
        await self.wait_connected()
        envelope_id = envelope_id or str(uuid.uuid4())
        if accepts_response_payload is None:
            # Slack accepts a response payload for commands and for views/options, not for events.
            accepts_response_payload = type != "events_api"
        envelope = {
            "envelope_id": envelope_id,
            "type": type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if type == "events_api":
            envelope |= {"retry_attempt": retry_attempt, "retry_reason": retry_reason}
        await (on.socket if on is not None else self._sockets[-1]).send_json(envelope)
        return envelope_id

    async def disconnect(self, reason: str = "refresh_requested", on: Link | None = None) -> None:
        """Ask the client to reconnect, as Slack does before recycling a connection."""
        await self.wait_connected()
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}}
        await (on.socket if on is not None else self._sockets[-1]).send_json(message)

    def live(self) -> list[Link]:
        """The connections still open."""
        return [link for link in self.connections_made if link.open]

    async def drop(self, link: Link, *, abort: bool = False) -> None:
        """Close `link` (a close frame), or with `abort` drop its TCP connection unannounced."""
        if abort:
            if link.request.transport is not None:
                link.request.transport.abort()
        else:
            await link.socket.close()

    async def wait_for(self, predicate, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Return once `predicate()` is true; re-checked whenever a connection opens, closes or
        sends something."""
        await self._wait_for(predicate, timeout)

    async def next_ack(self, envelope_id: str, timeout: float = 30.0) -> dict:  # noqa: ASYNC109
        await self._wait_for(lambda: envelope_id in self.acks, timeout)
        return self.acks[envelope_id]

    async def _wait_for(self, predicate, timeout: float) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle_link(self, request: web.Request) -> web.WebSocketResponse:
        # autoping answers the client's pings; a client's close is answered below
        socket = web.WebSocketResponse(autoping=self.answer_pings, autoclose=False)
        await socket.prepare(request)
        self.connections += 1
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "connection_info": {"app_id": self.app_id},
                "debug_info": {"host": "fake-socket-mode", "approximate_connection_time": 18060},
            }
        )
        link = Link(socket, request)
        self.connections_made.append(link)
        self._sockets.append(socket)
        await self._notify()
        try:
            if self.on_connect is not None:
                await self.on_connect(link)
            while True:
                message = await socket.receive()
                if message.type == WSMsgType.CLOSE:  # the client closes it
                    if self.before_close_reply is not None:
                        await self.before_close_reply(link)
                    await socket.close()
                    break
                if message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                if message.type != WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                self.received.append(data)
                if "envelope_id" in data:
                    self.acks[data["envelope_id"]] = data
                    link.acks.append(data)
                await self._notify()
        finally:
            link.open = False
            self._sockets.remove(socket)
            await self._notify()
        return socket
