"""The sandbox in headless Chromium: a person answers through the page, and every step shows
both on the page and in the SQLite database (the bot's real /slack/events, signed requests).

Needs Debian's chromium at /usr/bin/chromium (.ci/run installs it); without it the test fails.
Set SANDBOX_SCREENSHOT=docs/sandbox.png to refresh the README's screenshot.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from bot.demo import DemoOptions, load_data, running_demo
from bot.demo.run import CHANNEL, REPORT_CHANNEL, Demo
from bot.demo.simulate import Teammate

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT = 10_000  # ms: an upper bound for each expectation, not a pause

# One Chromium for the file (starting it took ~1 s of each test's set-up), so the tests and
# their fixtures share the file's event loop; each test still gets a fresh demo and a fresh
# browser context (its own cookies, storage and pages).
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    options = DemoOptions(db=tmp_path / "demo.db", port=0, size=120, retrain_every=0, pace=0.0)
    async with running_demo(options, load_data(options), echo=lambda line: None) as running:
        yield running


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    return CHROMIUM


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium_browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def browser(chromium_browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await chromium_browser.new_context(viewport={"width": 1280, "height": 1200})
    try:
        yield context
    finally:
        await context.close()


def post_by_ts(demo: Demo, ts: str) -> dict:
    [post] = list(demo.rt.store.db["posts"].rows_where("ts = ?", [ts]))
    return post


async def test_a_person_answers_in_the_channel_and_the_labeling_window(
    demo: Demo, browser: BrowserContext, tmp_path: Path
):
    store = demo.rt.store
    page: Page = await browser.new_page()
    await page.goto(f"{demo.url}/?user=U0ANA")
    questions = page.locator("#messages article.message")
    await expect(questions).to_have_count(demo.options.max_open, timeout=WAIT)
    assert store.open_post_counts() == {CHANNEL[0]: demo.options.max_open}

    # 1. A click on a label button resolves the item and redraws the message in place.
    first = questions.first
    ts = await first.get_attribute("data-ts")
    button = first.locator("button[data-action-id^='hitl.q.label.']").first
    label = (await button.inner_text()).strip()
    await button.click()
    resolved = page.locator(f"#messages article[data-ts='{ts}']")
    await expect(resolved).to_contain_text(f"✅ {label} by @ana", timeout=WAIT)
    await expect(resolved.locator("button")).to_have_count(0)
    item_id = post_by_ts(demo, ts)["item_id"]
    assert store.resolution(item_id)["label"] == label
    [answer] = list(store.iter_answers())
    assert (answer["user_id"], answer["label"], answer["source"]) == ("U0ANA", label, "button")
    undo = page.locator("article.message.ephemeral", has_text="Changed your mind?")
    await expect(undo).to_contain_text(f"Saved {label}", timeout=WAIT)

    # 2. /hitl stats answers ephemerally, with the numbers the database holds.
    await page.fill("#composer", "/hitl stats")
    await page.press("#composer", "Enter")
    stats = page.locator("article.message.ephemeral", has_text="Answers today")
    await expect(stats).to_contain_text("Answers today: 1 (1 label): @ana 1 label", timeout=WAIT)
    assert store.count_items()["resolved"] == 1
    await expect(stats).to_contain_text("1 resolved")
    safe = await page.evaluate("window.hitlSandbox.mrkdwn('<img src=x onerror=alert(1)> *b*')")
    assert safe == "&lt;img src=x onerror=alert(1)&gt; <b>b</b>"
    # a code block in a quoted item shows its code, not the quote's ">" markers
    quoted_code = await page.evaluate("window.hitlSandbox.mrkdwn('>```\\n>a\\n>b\\n>```')")
    assert quoted_code == '<span class="quote"><pre>a\nb\n</pre></span>'
    # an emoji shortcode shows as Slack draws it (the review window's ":warning: Decided by …"),
    # not in code, and one Slack does not know stays as typed
    emoji = await page.evaluate("window.hitlSandbox.mrkdwn(':warning: a `:x:` :nope: 10:30:45')")
    assert emoji == "\u26a0\ufe0f a <code>:x:</code> :nope: 10:30:45"
    shot = ROOT / os.environ["SANDBOX_SCREENSHOT"] if "SANDBOX_SCREENSHOT" in os.environ else None
    await page.screenshot(path=shot or tmp_path / "sandbox.png")

    # 3. Another person sees the redrawn question but not Ana's ephemerals.
    await page.select_option("#user-switcher", "U0RAJ")
    await expect(page.locator("#messages article.message.ephemeral")).to_have_count(0, timeout=WAIT)
    await expect(resolved).to_contain_text(f"✅ {label}")
    await page.select_option("#user-switcher", "U0ANA")
    await expect(page.locator("article.message.ephemeral")).to_have_count(2, timeout=WAIT)

    # 4. App Home shows Ana's count from the database; "Start labeling" opens the modal.
    await page.click("#open-home")
    home = page.locator("#home")
    await expect(home).to_contain_text("This week you labeled 1 item;", timeout=WAIT)
    assert dict(store.answers_by_user()) == {"U0ANA": 1}
    await home.get_by_role("button", name="Start labeling").click()
    modal = page.locator("#modal")
    await expect(modal).to_be_visible(timeout=WAIT)
    await expect(page.locator("#modal-title")).to_have_text("Label items")
    await expect(modal).to_contain_text("0 answered in this session")
    await page.wait_for_function(IN_MODAL, timeout=WAIT)  # the focus moved into the window

    # 5. One answer in the modal is stored, and the modal moves on to the next item.
    modal_button = modal.locator("button[data-action-id^='hitl.m.label.']").first
    modal_label = (await modal_button.inner_text()).strip()
    await modal_button.click()
    await expect(modal).to_contain_text("1 answered in this session", timeout=WAIT)
    answers = list(store.iter_answers())
    assert len(answers) == 2
    assert (answers[-1]["user_id"], answers[-1]["label"], answers[-1]["source"]) == (
        "U0ANA",
        modal_label,
        "modal",
    )
    assert store.resolution(answers[-1]["item_id"])["label"] == modal_label
    await page.keyboard.press("Escape")  # closes the window, as in Slack
    await expect(modal).to_be_hidden(timeout=WAIT)


IN_MODAL = "() => document.getElementById('modal').contains(document.activeElement)"


# -------------------------------------------------------------- the page as a person sees it


def overlaps(a: dict, b: dict) -> bool:
    """Whether two bounding boxes (Playwright's x, y, width, height) share any area."""
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


async def open_channel(page: Page, demo: Demo) -> None:
    await page.goto(f"{demo.url}/?user=U0ANA")
    questions = page.locator("#messages article.message")
    await expect(questions).to_have_count(demo.options.max_open, timeout=WAIT)


async def test_the_composer_shows_only_in_channels(demo: Demo, browser: BrowserContext):
    page = await browser.new_page()
    await open_channel(page, demo)

    # A teammate's click redraws their message only: Ana's focus (an open "Other…") stays.
    other = page.locator("#messages article.message").last.locator("select, input").first
    await other.focus()
    await page.evaluate("window.focused = document.activeElement")
    message, block = next(
        (m, b)
        for m in demo.fake.messages(CHANNEL[0])
        for b in m.get("blocks") or []
        if b["type"] == "actions"
    )
    skip = next(e for e in block["elements"] if e.get("text", {}).get("text") == "Skip")
    await demo.sandbox.click(
        "U0RAJ",
        action_id=skip["action_id"],
        block_id=block["block_id"],
        channel=CHANNEL[0],
        ts=message["ts"],
    )
    skipped = page.locator(f"#messages article[data-ts='{message['ts']}']")
    await expect(skipped).to_contain_text(
        "Skipped by @raj; the first answer decides.", timeout=WAIT
    )
    assert await page.evaluate("document.activeElement === window.focused")
    assert await page.evaluate("document.contains(window.focused)")

    composer = page.locator("#composer-form")
    await expect(composer).to_be_visible()

    await page.click("#open-home")
    await expect(page.locator("#home")).to_contain_text("This week you labeled", timeout=WAIT)
    await expect(composer).to_be_hidden()
    await expect(page.locator("#messages")).to_be_hidden()

    await page.click(f"#channel-list [data-channel='{CHANNEL[0]}']")
    await expect(composer).to_be_visible()
    await expect(page.locator("#home")).to_be_hidden()


# Every text and control in a message lies inside the window and inside its own box.
CUT_OFF = """() => {
  const width = document.documentElement.clientWidth;
  const cut = [];
  document.querySelectorAll("#messages .mrkdwn, #messages button, #messages select")
    .forEach(function (node) {
      const box = node.getBoundingClientRect();
      if (box.right > width + 0.5 || box.left < -0.5 || node.scrollWidth > node.clientWidth + 1)
        cut.push((node.textContent || node.tagName).slice(0, 40));
    });
  return cut;
}"""


@pytest.mark.parametrize("width", [420, 1280])
async def test_message_text_wraps_in_a_narrow_window(
    demo: Demo, browser: BrowserContext, tmp_path: Path, width: int
):
    page = await browser.new_page()
    await page.set_viewport_size({"width": width, "height": 900})
    await open_channel(page, demo)
    assert await page.evaluate(CUT_OFF) == []
    if width < 600:  # the sidebar becomes a bar across the top, not a column beside the text
        messages = await page.locator("#messages").bounding_box()
        assert messages is not None and messages["width"] >= 0.9 * width
        sidebar = await page.locator("#sidebar").bounding_box()
        assert sidebar is not None and sidebar["height"] <= 0.3 * 900
        assert (await page.locator("#composer-form").bounding_box())["width"] >= 0.9 * width
    # the switcher, channels and App Home stay at hand
    await expect(page.locator("#user-switcher")).to_be_visible()
    await expect(page.locator("#open-home")).to_be_visible()
    await page.screenshot(path=tmp_path / f"channel-{width}.png")


# Counts the page's POSTs to a /sandbox/ path as it makes them: a handler calls fetch before
# it awaits anything, so the count is exact once the key or click event has been dispatched.
COUNT_POSTS = """(path) => {
  window.postsSent = 0;
  const send = window.fetch;
  window.fetch = function (url) {
    if (String(url).includes(path)) window.postsSent += 1;
    return send.apply(this, arguments);
  };
}"""


@pytest.mark.parametrize("width", [420, 1280])
async def test_the_toast_leaves_the_composer_free(
    demo: Demo, browser: BrowserContext, tmp_path: Path, width: int
):
    page = await browser.new_page()
    await page.set_viewport_size({"width": width, "height": 900})
    await open_channel(page, demo)
    await page.evaluate(COUNT_POSTS, "/sandbox/command")
    typed = "hello, is anyone there? " * 3 + "Hello?"
    await page.fill("#composer", typed)
    await page.press("#composer", "Enter")
    toast = page.locator("#toast")
    await expect(toast).to_contain_text("only sends slash commands", timeout=WAIT)
    assert await page.evaluate("window.postsSent") == 0  # no 400 in the browser's console
    await expect(page.locator("#composer")).to_have_value(typed)  # kept, to fix and send again
    box = await toast.bounding_box()
    for control in ("#composer-form button[type=submit]", "#composer"):
        other = await page.locator(control).bounding_box()
        assert box is not None and other is not None
        assert not overlaps(box, other), (control, box, other)
    await page.screenshot(path=tmp_path / f"toast-{width}.png")


async def test_counts_read_as_words(demo: Demo, browser: BrowserContext):
    page = await browser.new_page()
    await open_channel(page, demo)
    subtitle = page.locator("#main-subtitle")
    await expect(subtitle).to_have_text(f"{demo.options.max_open} messages")
    await page.click(f"#channel-list [data-channel='{REPORT_CHANNEL[0]}']")
    await expect(subtitle).to_have_text("0 messages")
    await page.fill("#composer", "/hitl stats")
    await page.press("#composer", "Enter")
    await expect(page.locator("#messages article.message")).to_have_count(1, timeout=WAIT)
    await expect(subtitle).to_have_text("1 message")


CHART_TIMEOUT = 60_000  # ms: the chart is drawn by matplotlib after the command's ack


async def test_the_accuracy_chart_reaches_only_the_person_who_asked(
    demo: Demo, browser: BrowserContext, tmp_path: Path
):
    simulator = demo.simulator(drive=False)
    simulator.teammates = [Teammate("U0ANA", "ana")]  # Ana answers with the true labels
    await simulator.run(answers=12, wait=5)
    page = await browser.new_page()
    await page.goto(f"{demo.url}/?user=U0ANA")
    await expect(page.locator("#messages article.message", has_text="by @ana")).to_have_count(
        12, timeout=WAIT
    )
    await page.fill("#composer", "/hitl retrain")
    await page.press("#composer", "Enter")
    await expect(page.locator("article.message.ephemeral", has_text="Retrain")).to_have_count(
        1, timeout=WAIT
    )
    await demo.rt.background.drain(timeout=60)  # the labels are read after the ack
    assert demo.rt.trainer.task is not None
    await demo.rt.trainer.task
    assert demo.rt.champion is not None

    # The text answers Ana privately in the channel; the chart goes to her Messages with the app.
    await page.fill("#composer", "/hitl accuracy")
    await page.press("#composer", "Enter")
    text = page.locator("article.message.ephemeral", has_text="Cross-validated")
    await expect(text).to_contain_text("Only visible to you", timeout=WAIT)
    unread = page.locator("#open-home .badge")
    await expect(unread).to_have_text("1", timeout=CHART_TIMEOUT)
    await expect(page.locator("#messages img")).to_have_count(0)  # nothing public in #channel
    await page.click("#open-home")
    await page.click("#tab-messages")
    chart = page.locator("#messages figure.file img")
    await expect(chart).to_be_visible(timeout=WAIT)
    await page.wait_for_function(
        "() => { const img = document.querySelector('#messages figure.file img');"
        " return img && img.complete && img.naturalWidth > 100; }",
        timeout=WAIT,
    )
    await expect(page.locator("#main-subtitle")).to_have_text("1 message")
    await expect(unread).to_be_hidden()
    await page.screenshot(path=tmp_path / "chart-in-dm.png")
    await page.click(f"#channel-list [data-channel='{CHANNEL[0]}']")
    await page.reload()  # a message read stays read
    await expect(page.locator("#messages article.message").first).to_be_visible(timeout=WAIT)
    await expect(unread).to_be_hidden()
    await page.click("#open-home")
    await page.click("#tab-messages")

    # Raj sees neither the chart in his Messages with the app nor anything in the channel.
    await page.select_option("#user-switcher", "U0RAJ")
    await expect(page.locator("#main-subtitle")).to_have_text("0 messages", timeout=WAIT)
    await expect(page.locator("#messages figure.file")).to_have_count(0)
    await expect(unread).to_be_hidden()
    await page.click(f"#channel-list [data-channel='{CHANNEL[0]}']")
    await expect(page.locator("#messages article.message").first).to_be_visible(timeout=WAIT)
    await expect(page.locator("#messages figure.file")).to_have_count(0)
    await expect(page.locator("#messages", has_text="Cross-validated")).to_have_count(0)
    await page.reload()  # still Raj, though the address named Ana
    await expect(page.locator("#user-switcher")).to_have_value("U0RAJ", timeout=WAIT)


async def test_a_skip_leaves_the_question_to_the_others(demo: Demo, browser: BrowserContext):
    store = demo.rt.store
    page = await browser.new_page()
    await open_channel(page, demo)
    questions = page.locator("#messages article.message:not(.ephemeral)")
    first, second = questions.nth(0), questions.nth(1)
    ts, other_ts = await first.get_attribute("data-ts"), await second.get_attribute("data-ts")
    skipped_by_ana = page.locator(f"#messages article[data-ts='{ts}']")

    # Ana skips: the question stays open, for the others, and says who skipped.
    await first.get_by_role("button", name="Skip").click()
    await expect(skipped_by_ana).to_contain_text(
        "Skipped by @ana; the first answer decides.", timeout=WAIT
    )
    await expect(
        skipped_by_ana.locator("button[data-action-id^='hitl.q.label.']")
    ).not_to_have_count(0)
    item_id = post_by_ts(demo, ts)["item_id"]
    assert store.resolution(item_id) is None and store.get_item(item_id)["status"] != "skipped"

    # Raj sees it open and answers it.
    await page.select_option("#user-switcher", "U0RAJ")
    button = skipped_by_ana.locator("button[data-action-id^='hitl.q.label.']").first
    await expect(button).to_be_visible(timeout=WAIT)
    label = (await button.inner_text()).strip()
    await button.click()
    await expect(skipped_by_ana).to_contain_text(f"✅ {label} by @raj", timeout=WAIT)
    assert store.resolution(item_id)["label"] == label

    # A question that two different people skipped is set aside (HITL_SKIPS_TO_DISCARD=2).
    assert demo.rt.settings.skips_to_discard == 2
    set_aside = page.locator(f"#messages article[data-ts='{other_ts}']")
    await set_aside.get_by_role("button", name="Skip").click()
    await expect(set_aside).to_contain_text(
        "Skipped by @raj; the first answer decides.", timeout=WAIT
    )
    await page.select_option("#user-switcher", "U0ANA")
    await expect(set_aside.get_by_role("button", name="Skip")).to_be_visible(timeout=WAIT)
    await set_aside.get_by_role("button", name="Skip").click()
    await expect(set_aside).to_contain_text(
        "Set aside after skips by @raj, @ana: no one will be asked again", timeout=WAIT
    )
    await expect(set_aside.locator("button")).to_have_count(0)
    assert store.get_item(post_by_ts(demo, other_ts)["item_id"])["status"] == "skipped"


async def test_a_careless_teammate_shows_in_stats_and_their_gold_miss_in_review(
    browser: BrowserContext, tmp_path: Path
):
    """`hitl demo --simulate 2 --careless`: gold questions catch the careless teammate; an
    admin sees it in /hitl stats and decides a gold miss in /hitl review, in the browser."""
    from bot.demo.run import CARELESS
    from bot.learning import quality

    options = DemoOptions(
        db=tmp_path / "demo.db", port=0, size=120, retrain_every=0, simulate=2, careless=True
    )
    data = load_data(options)
    async with running_demo(options, data, echo=lambda line: None, background=False) as demo:
        store = demo.rt.store
        assert len(store.gold_labels()) == 20
        await demo.simulator(drive=True).run(answers=40)  # the same answers for the seed
        measured = quality.measure(store, demo.settings)
        careless = next(g for g in measured.gold if g.annotator == CARELESS[0])
        assert careless.n and careless.n_correct < careless.n  # caught
        others = [g.accuracy for g in measured.gold if g.annotator != CARELESS[0]]
        assert others and careless.accuracy < min(others)  # the lowest, as the README says
        review = store.next_review()
        assert review is not None and review["reasons"][0][0] == "gold_miss"

        page = await browser.new_page()
        await page.goto(f"{demo.url}/?user=U0ANA")  # an admin
        await expect(page.locator("#messages article.message").first).to_be_visible(timeout=WAIT)
        await page.fill("#composer", "/hitl stats")
        await page.press("#composer", "Enter")
        stats = page.locator("article.message.ephemeral", has_text="Accuracy on gold")
        line = f"@{CARELESS[1]} {quality.gold_line(careless)}"
        await expect(stats).to_contain_text(line, timeout=WAIT)

        await page.fill("#composer", "/hitl review")
        await page.press("#composer", "Enter")
        modal = page.locator("#modal")
        await expect(page.locator("#modal-title")).to_have_text("Review", timeout=WAIT)
        await expect(modal).to_contain_text("a gold answer missed")
        text = store.get_item(review["item_id"])["text"][:30]
        await expect(modal).to_contain_text(text)
        await page.wait_for_function(IN_MODAL, timeout=WAIT)  # the focus moved into the window

        # The decision: an input block with a select. Deciding with nothing picked shows the
        # app's error under it; a label picked is stored, and the window moves on.
        decision = modal.locator("select[data-action-id='hitl.review.choose']")
        await expect(decision).to_be_visible()
        await expect(modal.locator(".b-input-label")).to_have_text("Decision")
        await page.click("#modal-submit")
        await expect(modal.locator(".b-error")).to_have_text("Pick a decision.", timeout=WAIT)
        await expect(modal).to_contain_text(text)  # still open on the same item
        values = await decision.locator("option").evaluate_all("os => os.map(o => o.value)")
        label = next(v for v in values if v.startswith("label:")).removeprefix("label:")
        await decision.select_option(f"label:{label}")
        await page.screenshot(path=tmp_path / "careless-review.png")
        drawn = demo.sandbox.state("U0ANA")["modal"]["hash"]
        async with page.expect_request("**/sandbox/view/submit") as sent:
            await page.click("#modal-submit")
        # the view it was decided in: one moved on since (another tab decided) is refused
        assert json.loads((await sent.value).post_data or "{}")["hash"] == drawn
        await expect(modal).not_to_contain_text(text, timeout=WAIT)
        await expect(modal.locator(".b-error")).to_have_count(0)
        assert store.current_label(review["item_id"]) == label
        [change] = store.label_history(review["item_id"])[-1:]
        assert (change["user_id"], change["action"]) == ("U0ANA", "review")
        await page.keyboard.press("Escape")
        await expect(modal).to_be_hidden(timeout=WAIT)
        await expect(page.locator("#composer")).to_be_focused()  # back where it was


async def test_long_labels_wrap_in_a_narrow_window(browser: BrowserContext, tmp_path: Path):
    """`hitl demo --data` with labels up to Slack's 75 characters: every button and the
    "Other…" menu stay inside a phone-width window, in the channel and the labeling window."""
    long = "category_" + "x" * 60
    labels = [long, "billing", "Refunds & <returns>", *(f"{long[:40]}_{n}" for n in range(12))]
    rows = [
        {"id": f"i{n}", "text": f"item {n}", "label": labels[n % len(labels)]} for n in range(45)
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    options = DemoOptions(db=tmp_path / "demo.db", port=0, data=path, retrain_every=0, pace=0.0)
    async with running_demo(options, load_data(options), echo=lambda line: None) as demo:
        page = await browser.new_page()
        await page.set_viewport_size({"width": 400, "height": 900})
        await open_channel(page, demo)
        assert await page.evaluate(CUT_OFF) == []
        await page.click("#open-home")
        await page.locator("#home").get_by_role("button", name="Start labeling").click()
        body = page.locator("#modal-body")
        await expect(body.locator("button[data-action-id^='hitl.m.label.']").first).to_be_visible(
            timeout=WAIT
        )
        overflow = "b => b.scrollWidth - b.clientWidth"
        assert await body.evaluate(overflow) <= 1


async def test_a_double_click_in_the_labeling_window_answers_one_item(
    demo: Demo, browser: BrowserContext
):
    store = demo.rt.store
    page = await browser.new_page()
    await open_channel(page, demo)
    await page.click("#open-home")
    await page.locator("#home").get_by_role("button", name="Start labeling").click()
    modal = page.locator("#modal")
    label_buttons = modal.locator("button[data-action-id^='hitl.m.label.']")
    await expect(label_buttons.first).to_be_visible(timeout=WAIT)
    box = await label_buttons.first.bounding_box()
    assert box is not None
    drawn = demo.sandbox.state("U0ANA")["modal"]["hash"]
    async with page.expect_request("**/sandbox/action") as sent:
        await page.mouse.click(box["x"] + 5, box["y"] + 5)  # the first half: one answer
    assert json.loads((await sent.value).post_data or "{}")["hash"] == drawn  # the view it saw
    await expect(modal).to_contain_text("1 answered in this session", timeout=WAIT)
    [first] = list(store.iter_answers())

    # The second half of the double click (the browser says detail 2) lands on the next item,
    # drawn where the first was: it is not an answer to an item the person never read.
    await page.evaluate(COUNT_POSTS, "/sandbox/action")
    box = await label_buttons.first.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + 5, box["y"] + 5)
    await page.mouse.down(click_count=2)
    await page.mouse.up(click_count=2)
    assert await page.evaluate("window.postsSent") == 0
    await expect(modal).to_contain_text("1 answered in this session")
    assert [a["item_id"] for a in store.iter_answers()] == [first["item_id"]]


async def test_the_arrow_keys_look_through_other_and_enter_picks(
    demo: Demo, browser: BrowserContext
):
    store = demo.rt.store
    page = await browser.new_page()
    await open_channel(page, demo)
    await page.evaluate(COUNT_POSTS, "/sandbox/action")
    question = page.locator("#messages article.message:not(.ephemeral)").first
    other = question.locator("select[data-action-id]")
    await other.focus()
    await page.keyboard.press("ArrowDown")  # on a closed menu: its value changes, no answer
    await page.keyboard.press("ArrowDown")
    assert await page.evaluate("window.postsSent") == 0
    second = await other.evaluate("s => s.options[s.selectedIndex].text")
    await page.keyboard.press("Tab")  # left without Enter: nothing picked, nothing shown picked
    await expect(other).to_have_value("")
    assert list(store.iter_answers()) == []

    await other.focus()
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Enter")  # the pick
    assert await page.evaluate("window.postsSent") == 1
    ts = await question.get_attribute("data-ts")
    answered = page.locator(f"#messages article[data-ts='{ts}']")
    await expect(answered).to_contain_text(f"✅ {second} by @ana", timeout=WAIT)
    [answer] = list(store.iter_answers())
    assert (answer["label"], answer["source"]) == (second, "select")


async def test_enter_on_a_label_keeps_the_focus_among_the_questions(
    demo: Demo, browser: BrowserContext
):
    """A label button pressed with Enter redraws its message: the focus fell to the page, and
    the next Tab left the open questions for the bottom of the page."""
    page = await browser.new_page()
    await open_channel(page, demo)
    questions = page.locator("#messages article.message:not(.ephemeral)")
    ts, next_ts = (
        await questions.nth(0).get_attribute("data-ts"),
        await questions.nth(1).get_attribute("data-ts"),
    )
    answered = page.locator(f"#messages article[data-ts='{ts}']")
    button = answered.locator("button[data-action-id^='hitl.q.label.']").first
    label = (await button.inner_text()).strip()
    await button.focus()
    await page.keyboard.press("Enter")
    await expect(answered).to_contain_text(f"✅ {label} by @ana", timeout=WAIT)
    where = "document.activeElement.closest('article[data-ts]')?.dataset.ts ?? null"
    assert await page.evaluate(where) in (ts, next_ts)  # the redrawn one, or the next question
    await page.keyboard.press("Tab")
    assert await page.evaluate(where) == next_ts


async def test_the_review_type_ahead_is_kept_for_the_submission(
    demo: Demo, browser: BrowserContext, monkeypatch: pytest.MonkeyPatch
):
    """A label set too large to list in the review window (past blocks.VIEW_BUDGET, set low
    here) decides with a type-ahead in an input block: its pick is sent with the submission,
    as in Slack, not as a click the app does not handle (a 404, and no decision possible)."""
    from bot.slack import blocks

    monkeypatch.setattr(blocks, "VIEW_BUDGET", 0)
    store = demo.rt.store
    item_id = demo.rt.store.db.execute("SELECT id FROM items LIMIT 1").fetchone()[0]
    page = await browser.new_page()
    await open_channel(page, demo)
    await page.evaluate(COUNT_POSTS, "/sandbox/action")
    await page.fill("#composer", f"/hitl review {item_id}")
    await page.press("#composer", "Enter")
    modal = page.locator("#modal")
    search = modal.locator("input[data-action-id='hitl.review.search']")
    await expect(search).to_be_visible(timeout=WAIT)
    await expect(modal.locator(".b-input-label")).to_have_text("Decision")
    await search.fill("bill")
    option = modal.locator(".ext-options button", has_text="billing")
    await option.click(timeout=WAIT)
    await expect(search).to_have_value("billing")
    assert await page.evaluate("window.postsSent") == 0  # a pick in an input block sends nothing
    await page.click("#modal-submit")
    await expect(modal).to_contain_text("You decided 1 in this session", timeout=WAIT)
    assert store.current_label(item_id) == "billing"
    await expect(page.locator("#toast")).to_be_hidden()
