"""Redaction of personal data as items arrive (``HITL_REDACT``): what must not be kept (a card
number a customer pasted) is replaced before the text is stored, scored, posted to Slack or
exported. The model learns from ``[card]`` as well as from the number: better, since no two
numbers are alike.

Kinds (``KINDS``):

- ``card``: 13 to 19 digits starting with 2 to 6 (the card networks' numbers), in groups
  separated by spaces, dots or dashes (or a meta value sent as a number), that pass the Luhn
  check (what payment card numbers do; an order number rarely does), as ``[card]``;
- ``email``: an address ``name@domain.tld`` as ``[email]``;
- ``phone``: a number of 8 to 15 digits written internationally (``+44 7700 900999``,
  ``0044 7700 900999``) or with its area code in brackets (``(020) 7946 0958``), as
  ``[phone]``; a bare run of digits (an order number, a date) is left alone, so a number
  written ``07700 900999`` is too.

An item sent without an id is named by its redacted text (a hash of the text as it came,
shown beside it, would let the value be guessed back); the same ticket sent again is redacted
the same way, so it is found. Its meta's values are redacted as its text is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# the networks' numbers start with 2 to 6 (Mastercard, Amex, Visa, Mastercard, Discover/UnionPay)
_CARD = re.compile(r"(?<![\w.-])[2-6](?:[ .-]?\d){12,18}(?![\w-]|\.\d)")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}(?![\w-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:(?:\+|\b00)\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}"  # +44 7700 900999
    r"|\(\d{2,5}\)[ .-]?\d{3,4}[ .-]?\d{3,4})(?!\w)"  # (020) 7946 0958
)


def _luhn(digits: str) -> bool:
    total = 0
    for n, char in enumerate(reversed(digits)):
        value = int(char)
        if n % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[card]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group()


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[phone]" if 8 <= len(digits) <= 15 else match.group()


KINDS: dict[str, Callable[[str], str]] = {
    "card": lambda text: _CARD.sub(_card, text),
    "email": lambda text: _EMAIL.sub("[email]", text),
    "phone": lambda text: _PHONE.sub(_phone, text),
}
ORDER = ("card", "email", "phone")  # cards before phones: a card number is also digits


class Redactor:
    """Replaces the ``kinds`` of personal data (``KINDS``) in a text and in a meta's text
    values; counts the texts it changed."""

    def __init__(self, kinds: tuple[str, ...]) -> None:
        unknown = [kind for kind in kinds if kind not in KINDS]
        if unknown:
            raise ValueError(f"unknown kind {unknown[0]!r}; use some of {', '.join(ORDER)}")
        self.steps = [KINDS[kind] for kind in ORDER if kind in kinds]
        self.changed = 0

    def __bool__(self) -> bool:
        return bool(self.steps)

    def item(self, text: str, meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The item's text and meta with the personal data replaced; ``changed`` counts the
        items it changed."""
        out = self._value(text)
        out_meta = {key: self._value(value) for key, value in meta.items()}
        if out != text or out_meta != meta:
            self.changed += 1
        return out, out_meta

    def _value(self, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):  # a card sent as a number
            written = str(value)
            redacted = self._value(written)
            return value if redacted == written else redacted
        if isinstance(value, str):
            out = value
            for step in self.steps:
                out = step(out)
            return out
        if isinstance(value, list):
            return [self._value(v) for v in value]
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        return value


def check_kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """``HITL_REDACT``'s value, checked (for the settings)."""
    Redactor(kinds)
    return kinds
