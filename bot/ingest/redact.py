"""Redaction of personal data as items arrive (``HITL_REDACT``): what must not be kept (a card
number a customer pasted) is replaced before the text is stored, scored, posted to Slack or
exported. The model learns from ``[card]`` as well as from the number: better, since no two
numbers are alike.

Kinds (``KINDS``):

- ``card``: 13 to 19 digits starting with 2 to 6 (the card networks' numbers), in groups
  separated by spaces (any kind: a no-break space, a narrow one), dots or dashes (or a meta
  value sent as a number), that pass the Luhn check (what payment card numbers do; an order
  number rarely does), as ``[card]``; digits of any script count (``４１１１``, ``٤١١١``). A
  card pasted with digits beside it (its CVV or expiry after it, a quantity or an order number
  before it) is found too: of a run of digit groups that fails the check, each run of its
  groups (of 3 digits or more, as cards are written) 13 to 19 digits long is tried, and of
  those that pass and overlap, the one grouped as cards are (in fours, 4-6-5) is taken, the
  longest, then the one ending the run. A run glued to letters (but those of a script written
  without spaces) or a ``+`` (an IBAN, a reference, a phone number) is none;
- ``email``: an address ``name@domain.tld`` as ``[email]``;
- ``phone``: a number of 8 to 15 digits written internationally (``+44 7700 900999``,
  ``0044 7700 900999``: after ``00`` a country code, 1 or 7 or one of 2 or 3 digits starting
  2 to 9, then a space, dot or dash; ``+33 (0)6 12 34 56 78``, the trunk prefix in
  brackets; ``+43 (0)1 58858-0``, an extension after a dash) or with its area code in
  brackets (``(020) 7946 0958``, ``(202) 555 0143``: one starting with 0, or 3 digits), as
  ``[phone]``; a bare run of digits
  (an order number, a date, ``0012 3456 7890``, ``(2024) 123 456``) is left alone, so a
  number written ``07700 900999`` is too, and so is a ``00`` group that follows another
  number's digits (the middle of an IBAN).

An item sent without an id is named by its redacted text (a hash of the text as it came,
shown beside it, would let the value be guessed back); the same ticket sent again is redacted
the same way, so it is found. Its meta's values are redacted as its text is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# what parts the groups of a number: a space (any of Unicode's: a no-break space, the narrow
# one of French grouping, an ideographic one), a dot or a dash
_SEP = "[ .\\-\u00a0\u2000-\u200a\u202f\u205f\u3000]"
# a run of digit groups (any script's decimal digits), each separated from the next by one
# separator
_RUN = re.compile(rf"\d+(?:{_SEP}\d+)*")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}(?![\w-])")
_PHONE = re.compile(
    # +44 7700 900999, 0044 7700 900999 (not 0012 3456 7890: no country code 12)
    rf"(?<![\w+])(?:(?:\+\d{{1,3}}|(?<!\d{_SEP})\b00(?:1|7|[2-689]\d{{1,2}})(?=[(]|{_SEP}))"
    rf"(?:{_SEP}?\(0\))?"  # +33 (0)6 12 34 56 78: the trunk prefix, dialled at home only
    rf"{_SEP}?\(?\d{{1,4}}\)?(?:{_SEP}?\d{{2,4}}){{2,4}}(?:-\d{{1,4}})?"  # 58858-0: extension
    rf"|\((?:0\d{{1,4}}|[2-9]\d\d)\){_SEP}?\d{{3,4}}{_SEP}?\d{{3,4}})(?!\w)"  # (020) 7946 0958
)
# scripts written without spaces between words: a number beside their letters is not glued
_UNSPACED = re.compile("[\u3000-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f]")


def _ascii(digits: str) -> str:
    """``digits`` (any script's: ``４１１１``, ``٤١١١``) as ASCII digits."""
    return "".join(str(int(char)) for char in digits)


def _luhn(digits: str) -> bool:
    total = 0
    for n, char in enumerate(reversed(digits)):
        value = int(char)
        if n % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_card(digits: str) -> bool:
    digits = _ascii(digits)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn(digits)


def _glued(text: str, start: int, end: int) -> bool:
    """Whether the run of digits ``text[start:end]`` is part of a word (``ref4111…``,
    ``DE89 3704…``, ``4111…-A``) or of a phone number (``+49 151…``): not a card on its own. A
    dot after a word (``No.4111…``) parts it, and so do the letters of a script written without
    spaces (``番号は４１１１…です``)."""
    before = text[start - 1] if start else ""
    if before == "." and start >= 2 and text[start - 2].isalpha():
        before = ""
    after = text[end] if end < len(text) else ""
    if _UNSPACED.match(before):
        before = ""
    if _UNSPACED.match(after):
        after = ""
    return bool(re.match(r"[\w+.-]", before) or re.match(r"[\w-]", after))


def _cards(text: str) -> str:
    """``text`` with each card number in it as ``[card]`` (see ``card`` above)."""
    out: list[str] = []
    done = 0
    for run in _RUN.finditer(text):
        written = run.group()
        if len(written) < 13 or _glued(text, run.start(), run.end()):  # too few digits, or
            continue
        spans = [(m.start(), m.end()) for m in re.finditer(r"\d+", written)]  # its groups
        for start, end in _card_spans(written, spans):
            out.append(text[done : run.start() + start])
            out.append("[card]")
            done = run.start() + end
    out.append(text[done:])
    return "".join(out)


def _shaped(sizes: list[int]) -> bool:
    """Whether groups of these sizes are a card as cards are written: in fours (the last of a
    19-digit one in three), 4-6-5 or 4-6-4 (Amex, Diners), or unbroken."""
    return len(sizes) == 1 or sizes in ([4] * 4, [4] * 4 + [3], [4, 6, 5], [4, 6, 4])


def _card_spans(written: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The card numbers in a run of digit groups ``written`` (the groups at ``spans``): the
    whole run, or else the runs of its groups of 3 digits or more that are (a card pasted with
    its CVV, expiry, a quantity or an order number beside it). Where such runs overlap
    (``59363 3992 0373 0054 7771``: the order number with the card's first groups passes
    too), the one written as a card is taken (``3992 0373 0054 7771``), the longest of them,
    then the one at the run's end; no run written alike that is longer is left."""
    if _is_card(re.sub(r"\D", "", written)):
        return [(0, len(written))]
    sizes = [end - start for start, end in spans]
    passing = []  # (first group, last group) of each run of groups that is a card
    for first in range(len(spans)):
        total = 0
        for last in range(first, len(spans)):
            if sizes[last] < 3:
                break
            total += sizes[last]
            if total > 19:
                break
            if _is_card(re.sub(r"\D", "", written[spans[first][0] : spans[last][1]])):
                passing.append((first, last))

    def rank(stretch: tuple[int, int]) -> tuple[bool, int, bool, int]:
        first, last = stretch
        digits = sum(sizes[first : last + 1])
        return (_shaped(sizes[first : last + 1]), digits, last == len(spans) - 1, -first)

    found: list[tuple[int, int]] = []
    while passing:
        first, last = max(passing, key=rank)
        found.append((first, last))
        passing = [(f, la) for f, la in passing if la < first or f > last]
    return sorted((spans[first][0], spans[last][1]) for first, last in found)


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[phone]" if 8 <= len(digits) <= 15 else match.group()


KINDS: dict[str, Callable[[str], str]] = {
    "card": _cards,
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
