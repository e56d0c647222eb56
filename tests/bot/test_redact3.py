"""HITL_REDACT, formats met abroad: a card grouped with no-break or narrow no-break spaces (a
web page, French grouping) or typed in full-width or Arabic-Indic digits is ``[card]``; an
international number with the ``(0)`` trunk prefix and a one-digit area code (Paris, Dublin,
Sydney, Vienna) is ``[phone]``; a card after an order or customer number is masked where it
is, not from the order number on (which kept the card's last 8 digits)."""

from __future__ import annotations

import random
import re

import pytest

from bot.ingest.redact import Redactor

EVERY = ("card", "email", "phone")


OTHER_SPACES_OR_DIGITS = [
    ("ma carte 4111\u00a01111\u00a01111\u00a01111 a été débitée", "ma carte [card] a été débitée"),
    ("Carte 4111\u202f1111\u202f1111\u202f1111, merci", "Carte [card], merci"),
    ("card 5555\u20095555\u20095555\u20094444 ok", "card [card] ok"),  # thin space
    ("カード番号は４１１１ １１１１ １１１１ １１１１です", "カード番号は[card]です"),
    ("カード４１１１\u3000１１１１\u3000１１１１\u3000１１１１", "カード[card]"),
    ("رقم البطاقة ٤١١١ ١١١١ ١١١١ ١١١١", "رقم البطاقة [card]"),
    # still left: no Luhn, glued to a Latin word
    ("Carte 4111\u00a01111\u00a01111\u00a01112", "Carte 4111\u00a01111\u00a01111\u00a01112"),
    ("ref４１１１１１１１１１１１１１１１", "ref４１１１１１１１１１１１１１１１"),
]


def test_a_card_in_other_spaces_or_digits_is_replaced():
    """Each case, and the lookalikes still left (no Luhn; glued to a Latin word)."""
    got = [Redactor(EVERY).item(text, {})[0] for text, _ in OTHER_SPACES_OR_DIGITS]
    assert got == [redacted for _, redacted in OTHER_SPACES_OR_DIGITS]


TRUNK_PREFIX = [
    ("Rappelez-moi au +33 (0)6 12 34 56 78 svp", "Rappelez-moi au [phone] svp"),
    ("Please call +353 (0)1 234 5678", "Please call [phone]"),
    ("Call me on +61 (0)4 1234 5678", "Call me on [phone]"),
    ("Bitte rückrufen: +43 (0)1 58858-0", "Bitte rückrufen: [phone]"),
    ("appelez le 0033 (0)6 12 34 56 78", "appelez le [phone]"),
    ("au +33\u00a06\u00a012\u00a034\u00a056\u00a078", "au [phone]"),
    ("call +44 (0)20 7946 0958", "call [phone]"),  # London's: redacted before too
]


def test_an_international_number_with_the_trunk_prefix_is_replaced_whole():
    got = [Redactor(EVERY).item(text, {})[0] for text, _ in TRUNK_PREFIX]
    assert got == [redacted for _, redacted in TRUNK_PREFIX]


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (
            "Bestellung 59363 3992 0373 0054 7771, bitte stornieren",
            "Bestellung 59363 [card], bitte stornieren",
        ),
        (
            "Order 31596 3382 0205 9155 4225 was charged twice",
            "Order 31596 [card] was charged twice",
        ),
        ("Kundennummer 29313 2569 3665 6636 0834", "Kundennummer 29313 [card]"),
    ],
)
def test_a_card_after_an_order_number_is_masked_where_it_is(text: str, redacted: str):
    assert Redactor(("card",)).item(text, {})[0] == redacted


def _with_check_digit(start: str) -> str:
    for digit in "0123456789":
        number = start + digit
        total = 0
        for n, char in enumerate(reversed(number)):
            value = int(char) * (2 if n % 2 else 1)
            total += value - 9 if value > 9 else value
        if total % 10 == 0:
            return number
    raise AssertionError(start)


def test_no_card_keeps_8_of_its_digits_beside_an_order_number_or_its_cvv():
    """Random valid cards in fours after an order or customer number and before a CVV, expiry
    or year: none keeps a run of 8 of its digits (on the code before: 34 of these 2,000 did)."""
    rng = random.Random(8)
    redactor = Redactor(("card",))
    kept = []
    for _ in range(2000):
        card = _with_check_digit(rng.choice("23456") + "".join(rng.choices("0123456789", k=14)))
        written = " ".join(card[i : i + 4] for i in range(0, 16, 4))
        before = rng.choice(["", f"Order {rng.randint(100, 999999)} ", "qty 2 "])
        after = rng.choice(
            ["", f" {rng.randint(100, 999)}", " 12/25", f" {rng.randint(1000, 9999)}"]
        )
        out = redactor.item(before + written + after, {})[0]
        left = [re.sub(r"\D", "", part) for part in out.split("[card]")]
        if any(card[i : i + 8] in part for part in left for i in range(9)):
            kept.append((before + written + after, out))
    assert kept == []
