"""The fast lane (bot/eventloop.py): urgent steps run before the work queued ahead of them, and
a worker thread's result wakes an urgent caller first."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bot import eventloop
from bot.eventloop import FastLaneEventLoop, urgent


def run(main, loop_factory=FastLaneEventLoop):  # noqa: ANN001
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


async def steps(order: list[str], name: str, n: int, *, is_urgent: bool = False) -> None:
    """``n`` steps, each recorded in ``order`` under ``name`` before yielding to the loop."""
    if is_urgent:
        urgent()
    for _ in range(n):
        order.append(name)
        await asyncio.sleep(0)


@pytest.mark.parametrize("fast_lane", [True, False])
def test_an_urgent_tasks_steps_run_before_the_steps_queued_ahead_of_them(fast_lane: bool):
    order: list[str] = []

    async def main() -> None:
        await asyncio.gather(
            *(steps(order, f"p{i}", 3) for i in range(5)), steps(order, "click", 3, is_urgent=True)
        )

    run(main, FastLaneEventLoop if fast_lane else None)
    first = order.index("click")
    if fast_lane:  # started last, then never waits behind the five
        assert order[first : first + 3] == ["click"] * 3
    else:  # first come, first served: each of its steps waits for the five
        assert order[first : first + 3] == ["click", "p0", "p1"]
    assert sorted(order) == sorted([f"p{i}" for i in range(5)] * 3 + ["click"] * 3)


def test_tasks_an_urgent_task_starts_are_urgent_and_a_task_can_step_out_of_the_lane():
    order: list[str] = []

    async def main() -> None:
        async def request() -> None:
            urgent()
            order.append("request")
            child = asyncio.create_task(steps(order, "child", 2))  # inherits the lane
            await asyncio.sleep(0)
            urgent(False)  # acked: what follows waits its turn
            await asyncio.sleep(0)
            order.append("after ack")
            await child

        others = [asyncio.create_task(steps(order, f"p{i}", 6)) for i in range(3)]
        await asyncio.gather(request(), *others)

    run(main)
    start = order.index("request")
    assert order[start + 1 : start + 3] == ["child", "child"]  # ahead of the queued steps
    between = order[start + 3 : order.index("after ack")]
    assert sorted(between) == ["p0", "p1", "p2"]  # out of the lane: behind one step of each


@pytest.mark.parametrize("to_thread", [eventloop.to_thread, asyncio.to_thread])
def test_a_threads_result_wakes_an_urgent_caller_before_the_queued_work(to_thread):  # noqa: ANN001
    """``eventloop.to_thread`` hands the result back in the caller's context; asyncio's own, in
    the worker thread's, so the urgent caller waits behind everything queued meanwhile."""
    order: list[object] = []
    handed_back = threading.Event()

    class Observed(FastLaneEventLoop):
        def call_soon_threadsafe(self, *args, **kwargs):  # noqa: ANN002, ANN003
            handle = super().call_soon_threadsafe(*args, **kwargs)
            handed_back.set()
            return handle

    async def main() -> None:
        release = threading.Event()

        async def caller() -> None:
            urgent()
            await to_thread(release.wait)
            order.append("woken")

        task = asyncio.create_task(caller())
        await asyncio.sleep(0)  # the caller waits for its thread
        loop = asyncio.get_running_loop()
        for n in range(20):
            loop.call_soon(order.append, n)
        release.set()
        assert handed_back.wait(10)  # the result is queued (the loop thread waits for it here)
        await task

    run(main, Observed)
    if to_thread is eventloop.to_thread:
        assert order[0] == "woken"
    else:
        assert order.index("woken") == 20
    assert [x for x in order if x != "woken"] == list(range(20))


def test_a_threads_error_is_raised_in_the_caller():
    async def main() -> None:
        def fail() -> None:
            raise OSError("disk gone")

        with pytest.raises(OSError, match="disk gone"):
            await eventloop.to_thread(fail)
        assert await eventloop.to_thread(sum, [1, 2]) == 3

    run(main)


def test_work_an_urgent_task_starts_in_the_background_waits_its_turn():
    order: list[str] = []

    async def main() -> None:
        async def request() -> asyncio.Task:
            urgent()
            return eventloop.background(steps(order, "refresh", 2), name="refresh")

        others = [asyncio.create_task(steps(order, f"p{i}", 4)) for i in range(3)]
        await asyncio.sleep(0)  # the three have taken a step
        refresh = await asyncio.create_task(request())
        await asyncio.gather(refresh, *others)

    run(main)
    first = order.index("refresh")
    assert order[first + 1 : first + 4] != ["refresh"] and order.count("refresh") == 2
    assert sorted(order[first + 1 : order.index("refresh", first + 1)]) == ["p0", "p1", "p2"]


def test_urgent_callbacks_run_first_come_first_served_among_themselves():
    """asyncio relies on the order of callbacks (a future's run in the order they were added):
    the lane keeps it among urgent ones, ahead of the rest."""
    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        lane = eventloop.urgent_context()
        loop.call_soon(order.append, "n1")
        for name in ("u1", "u2", "u3"):
            loop.call_soon(order.append, name, context=lane)
        loop.call_soon(order.append, "n2")
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    run(main)
    assert order == ["u1", "u2", "u3", "n1", "n2"]


def test_an_urgent_task_opens_new_connections_without_an_error():
    """Slack's requests open connections in the lane (the App Home's views.publish after an
    idle while, when no pooled connection is left). Run in reverse, the connecting socket's
    callbacks gave it to its transport before removing its writer: every such request failed
    with "Can not write request body" and the loop logged "File descriptor … is used by
    transport"."""
    from aiohttp import ClientSession, web

    errors: list[str] = []

    async def main() -> list[dict]:
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: errors.append(context["message"])
        )

        async def publish(_request: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/api/views.publish", publish)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]

        async def request() -> dict:
            urgent()
            async with ClientSession() as http:  # a new connection each
                url = f"http://127.0.0.1:{port}/api/views.publish"
                async with http.post(url, json={}) as response:
                    return await response.json()

        try:
            return await asyncio.gather(*(request() for _ in range(3)))
        finally:
            await runner.cleanup()

    assert run(main) == [{"ok": True}] * 3
    assert errors == []


def test_a_threads_result_keeps_the_fast_lane_with_python_314s_call_soon_threadsafe(
    monkeypatch: pytest.MonkeyPatch,
):
    """Python 3.14's ``call_soon_threadsafe`` appends to the queue itself, no longer through
    ``_call_soon`` (gh-128340): with it the urgent caller woke 21st (outside test, 3.14's body
    put in 3.13's asyncio). Here asyncio's is replaced with 3.14's, as 3.14 ships it."""

    def call_soon_threadsafe_314(self, callback, *args, context=None):  # noqa: ANN001, ANN002
        self._check_closed()
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        self._write_to_self()
        return handle

    monkeypatch.setattr(
        asyncio.base_events.BaseEventLoop, "call_soon_threadsafe", call_soon_threadsafe_314
    )
    test_a_threads_result_wakes_an_urgent_caller_before_the_queued_work(eventloop.to_thread)
