"""The "Other…" type-ahead past 100 labels (outside test of labels, F7): it matched the text
typed as one substring, so "exchange rate" did not find card_payment_wrong_exchange_rate and
"devolucion" did not find devolución_pendiente. Every word typed is looked for, in any order,
with ``_``, ``-`` and spaces alike and accents left out; the label typed and labels starting
with it come first. Through signed options requests to the real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from tests.bot.harness import Bot, Item, block_suggestion_payload, make_settings, seed, start_bot

LABELS = (
    *(f"other_intent_{n:03d}" for n in range(100)),
    "card_payment_wrong_exchange_rate",
    "wrong_exchange_rate_for_cash_withdrawal",
    "exchange_rate",
    "card_payment_fee_charged",
    "top_up_failed",
    "auto-top-up",
    "devolución_pendiente",
    "Überweisung_fehlt",
    "payment card",
)


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "the exchange rate on my card payment was wrong")])
    settings = make_settings(fake_slack, tmp_path, max_open=1, labels=LABELS)
    async for running in start_bot(fake_slack, settings):
        await running.dispatcher.fill()
        yield running


async def typed(bot: Bot, query: str) -> list[str]:
    message = bot.posted()[0]
    for block in message["blocks"]:
        for element in block.get("elements", []):
            if element.get("type") == "external_select":
                payload = block_suggestion_payload(
                    "U0ANA", element["action_id"], block["block_id"], query
                )
                response = await bot.action(payload)
                assert response.status == 200
                return [option["value"] for option in (await response.json())["options"]]
    raise AssertionError("no external select: the type-ahead is drawn past 100 labels")


@pytest.mark.parametrize(
    ("query", "label"),
    [
        ("exchange rate", "card_payment_wrong_exchange_rate"),
        ("rate exchange", "card_payment_wrong_exchange_rate"),
        ("card payment", "card_payment_fee_charged"),
        ("top up", "top_up_failed"),
        ("auto top", "auto-top-up"),
        ("devolucion", "devolución_pendiente"),
        ("uberweisung", "Überweisung_fehlt"),
        ("Überweisung", "Überweisung_fehlt"),
        ("exchange_rate", "card_payment_wrong_exchange_rate"),
        ("EXCHANGE-RATE", "exchange_rate"),
    ],
)
async def test_the_words_typed_find_the_label(bot: Bot, query: str, label: str):
    assert label in await typed(bot, query)


async def test_the_label_typed_then_labels_starting_with_it_come_first(bot: Bot):
    assert (await typed(bot, "exchange rate"))[:3] == [
        "exchange_rate",
        "card_payment_wrong_exchange_rate",  # words that start with those typed
        "wrong_exchange_rate_for_cash_withdrawal",
    ]
    assert (await typed(bot, "card payment"))[:2] == [
        "card_payment_wrong_exchange_rate",
        "card_payment_fee_charged",
    ]
    assert (await typed(bot, "card payment"))[2] == "payment card"  # any order, after


async def test_a_word_not_in_a_label_leaves_it_out_and_the_empty_query_lists_100(bot: Bot):
    assert await typed(bot, "exchange cheese") == []
    assert len(await typed(bot, "")) == 100


async def test_each_keystroke_past_thousands_of_labels_reuses_the_folded_names(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Outside review r-labels R5: the folded names were kept for 4,096 labels, so with 5,000 a
    scan evicted each before its next use and every keystroke of everyone typing folded them
    all again on the event loop (43 ms at 5,000). Now once per label set."""
    from bot.slack import blocks

    words = ["card", "payment", "refund", "transfer", "pending", "declined", "exchange", "rate"]
    labels = tuple(f"{words[n % 8]}_{words[n // 8 % 8]}_{n:04d}" for n in range(5000))
    seed(tmp_path / "hitl.db", [Item("a", "the exchange rate on my card payment was wrong")])
    settings = make_settings(fake_slack, tmp_path, max_open=1, labels=labels)
    folded = 0
    fold = blocks.label_key

    def counted(text: str) -> str:
        nonlocal folded
        folded += 1
        return fold(text)

    monkeypatch.setattr(blocks, "label_key", counted)
    async for running in start_bot(fake_slack, settings):
        await running.dispatcher.fill()
        assert await typed(running, "rate exchange 0062") == ["exchange_rate_0062"]
        before = folded
        for query in ["c", "ca", "car", "card", "card p", "card pa", "card pay", "card paym"]:
            found = await typed(running, query)
            assert len(found) == 100
        assert found[:2] == ["card_payment_0008", "card_payment_0072"]
        assert folded - before <= 8 * 2  # the text typed, not the 5,000 labels
