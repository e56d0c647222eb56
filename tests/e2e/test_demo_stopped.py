"""A sandbox page left open after `hitl demo` stopped says so (/tmp/demofirst L1): its clicks
did nothing, with the only trace in the browser's console; and it picks the demo up again as
soon as it is restarted (README). Headless Chromium, as tests/e2e/test_sandbox_browser.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from bot.demo import DemoOptions, load_data, running_demo
from bot.demo.run import CHANNEL
from bot.sandbox import ui
from tests.e2e.test_sandbox_browser import CHROMIUM, CHROMIUM_ARGS, WAIT

STOPPED = "The demo has stopped: start it again with hitl demo"


async def test_a_page_left_open_after_the_demo_stopped_says_so_and_picks_up_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    monkeypatch.setattr(ui, "LONG_POLL", 600.0)  # far beyond WAIT: only a prompt answer passes
    options = DemoOptions(db=tmp_path / "demo.db", port=0, size=120, retrain_every=0, pace=0.0)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            async with running_demo(options, load_data(options), echo=lambda line: None) as demo:
                await page.goto(f"{demo.url}/?user=U0ANA")
                questions = page.locator("#messages article.message")
                await expect(questions).to_have_count(demo.options.max_open, timeout=WAIT)
                await expect(page.locator("#toast")).to_be_hidden()
                await page.click("#open-home")  # App Home once, then back to the channel
                home = page.locator("#home")
                await expect(home).to_contain_text("This week you labeled", timeout=WAIT)
                # Two messages from the app in Ana's Messages tab (as the accuracy chart comes),
                # read there: no unread badge
                for n in (1, 2):
                    await demo.rt.client.chat_postMessage(channel="U0ANA", text=f"old {n}")
                unread = page.locator("#open-home .badge")
                await expect(unread).to_have_text("2", timeout=WAIT)
                await page.click("#tab-messages")
                await expect(page.locator("#main-subtitle")).to_have_text("2 messages")
                await expect(unread).to_be_hidden()
                await page.click(f"#channel-list [data-channel='{CHANNEL[0]}']")
            # The demo is gone: the page's next look (its long poll) and a click say so.
            toast = page.locator("#toast")
            await expect(toast).to_have_text(STOPPED, timeout=WAIT)
            await questions.first.locator("button[data-action-id^='hitl.q.label.']").first.click()
            await expect(toast).to_be_visible()
            await expect(toast).to_have_text(STOPPED)
            # The person goes to App Home meanwhile: the old demo's Home is what the page has.
            await page.click("#open-home")
            await expect(home).to_contain_text("This week you labeled")

            # Started again on its port, the demo is picked up at the page's next look. Its
            # change counter starts afresh and may stand where the old one stopped (the same
            # seed posts the same questions): the page's long poll then waited for a change,
            # the banner up, until the poll timed out (20 s) or someone clicked. Here the page's
            # looks are held off (a route that aborts them, as an unreachable demo does) until
            # its counter is made to stand where the new demo's does.
            await page.route("**/sandbox/state*", lambda route: route.abort())
            again = DemoOptions(
                db=tmp_path / "demo.db",
                port=int(demo.url.rsplit(":", 1)[1]),
                size=120,
                retrain_every=0,
                pace=0.0,
                max_open=0,
            )  # max_open 0 posts nothing, so its counter stands still
            async with running_demo(again, load_data(again), echo=lambda line: None) as demo:
                await page.evaluate(f"window.hitlSandbox.state().version = {demo.sandbox.version}")
                await page.unroute("**/sandbox/state*")
                await expect(toast).to_be_hidden(timeout=WAIT)
                # The new demo was never told the Home tab is open: the page tells it again,
                # not "Opening the app's Home…" until the person clicks Home once more.
                await expect(home).to_contain_text("This week you labeled", timeout=WAIT)
                await page.click(f"#channel-list [data-channel='{CHANNEL[0]}']")
                await expect(questions).to_have_count(0)  # the new demo's channel, not the old
                # The new demo's first message to Ana is unread, though the old demo's two
                # were read (its Slack is new: the count read there is not this one's)
                await demo.rt.client.chat_postMessage(channel="U0ANA", text="new")
                await expect(unread).to_have_text("1", timeout=WAIT)
        finally:
            await browser.close()
