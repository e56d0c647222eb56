"""The demo's simulated teammates in drive mode (`hitl demo --answers`, benchmarks/refresh.py):
they move the queue themselves and must keep answering while unlabeled items remain, through
signed clicks to the real bot's /slack/events."""

from __future__ import annotations

from pathlib import Path

from bot.demo import DemoOptions, load_data, running_demo


async def test_drive_mode_keeps_answering_when_the_model_is_sure_of_every_item(tmp_path: Path):
    options = DemoOptions(
        db=tmp_path / "demo.db", port=0, size=50, simulate=3, error_rate=0.0, retrain_every=20
    )
    data = load_data(options)
    async with running_demo(options, data, lambda line: None, background=False) as demo:
        rt = demo.rt
        # Every scored item is at or above the threshold: once a model exists nothing is
        # queued as uncertain, and each dispatcher round posts an audit pick or nothing.
        rt.settings = rt.settings.with_changes(threshold=0.0)
        simulator = demo.simulator(drive=True)
        answered = await simulator.run(len(data.pool))
        await rt.background.drain()
        reasons = dict(rt.store.db.execute("SELECT reason, count(*) FROM posts GROUP BY reason"))
        counts = rt.store.count_items()
        posts = [
            call
            for call in demo.fake.calls_to("chat.postMessage")
            if call.params["channel"] == simulator.channel
        ]
    assert answered == len(data.pool) == 40
    assert counts["resolved"] == 40 and counts["auto"] == 0 and counts["queued"] == 0
    # Random picks until the first model (at 20 labels, with 4 more already up), audits after.
    assert reasons == {"cold_start": 24, "audit": 16}, reasons
    assert sum(reasons.values()) == len(posts) == 40
