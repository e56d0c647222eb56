"""The labeling window mixes gold questions into each person's items at HITL_GOLD_RATE
(``bot.slack.windowgold``): every round(1 / rate)-th item a person's windows show is a gold
question waiting to be asked that they have not answered, scored and decided as a click on the
channel's gold question is. Through signed requests to the real server and the fake Slack's
views."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot, Item, make_settings, open_window, seed, seed_champion, start_bot
from tests.bot.harness import click_in_window as click
from tests.bot.harness import window_item as shown
from tests.bot.harness import window_labels as labels_shown
from tests.bot.test_gold import gold_rows
from tests.query_plans import query_plans

GOLD = [(f"g{n}", f"checked ticket number {n}", "billing") for n in range(6)]


async def started(fake_slack: FakeSlack, tmp_path: Path, n_items: int = 20, **changes):
    """A bot with ``n_items`` items waiting and the GOLD questions (nothing posted: the window
    alone asks them, so the channel's random gold draws play no part)."""
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        gold_rows(store, GOLD)
    seed(db, [Item(f"i{n:02d}", f"an ordinary ticket {n}") for n in range(n_items)])
    settings = make_settings(fake_slack, tmp_path, **changes)
    async for running in start_bot(fake_slack, settings):
        yield running


async def label_in_window(bot: Bot, user: str, n: int) -> list[tuple[str, str]]:
    """``user`` opens a window and answers its first ``n`` items, each with its first button;
    the items and the labels given."""
    window = await open_window(bot, user)
    seen = []
    for _ in range(n):
        item = shown(bot, window)
        assert item is not None
        label = labels_shown(bot, window)[0]
        seen.append((item, label))
        await click(bot, user, window, label)
    return seen


def items(seen: list[tuple[str, str]]) -> list[str]:
    return [item for item, _ in seen]


def context_lines(blocks: list[dict]) -> list[str]:
    return [e.get("text", "") for b in blocks if b["type"] == "context" for e in b["elements"]]


def stats_of(bot: Bot, text: str) -> str:
    return json.loads(text)["text"]


async def test_every_fourth_window_item_is_a_gold_question_scored_in_stats(
    fake_slack: FakeSlack, tmp_path: Path
):
    """At HITL_GOLD_RATE=0.25, a person answering 12 items in the window is shown a gold
    question 4th, 8th and 12th (before: none, however many gold questions waited), and their
    answers on them make their accuracy on gold in `/hitl stats`."""
    async for bot in started(fake_slack, tmp_path, gold_rate=0.25, max_open=0):
        seen = await label_in_window(bot, "U0ANA", 12)
        gold = [(n, it, label) for n, (it, label) in enumerate(seen, 1) if it.startswith("g")]
        assert [n for n, _, _ in gold] == [4, 8, 12], seen
        # answered as a click on the channel's gold question is: decided (HITL_VOTES=1)
        assert [bot.store.resolution(it)["label"] for _, it, _ in gold] == [lb for *_, lb in gold]
        right = sum(label == "billing" for *_, label in gold)
        admin = stats_of(bot, await (await bot.command("stats", "U0ADMIN")).text())
        assert f"*Accuracy on gold:*\n<@U0ANA> {right / 3:.0%} ({right} of 3," in admin
        # a gold question looks like the items beside it: the same blocks, text aside
        window = await open_window(bot, "U0RAJ")
        for _ in range(2):
            await click(bot, "U0RAJ", window, labels_shown(bot, window)[0])
        before = bot.fake.views[window]["blocks"]  # an ordinary item's, the third
        await click(bot, "U0RAJ", window, labels_shown(bot, window)[0])
        assert shown(bot, window).startswith("g")
        blocks = bot.fake.views[window]["blocks"]
        assert "gold" not in json.dumps(blocks).lower()
        assert [b["type"] for b in blocks] == [b["type"] for b in before]
        assert context_lines(blocks)[1:] == context_lines(before)[1:]  # the count aside


async def test_the_turns_follow_the_person_across_windows(fake_slack: FakeSlack, tmp_path: Path):
    """Two short sessions of 2 and 3 items: the 4th item answered is gold, not the 4th of a
    window (a person labeling in short sessions is asked gold as often); an item shown and
    not answered (the first window's third) does not count."""
    async for bot in started(fake_slack, tmp_path, gold_rate=0.25, max_open=0):
        first = await label_in_window(bot, "U0ANA", 2)
        second = await label_in_window(bot, "U0ANA", 3)
        assert [item.startswith("g") for item in items(first + second)] == [
            False, False, False, True, False,
        ]  # fmt: skip


async def test_at_gold_rate_zero_the_window_shows_no_gold(fake_slack: FakeSlack, tmp_path: Path):
    async for bot in started(fake_slack, tmp_path, gold_rate=0.0, max_open=0):
        seen = await label_in_window(bot, "U0ANA", 12)
        assert not any(item.startswith("g") for item in items(seen))


async def test_a_gold_question_answered_in_a_window_is_still_asked_to_others(
    fake_slack: FakeSlack, tmp_path: Path
):
    """With HITL_VOTES=2, Ana's answer on a gold question leaves it waiting (a gold question
    still), and Raj's window asks it on his gold turn; Ana's windows never ask it again. With
    HITL_VOTES=1 her answer decided it, as a click on the channel's gold question does."""
    async for bot in started(fake_slack, tmp_path, gold_rate=0.25, votes=2, max_open=0):
        ana = items(await label_in_window(bot, "U0ANA", 4))
        g = ana[3]
        assert g.startswith("g") and bot.store.get_item(g)["status"] == "gold"
        raj = items(await label_in_window(bot, "U0RAJ", 4))
        assert raj[3] == g  # the oldest gold question Raj has not answered
        assert bot.store.tally(g).votes  # two answers in: decided or split, as in the channel
        more = items(await label_in_window(bot, "U0ANA", 4))
        assert g not in more and more[3].startswith("g")


async def test_a_gold_question_shows_the_models_guess_as_a_waiting_item_does(
    fake_slack: FakeSlack, tmp_path: Path
):
    """With a champion, the window's gold question shows its guess (the model's top labels
    first) and the same reason line as the waiting items it serves, not "first labels"."""
    db = tmp_path / "hitl.db"
    texts = ["refund my money", "charged twice", "app crashes", "login error"] * 3
    labels = ["billing", "billing", "bug", "bug"] * 3
    seed_champion(db, texts, labels)
    async for bot in started(fake_slack, tmp_path, gold_rate=1.0, max_open=0, threshold=1.0):
        window = await open_window(bot, "U0ANA")
        item = shown(bot, window)
        assert item.startswith("g")
        drawn = json.dumps(bot.fake.views[window]["blocks"], ensure_ascii=False)
        assert "first labels" not in drawn and "No model yet" not in drawn
        assert f"v{bot.rt.model.version}" in drawn


def test_the_window_gold_lookup_reads_the_gold_items_along_their_index(memory_store: Store):
    """However many items wait, a window's gold lookup walks the gold items alone (the status
    index), each person's answer on one looked up by id."""
    store = memory_store
    store.add_items([Item(f"i{n}", f"text {n}") for n in range(6)], "import")
    gold_rows(store, GOLD[:3])
    plans = query_plans(
        store, lambda: store.gold_page(10, ["g0"], unanswered_by="U1", configured=())
    )
    [plan] = [" | ".join(lines) for sql, lines in plans if "status = 'gold'" in sql]
    assert "items_status_priority" in plan and "TEMP B-TREE" not in plan, plan
    assert "SCAN a" not in plan and "SCAN b" not in plan, plan
    page, _ = store.gold_page(10, ["g0"], unanswered_by="U1")
    assert [row["id"] for row in page] == ["g1", "g2"]
    assert [r["id"] for r in store.gold_page(10, item_id="g2", unanswered_by="U1")[0]] == ["g2"]


@pytest.mark.parametrize("rate,every", [(0.25, 4), (0.05, 20), (1.0, 1), (0.0, None)])
def test_gold_every_is_one_in_round_one_over_the_rate(rate: float, every: int | None):
    from bot.slack.windowgold import gold_every

    assert gold_every(rate) == every


def test_the_gold_question_an_undo_reopened_is_looked_up_by_its_id(memory_store: Store):
    """The gold question a window shows again (an Undo reopened it, a refused click's) is read
    by its key, not along the status index past the gold items before it."""
    store = memory_store
    gold_rows(store, GOLD[:3])
    plans = query_plans(store, lambda: store.gold_page(1, item_id="g2", unanswered_by="U1"))
    [plan] = [" | ".join(lines) for sql, lines in plans if "status = 'gold'" in sql]
    assert plan.startswith("SEARCH items USING INDEX sqlite_autoindex_items_1 (id=?)"), plan
    assert "items_status_priority" not in plan, plan
    assert [r["id"] for r in store.gold_page(1, item_id="g2", unanswered_by="U1")[0]] == ["g2"]
    assert store.gold_page(1, item_id="i0", unanswered_by="U1")[0] == []  # not gold
