"""A local Socket Mode server for one test: WebSocket `GET /link`, envelopes in, acks out (§5).

    server = FakeSocketMode()
    fake_slack.socket_url = await server.start()     # or client.wss_uri = server.ws_url
    envelope_id = await server.send_envelope("slash_commands", command_fields("stats"))
    ack = await server.next_ack(envelope_id)         # {"envelope_id": ..., "payload": {...}}
    await server.close()

Nothing sleeps: `send_envelope` waits for a connected client, `next_ack` for the matching ack.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from aiohttp import WSMsgType, web

ENVELOPE_TYPES = frozenset({"events_api", "interactive", "slash_commands"})


class FakeSocketMode:
    def __init__(self, *, app_id: str = "A0HITL"):
        self.app_id = app_id
        self.ws_url = ""
        self.received: list[dict] = []  # every JSON message a client sent, in order
        self.acks: dict[str, dict] = {}  # envelope_id -> the client's ack
        self.connections = 0  # how many times a client connected
        self._sockets: list[web.WebSocketResponse] = []
        self._changed = asyncio.Condition()
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

    async def wait_connected(self, count: int = 1, timeout: float = 2.0) -> None:  # noqa: ASYNC109
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
    ) -> str:
        """Send an envelope to the newest connected client; returns its envelope_id."""
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
        await self._sockets[-1].send_json(envelope)
        return envelope_id

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, as Slack does before recycling a connection."""
        await self.wait_connected()
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}}
        await self._sockets[-1].send_json(message)

    async def next_ack(self, envelope_id: str, timeout: float = 2.0) -> dict:  # noqa: ASYNC109
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
        socket = web.WebSocketResponse()  # autoping answers the client's pings
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
        self._sockets.append(socket)
        await self._notify()
        try:
            async for message in socket:
                if message.type != WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                self.received.append(data)
                if "envelope_id" in data:
                    self.acks[data["envelope_id"]] = data
                await self._notify()
        finally:
            self._sockets.remove(socket)
            await self._notify()
        return socket
