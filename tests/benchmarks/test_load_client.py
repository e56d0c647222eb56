"""bot_load.py's load generator (predict_growth.py's too): what it times is the server, not
the load generator's own pauses."""

from __future__ import annotations

import gc

from aiohttp import web

from tests.benchmarks.runner import benchmark_module


async def test_requests_are_timed_with_the_load_generators_collector_off():
    """A full collection scans every object the benchmark holds (at a million items it took
    55-83 ms, every half second) and stops the whole process, the requests in flight included:
    the clients would count it as the server's latency."""
    bench = benchmark_module("bot_load.py")
    seen: list[tuple[bool, int]] = []

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        seen.append((gc.isenabled(), gc.get_freeze_count()))
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/slack/events", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    _, port = runner.addresses[0][:2]
    url = f"http://127.0.0.1:{port}/slack/events"
    try:
        clicks = await bench["run_load"]("clicks", url, [{"type": "block_actions"}] * 6, 3)
        predicts = await bench["predict_load"](
            url, ["a text"], 2, n=4, stop=None, tag="t"
        )  # the handler answers any POST
    finally:
        await runner.cleanup()
    assert (clicks.ok, predicts.ok, len(seen)) == (6, 4, 10)
    assert {enabled for enabled, _ in seen} == {False}  # no collection while they are timed
    assert min(frozen for _, frozen in seen) > 0  # what was alive before is never scanned
    assert gc.isenabled() and gc.get_freeze_count() == 0  # and collection resumes after
