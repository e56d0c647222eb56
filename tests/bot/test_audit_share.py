"""The audit share of posts matches HITL_AUDIT_RATE whatever the fill pattern (issue 16.1).

Live accuracy on audit posts is the product's one unbiased number, so the share of posts that are
audits must be HITL_AUDIT_RATE over any stretch of posts: when people answer at once (the channel
never fills and every round posts one question) and when they answer slowly (the channel fills
to HITL_MAX_OPEN one post per round, then empties in a burst of answers).

The real dispatcher posts to the fake Slack at one post per interval per channel, as in
production. The interval never passes by itself (it is a million seconds): before each round the
test moves the channel's last post back by one interval, so each round posts exactly one
question however fast the machine is.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from scipy.stats import binomtest

from bot.runtime import Champion
from bot.sandbox import FakeSlack
from bot.slack.blocks import decode_value
from model.classifier import TextClassifier
from tests.bot.harness import LABELS, Bot, Item, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL

POSTS = 200
MAX_OPEN = 5
INTERVAL = 1e6  # seconds: never passes during a test; the test moves the clock instead


WORDS = {
    "billing": "refund invoice charged card payment price",
    "bug": "crash error broken blank freeze slow",
    "account": "login password email profile locked signup",
    "how_to": "how do I export setup configure where find",
    "feature_request": "please add wish dark mode option support",
    "praise": "love great thanks awesome helpful nice",
}


def ticket(n: int, rng: random.Random) -> str:
    """A short ticket mixing two labels' words, so the model is unsure about most of them."""
    first, second = rng.sample(list(WORDS), 2)
    words = rng.sample(WORDS[first].split(), 3) + rng.sample(WORDS[second].split(), 2)
    return f"ticket {n}: " + " ".join(words)


def champion() -> Champion:
    texts = [f"{words} {n}" for n in range(3) for words in WORDS.values()]
    labels = [label for _ in range(3) for label in WORDS]
    classifier = TextClassifier().fit(texts, labels, label_set=LABELS)
    return Champion(version=1, classifier=classifier, n_train=len(texts))


async def audit_bot(fake: FakeSlack, tmp_path: Path, audit_rate: float, seed_: int):
    rng = random.Random(seed_)
    seed(tmp_path / "hitl.db", [Item(f"t{n}", ticket(n, rng)) for n in range(POSTS + 60)])
    settings = make_settings(
        fake, tmp_path, audit_rate=audit_rate, threshold=1.0, max_open=MAX_OPEN
    )
    async for bot in start_bot(fake, settings):
        bot.rt.champion = champion()
        bot.dispatcher.post_interval = INTERVAL
        bot.dispatcher.rng = random.Random(seed_)
        yield bot


async def one_round(bot: Bot) -> int:
    """A dispatcher round one interval after the last post: it may post one question."""
    state = bot.dispatcher.channel_state(CHANNEL)
    state.last_post -= INTERVAL
    return await bot.dispatcher.fill()


def answer_in_store(bot: Bot, item_id: str, n: int) -> None:
    result = bot.store.record_answer(
        item_id, "U0MEI", LABELS[n % len(LABELS)], source="test", dedupe_key=f"store-{n}"
    )
    assert result.status == "resolved"


def first_button(message: dict) -> str:
    """The label of the question's first button (the model's top guess)."""
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    return decode_value(actions["elements"][0]["value"])[1]


def audit_share(bot: Bot) -> tuple[int, int]:
    reasons = [p["reason"] for p in bot.store.db["posts"].rows]
    assert set(reasons) <= {"audit", "uncertain"}
    return reasons.count("audit"), len(reasons)


def assert_share(bot: Bot, audit_rate: float, expected_posts: int = POSTS) -> None:
    audits, posts = audit_share(bot)
    assert posts == expected_posts
    p_value = binomtest(audits, posts, audit_rate).pvalue
    assert p_value >= 0.01, f"{audits} audit posts in {posts} at HITL_AUDIT_RATE={audit_rate}"


async def click_first_button(bot: Bot, message: dict) -> None:
    response = await bot.action(bot.button_payload(message, "U0ANA", first_button(message)))
    assert response.status == 200


@pytest.mark.parametrize("audit_rate", [0.1, 0.3, 0.5])
async def test_answering_at_once_keeps_the_audit_share(
    fake_slack: FakeSlack, tmp_path: Path, audit_rate: float
):
    """Every question is answered as soon as it is posted: each round finds the channel empty
    (HITL_MAX_OPEN slots free) and posts one question."""
    async for bot in audit_bot(fake_slack, tmp_path, audit_rate, seed_=16):
        for n in range(POSTS):
            assert await one_round(bot) == 1
            [post] = bot.store.open_posts()
            answer_in_store(bot, post["item_id"], n)
        assert_share(bot, audit_rate)


async def test_questions_clicked_at_once_in_slack_keep_the_audit_share(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The same through Slack: each question is answered by a signed click on its first
    button as soon as it is posted (the other patterns answer through the store, for speed;
    half as many posts here, for the same reason)."""
    posts = POSTS // 2
    async for bot in audit_bot(fake_slack, tmp_path, 0.3, seed_=1):
        for _ in range(posts):
            assert await one_round(bot) == 1
            await click_first_button(bot, bot.posted()[-1])
            assert bot.store.open_post_counts().get(CHANNEL, 0) == 0
        await bot.settled()
        assert_share(bot, 0.3, posts)


@pytest.mark.parametrize("audit_rate", [0.1, 0.3, 0.5])
async def test_answering_in_bursts_keeps_the_audit_share(
    fake_slack: FakeSlack, tmp_path: Path, audit_rate: float
):
    """The channel fills to HITL_MAX_OPEN one post per round; then people answer in a burst
    (every open question, or all but one, in turn) and it fills again."""
    async for bot in audit_bot(fake_slack, tmp_path, audit_rate, seed_=17):
        posted = answered = bursts = 0
        while posted < POSTS:
            while posted < POSTS and await one_round(bot) == 1:
                posted += 1
            assert posted == POSTS or len(bot.store.open_posts()) == MAX_OPEN
            open_posts = bot.store.open_posts()
            keep = bursts % 2  # alternately every open question, or all but the newest
            for post in open_posts[: len(open_posts) - keep]:
                answer_in_store(bot, post["item_id"], answered)
                answered += 1
            bursts += 1
        assert_share(bot, audit_rate)
